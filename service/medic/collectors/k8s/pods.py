"""``k8s.pod_describe``, ``k8s.pod_logs``, ``k8s.top_pods``: runbook 3.1 steps 1-3
(``kubectl describe pod``, ``kubectl logs --previous``, ``kubectl top pods``)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from medic.clients.kube.errors import KubeError, KubeNotFound
from medic.clients.kube.reads import (
    TEMPLATE_HASH,
    Obj,
    controller_ref,
    list_cached,
    meta,
    replicasets,
    revision,
    selector_string,
    workload,
)
from medic.collectors.k8s.common import (
    POD_KINDS,
    condition_map,
    cpu_millicores,
    iso,
    kube_of,
    memory_bytes,
    ordered_pods,
    require_target,
)
from medic.collectors.k8s.pods_output import PodDescribeOutput, PodLogsOutput, TopPodsOutput
from medic.domain.errors import NotConfigured
from medic.domain.incident import Target
from medic.domain.redact import redact
from medic.playbooks.contract import CollectorDef, StepContext
from medic.playbooks.ports import KubeApi

MAX_LOG_CONTAINERS = 3  # per pod: the crashing ones, else the first


class PodDescribeParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    max_pods: int = Field(5, ge=1, le=50)


class PodLogsParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    previous: bool = True
    tail: int = Field(200, ge=1, le=5000)
    max_pods: int = Field(2, ge=1, le=10)
    max_bytes: int = Field(65536, ge=1024, le=1024 * 1024)
    container: str | None = Field(None, pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


class TopPodsParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# ---------------------------------------------------------------------- describe


def _last_state(status: dict[str, Any]) -> dict[str, Any]:
    terminated = (status.get("lastState") or {}).get("terminated")
    if not isinstance(terminated, dict):
        return {}
    return {
        "terminated": {
            "reason": terminated.get("reason"),
            "exit_code": terminated.get("exitCode"),
            "signal": terminated.get("signal"),
            "started_at": iso(terminated.get("startedAt")),
            "finished_at": iso(terminated.get("finishedAt")),
            "message": terminated.get("message"),
        }
    }


def _env(container: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for var in container.get("env") or []:
        entry: dict[str, Any] = {"name": var.get("name")}
        if "valueFrom" in var:
            entry["value_from"] = var["valueFrom"]  # a reference (secretKeyRef, fieldRef, ...)
        else:
            entry["value"] = var.get("value", "")
        out.append(redact(entry))
    return out


def _container(spec: dict[str, Any], status: dict[str, Any]) -> dict[str, Any]:
    resources = spec.get("resources") or {}
    return {
        "name": spec.get("name"),
        "image": spec.get("image"),
        "ready": bool(status.get("ready")),
        "restart_count": int(status.get("restartCount") or 0),
        "state": dict(status.get("state") or {}),
        "last_state": _last_state(status),
        "resources": {
            "requests": dict(resources.get("requests") or {}),
            "limits": dict(resources.get("limits") or {}),
        },
        "env": _env(spec),
        "liveness_probe": spec.get("livenessProbe"),
        "readiness_probe": spec.get("readinessProbe"),
        "startup_probe": spec.get("startupProbe"),
    }


def describe_pod(pod: Obj, revisions: dict[str, int]) -> dict[str, Any]:
    m = meta(pod)
    spec = pod.get("spec") or {}
    status = pod.get("status") or {}
    ref = controller_ref(pod) or {}
    rs = str(ref.get("name", "")) if ref.get("kind") == "ReplicaSet" else ""

    def containers(specs_key: str, statuses_key: str) -> list[dict[str, Any]]:
        statuses = {s.get("name"): s for s in status.get(statuses_key) or []}
        return [_container(c, statuses.get(c.get("name"), {})) for c in spec.get(specs_key) or []]

    return {
        "name": m.get("name"),
        "namespace": m.get("namespace"),
        "phase": status.get("phase"),
        "reason": status.get("reason"),
        "node": spec.get("nodeName"),
        "created": iso(m.get("creationTimestamp")),
        "owner": {"kind": ref.get("kind"), "name": ref.get("name")} if ref else None,
        "replicaset": rs,
        "revision": revisions.get(rs, 0),
        "pod_template_hash": (m.get("labels") or {}).get(TEMPLATE_HASH, ""),
        "conditions": condition_map(status.get("conditions")),
        "containers": containers("containers", "containerStatuses"),
        "init_containers": containers("initContainers", "initContainerStatuses"),
    }


async def _revisions(ctx: StepContext, kube: KubeApi, target: Target) -> dict[str, int]:
    """ReplicaSet name -> revision, for a Deployment target (the shared, memoized LISTs)."""
    if target.kind != "deployment":
        return {}
    deployment = await workload(kube, ctx.memo, target)
    return {str(meta(rs).get("name")): revision(rs) for rs in await replicasets(kube, ctx.memo, deployment)}


async def pod_describe(ctx: StepContext, params: PodDescribeParams) -> PodDescribeOutput:
    kube = kube_of(ctx)
    target = require_target(ctx, "k8s.pod_describe", POD_KINDS)
    pods, missing = await ordered_pods(ctx, kube, target)
    revisions = await _revisions(ctx, kube, target)
    out = PodDescribeOutput.model_validate(
        {
            "pods": [describe_pod(p, revisions) for p in pods[: params.max_pods]],
            "total_pods": len(pods),
            "missing_pods": missing,
        }
    )
    return out


# ---------------------------------------------------------------------- logs


def _crashing_containers(pod: Obj) -> list[str]:
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    bad = [
        str(s.get("name"))
        for s in statuses
        if int(s.get("restartCount") or 0) > 0
        or not s.get("ready")
        or "terminated" in (s.get("lastState") or {})
    ]
    names = [str(c.get("name")) for c in (pod.get("spec") or {}).get("containers") or []]
    return (bad or names[:1])[:MAX_LOG_CONTAINERS]


def _lines(text: str, truncated: bool) -> list[str]:
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    elif truncated and len(lines) > 1:
        lines.pop()  # cut mid-line by limitBytes
    return lines


async def _read_log(
    kube: KubeApi, path: str, container: str, previous: bool, params: PodLogsParams
) -> tuple[list[str], bool]:
    """The last ``tail`` lines, at most ``max_bytes``. limitBytes keeps the *start* of the tail;
    when it cuts, a second request asks for as many lines as fitted, so the newest ones are kept."""
    query = {"container": container, "tailLines": params.tail, "limitBytes": params.max_bytes}
    if previous:
        query["previous"] = "true"
    text: str = await kube.request("GET", path, query=query, text=True)
    truncated = len(text.encode("utf-8", errors="replace")) >= params.max_bytes
    lines = _lines(text, truncated)
    if truncated and 0 < len(lines) < params.tail:
        query["tailLines"] = len(lines)
        text = await kube.request("GET", path, query=query, text=True)
        lines = _lines(text, len(text.encode("utf-8", errors="replace")) >= params.max_bytes)
    return lines, truncated


async def _pod_container_logs(
    kube: KubeApi, namespace: str, pod: str, container: str, params: PodLogsParams
) -> dict[str, Any]:
    path = f"/api/v1/namespaces/{namespace}/pods/{pod}/log"
    entry: dict[str, Any] = {
        "pod": pod,
        "container": container,
        "previous": params.previous,
        "lines": [],
        "truncated": False,
        "error": None,
    }
    errors: list[str] = []
    if params.previous:
        try:
            entry["lines"], entry["truncated"] = await _read_log(kube, path, container, True, params)
            return entry
        except KubeNotFound:
            raise
        except KubeError as exc:
            if exc.status != 400:
                entry["error"] = str(exc)
                return entry
            # never restarted (or still starting): no previous instance; show the current one
            errors.append(f"previous: {exc}")
            entry["previous"] = False
    try:
        entry["lines"], entry["truncated"] = await _read_log(kube, path, container, False, params)
    except KubeNotFound:
        raise
    except KubeError as exc:
        errors.append(f"current: {exc}" if errors else str(exc))
    entry["error"] = "; ".join(errors) or None
    return entry


async def pod_logs(ctx: StepContext, params: PodLogsParams) -> PodLogsOutput:
    kube = kube_of(ctx)
    target = require_target(ctx, "k8s.pod_logs", POD_KINDS)
    pods, _ = await ordered_pods(ctx, kube, target)
    logs: list[dict[str, Any]] = []
    for pod in pods[: params.max_pods]:
        name = str(meta(pod).get("name"))
        containers = [params.container] if params.container else _crashing_containers(pod)
        for container in containers:
            try:
                logs.append(await _pod_container_logs(kube, target.namespace, name, container, params))
            except KubeNotFound as exc:  # the pod went away meanwhile
                logs.append(
                    {
                        "pod": name,
                        "container": container,
                        "previous": params.previous,
                        "lines": [],
                        "truncated": False,
                        "error": str(exc),
                    }
                )
    return PodLogsOutput.model_validate({"logs": logs})


# ---------------------------------------------------------------------- top


def _limits(pod: Obj) -> dict[str, dict[str, Any]]:
    return {
        str(c.get("name")): (c.get("resources") or {}).get("limits") or {}
        for c in (pod.get("spec") or {}).get("containers") or []
    }


async def top_pods(ctx: StepContext, params: TopPodsParams) -> TopPodsOutput:
    kube = kube_of(ctx)
    target = require_target(ctx, "k8s.top_pods", POD_KINDS)
    pods, _ = await ordered_pods(ctx, kube, target)
    by_name = {str(meta(p).get("name")): p for p in pods}
    path = f"/apis/metrics.k8s.io/v1beta1/namespaces/{target.namespace}/pods"
    if target.kind == "pod":
        query = {"fieldSelector": f"metadata.name={target.name}"}
    else:
        owner = await workload(kube, ctx.memo, target)
        query = {"labelSelector": selector_string((owner.get("spec") or {}).get("selector"))}
    try:
        items = await list_cached(kube, ctx.memo, path, **query)
    except KubeNotFound as exc:
        raise NotConfigured(f"metrics-server is not installed: metrics.k8s.io answers 404 ({exc})") from exc
    usage = {str(meta(i).get("name")): i for i in items}
    out: list[dict[str, Any]] = []
    for name, pod in by_name.items():
        metrics = usage.get(name)
        if metrics is None:
            continue
        limits = _limits(pod)
        out.append(
            {
                "name": name,
                "containers": [
                    {
                        "name": c.get("name"),
                        "cpu_millicores": cpu_millicores((c.get("usage") or {}).get("cpu")),
                        "memory_bytes": memory_bytes((c.get("usage") or {}).get("memory")),
                        "cpu_limit_millicores": cpu_millicores(limits.get(str(c.get("name")), {}).get("cpu")),
                        "memory_limit_bytes": memory_bytes(limits.get(str(c.get("name")), {}).get("memory")),
                    }
                    for c in metrics.get("containers") or []
                ],
            }
        )
    without = [n for n in by_name if n not in usage]
    return TopPodsOutput.model_validate({"pods": out, "without_metrics": without})


COLLECTORS = (
    CollectorDef(
        name="k8s.pod_describe",
        fn=pod_describe,
        params=PodDescribeParams,
        output=PodDescribeOutput,
        summary="kubectl describe pod: container states, last termination, restarts, resources, probes",
    ),
    CollectorDef(
        name="k8s.pod_logs",
        fn=pod_logs,
        params=PodLogsParams,
        output=PodLogsOutput,
        summary="kubectl logs --previous --tail: logs of the crashing pods (alert pods first)",
    ),
    CollectorDef(
        name="k8s.top_pods",
        fn=top_pods,
        params=TopPodsParams,
        output=TopPodsOutput,
        summary="kubectl top pods: CPU and memory usage against limits (metrics.k8s.io)",
    ),
)
