"""The coordination interface every backend implements."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol

from medic.domain.actions import ActionLimit, ActionMark, KillSwitch


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
