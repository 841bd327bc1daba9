"""The global budget holds when another replica acts on another target at the same moment: the
guards read the ledger before the target's lock is taken, so the last word is the ledger's own
check, atomic with recording the action (issue 11, left open)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from medic.coordination.base import RemediationState
from medic.domain.actions import ActionLimit, ActionMark
from medic.domain.incident import utcnow
from tests.integration.crashloop_world import crashloop_world

pytestmark = pytest.mark.integration


class OtherReplicasActFirst:
    """The state as a replica sees it while two others begin actions on other targets between its
    guards and its own mark (a seam around the real ledger: their marks are really recorded)."""

    def __init__(self, state: RemediationState) -> None:
        self.state = state

    def __getattr__(self, name: str) -> Any:
        return getattr(self.state, name)

    async def begin_action(self, mark: ActionMark, limits: tuple[ActionLimit, ...] = ()) -> bool:
        for n in range(2):
            other = ActionMark(
                f"other|{n}", f"deployment/playcode/other-{n}", "rollback", f"inc-{n}", utcnow(), "started"
            )
            assert await self.state.begin_action(other, limits)
        return await self.state.begin_action(mark, limits)


async def test_the_global_budget_is_enforced_where_the_action_is_recorded(tmp_path: Path) -> None:
    async with crashloop_world(tmp_path, global_budget_count=2) as w:
        remediator = w.medic.runtime.pipeline.remediator
        remediator.state = OtherReplicasActFirst(remediator.state)  # type: ignore[attr-defined]
        await w.post(w.crash_alerts())
        inc = await w.diagnosed()
        (act,) = inc["actions"]
        assert act["status"] == "refused", act
        assert (
            act["reason"].startswith("global_budget: 2 of 2 actions on all targets")
            and "at the ledger" in act["reason"]
        )
        assert w.patches() == 0  # not rolled back
        assert await w.medic.runtime.state.count_actions(utcnow().replace(year=2000)) == 2
