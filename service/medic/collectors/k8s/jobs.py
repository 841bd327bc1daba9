"""``k8s.cronjob_runs`` (runbook 5.1, backup): a CronJob, its last Jobs, their pods (exit reasons
and the tail of the failed pods' logs) and events. Bounded: one GET, three LISTs (jobs, pods by
``job-name``, events in pages) and at most ``max_logs`` log reads, whatever the history."""

from __future__ import annotations

import asyncio

from pydantic import BaseModel, ConfigDict, Field

from medic.clients.kube.client import ns_path
from medic.clients.kube.errors import KubeError
from medic.clients.kube.reads import (
    Obj,
    annotations_of,
    controller_ref,
    get_cached,
    list_cached,
    list_pages,
    meta,
)
from medic.collectors.k8s.common import iso, kube_of, require_target
from medic.collectors.k8s.jobs_output import (
    ContainerExit,
    CronJobInfo,
    CronJobRunsOutput,
    EventObject,
    JobCondition,
    JobEvent,
    JobPod,
    JobRun,
    JobState,
    LogTail,
)
from medic.domain.errors import StepError
from medic.playbooks.contract import CollectorDef, StepContext
from medic.playbooks.ports import KubeApi

MANUAL = "cronjob.kubernetes.io/instantiate"
SCHEDULED = "batch.kubernetes.io/cronjob-scheduled-timestamp"


class CronJobRunsParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    cronjob: str = Field("mongodb-backup", pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=52)
    max_jobs: int = Field(5, ge=1, le=20)
    max_logs: int = Field(2, ge=0, le=5)
    tail: int = Field(50, ge=1, le=500)
    events: int = Field(30, ge=1, le=200)


def job_state(job: Obj) -> JobState:
    """complete | failed | running | suspended (the Job's own conditions decide)."""
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond.get("status") == "True" and cond.get("type") in ("Complete", "Failed"):
            return "complete" if cond.get("type") == "Complete" else "failed"
    if (job.get("spec") or {}).get("suspend"):
        return "suspended"
    return "running"


def _newest_first_key(job: Obj) -> tuple[str, str, str]:
    """Creation time, then the scheduled time the CronJob controller records (Jobs created in
    the same second), then the name."""
    scheduled = str(annotations_of(job).get(SCHEDULED) or "")
    return (str(meta(job).get("creationTimestamp") or ""), scheduled, str(meta(job).get("name") or ""))


def _job(job: Obj) -> JobRun:
    status = job.get("status") or {}
    return JobRun(
        name=meta(job).get("name"),
        created=iso(meta(job).get("creationTimestamp")),
        manual=annotations_of(job).get(MANUAL) == "manual",
        state=job_state(job),
        start=iso(status.get("startTime")),
        completion=iso(status.get("completionTime")),
        active=int(status.get("active") or 0),
        succeeded=int(status.get("succeeded") or 0),
        failed=int(status.get("failed") or 0),
        conditions=[
            JobCondition(
                type=c.get("type"), status=c.get("status"), reason=c.get("reason"), message=c.get("message")
            )
            for c in status.get("conditions") or []
            if c.get("status") == "True"
        ],
    )


def _terminated(status: Obj) -> Obj:
    state = status.get("state") or {}
    last = status.get("lastState") or {}
    found = state.get("terminated") or last.get("terminated") or {}
    return found if isinstance(found, dict) else {}


def _container(c: Obj) -> ContainerExit:
    term = _terminated(c)
    waiting = (c.get("state") or {}).get("waiting") or {}
    return ContainerExit(
        name=c.get("name"),
        exit_code=term.get("exitCode"),
        reason=term.get("reason") or waiting.get("reason"),
        message=term.get("message") or waiting.get("message"),
        restarts=int(c.get("restartCount") or 0),
    )


def _pod(pod: Obj) -> JobPod:
    status = pod.get("status") or {}
    return JobPod(
        name=meta(pod).get("name"),
        job=(meta(pod).get("labels") or {}).get("job-name") or (controller_ref(pod) or {}).get("name"),
        phase=status.get("phase"),
        reason=status.get("reason"),
        created=iso(meta(pod).get("creationTimestamp")),
        containers=[_container(c) for c in status.get("containerStatuses") or []],
    )


async def _log(kube: KubeApi, ns: str, pod: JobPod, tail: int) -> LogTail:
    name = str(pod.name)
    container = next((c.name for c in pod.containers if c.exit_code), None) or (
        pod.containers[0].name if pod.containers else None
    )
    try:
        text = await kube.request(
            "GET",
            ns_path("v1", ns, "pods", f"{name}/log"),
            query={"container": container, "tailLines": tail},
            text=True,
        )
    except KubeError as exc:
        return LogTail(pod=name, container=container, lines=[], error=str(exc))
    return LogTail(pod=name, container=container, lines=str(text).splitlines()[-tail:], error=None)


def _event(e: Obj) -> JobEvent:
    involved = e.get("involvedObject") or e.get("regarding") or {}
    return JobEvent(
        type=e.get("type"),
        reason=e.get("reason"),
        message=e.get("message") or e.get("note"),
        object=EventObject(kind=involved.get("kind"), name=involved.get("name")),
        count=int(e.get("count") or 1),
        last_seen=iso(e.get("lastTimestamp") or e.get("eventTime") or meta(e).get("creationTimestamp")),
    )


def _cronjob_info(cj: Obj, name: str, ns: str) -> CronJobInfo:
    spec, status = cj.get("spec") or {}, cj.get("status") or {}
    return CronJobInfo(
        name=name,
        namespace=ns,
        schedule=spec.get("schedule"),
        time_zone=spec.get("timeZone"),
        suspend=bool(spec.get("suspend")),
        concurrency_policy=spec.get("concurrencyPolicy"),
        last_schedule=iso(status.get("lastScheduleTime")),
        last_successful=iso(status.get("lastSuccessfulTime")),
        active=len(status.get("active") or []),
    )


async def _events(ctx: StepContext, ns: str, wanted: set[tuple[str, str]]) -> tuple[list[JobEvent], bool]:
    """The namespace's events about the ``wanted`` (kind, name) objects, newest first, and
    whether the namespace's events were read to their end."""
    items, complete = await list_pages(kube_of(ctx), ctx.memo, ns_path("v1", ns, "events"))
    chosen = [e for e in map(_event, items) if (e.object.kind, e.object.name) in wanted]
    chosen.sort(key=lambda e: str(e.last_seen or ""), reverse=True)
    return chosen, complete


async def cronjob_runs(ctx: StepContext, params: CronJobRunsParams) -> CronJobRunsOutput:
    kube = kube_of(ctx)
    target = require_target(ctx, "k8s.cronjob_runs", ("namespace",))
    ns = target.namespace
    cj = await get_cached(kube, ctx.memo, ns_path("batch/v1", ns, "cronjobs", params.cronjob))
    if not isinstance(cj, dict):
        raise StepError(f"cronjob {ns}/{params.cronjob}: the API server sent no object")
    uid = meta(cj).get("uid")
    jobs = [
        j
        for j in await list_cached(kube, ctx.memo, ns_path("batch/v1", ns, "jobs"))
        if (controller_ref(j) or {}).get("uid") == uid
    ]
    jobs.sort(key=_newest_first_key, reverse=True)
    recent = jobs[: params.max_jobs]
    names = [str(meta(j).get("name")) for j in recent]
    pods: list[JobPod] = []
    if names:
        selector = f"job-name in ({','.join(names)})"
        raw = await list_cached(kube, ctx.memo, ns_path("v1", ns, "pods"), labelSelector=selector)
        pods = sorted((_pod(p) for p in raw), key=lambda p: str(p.created or ""), reverse=True)
    failed_pods = [p for p in pods if p.phase == "Failed" or any(c.exit_code for c in p.containers)]
    logs = await asyncio.gather(*(_log(kube, ns, p, params.tail) for p in failed_pods[: params.max_logs]))
    wanted = {
        ("CronJob", params.cronjob),
        *(("Job", n) for n in names),
        *(("Pod", str(p.name)) for p in pods),
    }
    events, complete = await _events(ctx, ns, wanted)
    out = CronJobRunsOutput(
        cronjob=_cronjob_info(cj, params.cronjob, ns),
        jobs=[_job(j) for j in recent],
        jobs_total=len(jobs),
        pods=pods,
        logs=list(logs),
        events=events[: params.events],
        events_complete=complete,
        alert_jobs=sorted({a.labels["job_name"] for a in ctx.alerts if a.labels.get("job_name")}),
    )
    return out


COLLECTORS = (
    CollectorDef(
        name="k8s.cronjob_runs",
        fn=cronjob_runs,
        params=CronJobRunsParams,
        summary="a CronJob's last Jobs, their pods' exit reasons and log tails, and events (runbook 5.1)",
        output=CronJobRunsOutput,
    ),
)
