"""Whether one of Medic's own backends answers, as last seen: a small circuit breaker.

A call that fails to reach the backend marks it down; while it is down, callers that have a
fallback (the local spool) use it at once instead of waiting for a connect timeout on every
request, and callers without one fail fast with :class:`~medic.domain.errors.BackendUnavailable`.
A background probe marks it up again.
"""

from __future__ import annotations

import time

import structlog

from medic.domain.errors import BackendUnavailable

log = structlog.get_logger("medic.inbox")


class Availability:
    def __init__(self, name: str) -> None:
        self.name = name
        self.up = True
        self.error = ""
        self.since = time.monotonic()

    def mark_down(self, error: BaseException | str) -> None:
        self.error = str(error) or type(error).__name__
        if self.up:
            self.up = False
            self.since = time.monotonic()
            log.warning("backend unreachable", backend=self.name, error=self.error)

    def mark_up(self) -> None:
        if not self.up:
            log.info("backend reachable again", backend=self.name, down_seconds=round(self.down_for, 1))
            self.up = True
            self.error = ""
            self.since = time.monotonic()

    @property
    def down_for(self) -> float:
        return 0.0 if self.up else time.monotonic() - self.since

    def check(self) -> None:
        """Fail fast while the backend is known to be down."""
        if not self.up:
            raise BackendUnavailable(f"{self.name} is unreachable: {self.error}")

    def describe(self) -> str:
        return "ok" if self.up else f"unreachable for {self.down_for:.0f}s: {self.error}"
