"""``k8s.events``, ``k8s.rollout_history``, ``k8s.hpa_status``, ``k8s.pvc_status``: what happened to
the workload (events, revisions, when the ConfigMaps its pods read were last written) and what it
depends on (autoscaler, volumes)."""

from __future__ import annotations

import asyncio
import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from medic.clients.kube.client import ns_path
from medic.clients.kube.errors import KubeForbidden, KubeNotFound
from medic.clients.kube.reads import (
    CHANGE_CAUSE,
    TEMPLATE_HASH,
    Obj,
    annotations_of,
    labels_of,
    list_cached,
    list_pages,
    meta,
    metadata_only,
    replicasets,
    revision,
    workload,
)
from medic.collectors.k8s.common import POD_KINDS, alert_pod_names, iso, kube_of, ordered_pods, require_target
from medic.collectors.k8s.workload_output import (
    ConfigMapMeta,
    EventsOutput,
    HpaStatusOutput,
    PvcStatusOutput,
    RolloutHistoryOutput,
    Write,
)
from medic.domain.errors import StepError
from medic.domain.rollout import REVISION_HISTORY
from medic.playbooks.contract import CollectorDef, NoParams, StepContext
from medic.playbooks.ports import KubeApi
from medic.rules.labels import is_k8s_name

# The ConfigMaps the template reads whose metadata one run reads (the rest: status "not_read").
MAX_CONFIG_MAPS = 10
# A DNS-1123 subdomain: what the API server accepts as a ConfigMap's name (so a path segment).
_OBJECT_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")


class EventsParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    limit: int = Field(50, ge=1, le=500)


class RolloutHistoryParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# ---------------------------------------------------------------------- events


def _event(e: Obj) -> dict[str, Any]:
    involved = e.get("involvedObject") or e.get("regarding") or {}
    series = e.get("series") or {}
    created = meta(e).get("creationTimestamp")
    return {
        "type": e.get("type"),
        "reason": e.get("reason"),
        "message": e.get("message") or e.get("note"),
        "object": {"kind": involved.get("kind"), "name": involved.get("name")},
        "count": int(e.get("count") or series.get("count") or 1),
        "first_seen": iso(e.get("firstTimestamp") or e.get("eventTime") or created),
        "last_seen": iso(
            e.get("lastTimestamp") or series.get("lastObservedTime") or e.get("eventTime") or created
        ),
    }


def _rv(e: Obj) -> int:
    raw = str(meta(e).get("resourceVersion") or "")
    return int(raw) if raw.isdigit() else 0


async def events(ctx: StepContext, params: EventsParams) -> EventsOutput:
    """Events of the pods (also those already replaced), their ReplicaSets and the workload: one
    namespace LIST (in pages, bounded) filtered here, since field selectors take one name each."""
    kube = kube_of(ctx)
    target = require_target(ctx, "k8s.events", POD_KINDS)
    named: set[tuple[str, str]] = set()  # (kind, name) of the objects whose events count
    pod_names = set(alert_pod_names(ctx, target.namespace))
    pod_prefixes: list[str] = []
    pod_pattern: re.Pattern[str] | None = None
    if target.kind == "deployment":
        named.add(("Deployment", target.name))
        deployment = await workload(kube, ctx.memo, target)
        for rs in await replicasets(kube, ctx.memo, deployment):
            named.add(("ReplicaSet", str(meta(rs).get("name"))))
            pod_prefixes.append(f"{meta(rs).get('name')}-")
    elif target.kind == "statefulset":
        named.add(("StatefulSet", target.name))
        pod_pattern = re.compile(rf"^{re.escape(target.name)}-\d+$")
    else:
        named.add(("Pod", target.name))
    pods, _ = await ordered_pods(ctx, kube, target)
    pod_names.update(str(meta(p).get("name")) for p in pods)

    def relevant(e: Obj) -> bool:
        involved = e.get("involvedObject") or e.get("regarding") or {}
        kind, name = str(involved.get("kind", "")), str(involved.get("name", ""))
        if (kind, name) in named:
            return True
        if kind != "Pod":
            return False
        return (
            name in pod_names
            or any(name.startswith(p) for p in pod_prefixes)
            or (pod_pattern is not None and bool(pod_pattern.match(name)))
        )

    items, complete = await list_pages(kube, ctx.memo, ns_path("v1", target.namespace, "events"))
    chosen = [e for e in items if relevant(e)]
    chosen.sort(key=lambda e: (_event(e)["last_seen"] or "", _rv(e)), reverse=True)
    return EventsOutput.model_validate(
        {"events": [_event(e) for e in chosen[: params.limit]], "matched": len(chosen), "complete": complete}
    )


# ---------------------------------------------------------------------- rollout history


def _images(template: Any) -> list[str]:
    spec = (template or {}).get("spec") or {}
    return [str(c.get("image")) for c in spec.get("containers") or []]


def _template_sans_hash(template: Any) -> Any:
    t = dict(template or {})
    m = dict(t.get("metadata") or {})
    m["labels"] = {k: v for k, v in (m.get("labels") or {}).items() if k != TEMPLATE_HASH}
    t["metadata"] = m
    return t


async def rollout_history(ctx: StepContext, params: RolloutHistoryParams) -> RolloutHistoryOutput:
    kube = kube_of(ctx)
    target = require_target(ctx, "k8s.rollout_history", ("deployment",))
    d = await workload(kube, ctx.memo, target)
    rss = await replicasets(kube, ctx.memo, d)
    current_revision = revision(d)
    template = _template_sans_hash((d.get("spec") or {}).get("template"))
    summary = _deployment_summary(d)
    return RolloutHistoryOutput.model_validate(
        {
            "deployment": summary,
            "revisions": [
                _revision_row(rs, current_revision, template)
                for rs in sorted(rss, key=revision, reverse=True)
            ],
            "scaling_events": await _scaling_events(ctx, d),
            "config_maps": await _config_maps(ctx, target.namespace, summary["config_refs"]),
        }
    )


def _deployment_summary(d: Obj) -> dict[str, Any]:
    m, spec, status = meta(d), d.get("spec") or {}, d.get("status") or {}
    return {
        "name": m.get("name"),
        "namespace": m.get("namespace"),
        "uid": m.get("uid"),
        "revision": revision(d),
        "generation": m.get("generation"),
        "observed_generation": status.get("observedGeneration"),
        "replicas": spec.get("replicas", 1),
        "updated_replicas": status.get("updatedReplicas", 0),
        "ready_replicas": status.get("readyReplicas", 0),
        "available_replicas": status.get("availableReplicas", 0),
        "paused": bool(spec.get("paused")),
        "strategy": spec.get("strategy") or {},
        "annotations": annotations_of(d),
        "labels": labels_of(d),
        "conditions": [
            {
                "type": c.get("type"),
                "status": c.get("status"),
                "reason": c.get("reason"),
                "message": c.get("message"),
                "last_update": iso(c.get("lastUpdateTime") or c.get("lastTransitionTime")),
                "last_transition": iso(c.get("lastTransitionTime")),
            }
            for c in status.get("conditions") or []
        ],
        "images": _images(spec.get("template")),
        "config_refs": config_refs(spec.get("template")),
        "writes": _writes(d),
    }


def _revision_row(rs: Obj, current_revision: int, template: Any) -> dict[str, Any]:
    rs_spec, rs_status = rs.get("spec") or {}, rs.get("status") or {}
    current = (
        revision(rs) == current_revision
        if current_revision
        else _template_sans_hash(rs_spec.get("template")) == template
    )
    return {
        "revision": revision(rs),
        "replicaset": meta(rs).get("name"),
        "pod_template_hash": labels_of(rs).get(TEMPLATE_HASH, ""),
        "images": _images(rs_spec.get("template")),
        "created": iso(meta(rs).get("creationTimestamp")),
        "desired": rs_spec.get("replicas", 0),
        "replicas": rs_status.get("replicas", 0),
        "ready": rs_status.get("readyReplicas", 0),
        "available": rs_status.get("availableReplicas", 0),
        "change_cause": annotations_of(rs).get(CHANGE_CAUSE),
        "revision_history": _revision_history(rs),
        "limits": _limits(rs_spec.get("template")),
        "current": current,
    }


def config_refs(template: Any) -> list[dict[str, str]]:
    """The ConfigMaps and Secrets the pod template mounts or reads (volumes, projected sources,
    envFrom, env valueFrom), by name: what else may have changed under an unchanged revision."""
    spec = (template or {}).get("spec") or {}
    seen: dict[tuple[str, str], set[str]] = {}

    def add(kind: str, name: Any, via: str) -> None:
        if name:
            seen.setdefault((kind, str(name)), set()).add(via)

    for v in spec.get("volumes") or []:
        add("ConfigMap", (v.get("configMap") or {}).get("name"), f"volume {v.get('name')}")
        add("Secret", (v.get("secret") or {}).get("secretName"), f"volume {v.get('name')}")
        for src in (v.get("projected") or {}).get("sources") or []:
            add("ConfigMap", (src.get("configMap") or {}).get("name"), f"volume {v.get('name')}")
            add("Secret", (src.get("secret") or {}).get("name"), f"volume {v.get('name')}")
    for c in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]:
        for ef in c.get("envFrom") or []:
            add("ConfigMap", (ef.get("configMapRef") or {}).get("name"), "envFrom")
            add("Secret", (ef.get("secretRef") or {}).get("name"), "envFrom")
        for var in c.get("env") or []:
            ref = var.get("valueFrom") or {}
            add("ConfigMap", (ref.get("configMapKeyRef") or {}).get("name"), f"env {var.get('name')}")
            add("Secret", (ref.get("secretKeyRef") or {}).get("name"), f"env {var.get('name')}")
    return [{"kind": k, "name": n, "via": ", ".join(sorted(v))} for (k, n), v in sorted(seen.items())]


def _writes(obj: Obj) -> list[dict[str, Any]]:
    """Who last wrote the object and when (its managedFields, without the field sets), newest first."""
    out = [
        {"manager": f.get("manager"), "operation": f.get("operation"), "time": iso(f.get("time"))}
        for f in meta(obj).get("managedFields") or []
        if isinstance(f, dict)
    ]
    return sorted(out, key=lambda w: w["time"] or "", reverse=True)


async def _config_maps(ctx: StepContext, namespace: str, refs: list[dict[str, str]]) -> list[dict[str, Any]]:
    """The metadata of the ConfigMaps the template reads (the first :data:`MAX_CONFIG_MAPS`,
    concurrently, within half the step's time): when each was last written, by whom. A ConfigMap
    that is missing, forbidden or fails is reported as such, never raised. Secrets are never read:
    reading a Secret's metadata takes the right to read its data, which Medic is not granted."""
    names = [r["name"] for r in refs if r["kind"] == "ConfigMap"]
    budget = ctx.timeout / 2
    read = await asyncio.gather(
        *(_config_map(kube_of(ctx), ctx.memo, namespace, name, budget) for name in names[:MAX_CONFIG_MAPS])
    )
    skipped = [
        ConfigMapMeta(
            name=name, status="not_read", error=f"only the first {MAX_CONFIG_MAPS} ConfigMaps are read"
        )
        for name in names[MAX_CONFIG_MAPS:]
    ]
    return [m.model_dump() for m in [*read, *skipped]]


async def _config_map(
    kube: KubeApi, memo: dict[str, Any], namespace: str, name: str, budget: float
) -> ConfigMapMeta:
    if not _OBJECT_NAME.match(name):
        return ConfigMapMeta(name=name, status="error", error="not a valid ConfigMap name")
    path = ns_path("v1", namespace, "configmaps", name)
    try:
        async with asyncio.timeout(budget):
            m = await metadata_only(kube, memo, path)
    except KubeNotFound as exc:
        return ConfigMapMeta(name=name, status="missing", error=str(exc))
    except KubeForbidden as exc:
        return ConfigMapMeta(name=name, status="forbidden", error=str(exc))
    except StepError as exc:
        return ConfigMapMeta(name=name, status="error", error=str(exc))
    except TimeoutError:
        return ConfigMapMeta(name=name, status="error", error=f"GET {path}: no answer within {budget:g}s")
    return ConfigMapMeta(
        name=name,
        resource_version=str(m.get("resourceVersion") or "") or None,
        created=iso(m.get("creationTimestamp")),
        writes=[Write.model_validate(w) for w in _writes({"metadata": m})],
    )


def _revision_history(rs: Obj) -> list[int]:
    """The revision numbers this ReplicaSet had before it was reused (a rollback or a re-deploy
    of an older template bumps its revision and keeps the old numbers here)."""
    raw = str(annotations_of(rs).get(REVISION_HISTORY) or "")
    return [int(x) for x in raw.split(",") if x.strip().isdigit()]


def _limits(template: Any) -> dict[str, Any]:
    spec = (template or {}).get("spec") or {}
    return {
        str(c.get("name")): dict((c.get("resources") or {}).get("limits") or {})
        for c in spec.get("containers") or []
    }


async def _scaling_events(ctx: StepContext, d: Obj) -> list[dict[str, Any]]:
    """The deployment controller's ``ScalingReplicaSet`` events about this Deployment, oldest
    first: when it scaled which ReplicaSet up or down (the same namespace LIST ``k8s.events``
    reads, shared). Events expire (about an hour): missing ones leave times unknown."""
    m = meta(d)
    items, _ = await list_pages(kube_of(ctx), ctx.memo, ns_path("v1", str(m.get("namespace")), "events"))
    chosen = []
    for e in items:
        involved = e.get("involvedObject") or e.get("regarding") or {}
        if (
            e.get("reason") == "ScalingReplicaSet"
            and involved.get("kind") == "Deployment"
            and involved.get("name") == m.get("name")
        ):
            chosen.append(e)
    # oldest first; events of the same second in the order the API server stored them
    chosen.sort(key=lambda e: (_event(e)["last_seen"] or "", _rv(e)))
    return [{**_event(e), "resource_version": str(meta(e).get("resourceVersion") or "")} for e in chosen]


# ---------------------------------------------------------------------- HPA


def _metric_name(metric: dict[str, Any]) -> str:
    kind = str(metric.get("type", ""))
    body = metric.get(kind[:1].lower() + kind[1:]) or {}
    if "name" in body:
        return str(body["name"])
    return str((body.get("metric") or {}).get("name", ""))


def _hpa(h: Obj) -> dict[str, Any]:
    spec, status = h.get("spec") or {}, h.get("status") or {}
    low, high = int(spec.get("minReplicas") or 1), int(spec.get("maxReplicas") or 0)
    current, desired = int(status.get("currentReplicas") or 0), int(status.get("desiredReplicas") or 0)
    now = {(m.get("type"), _metric_name(m)): m for m in status.get("currentMetrics") or []}
    metrics = []
    for metric in spec.get("metrics") or []:
        kind, name = metric.get("type"), _metric_name(metric)
        key = str(kind)[:1].lower() + str(kind)[1:]
        observed = now.get((kind, name)) or {}
        metrics.append(
            {
                "type": kind,
                "name": name,
                "target": (metric.get(key) or {}).get("target"),
                "current": (observed.get(key) or {}).get("current"),
            }
        )
    ref = spec.get("scaleTargetRef") or {}
    return {
        "name": meta(h).get("name"),
        "target": {"kind": ref.get("kind"), "name": ref.get("name")},
        "min": low,
        "max": high,
        "current": current,
        "desired": desired,
        "at_max": high > 0 and max(current, desired) >= high,
        "metrics": metrics,
        "conditions": [
            {
                "type": c.get("type"),
                "status": c.get("status"),
                "reason": c.get("reason"),
                "message": c.get("message"),
            }
            for c in status.get("conditions") or []
        ],
    }


async def hpa_status(ctx: StepContext, params: NoParams) -> HpaStatusOutput:
    """HPAs scaling the target (scaleTargetRef), or named by the target / the hpa label: one LIST."""
    kube = kube_of(ctx)
    target = require_target(ctx, "k8s.hpa_status", ("deployment", "statefulset", "horizontalpodautoscaler"))
    names = {target.name} if target.kind == "horizontalpodautoscaler" else set()
    for key in ("horizontalpodautoscaler", "hpa"):
        value = ctx.labels.get(key, "")
        if value and is_k8s_name(value):
            names.add(value)
    scaled = {"deployment": "Deployment", "statefulset": "StatefulSet"}.get(target.kind)
    items = await list_cached(
        kube, ctx.memo, ns_path("autoscaling/v2", target.namespace, "horizontalpodautoscalers")
    )
    chosen = []
    for h in items:
        ref = (h.get("spec") or {}).get("scaleTargetRef") or {}
        if meta(h).get("name") in names or (ref.get("kind") == scaled and ref.get("name") == target.name):
            chosen.append(_hpa(h))
    return HpaStatusOutput.model_validate({"hpas": chosen})


# ---------------------------------------------------------------------- PVC


async def pvc_status(ctx: StepContext, params: NoParams) -> PvcStatusOutput:
    """PVCs the target's pods mount (or the target / persistentvolumeclaim label names): one LIST."""
    kube = kube_of(ctx)
    target = require_target(ctx, "k8s.pvc_status", (*POD_KINDS, "persistentvolumeclaim"))
    wanted: dict[str, list[str]] = {}  # claim -> pods mounting it
    if target.kind == "persistentvolumeclaim":
        wanted[target.name] = []
    else:
        pods, _ = await ordered_pods(ctx, kube, target)
        for pod in pods:
            for volume in (pod.get("spec") or {}).get("volumes") or []:
                claim = (volume.get("persistentVolumeClaim") or {}).get("claimName")
                if claim:
                    wanted.setdefault(str(claim), []).append(str(meta(pod).get("name")))
    for key in ("persistentvolumeclaim", "pvc"):
        value = ctx.labels.get(key, "")
        if value and is_k8s_name(value):
            wanted.setdefault(value, [])
    if not wanted:
        return PvcStatusOutput()
    items = await list_cached(kube, ctx.memo, ns_path("v1", target.namespace, "persistentvolumeclaims"))
    out = []
    for pvc in items:
        name = str(meta(pvc).get("name"))
        if name not in wanted:
            continue
        spec, status = pvc.get("spec") or {}, pvc.get("status") or {}
        out.append(
            {
                "name": name,
                "phase": status.get("phase"),
                "capacity": (status.get("capacity") or {}).get("storage"),
                "requested": ((spec.get("resources") or {}).get("requests") or {}).get("storage"),
                "storage_class": spec.get("storageClassName"),
                "volume": spec.get("volumeName"),
                "access_modes": list(status.get("accessModes") or spec.get("accessModes") or []),
                "pods": wanted[name],
            }
        )
    found = {p["name"] for p in out}
    missing = sorted(n for n in wanted if n not in found)
    return PvcStatusOutput.model_validate({"pvcs": out, "missing": missing})


COLLECTORS = (
    CollectorDef(
        name="k8s.events",
        fn=events,
        params=EventsParams,
        output=EventsOutput,
        summary="events of the pods, their ReplicaSets and the workload, newest first",
    ),
    CollectorDef(
        name="k8s.rollout_history",
        fn=rollout_history,
        params=RolloutHistoryParams,
        output=RolloutHistoryOutput,
        summary="kubectl rollout history: the Deployment's status and its revisions (ReplicaSets), and "
        "when the ConfigMaps its pods read were last written (metadata only)",
    ),
    CollectorDef(
        name="k8s.hpa_status",
        fn=hpa_status,
        params=NoParams,
        output=HpaStatusOutput,
        summary="kubectl get hpa: replicas against min/max, metrics and conditions",
    ),
    CollectorDef(
        name="k8s.pvc_status",
        fn=pvc_status,
        params=NoParams,
        output=PvcStatusOutput,
        summary="kubectl get pvc: phase, capacity, storage class of the target's volumes",
    ),
)
