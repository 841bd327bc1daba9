"""A playbook as loaded: its steps' and actions' params already typed by the registry."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pydantic import BaseModel

from medic.playbooks.action import ActionContext, ActionPlan
from medic.playbooks.contract import ActionDef, AnalyzerDef, CollectorDef
from medic.playbooks.model import ActionSpec, Playbook


@dataclass(frozen=True)
class CompiledStep:
    step_id: str
    collector: CollectorDef[Any, Any]
    params: BaseModel
    timeout: float | None


P = TypeVar("P", bound=BaseModel)


@dataclass(frozen=True)
class CompiledAction(Generic[P]):
    """A playbook's action with its params validated by the action's own model."""

    name: str
    spec: ActionSpec
    action: ActionDef[P]
    params: P

    async def plan(self, ctx: ActionContext) -> ActionPlan[Any]:
        """The action's plan for these params (typed together here, whatever P is)."""
        return await self.action.impl.plan(ctx, self.params)


@dataclass(frozen=True)
class CompiledPlaybook:
    playbook: Playbook
    file: str
    steps: list[CompiledStep]
    analyzers: list[AnalyzerDef]
    actions: dict[str, CompiledAction[Any]]

    @property
    def name(self) -> str:
        return self.playbook.name
