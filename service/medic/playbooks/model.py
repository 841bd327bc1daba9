"""The playbook schema (``playbooks/*.yaml``). Step params are typed by the registry at load."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from medic.domain.durations import Duration
from medic.domain.verification import VerificationSpec

TARGET_KINDS = (
    "deployment",
    "statefulset",
    "pod",
    "node",
    "namespace",
    "service",
    "horizontalpodautoscaler",
    "persistentvolumeclaim",
    "ingress",
    "certificate",
    "none",
)
_STEP_ID = re.compile(r"^[a-z0-9][a-z0-9_.\-#]*$")


class CollectStep(BaseModel):
    """One collector invocation. YAML: ``- k8s.pod_logs: {tail: 200}`` or the explicit form
    ``- {use: k8s.pod_logs, id: logs, with: {tail: 200}, timeout: 10s}``."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    use: str
    id: str = ""
    params: dict[str, Any] = Field(default_factory=dict, alias="with")
    timeout: Duration | None = None

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        if isinstance(value, str):
            return {"use": value}
        if isinstance(value, dict) and "use" not in value and len(value) == 1:
            ((name, params),) = value.items()
            return {"use": name, "with": params if params is not None else {}}
        return value

    @model_validator(mode="after")
    def _check_id(self) -> CollectStep:
        if self.id and not _STEP_ID.match(self.id):
            raise ValueError(f"step id {self.id!r}: use lower-case letters, digits, '.', '_', '-'")
        return self


class VerifySpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    timeout: Duration = timedelta(seconds=120)


class ActionSpec(BaseModel):
    """A remediation the playbook allows; rules pick one by name. Other keys are action params."""

    model_config = ConfigDict(extra="allow", frozen=True)

    use: str
    verify: VerifySpec | None = None

    @property
    def params(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class Playbook(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    description: str = ""
    runbook: str = ""  # runbook section, e.g. "3.1"
    target: str = "none"
    deadline: Duration = timedelta(seconds=60)
    collect: list[CollectStep] = Field(default_factory=list)
    analyze: list[str] = Field(default_factory=list)
    actions: dict[str, ActionSpec] = Field(default_factory=dict)
    # A deploy verification playbook (runbook 1.3): its steps run every interval of the window.
    verify: VerificationSpec | None = None

    @model_validator(mode="after")
    def _check(self) -> Playbook:
        if self.target not in TARGET_KINDS:
            raise ValueError(f"target {self.target!r} is not one of {', '.join(TARGET_KINDS)}")
        if self.verify is not None and self.target != "deployment":
            raise ValueError("a playbook with verify: must target a deployment")
        return self

    def step_ids(self) -> list[str]:
        """Unique ids: the explicit id, else the collector name (``#2`` for a repeat)."""
        seen: dict[str, int] = {}
        ids = []
        for step in self.collect:
            base = step.id or step.use
            seen[base] = seen.get(base, 0) + 1
            ids.append(base if seen[base] == 1 else f"{base}#{seen[base]}")
        return ids
