"""What every ``k8s.*`` collector needs: the client, a checked target, the alert's pods in a useful
order, and Kubernetes quantities as numbers."""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import Iterable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from medic.clients.kube.client import ns_path
from medic.clients.kube.errors import KubeNotFound
from medic.clients.kube.reads import Obj, get_cached, meta, pod_ready, restarts, target_pods
from medic.domain.errors import NotConfigured, StepError
from medic.domain.incident import Target
from medic.playbooks.contract import StepContext
from medic.playbooks.ports import KubeApi
from medic.rules.labels import is_k8s_name
from medic.rules.targets import subject_label

POD_KINDS = ("deployment", "statefulset", "pod")
MAX_EXTRA_ALERT_PODS = 5  # alert pods outside the target's pod LIST are read one by one, this many


def kube_of(ctx: StepContext) -> KubeApi:
    kube = ctx.backends.kube
    if kube is None:
        raise NotConfigured("Kubernetes access is not configured (MEDIC_KUBE_MODE / KUBECONFIG)")
    return kube


def require_target(ctx: StepContext, collector: str, kinds: Iterable[str]) -> Target:
    allowed = tuple(kinds)
    target = ctx.target
    if target is None:
        raise StepError(
            f"{collector} needs a target ({', '.join(allowed)}); the alert labels named none "
            "(or its namespace is not allow-listed)"
        )
    if target.kind not in allowed:
        raise StepError(f"{collector} works on a {' or '.join(allowed)}, not on {target}")
    if target.kind == "namespace":  # a namespace target names itself; give it its namespace
        target = Target(kind="namespace", namespace=target.name, name=target.name, inferred=target.inferred)
    if not target.namespace or target.namespace not in ctx.backends.namespaces:
        raise StepError(f"{collector}: namespace {target.namespace!r} is not allow-listed")
    return target


def alert_pod_names(ctx: StepContext, namespace: str) -> list[str]:
    """The ``pod`` labels of the incident's alerts in ``namespace`` (valid names only, never a
    scraped exporter's own pod such as kube-state-metrics'), in order."""
    names: list[str] = []
    for alert in ctx.alerts:
        name = subject_label(alert.labels, "pod")
        ns = alert.labels.get("namespace", namespace)
        if name and ns == namespace and is_k8s_name(name) and name not in names:
            names.append(name)
    return names


def by_trouble(pods: Iterable[Obj]) -> list[Obj]:
    """Not ready first, then most restarts, then newest."""
    out = sorted(pods, key=lambda p: str(meta(p).get("creationTimestamp") or ""), reverse=True)
    out.sort(key=lambda p: (pod_ready(p), -restarts(p)))
    return out


async def ordered_pods(ctx: StepContext, kube: KubeApi, target: Target) -> tuple[list[Obj], list[str]]:
    """The target's pods: the alert's pods first, then the ones in trouble (not ready, most
    restarts, newest). Alert pods missing from the target's LIST are read one by one (at most
    :data:`MAX_EXTRA_ALERT_PODS`); the names of those that no longer exist are returned too."""
    pods = await target_pods(kube, ctx.memo, target)
    by_name = {meta(p).get("name"): p for p in pods}
    names = alert_pod_names(ctx, target.namespace)
    outside = [n for n in names if n not in by_name][:MAX_EXTRA_ALERT_PODS]

    async def read(name: str) -> Obj | None:
        try:
            pod = await get_cached(kube, ctx.memo, ns_path("v1", target.namespace, "pods", name))
        except KubeNotFound:
            return None
        return pod if isinstance(pod, dict) else None

    fetched = dict(zip(outside, await asyncio.gather(*(read(n) for n in outside)), strict=True))
    missing = [n for n, pod in fetched.items() if pod is None]
    first: list[Obj] = []
    for name in names:
        pod = by_name.pop(name, None) or fetched.get(name)
        if pod is not None:
            first.append(pod)
    return first + by_trouble(by_name.values()), missing


# ---------------------------------------------------------------------- quantities

_QUANTITY = re.compile(r"^([+-]?[0-9.]+(?:[eE][+-]?[0-9]+)?)(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E)?$")
_FACTOR = {
    None: Decimal(1),
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "k": Decimal("1e3"),
    "M": Decimal("1e6"),
    "G": Decimal("1e9"),
    "T": Decimal("1e12"),
    "P": Decimal("1e15"),
    "E": Decimal("1e18"),
    "Ki": Decimal(2**10),
    "Mi": Decimal(2**20),
    "Gi": Decimal(2**30),
    "Ti": Decimal(2**40),
    "Pi": Decimal(2**50),
    "Ei": Decimal(2**60),
}


def quantity(value: Any) -> Decimal | None:
    """A Kubernetes resource quantity ("250m", "1.5", "64Mi", "1e3") as a number, or None."""
    if value is None:
        return None
    m = _QUANTITY.match(str(value).strip())
    if not m:
        return None
    try:
        return Decimal(m.group(1)) * _FACTOR[m.group(2)]
    except InvalidOperation:
        return None


def cpu_millicores(value: Any) -> int | None:
    q = quantity(value)
    return None if q is None else math.ceil(q * 1000)


def memory_bytes(value: Any) -> int | None:
    q = quantity(value)
    return None if q is None else math.ceil(q)


def iso(value: Any) -> str | None:
    """API timestamps are RFC 3339 strings already; keep them, drop empties."""
    return str(value) if value else None


def condition_map(conditions: Iterable[Mapping[str, Any]] | None) -> dict[str, str]:
    return {str(c.get("type")): str(c.get("status")) for c in conditions or [] if c.get("type")}
