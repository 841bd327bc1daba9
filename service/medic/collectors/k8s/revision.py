"""``k8s.revision_status``: a verified revision's rollout progress and its own pods (runbook 1.3:
``kubectl rollout status``, ``kubectl get pods``), read in a deploy verification only."""

from __future__ import annotations

from medic.clients.kube.client import ns_path
from medic.clients.kube.reads import (
    Obj,
    controlled_by,
    list_cached,
    meta,
    pod_ready,
    replicasets,
    restarts,
    revision,
    selector_string,
    workload,
)
from medic.collectors.k8s.common import kube_of
from medic.collectors.k8s.revision_output import RevisionPod, RevisionStatusOutput, RolloutProgress
from medic.collectors.revision import revision_of
from medic.domain.errors import StepError
from medic.domain.incident import Target
from medic.playbooks.contract import CollectorDef, NoParams, StepContext

MAX_PODS = 50
DEADLINE_EXCEEDED = "ProgressDeadlineExceeded"
COMPLETE = "NewReplicaSetAvailable"


def progress(deployment: Obj) -> RolloutProgress:
    spec, status = deployment.get("spec") or {}, deployment.get("status") or {}
    cond: Obj = next((c for c in status.get("conditions") or [] if c.get("type") == "Progressing"), {})
    reason = cond.get("reason")
    return RolloutProgress(
        revision=revision(deployment) or None,
        desired=spec.get("replicas", 1),
        updated=status.get("updatedReplicas", 0),
        ready=status.get("readyReplicas", 0),
        available=status.get("availableReplicas", 0),
        progressing_reason=reason,
        progressing_message=(cond.get("message") or "")[:300] or None,
        deadline_exceeded=reason == DEADLINE_EXCEEDED,
        complete=reason == COMPLETE and status.get("updatedReplicas", 0) == spec.get("replicas", 1),
        paused=bool(spec.get("paused")),
    )


def pod_row(pod: Obj) -> RevisionPod:
    waiting = terminated = None
    for cs in (pod.get("status") or {}).get("containerStatuses") or []:
        waiting = waiting or ((cs.get("state") or {}).get("waiting") or {}).get("reason")
        terminated = terminated or ((cs.get("lastState") or {}).get("terminated") or {}).get("reason")
    return RevisionPod(
        name=meta(pod).get("name", ""),
        ready=pod_ready(pod),
        restarts=restarts(pod),
        waiting=waiting,
        last_terminated=terminated,
    )


async def revision_status(ctx: StepContext, _: NoParams) -> RevisionStatusOutput:
    rev = revision_of(ctx, "k8s.revision_status")
    kube = kube_of(ctx)
    if rev.namespace not in ctx.backends.namespaces:
        raise StepError(f"k8s.revision_status: namespace {rev.namespace!r} is not allow-listed")
    deployment = await workload(
        kube, ctx.memo, Target(kind="deployment", namespace=rev.namespace, name=rev.deployment)
    )
    owned = [
        rs for rs in await replicasets(kube, ctx.memo, deployment) if meta(rs).get("name") == rev.replicaset
    ]
    pods: list[Obj] = []
    if owned:
        selector = selector_string((deployment.get("spec") or {}).get("selector"))
        listed = await list_cached(
            kube, ctx.memo, ns_path("v1", rev.namespace, "pods"), labelSelector=selector
        )
        pods = [p for p in listed if controlled_by(p, [meta(owned[0]).get("uid", "")])]
    return RevisionStatusOutput(
        revision=rev.revision,
        replicaset=rev.replicaset if owned else "",
        rollout=progress(deployment),
        pods=[pod_row(p) for p in pods[:MAX_PODS]],
        pods_total=len(pods),
    )


COLLECTORS = (
    CollectorDef(
        "k8s.revision_status",
        revision_status,
        NoParams,
        "a verified revision's rollout progress and its pods' readiness and restarts",
        RevisionStatusOutput,
    ),
)
