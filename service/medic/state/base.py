"""The state interfaces every backend implements."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from medic.durations import format_duration
from medic.errors import MedicError
from medic.intake.model import Alert
from medic.redact import redact, redact_text


@dataclass(frozen=True)
class InboxItem:
    """One accepted webhook delivery: the payload and which of its alert episodes are new."""

    id: str
    payload: dict[str, Any]
    new_episodes: list[str]
    received_at: datetime
    attempts: int = 0


@dataclass(frozen=True)
class AcceptResult:
    item_id: str | None  # None when every episode was a duplicate (nothing to process)
    new_episodes: list[str] = field(default_factory=list)
    duplicates: int = 0


@dataclass(frozen=True)
class DeadLetter:
    """A delivery that could not be processed: kept, visible, and retried or dropped by a human.

    ``episodes`` are the alert episodes that failed (its other alerts were processed); they were
    released from deduplication when it was dead-lettered, so a re-send is processed again."""

    id: str
    payload: dict[str, Any]
    episodes: list[str]
    received_at: datetime
    dead_at: datetime | None
    attempts: int
    error: str


Payload = Mapping[str, Any] | str  # a delivery, or its JSON text as received (stored as is)


def kept_delivery(body: str) -> str:
    """A delivery's JSON text as a dead letter keeps it: redacted (a backup of Medic's data is no
    secret dump, docs/security.md), each alert's identity pinned as its fingerprint first, so that
    a retry still finds the episodes that failed (a fingerprint-less alert's identity hashes its
    raw labels). Text that is not a JSON object is scrubbed as text."""
    try:
        payload = json.loads(body)
    except ValueError:
        return redact_text(body)
    if not isinstance(payload, dict):
        return redact_text(body)
    alerts = payload.get("alerts")
    for raw in alerts if isinstance(alerts, list) else []:
        if isinstance(raw, dict) and not raw.get("fingerprint"):
            with contextlib.suppress(ValueError):  # not an alert Medic can process: nothing to pin
                raw["fingerprint"] = Alert.model_validate(raw).identity
    return payload_json(redact(payload))


def payload_json(payload: Payload) -> str:
    """The delivery as the JSON text an inbox stores: the intake hands over the body it
    received and validated, so an accepted delivery is not serialized a second time."""
    return payload if isinstance(payload, str) else json.dumps(payload, separators=(",", ":"))


class Inbox(Protocol):
    """Durable hand-off between intake and workers: at-least-once, deduplicated by episode."""

    async def accept(self, payload: Payload, episodes: list[str], received_at: datetime) -> AcceptResult:
        """Durably store the delivery (or recognise it as a duplicate). Raises StoreError."""
        ...

    async def claim(self, consumer: str, limit: int) -> list[InboxItem]:
        """Lease up to ``limit`` items; an item whose lease ran out is handed out again."""
        ...

    async def ack_many(self, item_ids: list[str]) -> None:
        """The items are fully processed: drop them."""
        ...

    async def release(
        self, item_id: str, error: str, *, episodes: list[str] | None = None, dead: bool = False
    ) -> None:
        """Processing failed: hand it out again later, or dead-letter it (``dead``, or after
        many tries). ``episodes`` narrows the item to the alert episodes that failed (the others
        are done). A dead-lettered item's episodes are released from deduplication."""
        ...

    async def depth(self) -> int: ...

    async def dead_letters(self) -> int: ...

    async def list_dead_letters(self, limit: int = 100, offset: int = 0) -> tuple[list[DeadLetter], int]:
        """A page of dead letters, newest first, and how many there are."""
        ...

    async def retry_dead_letter(self, item_id: str) -> bool:
        """Put a dead letter back in the queue (attempts reset); False if there is no such one."""
        ...

    async def drop_dead_letter(self, item_id: str) -> bool:
        """Delete a dead letter for good; False if there is no such one."""
        ...

    async def ping(self) -> None: ...


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


class RemediationState(Protocol):
    """Coordination for actions: kill switch, per-target locks, the action ledger that gives
    cooldowns, budgets, the flap guard and at-most-once (idempotency keys)."""

    async def kill_switch(self) -> KillSwitch: ...

    async def set_kill_switch(self, enabled: bool, by: str, reason: str) -> KillSwitch: ...

    async def acquire_lock(self, key: str, owner: str, ttl: float) -> bool: ...

    async def release_lock(self, key: str, owner: str) -> None: ...

    async def begin_action(self, mark: ActionMark, limits: Sequence[ActionLimit] = ()) -> bool:
        """Record an action as started; False when its idempotency key exists (already done).
        A new mark is recorded only if every limit leaves room (else :class:`BudgetExhausted`),
        in one atomic step: replicas acting at once never exceed a budget together."""
        ...

    async def finish_action(self, idempotency_key: str, status: str, detail: dict[str, Any]) -> None: ...

    async def last_action(self, target: str) -> ActionMark | None: ...

    async def count_actions(self, since: datetime, target: str | None = None) -> int:
        """Actions begun since ``since`` (skipped ones excluded), on ``target`` or on any."""
        ...

    async def actions_since(self, since: datetime) -> list[ActionMark]:
        """The ledger's marks begun since ``since`` (skipped ones excluded), oldest first: what
        start-up reconciles the incidents and the audit log with."""
        ...
