"""From alert labels to the object an incident is about.

``target_from_labels`` is the pure part: explicit labels, and for a Deployment's pods the name
heuristic ``<deployment>-<rs hash>-<pod hash>`` (marked ``inferred``). The Kubernetes resolver
(``medic.collectors.k8s.resolver``) follows ownerReferences instead and falls back to this.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Protocol

from medic.domain.incident import Target
from medic.rules.labels import is_dns1123_label, is_k8s_name

# ReplicaSet pod-template-hash and pod suffix alphabets (k8s.io/apimachinery rand.SafeEncodeString).
_DEPLOYMENT_POD = re.compile(
    r"^(?P<name>.+)-[bcdfghjklmnpqrstvwxz2456789]{5,10}-[bcdfghjklmnpqrstvwxz2456789]{5}$"
)
_STATEFUL_POD = re.compile(r"^(?P<name>.+)-(?P<ordinal>\d+)$")

_NAMESPACED = {
    "deployment",
    "statefulset",
    "pod",
    "service",
    "horizontalpodautoscaler",
    "persistentvolumeclaim",
    "ingress",
    "certificate",
}
_LABEL_FOR_KIND = {
    "deployment": ("deployment",),
    "statefulset": ("statefulset",),
    "pod": ("pod",),
    "service": ("service",),
    "horizontalpodautoscaler": ("horizontalpodautoscaler", "hpa"),
    "persistentvolumeclaim": ("persistentvolumeclaim", "pvc"),
    "ingress": ("ingress",),
    "certificate": ("certificate", "name"),
    "node": ("node",),
}


def target_from_labels(kind: str, labels: Mapping[str, str]) -> Target | None:
    """The target of ``kind`` named by the labels, or None when they do not name one."""
    if kind == "none":
        return None
    namespace = labels.get("namespace", "")
    if namespace and not is_dns1123_label(namespace):
        return None
    if kind == "namespace":
        return Target(kind="namespace", name=namespace) if namespace else None
    if kind in _NAMESPACED and not namespace:
        return None
    ns = namespace if kind in _NAMESPACED else ""
    for label in _LABEL_FOR_KIND.get(kind, ()):
        value = labels.get(label, "")
        if value and is_k8s_name(value):
            return Target(kind=kind, namespace=ns, name=value)
    pod = labels.get("pod", "")
    if pod and is_k8s_name(pod):
        pattern = _DEPLOYMENT_POD if kind == "deployment" else _STATEFUL_POD
        if kind in ("deployment", "statefulset") and (m := pattern.match(pod)):
            return Target(kind=kind, namespace=ns, name=m.group("name"), inferred=True)
    return None


class TargetResolver(Protocol):
    async def resolve(self, kind: str, labels: Mapping[str, str]) -> Target | None: ...


class LabelTargetResolver:
    """Resolution from labels alone (no Kubernetes access configured)."""

    async def resolve(self, kind: str, labels: Mapping[str, str]) -> Target | None:
        return target_from_labels(kind, labels)
