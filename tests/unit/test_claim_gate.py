"""The intake puts the diagnosis process's claims off while its event loop is flooded
(medic.app.claim_gate): a pure decision, the loop's utilization, and the gate that counts and logs."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest
import structlog
from structlog.testing import LogCapture

from medic.app import claim_gate
from medic.app.claim_gate import (
    FLOODED,
    LONGEST_DEFERRAL,
    SAMPLE_EVERY,
    ClaimGate,
    LoopLoad,
    claim_deferral,
    metered_event_loop,
)


@pytest.mark.parametrize(
    ("busy", "since", "wait"),
    [
        (0.0, 0.0, 0.0),  # idle: claim now
        (FLOODED - 0.01, 0.0, 0.0),  # below the mark
        (FLOODED, 0.0, SAMPLE_EVERY),  # flooded: ask again after a sample
        (0.95, 0.9, pytest.approx(0.1)),  # ... but not past the longest deferral
        (0.95, LONGEST_DEFERRAL, 0.0),  # one claim a second goes through a lasting flood
        (3.0, 5.0, 0.0),
    ],
)
def test_claim_deferral(busy: float, since: float, wait: float) -> None:
    assert claim_deferral(busy, since) == wait


class Clock:
    def __init__(self) -> None:
        self.now = 100.0
        self.waited = 10.0

    def advance(self, wall: float, waited: float) -> None:
        self.now += wall
        self.waited += waited


def test_the_load_is_the_share_of_time_not_spent_waiting_for_io() -> None:
    clock = Clock()
    load = LoopLoad(waited=lambda: clock.waited, clock=lambda: clock.now)
    load._last = (clock.now, clock.waited)
    clock.advance(0.25, 0.05)
    assert load.sample() == pytest.approx(0.8)
    clock.advance(0.5, 0.45)
    assert load.sample() == pytest.approx(0.1)
    assert load.sample() == pytest.approx(0.1)  # no time passed: the last reading stands


def test_a_metered_loop_reads_its_utilization_on_a_timer() -> None:
    async def main() -> tuple[float, float]:
        load = LoopLoad(every=0.02)
        load.start()
        try:
            end = time.monotonic() + 0.15
            while time.monotonic() < end:  # working, with the loop turning in between
                spin = time.monotonic() + 0.005
                while time.monotonic() < spin:
                    pass
                await asyncio.sleep(0)
            working = load.busy
            await asyncio.sleep(0.1)  # waiting
            return working, load.busy
        finally:
            load.stop()

    loop = metered_event_loop()
    try:
        working, waiting = loop.run_until_complete(main())
    finally:
        loop.close()
    assert working > 0.8 and waiting < 0.2


async def test_a_loop_that_is_not_metered_never_puts_claims_off() -> None:
    load = LoopLoad(every=0.01)
    load.start()
    end = time.monotonic() + 0.05
    while time.monotonic() < end:
        pass
    await asyncio.sleep(0.02)
    assert load.busy == 0.0 and load.sample() == 0.0
    load.stop()


def test_the_gate_defers_while_flooded_lets_one_through_a_second_and_logs_the_flood(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = Clock()
    load = LoopLoad(waited=lambda: clock.waited, clock=lambda: clock.now)
    deferred: list[float] = []
    gate = ClaimGate(load, on_defer=lambda: deferred.append(clock.now), clock=lambda: clock.now)
    assert gate() == 0.0
    load.busy = 0.9
    # a logger of its own: the session's logging may be configured at warning, and cached
    capture = LogCapture()
    wrapper = structlog.make_filtering_bound_logger(logging.DEBUG)
    monkeypatch.setattr(
        claim_gate, "log", structlog.wrap_logger(None, processors=[capture], wrapper_class=wrapper)
    )
    waits = []
    for _ in range(8):
        waits.append(gate())
        clock.advance(SAMPLE_EVERY, 0)
    load.busy = 0.1
    assert gate() == 0.0
    logs = capture.entries
    assert waits == [SAMPLE_EVERY, SAMPLE_EVERY, SAMPLE_EVERY, SAMPLE_EVERY, 0.0] + [SAMPLE_EVERY] * 3
    assert len(deferred) == 7
    assert [entry["event"] for entry in logs] == [
        "intake flooded: the diagnosis process takes less work",
        "intake load back below the flood mark",
    ]
