"""``k8s.node_describe`` and ``k8s.ingress``: where the pods run (``kubectl describe node``, runbook
3.1) and how traffic reaches them (``kubectl get ingress -o yaml``, runbook 3.5)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from medic.clients.kube.client import cluster_path, ns_path
from medic.clients.kube.errors import KubeError, KubeNotFound
from medic.clients.kube.reads import Obj, annotations_of, get_cached, list_cached, meta, pod_template_labels
from medic.collectors.k8s.cluster_output import IngressOutput, NodeDescribeOutput
from medic.collectors.k8s.common import (
    POD_KINDS,
    condition_map,
    cpu_millicores,
    kube_of,
    memory_bytes,
    ordered_pods,
    require_target,
)
from medic.domain.incident import Target
from medic.domain.redact import is_secret_key
from medic.playbooks.contract import CollectorDef, StepContext
from medic.playbooks.ports import KubeApi

NGINX = "nginx.ingress.kubernetes.io/"
NGINX_INC_WEBSOCKET = "nginx.org/websocket-services"
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
_SECONDS = re.compile(r"^\s*(\d+)\s*s?\s*$")


class NodeDescribeParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    max_nodes: int = Field(3, ge=1, le=20)


class IngressParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# ---------------------------------------------------------------------- nodes


def _pod_requests(pod: Obj, kind: str) -> tuple[int, int]:
    """(cpu millicores, memory bytes) a pod asks for: max(sum of containers, largest init
    container), as the scheduler and ``kubectl describe node`` count it."""
    spec = pod.get("spec") or {}

    def of(container: Obj) -> tuple[int, int]:
        res = (container.get("resources") or {}).get(kind) or {}
        return cpu_millicores(res.get("cpu")) or 0, memory_bytes(res.get("memory")) or 0

    main = [of(c) for c in spec.get("containers") or []]
    init = [of(c) for c in spec.get("initContainers") or []]
    cpu = max(sum(c for c, _ in main), max((c for c, _ in init), default=0))
    mem = max(sum(m for _, m in main), max((m for _, m in init), default=0))
    return cpu, mem


def _ratio(part: int | None, whole: int | None) -> float | None:
    return round(part / whole, 3) if part is not None and whole else None


async def _node(kube: KubeApi, ctx: StepContext, name: str) -> dict[str, Any]:
    try:
        node = await get_cached(kube, ctx.memo, cluster_path("v1", "nodes", name))
    except KubeNotFound:
        return {"name": name, "error": "node not found"}
    spec, status = node.get("spec") or {}, node.get("status") or {}
    conditions = condition_map(status.get("conditions"))
    alloc = status.get("allocatable") or {}
    allocatable = {
        "cpu_millicores": cpu_millicores(alloc.get("cpu")),
        "memory_bytes": memory_bytes(alloc.get("memory")),
        "pods": int(alloc["pods"]) if str(alloc.get("pods", "")).isdigit() else None,
    }
    out: dict[str, Any] = {
        "name": name,
        "ready": conditions.get("Ready") == "True",
        "conditions": conditions,
        "pressure": sorted(k for k, v in conditions.items() if k.endswith("Pressure") and v == "True"),
        "unschedulable": bool(spec.get("unschedulable")),
        "allocatable": allocatable,
        "requested": None,
        "limits": None,
        "requested_ratio": None,
        "taints": [
            {"key": t.get("key"), "value": t.get("value"), "effect": t.get("effect")}
            for t in spec.get("taints") or []
        ],
    }
    try:
        pods = await list_cached(
            kube,
            ctx.memo,
            "/api/v1/pods",
            fieldSelector=f"spec.nodeName={name},status.phase!=Succeeded,status.phase!=Failed",
        )
    except KubeError as exc:  # e.g. RBAC allows pods only in the allow-listed namespaces
        out["requested_error"] = str(exc)
        return out
    requests = [_pod_requests(p, "requests") for p in pods]
    limits = [_pod_requests(p, "limits") for p in pods]
    out["requested"] = {
        "cpu_millicores": sum(c for c, _ in requests),
        "memory_bytes": sum(m for _, m in requests),
        "pods": len(pods),
    }
    out["limits"] = {"cpu_millicores": sum(c for c, _ in limits), "memory_bytes": sum(m for _, m in limits)}
    out["requested_ratio"] = {
        "cpu": _ratio(out["requested"]["cpu_millicores"], allocatable["cpu_millicores"]),
        "memory": _ratio(out["requested"]["memory_bytes"], allocatable["memory_bytes"]),
        "pods": _ratio(len(pods), allocatable["pods"]),
    }
    return out


async def node_describe(ctx: StepContext, params: NodeDescribeParams) -> NodeDescribeOutput:
    """The nodes of the target's pods (alert pods' nodes first): a GET and a pod LIST per node."""
    kube = kube_of(ctx)
    target = require_target(ctx, "k8s.node_describe", POD_KINDS)
    pods, _ = await ordered_pods(ctx, kube, target)
    nodes: list[str] = []
    unscheduled: list[str] = []
    for pod in pods:
        node = (pod.get("spec") or {}).get("nodeName")
        if not node:
            unscheduled.append(str(meta(pod).get("name")))
        elif node not in nodes:
            nodes.append(str(node))
    chosen = nodes[: params.max_nodes]
    described = await asyncio.gather(*(_node(kube, ctx, n) for n in chosen))
    out = NodeDescribeOutput.model_validate(
        {"nodes": list(described), "total_nodes": len(nodes), "unscheduled_pods": unscheduled}
    )
    return out


# ---------------------------------------------------------------------- ingress


def _seconds(value: Any) -> int | None:
    m = _SECONDS.match(str(value)) if value is not None else None
    return int(m.group(1)) if m else None


def _public(ann: dict[str, str]) -> dict[str, str]:
    """nginx.ingress.kubernetes.io/* and the other annotations that do not look secret."""
    return {
        k: v
        for k, v in ann.items()
        if k != LAST_APPLIED and (k.startswith(NGINX) or not is_secret_key(k.rsplit("/", 1)[-1]))
    }


def _backends(ing: Obj) -> list[dict[str, Any]]:
    spec = ing.get("spec") or {}
    out: list[dict[str, Any]] = []
    default = ((spec.get("defaultBackend") or {}).get("service")) or {}
    if default:
        out.append({"host": None, "path": None, "service": default.get("name"), "port": default.get("port")})
    for rule in spec.get("rules") or []:
        for path in (rule.get("http") or {}).get("paths") or []:
            svc = (path.get("backend") or {}).get("service") or {}
            if svc:
                out.append(
                    {
                        "host": rule.get("host"),
                        "path": path.get("path"),
                        "service": svc.get("name"),
                        "port": svc.get("port"),
                    }
                )
    return out


def _ingress(ing: Obj) -> dict[str, Any]:
    ann = annotations_of(ing)
    spec = ing.get("spec") or {}
    hosts = [str(r["host"]) for r in spec.get("rules") or [] if r.get("host")]
    return {
        "name": meta(ing).get("name"),
        "class": spec.get("ingressClassName") or ann.get("kubernetes.io/ingress.class"),
        "hosts": list(dict.fromkeys(hosts)),
        "annotations": _public(ann),
        "proxy_read_timeout_s": _seconds(ann.get(NGINX + "proxy-read-timeout")),
        "proxy_send_timeout_s": _seconds(ann.get(NGINX + "proxy-send-timeout")),
        "websocket_services": [s.strip() for s in ann.get(NGINX_INC_WEBSOCKET, "").split(",") if s.strip()],
        "backends": _backends(ing),
    }


def _selects(selector: dict[str, str], pod_labels: dict[str, str]) -> bool:
    return bool(selector) and all(pod_labels.get(k) == v for k, v in selector.items())


async def _services_for(kube: KubeApi, ctx: StepContext, target: Target) -> set[str] | None:
    """Names of the services whose selector matches the target's pods; None when that can't be
    told (no pod labels, or services can't be listed)."""
    if target.kind == "service":
        return {target.name}
    if target.kind not in POD_KINDS:
        return None
    try:
        pod_labels = await pod_template_labels(kube, ctx.memo, target)
        services = await list_cached(kube, ctx.memo, ns_path("v1", target.namespace, "services"))
    except KubeError:
        return None
    if not pod_labels:
        return None
    return {
        str(meta(s).get("name"))
        for s in services
        if _selects(dict((s.get("spec") or {}).get("selector") or {}), pod_labels)
    }


def _routes_to(ing: Obj, services: Iterable[str]) -> bool:
    names = set(services)
    return any(b["service"] in names for b in _backends(ing))


async def ingress(ctx: StepContext, params: IngressParams) -> IngressOutput:
    return IngressOutput.model_validate(await _ingresses(ctx))


async def _ingresses(ctx: StepContext) -> dict[str, Any]:
    """Ingresses whose backends are services selecting the target's pods (one LIST each of
    ingresses and services), or every ingress of the namespace when that can't be told."""
    kube = kube_of(ctx)
    target = require_target(ctx, "k8s.ingress", (*POD_KINDS, "service", "ingress", "namespace"))
    items = await list_cached(kube, ctx.memo, ns_path("networking.k8s.io/v1", target.namespace, "ingresses"))
    if target.kind == "ingress":
        chosen = [i for i in items if meta(i).get("name") == target.name]
        return {"ingresses": [_ingress(i) for i in chosen], "scope": "target", "services": []}
    services = await _services_for(kube, ctx, target)
    if services is None:
        return {"ingresses": [_ingress(i) for i in items], "scope": "namespace", "services": None}
    chosen = [i for i in items if _routes_to(i, services)]
    return {"ingresses": [_ingress(i) for i in chosen], "scope": "target", "services": sorted(services)}


COLLECTORS = (
    CollectorDef(
        name="k8s.node_describe",
        fn=node_describe,
        params=NodeDescribeParams,
        output=NodeDescribeOutput,
        summary="kubectl describe node: conditions, pressure, allocatable against requested, taints",
    ),
    CollectorDef(
        name="k8s.ingress",
        fn=ingress,
        params=IngressParams,
        output=IngressOutput,
        summary="ingresses routing to the target (nginx proxy timeouts, WebSocket services)",
    ),
)
