"""Acknowledgement first, on hardware too: the diagnosis process takes less work while the intake
is flooded.

The diagnosis process runs in the idle scheduling class, so it never takes a core from the
intake. It still slows the intake when it runs beside it: the two share caches, memory bandwidth,
the disk's journal and, on a virtual machine, maybe the physical core behind two virtual ones.
Measured under a webhook flood on the 2-core benchmark machine (docs/benchmarks.md, intake): with
the diagnosis process working, the intake spent about a fifth more CPU per delivery and
acknowledged a fifth fewer.

So the intake measures how busy its event loop is (its utilization: the share of the last
:data:`SAMPLE_EVERY` seconds it spent working rather than waiting for I/O), and while it is at
least :data:`FLOODED` the diagnosis process's claims are answered "later" (``retry_after``),
except one every
:data:`LONGEST_DEFERRAL` seconds, so that diagnoses go on, slowly, through a flood that lasts.
Nothing waits in memory: deferred deliveries stay in the inbox (durable) and are claimed as soon as
the load drops. Alertmanager's own traffic, even in an alert storm, keeps the loop far below this
(see docs/benchmarks.md for the figures); a flood is thousands of deliveries a second, e.g.
several Alertmanagers retrying at once after an outage.
"""

from __future__ import annotations

import asyncio
import selectors
import time
import weakref
from collections.abc import Callable

import structlog

log = structlog.get_logger("medic.app.claim_gate")

FLOODED = 0.6  # the event loop's utilization from which the intake counts as flooded
SAMPLE_EVERY = 0.25  # seconds between two readings of the loop's utilization
LONGEST_DEFERRAL = 1.0  # while flooded, a claim is still granted this long after the last one


def claim_deferral(
    busy: float, since_granted: float, *, flooded: float = FLOODED, longest: float = LONGEST_DEFERRAL
) -> float:
    """Pure: how long the diagnosis process should wait before it asks again (0: claim now),
    given the loop's busy share and the seconds since a claim was last granted."""
    if busy < flooded or since_granted >= longest:
        return 0.0
    return min(SAMPLE_EVERY, longest - since_granted)


class MeteredSelector(selectors.DefaultSelector):
    """The platform's default selector, adding up how long the event loop waited in it."""

    def __init__(self) -> None:
        super().__init__()
        self.waited = 0.0

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        start = time.monotonic()
        try:
            return super().select(timeout)
        finally:
            self.waited += time.monotonic() - start


_METERS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, MeteredSelector] = weakref.WeakKeyDictionary()


def metered_event_loop() -> asyncio.AbstractEventLoop:
    """A new event loop whose waits for I/O are timed (``medic serve`` runs on one)."""
    selector = MeteredSelector()
    loop = asyncio.SelectorEventLoop(selector)
    _METERS[loop] = selector
    return loop


class LoopLoad:
    """The running event loop's utilization: the share of the last sample's wall time it spent
    working rather than waiting for I/O (0 before the first sample, and on a loop that is not
    metered). Unlike its CPU time it does not count what waking up costs the kernel, which on a
    virtual machine is most of a lightly loaded loop's CPU (a bare aiohttp handler at 500
    requests a second used a sixth of a core there, at 2,000 a third)."""

    def __init__(
        self,
        every: float = SAMPLE_EVERY,
        *,
        waited: Callable[[], float] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.every = every
        self.waited = waited
        self.clock = clock
        self.busy = 0.0
        self._last = (0.0, 0.0)
        self._timer: asyncio.TimerHandle | None = None

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        if self.waited is None:
            meter = _METERS.get(loop)
            if meter is None:
                log.debug("the event loop is not metered: claims are never put off")
                return
            self.waited = lambda: meter.waited
        self._last = (self.clock(), self.waited())
        self._timer = loop.call_later(self.every, self._tick)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def sample(self) -> float:
        """Take a reading now: the share of the time since the previous one spent working."""
        if self.waited is None:
            return self.busy
        now, waited = self.clock(), self.waited()
        wall, idle = now - self._last[0], waited - self._last[1]
        self._last = (now, waited)
        if wall > 0:
            self.busy = min(1.0, max(0.0, 1.0 - idle / wall))
        return self.busy

    def _tick(self) -> None:
        self.sample()
        self._timer = asyncio.get_running_loop().call_later(self.every, self._tick)


class ClaimGate:
    """What the intake asks before it hands the diagnosis process more deliveries: 0 to go on,
    or the seconds to wait (each told to ``on_defer``; the start and end of a flood are logged)."""

    def __init__(
        self,
        load: LoopLoad,
        *,
        on_defer: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.load = load
        self.on_defer = on_defer
        self.clock = clock
        self._granted_at = clock()
        self._flooded = False

    def __call__(self) -> float:
        now = self.clock()
        wait = claim_deferral(self.load.busy, now - self._granted_at)
        if wait > 0:
            self.on_defer()
            if not self._flooded:
                self._flooded = True
                log.info(
                    "intake flooded: the diagnosis process takes less work",
                    loop_busy=round(self.load.busy, 2),
                )
            return wait
        self._granted_at = now
        if self._flooded and self.load.busy < FLOODED:
            self._flooded = False
            log.info("intake load back below the flood mark", loop_busy=round(self.load.busy, 2))
        return 0.0
