"""What the guards and the coordination store know of actions: preconditions, the
ledger's marks, the kill switch."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from medic.domain.durations import format_duration
from medic.domain.errors import MedicError


@dataclass(frozen=True)
class ActionMark:
    """What the coordination store remembers of an action taken on a target."""

    idempotency_key: str
    target: str
    action: str
    incident_id: str
    at: datetime
    status: str  # started | succeeded | failed | skipped
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ActionLimit:
    """A budget checked where the action is recorded (atomically with it, across replicas): at
    most ``count`` actions (skipped ones excluded) begun within ``window`` up to the mark's time,
    on the mark's target (``per_target``) or on any target."""

    name: str  # the guard it enforces: "budget" or "global_budget"
    count: int
    window: timedelta
    per_target: bool


class BudgetExhausted(MedicError):
    """:meth:`RemediationState.begin_action` refused: a limit is used up (nothing recorded)."""

    def __init__(self, limit: ActionLimit, used: int) -> None:
        scope = "this target" if limit.per_target else "all targets"
        window = format_duration(limit.window)
        super().__init__(f"{used} of {limit.count} actions on {scope} used in {window}")
        self.limit = limit
        self.used = used


@dataclass(frozen=True)
class KillSwitch:
    enabled: bool
    by: str = ""
    reason: str = ""
    at: datetime | None = None


@dataclass(frozen=True)
class Precondition:
    name: str
    ok: bool
    reason: str
