"""Kubernetes actions: rollback (kubectl rollout undo), restart, delete pod, set image, and a Job
from a CronJob (runbook 5.1). Each one plans read-only first; the executor decides; apply writes once.

Each is an ``Action[Params, Facts]``: what ``apply`` and ``verify`` need of the plan is a field of
its facts model, and every step asks :meth:`ActionContext.require_kube` first (no Kubernetes:
NotConfigured, which the executor records)."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from medic.clients.kube.client import JSON_PATCH, STRATEGIC_PATCH, KubeBody, KubeObject, ns_path
from medic.clients.kube.errors import KubeConflict, KubeError, KubeInvalid, KubeNotFound
from medic.domain.actions import Precondition
from medic.domain.errors import StepError
from medic.playbooks.action import ActionContext, ActionFacts, ActionPlan, ApplyResult, NoFacts
from medic.playbooks.contract import ActionDef, NoParams
from medic.playbooks.ports import KubeApi
from medic.remediation.actions.kube_objects import (
    CronJob,
    Deployment,
    Event,
    Job,
    ObjectMeta,
    Pod,
    ReplicaSet,
    view,
)
from medic.remediation.actions.rollout import (
    RollbackError,
    RollbackFacts,
    RolloutStatus,
    history_precondition,
    images,
    patch_ops,
    patch_value,
    plan_rollback,
    previous_healthy_precondition,
    recent_rollout_precondition,
    revision,
    rollback_facts,
    rollback_recorded_on,
    rollback_summary,
    rollout_status,
    template_diff,
    template_without_hash,
    timeline_of,
)

# Medic's writes are recorded under this name in the objects' managedFields (who changed what, when).
FIELD_MANAGER = "medic"


async def _patch(kube: KubeApi, path: str, body: KubeBody | None, content_type: str) -> KubeObject:
    return await kube.request(
        "PATCH", path, body=body, content_type=content_type, query={"fieldManager": FIELD_MANAGER}
    )


def _selector(deployment: Deployment) -> str:
    labels = deployment.spec.selector.match_labels
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


async def _deployment(kube: KubeApi, ctx: ActionContext) -> Deployment:
    t = ctx.target
    if t.kind != "deployment":
        raise StepError(f"this action works on a deployment, not on {t.kind}")
    return view(Deployment, await kube.get(ns_path("apps/v1", t.namespace, "deployments", t.name)))


def _meta(meta: ObjectMeta) -> tuple[dict[str, str], dict[str, str]]:
    return dict(meta.annotations), dict(meta.labels)


async def _wait(
    kube: KubeApi,
    path: str,
    status_of: Callable[[KubeObject], RolloutStatus],
    timeout: float,
    what: str,
) -> tuple[bool, str]:
    """Poll the object at ``path`` until ``status_of`` says done or failed, or ``timeout`` passes."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        status = status_of(await kube.get(path))
        if status.done or status.failed:
            return status.done, status.message
        if loop.time() >= deadline:
            return False, f"not {what} within {timeout:g}s: {status.message}"
        await asyncio.sleep(min(1.0, max(deadline - loop.time(), 0.05)))


async def _wait_rollout(kube: KubeApi, ctx: ActionContext, timeout: float) -> tuple[bool, str]:
    t = ctx.target
    path = ns_path("apps/v1", t.namespace, "deployments", t.name)
    return await _wait(kube, path, _deployment_status, timeout, "rolled out")


def _deployment_status(obj: KubeObject) -> RolloutStatus:
    return rollout_status(view(Deployment, obj))


def job_status(job: Job) -> RolloutStatus:
    """kubectl wait --for=condition=Complete: done when Complete, failed when Failed."""
    name = job.metadata.name
    for cond in job.status.conditions:
        if cond.status != "True":
            continue
        if cond.type == "Complete":
            done_at = job.status.completion_time or cond.last_transition_time
            return RolloutStatus(True, False, f"job {name} completed at {done_at}")
        if cond.type == "Failed":
            why = cond.message or cond.reason or "failed"
            return RolloutStatus(False, True, f"job {name} failed: {why}")
    return RolloutStatus(False, False, f"job {name} has {job.status.active} active pod(s)")


def _job_status(obj: KubeObject) -> RolloutStatus:
    return job_status(view(Job, obj))


# --------------------------------------------------------------------------- rollback
class RollbackParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    to: Literal["previous"] | int = Field("previous", description="'previous' or a revision number")
    only_from: int | None = Field(
        None,
        ge=1,
        description="roll back only while the Deployment is at this revision (else: nothing to do)",
    )


class Patched(ApplyResult):
    patch_ops: list[str]  # the JSON Patch's operations, in order


class RollbackDeployment:
    """``kubectl rollout undo``: :meth:`plan` reads (:meth:`_read`), then the pure parts of
    :mod:`medic.remediation.actions.rollout` decide the plan, its preconditions and its words."""

    @staticmethod
    async def _read(kube: KubeApi, ctx: ActionContext) -> tuple[Deployment, list[ReplicaSet], list[Event]]:
        """The Deployment, its ReplicaSets and its events (the rollout timeline's sources)."""
        dep = await _deployment(kube, ctx)
        ns = ctx.target.namespace
        rs_list = await kube.list(ns_path("apps/v1", ns, "replicasets"), labelSelector=_selector(dep))
        try:
            event_list = await kube.list(
                ns_path("v1", ns, "events"),
                fieldSelector=f"involvedObject.kind=Deployment,involvedObject.name={ctx.target.name}",
            )
        except KubeError:  # events only refine the timeline; without them times may be unknown
            event_list = []
        return dep, [view(ReplicaSet, rs) for rs in rs_list], [view(Event, e) for e in event_list]

    async def plan(self, ctx: ActionContext, params: RollbackParams) -> ActionPlan[RollbackFacts]:
        dep, rs_list, events = await self._read(ctx.require_kube(), ctx)
        annotations, labels = _meta(dep.metadata)
        current = revision(dep)
        if params.only_from is not None and current != params.only_from:
            return ActionPlan(
                summary=f"roll back {ctx.target} from revision {params.only_from}",
                facts=RollbackFacts(),
                preconditions=[],
                skip_reason=f"skipped rollback: the Deployment is at revision {current}, no longer at "
                f"revision {params.only_from}, which the rollback was for",
                target_annotations=annotations,
                target_labels=labels,
            )
        try:
            plan = plan_rollback(
                dep,
                rs_list,
                to_revision=0 if params.to == "previous" else int(params.to),
                change_cause=f"medic: rollback for incident {ctx.incident.id}",
                at=ctx.now,
                incident=ctx.incident.id,
            )
        except RollbackError as exc:
            return ActionPlan(
                summary=f"roll back {ctx.target}: impossible",
                facts=RollbackFacts(),
                preconditions=[Precondition("rollout_history", False, str(exc))],
                target_annotations=annotations,
                target_labels=labels,
            )
        timeline = timeline_of(dep, rs_list, events)
        pre = [history_precondition(plan)]
        req = ctx.rule.remediation.require if ctx.rule.remediation else None
        if req is not None and req.recent_rollout is not None:
            pre.append(recent_rollout_precondition(timeline, req.recent_rollout, ctx.now))
        if req is not None and req.previous_revision_healthy:
            pre.append(previous_healthy_precondition(timeline, plan, ctx.now))
        diff = template_diff(dep.spec.template, plan.template)
        return ActionPlan(
            summary=rollback_summary(ctx.target.namespace, ctx.target.name, plan, diff),
            preconditions=pre,
            skip_reason=(
                f"skipped rollback (current template already matches revision {plan.target.number})"
                if plan.already_current
                else None
            ),
            facts=rollback_facts(plan, timeline, diff),
            target_annotations=annotations,
            target_labels=labels,
            payload=plan.patch,
            idempotency_scope=f"from-revision-{plan.current.number if plan.current else 0}",
        )

    async def apply(self, ctx: ActionContext, plan: ActionPlan[RollbackFacts]) -> ApplyResult:
        kube = ctx.require_kube()
        path = ns_path("apps/v1", ctx.target.namespace, "deployments", ctx.target.name)
        try:
            await _patch(kube, path, plan.payload, JSON_PATCH)
        except (KubeInvalid, KubeConflict):
            # The test op failed: either our own earlier attempt landed (a lost response, a retry
            # after a crash) or someone else changed the deployment. Look before deciding.
            current = view(Deployment, await kube.get(path))
            wanted = patch_value(plan.payload, "/spec/template")
            if template_without_hash(current.spec.template) == wanted:
                return ApplyResult(applied=False, already=True, note="the rollback had already been applied")
            raise KubeConflict(
                "the deployment changed since the plan (someone else acted): not rolled back"
            ) from None
        return Patched(applied=True, patch_ops=patch_ops(plan.payload))

    async def verify(
        self, ctx: ActionContext, plan: ActionPlan[RollbackFacts], timeout: float
    ) -> tuple[bool, str]:
        return await _wait_rollout(ctx.require_kube(), ctx, timeout)


# --------------------------------------------------------------------------- restart
class RestartDeployment:
    async def plan(self, ctx: ActionContext, params: NoParams) -> ActionPlan[NoFacts]:
        dep = await _deployment(ctx.require_kube(), ctx)
        annotations, labels = _meta(dep.metadata)
        paused = dep.spec.paused
        stamp = ctx.now.strftime("%Y-%m-%dT%H:%M:%SZ")
        return ActionPlan(
            summary=f"restart deployment {ctx.target.namespace}/{ctx.target.name} (kubectl rollout restart)",
            facts=NoFacts(),
            preconditions=[
                Precondition(
                    "not_paused",
                    not paused,
                    "the deployment is paused" if paused else "the deployment is not paused",
                )
            ],
            target_annotations=annotations,
            target_labels=labels,
            payload={
                "spec": {
                    "template": {"metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": stamp}}}
                }
            },
            idempotency_scope=f"incident-{ctx.incident.id}",
        )

    async def apply(self, ctx: ActionContext, plan: ActionPlan[NoFacts]) -> ApplyResult:
        return await _patch_deployment(ctx, plan)

    async def verify(self, ctx: ActionContext, plan: ActionPlan[NoFacts], timeout: float) -> tuple[bool, str]:
        return await _wait_rollout(ctx.require_kube(), ctx, timeout)


async def _patch_deployment(ctx: ActionContext, plan: ActionPlan[NoFacts]) -> ApplyResult:
    """The plan's strategic merge patch on the target Deployment (restart, set image)."""
    kube = ctx.require_kube()
    path = ns_path("apps/v1", ctx.target.namespace, "deployments", ctx.target.name)
    await _patch(kube, path, plan.payload, STRATEGIC_PATCH)
    return ApplyResult(applied=True)


# --------------------------------------------------------------------------- set image
class SetImageParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    container: str = Field(min_length=1)
    image: str = Field(min_length=1, pattern=r"^[\w][\w.\-/:@]+$")


class SetImage:
    async def plan(self, ctx: ActionContext, params: SetImageParams) -> ActionPlan[NoFacts]:
        dep = await _deployment(ctx.require_kube(), ctx)
        annotations, labels = _meta(dep.metadata)
        names = [c.name for c in dep.spec.pod.spec.containers]
        current = images(dep.spec.pod)
        return ActionPlan(
            summary=f"set image {params.container}={params.image} on {ctx.target} (now {', '.join(current)})",
            facts=NoFacts(),
            preconditions=[
                Precondition(
                    "container",
                    params.container in names,
                    f"container {params.container!r} "
                    + ("exists" if params.container in names else f"not in {names}"),
                )
            ],
            skip_reason=f"image is already {params.image}" if params.image in current else None,
            target_annotations=annotations,
            target_labels=labels,
            payload={
                "spec": {
                    "template": {"spec": {"containers": [{"name": params.container, "image": params.image}]}}
                }
            },
            idempotency_scope=f"image-{params.image}",
        )

    async def apply(self, ctx: ActionContext, plan: ActionPlan[NoFacts]) -> ApplyResult:
        return await _patch_deployment(ctx, plan)

    async def verify(self, ctx: ActionContext, plan: ActionPlan[NoFacts], timeout: float) -> tuple[bool, str]:
        return await _wait_rollout(ctx.require_kube(), ctx, timeout)


# --------------------------------------------------------------------------- delete pod
class PodFacts(ActionFacts):
    uid: str | None  # the pod planned for: a replacement of the same name has another uid
    owner: str  # its controller, "ReplicaSet/name" ("" when none)


class DeletePod:
    async def plan(self, ctx: ActionContext, params: NoParams) -> ActionPlan[PodFacts]:
        kube = ctx.require_kube()
        t = ctx.target
        if t.kind != "pod":
            raise StepError(f"delete_pod works on a pod, not on {t.kind}")
        pod = view(Pod, await kube.get(ns_path("v1", t.namespace, "pods", t.name)))
        annotations, labels = _meta(pod.metadata)
        uid = pod.metadata.uid
        owners = pod.metadata.controllers
        owner = f"{owners[0].kind}/{owners[0].name}" if owners else ""
        return ActionPlan(
            summary=f"delete pod {t.namespace}/{t.name} so that {owner or 'its controller'} replaces it",
            preconditions=[
                Precondition(
                    "has_controller",
                    bool(owners),
                    f"owned by {owner}" if owners else "a pod without a controller would not come back",
                )
            ],
            facts=PodFacts(uid=uid, owner=owner),
            target_annotations=annotations,
            target_labels=labels,
            payload={"kind": "DeleteOptions", "apiVersion": "v1", "preconditions": {"uid": uid}},
            idempotency_scope=f"uid-{uid}",
        )

    async def apply(self, ctx: ActionContext, plan: ActionPlan[PodFacts]) -> ApplyResult:
        kube = ctx.require_kube()
        t = ctx.target
        try:
            await kube.request("DELETE", ns_path("v1", t.namespace, "pods", t.name), body=plan.payload)
        except KubeNotFound:
            return ApplyResult(applied=False, note="the pod was already gone")
        return ApplyResult(applied=True)

    async def verify(
        self, ctx: ActionContext, plan: ActionPlan[PodFacts], timeout: float
    ) -> tuple[bool, str]:
        kube = ctx.require_kube()
        t = ctx.target
        try:
            pod = view(Pod, await kube.get(ns_path("v1", t.namespace, "pods", t.name)))
        except KubeNotFound:
            return True, "the pod is gone; its controller replaces it"
        if pod.metadata.uid != plan.facts.uid:
            return True, "the pod was replaced by a new one of the same name"
        return False, "the pod still exists"


# --------------------------------------------------------------------------- job from cronjob
class JobFromCronJobParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    cronjob: str = Field("mongodb-backup", pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


class JobFacts(ActionFacts):
    job: str  # the Job's name, chosen by the plan
    namespace: str


class JobCreated(ApplyResult):
    job: str
    created: str | None  # the API server's creationTimestamp


class CreateJobFromCronJob:
    async def plan(self, ctx: ActionContext, params: JobFromCronJobParams) -> ActionPlan[JobFacts]:
        kube = ctx.require_kube()
        ns = ctx.target.scope
        cj = view(CronJob, await kube.get(ns_path("batch/v1", ns, "cronjobs", params.cronjob)))
        annotations, labels = _meta(cj.metadata)
        template = cj.spec.job_template
        name = f"{params.cronjob}-manual-{secrets.token_hex(3)}"[:63]
        tmeta = template.metadata
        job = {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {
                "name": name,
                "namespace": ns,
                "labels": dict(tmeta.labels),
                # what `kubectl create job --from=cronjob/...` sets
                "annotations": {
                    **tmeta.annotations,
                    "cronjob.kubernetes.io/instantiate": "manual",
                    "medic.playcode.gg/incident": ctx.incident.id,
                },
                "ownerReferences": [
                    {
                        "apiVersion": "batch/v1",
                        "kind": "CronJob",
                        "name": params.cronjob,
                        "uid": cj.metadata.uid,
                        "controller": True,
                    }
                ],
            },
            "spec": template.spec,
        }
        return ActionPlan(
            summary=f"create job {ns}/{name} from cronjob/{params.cronjob} (kubectl create job --from)",
            preconditions=[Precondition("cronjob", True, f"cronjob {params.cronjob} exists")],
            facts=JobFacts(job=name, namespace=ns),
            target_annotations=annotations,
            target_labels=labels,
            payload=job,
            idempotency_scope=f"incident-{ctx.incident.id}",
        )

    async def apply(self, ctx: ActionContext, plan: ActionPlan[JobFacts]) -> ApplyResult:
        kube = ctx.require_kube()
        created_job = await kube.request(
            "POST",
            ns_path("batch/v1", plan.facts.namespace, "jobs"),
            body=plan.payload,
            query={"fieldManager": FIELD_MANAGER},
            retry=False,
        )
        meta = view(Job, created_job).metadata
        return JobCreated(applied=True, job=meta.name or plan.facts.job, created=meta.creation_timestamp)

    async def verify(
        self, ctx: ActionContext, plan: ActionPlan[JobFacts], timeout: float
    ) -> tuple[bool, str]:
        kube = ctx.require_kube()
        path = ns_path("batch/v1", plan.facts.namespace, "jobs", plan.facts.job)
        return await _wait(kube, path, _job_status, timeout, "completed")


# A tuple, not annotated: mypy infers each ActionDef's P from its impl and its params model
# together, so a model that is not the one its plan reads is a type error (a ``list[ActionDef[Any]]``
# annotation would give every element P=Any and hide it).
ACTIONS = (
    ActionDef(
        "k8s.rollback_deployment",
        RollbackDeployment(),
        RollbackParams,
        "roll a Deployment back to its previous (or a given) revision, like kubectl rollout undo",
        target_kinds=("deployment",),
        guarded_write=True,
        kube_permissions=(("apps", "deployments", "patch"),),
        recorded_on_target=rollback_recorded_on,
    ),
    ActionDef(
        "k8s.restart_deployment",
        RestartDeployment(),
        NoParams,
        "kubectl rollout restart",
        target_kinds=("deployment",),
        kube_permissions=(("apps", "deployments", "patch"),),
    ),
    ActionDef(
        "k8s.set_image",
        SetImage(),
        SetImageParams,
        "kubectl set image (approve or dry-run only)",
        target_kinds=("deployment",),
        approve_only=True,
        kube_permissions=(("apps", "deployments", "patch"),),
    ),
    ActionDef(
        "k8s.delete_pod",
        DeletePod(),
        NoParams,
        "delete a pod so its controller replaces it",
        target_kinds=("pod",),
        kube_permissions=(("", "pods", "delete"),),
    ),
    ActionDef(
        "k8s.create_job_from_cronjob",
        CreateJobFromCronJob(),
        JobFromCronJobParams,
        "kubectl create job --from=cronjob/NAME (runbook 5.1)",
        target_kinds=("namespace",),
        kube_permissions=(("batch", "jobs", "create"),),
    ),
)
