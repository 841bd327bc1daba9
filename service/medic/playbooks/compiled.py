"""A playbook as loaded: its steps' and actions' params already typed by the registry."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel

from medic.playbooks.contract import ActionDef, AnalyzerDef, CollectorDef
from medic.playbooks.model import ActionSpec, Playbook


@dataclass(frozen=True)
class CompiledStep:
    step_id: str
    collector: CollectorDef
    params: BaseModel
    timeout: float | None


@dataclass(frozen=True)
class CompiledAction:
    name: str
    spec: ActionSpec
    action: ActionDef
    params: BaseModel


@dataclass(frozen=True)
class CompiledPlaybook:
    playbook: Playbook
    file: str
    steps: list[CompiledStep]
    analyzers: list[AnalyzerDef]
    actions: dict[str, CompiledAction]

    @property
    def name(self) -> str:
        return self.playbook.name
