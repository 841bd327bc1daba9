"""From alert labels to the object an incident is about.

``target_from_labels`` is the pure part: explicit labels, and for a Deployment's pods the name
heuristic ``<deployment>-<rs hash>-<pod hash>`` (marked ``inferred``). The Kubernetes resolver
(``medic.collectors.k8s.resolver``) follows ownerReferences instead and falls back to this.

Labels that describe the *scrape target* rather than the alert's subject are not taken for the
subject: kube-state-metrics' ``KubeDeploymentReplicasMismatch`` carries the exporter's own
``pod``/``container``/``service`` (``subject_label``); its ``namespace`` and ``deployment`` are
the subject's.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Protocol

from medic.domain.incident import Target
from medic.rules.labels import is_dns1123_label, is_exporter_label, is_k8s_name, subject_labels

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


def subject_label(labels: Mapping[str, str], key: str) -> str:
    """``labels[key]`` when it is a valid Kubernetes name of the alert's subject, else ""."""
    value = labels.get(key, "")
    if not value or not is_k8s_name(value) or is_exporter_label(labels, key):
        return ""
    return value


def target_from_labels(kind: str, labels: Mapping[str, str]) -> Target | None:
    """The target of ``kind`` named by the labels, or None when they do not name one."""
    if kind == "none":
        return None
    labels = subject_labels(labels)
    namespace = labels.get("namespace", "")
    if namespace and not is_dns1123_label(namespace):
        return None
    if kind == "namespace":
        return Target(kind="namespace", name=namespace) if namespace else None
    if kind in _NAMESPACED and not namespace:
        return None
    ns = namespace if kind in _NAMESPACED else ""
    for label in _LABEL_FOR_KIND.get(kind, ()):
        value = subject_label(labels, label)
        if value:
            return Target(kind=kind, namespace=ns, name=value)
    pod = subject_label(labels, "pod")
    if pod:
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
