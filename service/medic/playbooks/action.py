"""What an action is: plan (read-only, gives the guards their facts), apply (the one write),
verify (did it help). Actions raise StepError subclasses; the executor turns them into records.

``Action[P, F]`` is generic over its params model and its plan's facts model:
``RollbackDeployment`` is an ``Action[RollbackParams, RollbackFacts]``, so its ``plan`` reads
``params.to`` without a cast, its ``apply`` and ``verify`` read ``plan.facts.from_hash`` (a fact
the plan did not set is a type error, never a KeyError at 3 a.m.), and the registry
(:class:`medic.playbooks.contract.ActionDef`) pairs it with exactly that params model. ``apply``
answers an :class:`ApplyResult`. The executor keeps what they record as plain JSON
(:meth:`ActionFacts.record`, :meth:`ApplyResult.record`): the ledger and the records keep their shape."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict

from medic.domain.actions import Precondition
from medic.domain.errors import NotConfigured
from medic.domain.incident import Incident, Target
from medic.playbooks.ports import KubeApi, KubeBody
from medic.rules.model import Rule

# An action reads its params: it accepts a model (or a narrower one), hence contravariant.
P_contra = TypeVar("P_contra", bound=BaseModel, contravariant=True)


class EarlierAction(BaseModel):
    """An earlier action of Medic's as the target itself records it (e.g. the rollback's
    annotation on the Deployment)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    action: str
    at: str | None
    to_hash: str
    incident: str
    status: str


class ActionFacts(BaseModel):
    """What a plan found, typed per action (e.g. the rollback's revisions and timeline): its
    ``apply`` and ``verify`` read them, the guards see them, the ledger keeps them. A plan that
    found nothing sets no field: only the fields a plan set are recorded."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    def record(self) -> dict[str, Any]:
        """The facts as the bundle, the action record and the ledger keep them."""
        return self.model_dump(exclude_unset=True)

    # What the guards read of any action's facts (an action that knows them says so).
    def current_revision_hash(self) -> str:
        """The target's current revision hash, when the plan read it (the flap guard)."""
        return ""

    def earlier_on_target(self) -> EarlierAction | None:
        """Medic's earlier action as the target records it: the cooldown and flap guards see it
        even when the ledger does not (a freshly installed or restored Medic)."""
        return None


class NoFacts(ActionFacts):
    """The facts of an action whose plan needs to remember nothing (restart, set image)."""


# A plan's facts are written by plan and read by apply and verify: invariant.
F = TypeVar("F", bound=ActionFacts)


class ApplyResult(BaseModel):
    """What ``apply`` did. ``already``: an earlier attempt (a lost answer) had done it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    applied: bool
    already: bool = False
    note: str = ""

    def record(self) -> dict[str, Any]:
        """As the action record keeps it (only the fields the action set)."""
        return self.model_dump(exclude_unset=True)


@dataclass(frozen=True)
class ActionContext:
    kube: KubeApi | None  # None: Kubernetes is not configured (KubeClient satisfies KubeApi)
    target: Target
    incident: Incident
    rule: Rule
    now: datetime

    def require_kube(self) -> KubeApi:
        """The Kubernetes client; without one, :class:`NotConfigured` (a StepError: the executor
        turns it into the action's record). Every step of every action asks here first."""
        if self.kube is None:
            raise NotConfigured("Kubernetes is not configured: no action can run")
        return self.kube


@dataclass
class ActionPlan(Generic[F]):
    summary: str  # one line for humans: what would be done
    facts: F  # what the plan found: read by apply/verify, shown in the bundle, kept in the ledger
    preconditions: list[Precondition] = field(default_factory=list)
    skip_reason: str | None = None  # nothing to do (e.g. the template already matches)
    target_annotations: dict[str, str] = field(default_factory=dict)
    target_labels: dict[str, str] = field(default_factory=dict)
    payload: KubeBody | None = None  # the write, exactly as it will be sent
    idempotency_scope: str = ""  # what makes two attempts "the same action" (e.g. from-revision)


class Action(Protocol[P_contra, F]):
    async def plan(self, ctx: ActionContext, params: P_contra) -> ActionPlan[F]: ...

    async def apply(self, ctx: ActionContext, plan: ActionPlan[F]) -> ApplyResult: ...

    async def verify(self, ctx: ActionContext, plan: ActionPlan[F], timeout: float) -> tuple[bool, str]: ...
