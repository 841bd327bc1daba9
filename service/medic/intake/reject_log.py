"""Rejected webhook deliveries, logged at warning without flooding the log.

"Alertmanager gets 401" must leave a trace in Medic's log, but a misconfigured sender retrying
hundreds of times a minute must not bury everything else: at most one line per reason per
``interval`` seconds; the next line of that reason says how many were left out meanwhile.
Every rejection is counted in ``medic_webhooks_rejected_total{reason}`` regardless.

The line names the sender's address and, when the body could be parsed that far, the receiver
and group key: :func:`begin_delivery` (at the start of the handler) and :func:`note_body` (once
the body is parsed) record them for the request being handled (a context variable: aiohttp runs
each request in its own task).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import structlog

log = structlog.get_logger("medic.intake")

DEFAULT_INTERVAL = 10.0

_delivery: ContextVar[dict[str, Any] | None] = ContextVar("medic_webhook_delivery", default=None)


def begin_delivery(remote: str | None) -> None:
    _delivery.set({"remote": remote})


def note_body(raw: Any) -> None:
    """Receiver and group key of a parsed body (strings only, shortened: the sender wrote them)."""
    fields = _delivery.get()
    if fields is None or not isinstance(raw, dict):
        return
    for key, name in (("receiver", "receiver"), ("groupKey", "group_key")):
        value = raw.get(key)
        if isinstance(value, str):  # a lone surrogate (valid JSON, not UTF-8) shown escaped
            fields[name] = value[:200].encode("utf-8", "backslashreplace").decode("utf-8")


@dataclass
class _Window:
    logged_at: float
    suppressed: int = 0


class RejectLog:
    def __init__(
        self,
        interval: float = DEFAULT_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
        logger: Any = None,
    ) -> None:
        self.interval = interval
        self.clock = clock
        self.log = logger if logger is not None else log
        self._windows: dict[str, _Window] = {}

    def rejected(self, reason: str, **fields: Any) -> bool:
        """Log one rejection (unless its reason was logged less than ``interval`` ago); True
        when a line was written. A callable field is evaluated only when the line is written."""
        now = self.clock()
        window = self._windows.get(reason)
        if window is not None and now - window.logged_at < self.interval:
            window.suppressed += 1
            return False
        suppressed = window.suppressed if window is not None else 0
        self._windows[reason] = _Window(logged_at=now)
        extra = {"suppressed": suppressed} if suppressed else {}
        merged = {**(_delivery.get() or {}), **fields}
        present = {k: v() if callable(v) else v for k, v in merged.items() if v is not None}
        self.log.warning("webhook delivery rejected", reason=reason, **present, **extra)
        return True
