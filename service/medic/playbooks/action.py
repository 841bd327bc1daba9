"""What an action is: plan (read-only, gives the guards their facts), apply (the one write),
verify (did it help). Actions raise StepError subclasses; the executor turns them into records.

``Action[P]`` is generic over its params model: ``RollbackDeployment`` is an
``Action[RollbackParams]``, so its ``plan`` reads ``params.to`` without a cast, and the registry
(:class:`medic.playbooks.contract.ActionDef`) pairs it with exactly that model."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from pydantic import BaseModel

from medic.domain.actions import Precondition
from medic.domain.incident import Incident, Target
from medic.rules.model import Rule

if TYPE_CHECKING:
    from medic.clients.kube.client import KubeClient

# An action reads its params: it accepts a model (or a narrower one), hence contravariant.
P_contra = TypeVar("P_contra", bound=BaseModel, contravariant=True)


@dataclass(frozen=True)
class ActionContext:
    kube: KubeClient | None  # None: Kubernetes is not configured
    target: Target
    incident: Incident
    rule: Rule
    now: datetime


@dataclass
class ActionPlan:
    summary: str  # one line for humans: what would be done
    preconditions: list[Precondition] = field(default_factory=list)
    skip_reason: str | None = None  # nothing to do (e.g. the template already matches)
    facts: dict[str, Any] = field(default_factory=dict)  # shown in the bundle, kept in the ledger
    target_annotations: dict[str, str] = field(default_factory=dict)
    target_labels: dict[str, str] = field(default_factory=dict)
    payload: Any = None  # the write, exactly as it will be sent
    idempotency_scope: str = ""  # what makes two attempts "the same action" (e.g. from-revision)


class Action(Protocol[P_contra]):
    async def plan(self, ctx: ActionContext, params: P_contra) -> ActionPlan: ...

    async def apply(self, ctx: ActionContext, plan: ActionPlan) -> dict[str, Any]: ...

    async def verify(self, ctx: ActionContext, plan: ActionPlan, timeout: float) -> tuple[bool, str]: ...
