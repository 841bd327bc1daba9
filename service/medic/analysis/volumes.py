"""What on-call needs to know about a volume filling up (runbook 3.3 steps 3-4), from the kubelet's
volume stats (``prometheus.query``: ``volume_usage_ratio``, ``volume_used_bytes``,
``volume_capacity_bytes`` with their range) and ``k8s.pvc_status`` (storage class, bound state).

Growth is measured over the queried range (the alert's window: the shipped playbook asks for 6h,
as ``KubePersistentVolumeFillingUp`` predicts over 6h) and the time to full is a straight-line
projection of that growth. Pure.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any

from medic.analysis.dataplane import human_bytes, typed
from medic.collectors.k8s.workload_output import PvcStatusOutput
from medic.collectors.prometheus_output import PrometheusQueryOutput, QueryResult
from medic.playbooks.contract import AnalysisInput

CLAIM = "persistentvolumeclaim"


@dataclass(frozen=True)
class Volume:
    claim: str
    used_ratio: float | None = None
    used_bytes: float | None = None
    capacity_bytes: float | None = None
    growth_bytes: float | None = None  # over window_s
    window_s: float | None = None
    storage_class: str | None = None
    phase: str | None = None
    capacity: str | None = None  # as the PVC states it ("10Gi")
    pods: tuple[str, ...] = ()

    @property
    def seconds_to_full(self) -> float | None:
        """Straight-line projection of the growth over the window; None when not growing."""
        if None in (self.used_bytes, self.capacity_bytes, self.growth_bytes, self.window_s):
            return None
        assert self.growth_bytes is not None and self.window_s and self.capacity_bytes is not None
        if self.growth_bytes <= 0:
            return None
        left = max(self.capacity_bytes - (self.used_bytes or 0), 0.0)
        return left / (self.growth_bytes / self.window_s)

    def details(self) -> dict[str, Any]:
        return {
            "pvc": self.claim,
            "used_ratio": self.used_ratio,
            "used_bytes": self.used_bytes,
            "capacity_bytes": self.capacity_bytes,
            "growth_bytes": self.growth_bytes,
            "window_s": self.window_s,
            "seconds_to_full": self.seconds_to_full,
            "storage_class": self.storage_class,
            "phase": self.phase,
            "capacity": self.capacity,
            "pods": list(self.pods),
        }


def _series(q: QueryResult) -> dict[str, float]:
    return {s.labels[CLAIM]: s.value for s in q.series if s.labels.get(CLAIM) and s.value is not None}


def _growth(q: QueryResult) -> dict[str, tuple[float, float]]:
    """claim -> (growth, seconds) between the first and last known points of the range."""
    out: dict[str, tuple[float, float]] = {}
    for s in q.range or []:
        claim = s.labels.get(CLAIM, "")
        points = [(t, v) for t, v in s.points if v is not None]
        if claim and len(points) >= 2 and points[-1][0] > points[0][0]:
            out[claim] = (points[-1][1] - points[0][1], points[-1][0] - points[0][0])
    return out


def _measured(facts: dict[str, Volume], q: QueryResult) -> None:
    """What one of the volume queries says, into ``facts`` (claim -> what is known)."""
    if q.name not in ("volume_usage_ratio", "volume_capacity_bytes", "volume_used_bytes") or q.error:
        return
    for claim, v in _series(q).items():
        f = facts.get(claim) or Volume(claim)
        if q.name == "volume_usage_ratio":
            facts[claim] = replace(f, used_ratio=v)
        elif q.name == "volume_capacity_bytes":
            facts[claim] = replace(f, capacity_bytes=v)
        else:
            facts[claim] = replace(f, used_bytes=v)
    if q.name == "volume_used_bytes":
        for claim, (grew, secs) in _growth(q).items():
            facts[claim] = replace(facts.get(claim) or Volume(claim), growth_bytes=grew, window_s=secs)


def volumes(inp: AnalysisInput) -> dict[str, Volume]:
    """Every claim the evidence speaks of, with what is known about it."""
    facts: dict[str, Volume] = {}
    for _, data in typed(inp, "prometheus.query", PrometheusQueryOutput):
        for q in data.queries:
            _measured(facts, q)
    for _, status in typed(inp, "k8s.pvc_status", PvcStatusOutput):
        for pvc in status.pvcs:
            if pvc.name:
                facts[pvc.name] = replace(
                    facts.get(pvc.name) or Volume(pvc.name),
                    storage_class=pvc.storage_class,
                    phase=pvc.phase,
                    capacity=pvc.capacity,
                    pods=tuple(pvc.pods),
                )
    for claim, f in facts.items():
        if f.used_ratio is None and f.used_bytes and f.capacity_bytes:
            facts[claim] = replace(f, used_ratio=f.used_bytes / f.capacity_bytes)
    return dict(sorted(facts.items()))


def duration(seconds: float) -> str:
    """A human duration: 45 min, 5.5 h, 3.2 days."""
    if seconds < 3600:
        return f"{max(seconds / 60, 1):.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def describe(v: Volume) -> str:
    """One sentence with the numbers: used of capacity, storage class and state, growth, time to full."""
    parts = []
    if v.used_bytes is not None and v.capacity_bytes is not None:
        parts.append(f"{human_bytes(v.used_bytes)} used of {human_bytes(v.capacity_bytes)}")
    elif v.capacity:
        parts.append(f"capacity {v.capacity}")
    parts.append(f"storage class {v.storage_class or 'default'}" if v.phase else "")
    parts.append(v.phase or "")
    head = ", ".join(p for p in parts if p)
    sentence = f" ({head})" if head else ""
    if v.growth_bytes is not None and v.window_s:
        window = duration(v.window_s)
        if v.growth_bytes > 0:
            sentence += f"; it grew {human_bytes(v.growth_bytes)} in the last {window}"
            eta = v.seconds_to_full
            if eta is not None:
                sentence += (
                    "; it is full now" if eta <= 0 else f" and is full in about {duration(eta)} at that rate"
                )
        else:
            sentence += f"; it did not grow in the last {window}: it is not filling further"
    return sentence


_TEMPLATE_CLAIM = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*?-(?P<pod>[a-z0-9-]+-\d+)$")


def mounting_pod(v: Volume) -> str | None:
    """A pod that mounts the claim: from the PVC listing, else a StatefulSet's claim name
    (``<template>-<statefulset>-<ordinal>`` -> ``<statefulset>-<ordinal>``)."""
    if v.pods:
        return v.pods[0]
    m = _TEMPLATE_CLAIM.match(v.claim)
    return m.group("pod") if m else None


def steps(v: Volume, namespace: str) -> list[str]:
    """Runbook 3.3 steps 3-4: the PVC, then the disk as the pod sees it."""
    out = [f"kubectl get pvc {v.claim} -n {namespace}", f"kubectl describe pvc {v.claim} -n {namespace}"]
    pod = mounting_pod(v)
    if pod is not None:
        path = "/data/db" if "mongo" in v.claim or "mongo" in pod else ""
        out.append(f"kubectl exec -it {pod} -n {namespace} -- df -h {path}".rstrip())
    return out
