"""``kubectl rollout undo`` and ``kubectl rollout status`` semantics, as pure functions over the
JSON objects the API server returns (Deployment, ReplicaSets)."""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pydantic import Field

from medic.domain.actions import Precondition
from medic.domain.errors import StepError
from medic.domain.rollout import (
    MEDIC_ROLLBACK,
    MEDIC_ROLLED_BACK,
    REVISION,
    REVISION_HISTORY,
    MedicRollback,
    Timeline,
    build_timeline,
    healthy_before,
    iso,
    medic_rollback,
    minutes,
    short_images,
)
from medic.playbooks.action import ActionFacts, EarlierAction
from medic.remediation.actions.kube_objects import Deployment, Event, PodTemplate, ReplicaSet

TEMPLATE_HASH = "pod-template-hash"
# kubectl's annotationsToSkip: rollout bookkeeping that must not be copied from a ReplicaSet.
ANNOTATIONS_TO_SKIP = frozenset(
    {
        "kubectl.kubernetes.io/last-applied-configuration",
        REVISION,
        "deployment.kubernetes.io/revision-history",
        "deployment.kubernetes.io/desired-replicas",
        "deployment.kubernetes.io/max-replicas",
        "apps.kubernetes.io/deprecated-deployment-rollback-to",
    }
)
ROLLED_BACK_BY = MEDIC_ROLLED_BACK
CHANGE_CAUSE = "kubernetes.io/change-cause"


class RollbackError(Exception):
    """No rollback is possible (paused, no history, revision not found); the message says why."""


def revision(obj: Deployment | ReplicaSet) -> int:
    """The object's rollout revision (its annotation; 0 when absent or not a number)."""
    try:
        return int(obj.metadata.annotations.get(REVISION, ""))
    except ValueError:
        return 0


def created(obj: Deployment | ReplicaSet) -> datetime | None:
    return obj.metadata.created


def owned_by(obj: ReplicaSet, owner: Deployment) -> bool:
    uid = owner.metadata.uid
    return any(ref.uid == uid for ref in obj.metadata.controllers)


def template_without_hash(template: dict[str, Any]) -> dict[str, Any]:
    """A verbatim pod template (as a JSON Patch copies it) without its pod-template-hash label."""
    t = copy.deepcopy(template)
    labels = (t.get("metadata") or {}).get("labels")
    if labels:
        labels.pop(TEMPLATE_HASH, None)
    return t


def images(template: PodTemplate) -> list[str]:
    return [c.image for c in template.spec.containers]


@dataclass(frozen=True)
class Revision:
    number: int
    replicaset: str
    template_hash: str
    images: list[str]
    created: datetime | None
    replicas: int
    ready: int


def revision_of_rs(rs: ReplicaSet) -> Revision:
    return Revision(
        number=revision(rs),
        replicaset=rs.metadata.name,
        template_hash=rs.metadata.labels.get(TEMPLATE_HASH, ""),
        images=images(rs.spec.pod),
        created=created(rs),
        replicas=rs.status.replicas,
        ready=rs.status.ready_replicas,
    )


@dataclass(frozen=True)
class RollbackPlan:
    namespace: str
    name: str
    current: Revision | None
    target: Revision
    template: dict[str, Any]  # the target pod template, pod-template-hash removed
    annotations: dict[str, Any]
    already_current: bool  # kubectl: "skipped rollback (current template already matches revision N)"
    patch: list[dict[str, Any]] = field(default_factory=list)


def _target_replicaset(owned: list[ReplicaSet], to_revision: int) -> ReplicaSet:
    """kubectl's choice: revision ``to_revision``, else the highest revision below the latest."""
    target_rs: ReplicaSet | None = None
    if to_revision:
        target_rs = next((rs for rs in owned if revision(rs) == to_revision), None)
        if target_rs is None:
            raise RollbackError(f"revision {to_revision} not found in the rollout history")
        return target_rs
    latest = previous = 0
    latest_rs: ReplicaSet | None = None
    for rs in owned:
        v = revision(rs)
        if v > latest:
            previous, target_rs = latest, latest_rs
            latest, latest_rs = v, rs
        elif v > previous:
            previous, target_rs = v, rs
    if target_rs is None:
        raise RollbackError("no previous revision in the rollout history")
    return target_rs


def plan_rollback(
    deployment: Deployment,
    replicasets: Sequence[ReplicaSet],
    *,
    to_revision: int = 0,
    change_cause: str = "",
    at: datetime | None = None,
    incident: str = "",
) -> RollbackPlan:
    """What ``kubectl rollout undo [--to-revision N]`` would do, plus a JSON Patch whose first op
    tests the current revision annotation, so the write applies at most once."""
    meta = deployment.metadata
    if deployment.spec.paused:
        raise RollbackError("the deployment is paused: resume it before rolling back")
    owned = [rs for rs in replicasets if owned_by(rs, deployment)]
    current_rev = revision(deployment)
    target_rs = _target_replicaset(owned, to_revision)
    current_rs = next((rs for rs in owned if revision(rs) == current_rev), None)
    template = template_without_hash(target_rs.spec.template)
    already = template == template_without_hash(deployment.spec.template)
    annotations: dict[str, Any] = {k: v for k, v in meta.annotations.items() if k in ANNOTATIONS_TO_SKIP}
    for k, v in target_rs.metadata.annotations.items():
        if k not in ANNOTATIONS_TO_SKIP:
            annotations[k] = v
    target = revision_of_rs(target_rs)
    annotations[ROLLED_BACK_BY] = f"from revision {current_rev} to {target.number}"
    # read back from the cluster by the timeline: Medic knows its own rollbacks without its ledger
    current_hash = current_rs.metadata.labels.get(TEMPLATE_HASH, "") if current_rs else ""
    next_rev = max((revision(rs) for rs in owned), default=current_rev) + 1  # what the controller assigns
    annotations[MEDIC_ROLLBACK] = MedicRollback(
        current_rev, target.number, current_hash, target.template_hash, at, incident, next_rev
    ).annotation()
    if change_cause:
        annotations["kubernetes.io/change-cause"] = change_cause
    patch: list[dict[str, Any]] = [
        {
            "op": "test",
            "path": "/metadata/annotations/" + REVISION.replace("~", "~0").replace("/", "~1"),
            "value": str(current_rev),
        },
        {"op": "replace", "path": "/spec/template", "value": template},
        {"op": "replace", "path": "/metadata/annotations", "value": annotations},
    ]
    return RollbackPlan(
        namespace=meta.namespace,
        name=meta.name,
        current=revision_of_rs(current_rs) if current_rs else None,
        target=target,
        template=template,
        annotations=annotations,
        already_current=already,
        patch=patch,
    )


@dataclass(frozen=True)
class RolloutStatus:
    done: bool
    failed: bool
    message: str


def rollout_status(deployment: Deployment) -> RolloutStatus:
    """kubectl rollout status: done when the controller observed the latest generation and all
    replicas are updated and available; failed when the progress deadline was exceeded."""
    meta, spec, status = deployment.metadata, deployment.spec, deployment.status
    name = meta.name
    if (meta.generation or 0) > status.observed_generation:
        return RolloutStatus(False, False, f"waiting for deployment {name!r} spec update to be observed")
    for cond in status.conditions:
        if cond.type == "Progressing" and cond.reason == "ProgressDeadlineExceeded":
            return RolloutStatus(False, True, f"deployment {name!r} exceeded its progress deadline")
    want = spec.replicas if spec.replicas is not None else 1
    updated = status.updated_replicas
    total = status.replicas
    available = status.available_replicas
    if updated < want:
        return RolloutStatus(False, False, f"{updated} of {want} new replicas updated")
    if total > updated:
        return RolloutStatus(False, False, f"{total - updated} old replicas pending termination")
    if available < updated:
        return RolloutStatus(False, False, f"{available} of {updated} updated replicas available")
    return RolloutStatus(True, False, f"deployment {name!r} successfully rolled out")


# --------------------------------------------------------------------------- the rollback plan's
# pure parts: the timeline from the API objects, the preconditions, the summary and the facts


def _event_row(e: Event) -> dict[str, Any]:
    created = e.metadata.creation_timestamp
    return {
        "reason": e.reason,
        "message": e.message or e.note,
        "first_seen": e.first_timestamp or e.event_time or created,
        "last_seen": e.last_timestamp or e.series.last_observed_time or created,
        "resource_version": e.metadata.resource_version,
    }


def timeline_of(
    deployment: Deployment, replicasets: Sequence[ReplicaSet], events: Sequence[Event]
) -> Timeline:
    """The rollout timeline from the Deployment, its ReplicaSets and its events (API objects)."""
    owned = [rs for rs in replicasets if owned_by(rs, deployment)]
    current = revision(deployment)
    conditions = [
        {
            "type": c.type,
            "reason": c.reason,
            "message": c.message,
            "last_update": c.last_update_time or c.last_transition_time,
        }
        for c in deployment.status.conditions
    ]
    revisions = []
    for rs in owned:
        r = revision_of_rs(rs)
        ann = rs.metadata.annotations
        revisions.append(
            {
                "revision": r.number,
                "replicaset": r.replicaset,
                "pod_template_hash": r.template_hash,
                "images": r.images,
                "created": rs.metadata.creation_timestamp,
                "ready": r.ready,
                "revision_history": ann.get(REVISION_HISTORY, ""),
                "change_cause": ann.get(CHANGE_CAUSE, ""),
                "current": r.number == current,
            }
        )
    history = {
        "deployment": {
            "revision": current,
            "annotations": dict(deployment.metadata.annotations),
            "conditions": conditions,
        },
        "revisions": revisions,
    }
    return build_timeline(history, [_event_row(e) for e in events])


def history_precondition(plan: RollbackPlan) -> Precondition:
    return Precondition(
        "rollout_history",
        True,
        f"revision {plan.target.number} ({short_images(plan.target.images)}) exists",
    )


def recent_rollout_precondition(timeline: Timeline, limit: timedelta, now: datetime) -> Precondition:
    """The current revision became current within ``limit``; an unknown time is not recent."""
    cur = timeline.current
    age = timeline.age(now)
    ok = age is not None and age <= limit
    number = cur.revision if cur else "?"
    if age is None:
        why = f"the time revision {number} became current is unknown ({cur.source if cur else 'no history'})"
        return Precondition("recent_rollout", False, f"{why}: not treated as recent")
    return Precondition(
        "recent_rollout",
        ok,
        f"the current revision {number} became current {timeline.when(cur, now)} (limit {minutes(limit)})",
    )


def previous_healthy_precondition(timeline: Timeline, plan: RollbackPlan, now: datetime) -> Precondition:
    """The rollback target ran healthy: ready pods now, or it served long enough; never the
    revision Medic rolled back away from (known from the cluster's annotations)."""
    entry = timeline.of(plan.target.number)
    if entry is None:  # not in the timeline: judge by the ReplicaSet alone
        ok = plan.target.ready > 0
        why = f"revision {plan.target.number} has {plan.target.ready} ready pod(s)"
        return Precondition("previous_revision_healthy", ok, why)
    ok, why = healthy_before(timeline, entry, now)
    return Precondition("previous_revision_healthy", ok, why)


_FIELDS = {
    "image": "image",
    "env": "env",
    "envFrom": "envFrom",
    "resources": "resources",
    "livenessProbe": "liveness probe",
    "readinessProbe": "readiness probe",
    "startupProbe": "startup probe",
    "volumeMounts": "mounts",
    "command": "command",
    "args": "args",
    "ports": "ports",
}


def template_diff(current: dict[str, Any], target: dict[str, Any]) -> list[str]:
    """What differs between two pod templates, per container and field (probes, env,
    resources, mounts …), plus volumes and the rest of the pod spec. Generic over every key of
    the verbatim templates (the ones the rollback's patch copies), so it reads them as dicts."""
    a, b = template_without_hash(current), template_without_hash(target)
    out: list[str] = []
    ca = {c.get("name"): c for c in a.get("spec", {}).get("containers", [])}
    cb = {c.get("name"): c for c in b.get("spec", {}).get("containers", [])}
    for name in sorted(set(ca) | set(cb), key=str):
        if name not in ca or name not in cb:
            out.append(f"container {name}: only in {'the target' if name in cb else 'the current'} template")
            continue
        for key in sorted(set(ca[name]) | set(cb[name])):
            if ca[name].get(key) != cb[name].get(key):
                out.append(f"container {name}: {_FIELDS.get(key, key)}")
    sa = {k: v for k, v in a.get("spec", {}).items() if k != "containers"}
    sb = {k: v for k, v in b.get("spec", {}).items() if k != "containers"}
    out += [f"pod {k}" for k in sorted(set(sa) | set(sb)) if sa.get(k) != sb.get(k)]
    ma, mb = a.get("metadata", {}), b.get("metadata", {})
    out += [f"pod {k}" for k in ("labels", "annotations") if (ma.get(k) or {}) != (mb.get(k) or {})]
    return out


def rollback_summary(namespace: str, name: str, plan: RollbackPlan, diff: list[str]) -> str:
    cur = plan.current
    text = (
        f"roll back deployment {namespace}/{name} from revision {cur.number if cur else '?'} "
        f"({short_images(cur.images) if cur else '?'}) to revision {plan.target.number} "
        f"({short_images(plan.target.images)})"
    )
    if cur is not None and cur.images == plan.target.images:
        text += f"; same images, the templates differ in: {', '.join(diff) or 'nothing'}"
    return text


class RollbackFacts(ActionFacts):
    """What the rollback's plan found. A plan with nothing to do (no longer at the revision it
    was for, or no rollback possible) sets none of them, and records ``{}``."""

    from_revision: int | None = None
    to_revision: int | None = None
    from_hash: str = ""
    to_hash: str = ""
    from_images: list[str] = Field(default_factory=list)
    to_images: list[str] = Field(default_factory=list)
    to_replicaset: str = ""
    template_diff: list[str] = Field(default_factory=list)
    timeline: list[dict[str, Any]] = Field(default_factory=list)
    medic_rollback: str | None = None
    # Medic's earlier rollback as the cluster records it: the guards (cooldown, flap) see it
    # even when the ledger does not (remediation.executor.mark_from_target)
    earlier_action: EarlierAction | None = None

    def current_revision_hash(self) -> str:
        return self.from_hash

    def earlier_on_target(self) -> EarlierAction | None:
        return self.earlier_action


def earlier_rollback(medic: MedicRollback | None) -> EarlierAction | None:
    """Medic's earlier rollback as the Deployment's annotation records it (the cooldown and flap
    guards see it even when the ledger does not: a freshly installed or restored Medic)."""
    if medic is None or not medic.at:
        return None
    return EarlierAction(
        action="rollback",
        at=iso(medic.at),
        to_hash=medic.to_hash,
        incident=medic.incident,
        status="succeeded",
    )


def rollback_recorded_on(annotations: Mapping[str, str]) -> EarlierAction | None:
    """Medic's earlier rollback as a Deployment's annotations record it."""
    return earlier_rollback(medic_rollback(annotations))


def rollback_facts(plan: RollbackPlan, timeline: Timeline, diff: list[str]) -> RollbackFacts:
    cur = plan.current
    medic = timeline.medic
    return RollbackFacts(
        from_revision=cur.number if cur else None,
        to_revision=plan.target.number,
        from_hash=cur.template_hash if cur else "",
        to_hash=plan.target.template_hash,
        from_images=cur.images if cur else [],
        to_images=plan.target.images,
        to_replicaset=plan.target.replicaset,
        template_diff=diff,
        timeline=timeline.rows(),
        medic_rollback=medic.describe() if medic else None,
        earlier_action=earlier_rollback(medic),
    )


def patch_value(patch: object, path: str) -> object:
    """The value a plan's own JSON Patch puts at ``path`` (what apply compares the cluster with)."""
    for op in patch if isinstance(patch, list) else []:
        if isinstance(op, dict) and op.get("path") == path and op.get("op") in ("add", "replace"):
            return op.get("value")
    raise StepError(f"the plan's patch sets nothing at {path}")


def patch_ops(patch: object) -> list[str]:
    """The operations of a JSON Patch, in order (``["test", "replace", "replace"]``)."""
    return [str(op.get("op")) for op in patch if isinstance(op, dict)] if isinstance(patch, list) else []
