"""``kubectl rollout undo`` and ``kubectl rollout status`` semantics, as pure functions over the
JSON objects the API server returns (Deployment, ReplicaSets)."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

REVISION = "deployment.kubernetes.io/revision"
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
ROLLED_BACK_BY = "medic.playcode.gg/rolled-back"


class RollbackError(Exception):
    """No rollback is possible (paused, no history, revision not found); the message says why."""


def revision(obj: dict[str, Any]) -> int:
    raw = (obj.get("metadata", {}).get("annotations") or {}).get(REVISION, "")
    try:
        return int(raw)
    except ValueError:
        return 0


def created(obj: dict[str, Any]) -> datetime | None:
    raw = obj.get("metadata", {}).get("creationTimestamp")
    return datetime.fromisoformat(raw.replace("Z", "+00:00")) if raw else None


def owned_by(obj: dict[str, Any], owner: dict[str, Any]) -> bool:
    uid = owner.get("metadata", {}).get("uid")
    return any(
        ref.get("uid") == uid and ref.get("controller")
        for ref in obj.get("metadata", {}).get("ownerReferences") or []
    )


def template_without_hash(template: dict[str, Any]) -> dict[str, Any]:
    t = copy.deepcopy(template)
    labels = t.get("metadata", {}).get("labels")
    if labels:
        labels.pop(TEMPLATE_HASH, None)
    return t


def images(template: dict[str, Any]) -> list[str]:
    return [c.get("image", "") for c in template.get("spec", {}).get("containers", [])]


@dataclass(frozen=True)
class Revision:
    number: int
    replicaset: str
    template_hash: str
    images: list[str]
    created: datetime | None
    replicas: int
    ready: int


def revision_of_rs(rs: dict[str, Any]) -> Revision:
    labels = rs.get("metadata", {}).get("labels") or {}
    status = rs.get("status") or {}
    return Revision(
        number=revision(rs),
        replicaset=rs["metadata"]["name"],
        template_hash=labels.get(TEMPLATE_HASH, ""),
        images=images(rs.get("spec", {}).get("template", {})),
        created=created(rs),
        replicas=int(status.get("replicas") or 0),
        ready=int(status.get("readyReplicas") or 0),
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


def plan_rollback(
    deployment: dict[str, Any],
    replicasets: list[dict[str, Any]],
    *,
    to_revision: int = 0,
    change_cause: str = "",
) -> RollbackPlan:
    """What ``kubectl rollout undo [--to-revision N]`` would do, plus a JSON Patch whose first op
    tests the current revision annotation, so the write applies at most once."""
    meta = deployment.get("metadata", {})
    if deployment.get("spec", {}).get("paused"):
        raise RollbackError("the deployment is paused: resume it before rolling back")
    owned = [rs for rs in replicasets if owned_by(rs, deployment)]
    current_rev = revision(deployment)
    target_rs: dict[str, Any] | None = None
    if to_revision:
        target_rs = next((rs for rs in owned if revision(rs) == to_revision), None)
        if target_rs is None:
            raise RollbackError(f"revision {to_revision} not found in the rollout history")
    else:
        # kubectl: the highest revision below the latest one
        latest = previous = 0
        latest_rs: dict[str, Any] | None = None
        for rs in owned:
            v = revision(rs)
            if v > latest:
                previous, target_rs = latest, latest_rs
                latest, latest_rs = v, rs
            elif v > previous:
                previous, target_rs = v, rs
        if target_rs is None:
            raise RollbackError("no previous revision in the rollout history")
    current_rs = next((rs for rs in owned if revision(rs) == current_rev), None)
    template = template_without_hash(target_rs["spec"]["template"])
    already = template == template_without_hash(deployment.get("spec", {}).get("template", {}))
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items() if k in ANNOTATIONS_TO_SKIP}
    for k, v in (target_rs.get("metadata", {}).get("annotations") or {}).items():
        if k not in ANNOTATIONS_TO_SKIP:
            annotations[k] = v
    target = revision_of_rs(target_rs)
    annotations[ROLLED_BACK_BY] = f"from revision {current_rev} to {target.number}"
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
        namespace=meta.get("namespace", ""),
        name=meta.get("name", ""),
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


def rollout_status(deployment: dict[str, Any]) -> RolloutStatus:
    """kubectl rollout status: done when the controller observed the latest generation and all
    replicas are updated and available; failed when the progress deadline was exceeded."""
    meta, spec, status = (
        deployment.get("metadata", {}),
        deployment.get("spec", {}),
        deployment.get("status") or {},
    )
    name = meta.get("name", "")
    if int(meta.get("generation") or 0) > int(status.get("observedGeneration") or 0):
        return RolloutStatus(False, False, f"waiting for deployment {name!r} spec update to be observed")
    for cond in status.get("conditions") or []:
        if cond.get("type") == "Progressing" and cond.get("reason") == "ProgressDeadlineExceeded":
            return RolloutStatus(False, True, f"deployment {name!r} exceeded its progress deadline")
    want = int(spec.get("replicas") if spec.get("replicas") is not None else 1)
    updated = int(status.get("updatedReplicas") or 0)
    total = int(status.get("replicas") or 0)
    available = int(status.get("availableReplicas") or 0)
    if updated < want:
        return RolloutStatus(False, False, f"{updated} of {want} new replicas updated")
    if total > updated:
        return RolloutStatus(False, False, f"{total - updated} old replicas pending termination")
    if available < updated:
        return RolloutStatus(False, False, f"{available} of {updated} updated replicas available")
    return RolloutStatus(True, False, f"deployment {name!r} successfully rolled out")
