"""Alert labels → the object an incident is about, asking the API server.

A ``pod`` label is followed through ownerReferences: pod → ReplicaSet → Deployment, or pod →
StatefulSet (kube-state-metrics' KubePodCrashLooping carries no ``deployment`` label). A pod whose
controller is the other kind of workload resolves to that workload: the incident is about what
really runs the pod.

API calls stay constant in the number of pods of one workload: the ReplicaSet name is derived from
the pod name (``<replicaset>-<5 chars>``) and the ReplicaSet → Deployment answer is cached for a
short TTL, so ten crash-looping pods of one Deployment cost one request; only when that does not
work is the pod itself read. When the API cannot be asked, the name heuristics of
:func:`medic.rules.targets.target_from_labels` decide (the target is marked ``inferred``).

An alert without a workload or pod label (an aggregated ``sum by (namespace)`` rule, an ingress
or service metric) resolves through the cluster: its ``service`` label -> the Service's selector
-> a pod -> its owner; its ``ingress`` label -> the Ingress's backend Service -> ...; a namespace
alone -> the one Service the namespace's Ingresses route to (marked ``inferred``). Labels of the
scraped exporter (kube-state-metrics' own ``pod``) are never taken for the subject's
(:func:`medic.rules.targets.subject_label`).

Refused without any request: namespaces outside the allow-list and label values that are not valid
Kubernetes names (the incident is then recorded without a target and nothing is acted on).
"""

from __future__ import annotations

import re
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping

import structlog

from medic.clients.kube.client import KubeClient, ns_path
from medic.clients.kube.errors import KubeError, KubeNotFound
from medic.clients.kube.reads import Obj, controller_ref
from medic.domain.incident import Target
from medic.rules.labels import is_dns1123_label, is_k8s_name, subject_labels
from medic.rules.targets import subject_label, target_from_labels

log = structlog.get_logger("medic.collectors.k8s.resolver")

# A ReplicaSet's pods are named <replicaset>-<5 chars of k8s.io/apimachinery's safe alphabet>.
_RS_POD = re.compile(r"^(?P<rs>.+-[bcdfghjklmnpqrstvwxz2456789]{5,10})-[bcdfghjklmnpqrstvwxz2456789]{5}$")
_STS_POD = re.compile(r"^(?P<sts>.+)-\d+$")

_CLUSTER_SCOPED = {"node", "none"}
_NAMING_LABELS = ("pod", "deployment", "statefulset", "service", "exported_service", "ingress")
_WORKLOAD_KIND = {"Deployment": "deployment", "StatefulSet": "statefulset"}
_EXPLICIT = {
    "deployment": ("deployment",),
    "statefulset": ("statefulset",),
    "pod": ("pod",),
    "horizontalpodautoscaler": ("horizontalpodautoscaler", "hpa"),
    "persistentvolumeclaim": ("persistentvolumeclaim", "pvc"),
}


class KubeTargetResolver:
    """:class:`medic.rules.targets.TargetResolver` that follows ownerReferences."""

    def __init__(
        self,
        kube: KubeClient,
        namespaces: Iterable[str],
        *,
        ttl: float = 60.0,
        max_entries: int = 1024,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.kube = kube
        self.namespaces = frozenset(namespaces)
        self.ttl = ttl
        self.max_entries = max_entries
        self.clock = clock
        # (namespace, "rs"|"sts", name) -> (target, expires at)
        self._cache: OrderedDict[tuple[str, str, str], tuple[Target, float]] = OrderedDict()

    async def resolve(self, kind: str, labels: Mapping[str, str]) -> Target | None:
        labels = subject_labels(labels)
        if kind in _CLUSTER_SCOPED:
            return target_from_labels(kind, labels)
        namespace = labels.get("namespace", "")
        if not namespace or not is_dns1123_label(namespace) or namespace not in self.namespaces:
            return None
        if kind not in ("deployment", "statefulset"):
            if kind in _EXPLICIT:
                name = self._label(labels, _EXPLICIT[kind])
                return Target(kind=kind, namespace=namespace, name=name) if name else None
            return target_from_labels(kind, labels)
        name = self._label(labels, _EXPLICIT[kind])
        if name:
            return Target(kind=kind, namespace=namespace, name=name)
        if any(labels.get(k) and not is_k8s_name(labels[k]) for k in _NAMING_LABELS):
            return None  # a label that names something, but not validly: refused, no guess
        pod = subject_label(labels, "pod")
        if not pod:
            return await self._from_other_labels(namespace, labels)
        try:
            return await self._from_pod(namespace, pod)
        except KubeError as exc:
            fallback = target_from_labels(kind, labels)
            log.warning(
                "could not follow the pod's ownerReferences; using the pod name",
                pod=f"{namespace}/{pod}",
                error=str(exc),
                target=str(fallback) if fallback else None,
            )
            return fallback.model_copy(update={"inferred": True}) if fallback else None

    @staticmethod
    def _label(labels: Mapping[str, str], keys: Iterable[str]) -> str:
        for key in keys:
            if value := subject_label(labels, key):
                return value
        return ""

    # ------------------------------------------------------------------ no workload label

    async def _from_other_labels(self, namespace: str, labels: Mapping[str, str]) -> Target | None:
        """Service label -> its pods' owner; ingress label -> its backend Service; a namespace
        alone -> the one Service its Ingresses route to (inferred). None when ambiguous."""
        try:
            service = subject_label(labels, "service") or self._label(labels, ("exported_service",))
            if service:
                return await self._from_service(namespace, service)
            ingress = self._label(labels, ("ingress",))
            ingresses = (
                [await self.kube.get(ns_path("networking.k8s.io/v1", namespace, "ingresses", ingress))]
                if ingress
                else await self.kube.list(ns_path("networking.k8s.io/v1", namespace, "ingresses"))
            )
            services = sorted({s for i in ingresses for s in _backend_services(i)})
            if len(services) != 1:
                log.info("no single Service to resolve the alert to", namespace=namespace, services=services)
                return None
            found = await self._from_service(namespace, services[0])
            return found.model_copy(update={"inferred": True}) if found and not ingress else found
        except KubeError as exc:
            log.warning("could not resolve the alert through the cluster", namespace=namespace, error=exc)
            return None

    async def _from_service(self, namespace: str, name: str) -> Target | None:
        svc = await self.kube.get(ns_path("v1", namespace, "services", name))
        selector = (svc.get("spec") or {}).get("selector") or {}
        if not selector:
            return None
        query = ",".join(f"{k}={v}" for k, v in sorted(selector.items()))
        pods = await self.kube.list(ns_path("v1", namespace, "pods"), labelSelector=query)
        for pod in sorted(pods, key=lambda p: str((p.get("metadata") or {}).get("name", ""))):
            pod_name = str((pod.get("metadata") or {}).get("name", ""))
            if is_k8s_name(pod_name) and (target := await self._from_pod(namespace, pod_name)):
                return target  # the pod's real owner, whichever kind (as for a pod label)
        return None

    # ------------------------------------------------------------------ cache

    def _cached(self, key: tuple[str, str, str]) -> Target | None:
        entry = self._cache.get(key)
        if entry is None:
            return None
        target, expires = entry
        if self.clock() >= expires:
            del self._cache[key]
            return None
        return target

    def _remember(self, key: tuple[str, str, str], target: Target) -> Target:
        self._cache[key] = (target, self.clock() + self.ttl)
        self._cache.move_to_end(key)
        while len(self._cache) > self.max_entries:
            self._cache.popitem(last=False)
        return target

    # ------------------------------------------------------------------ owner chain

    async def _from_pod(self, namespace: str, pod: str) -> Target | None:
        rs_match = _RS_POD.match(pod)
        sts_match = _STS_POD.match(pod)
        if rs_match and (hit := self._cached((namespace, "rs", rs_match["rs"]))):
            return hit
        if sts_match and (hit := self._cached((namespace, "sts", sts_match["sts"]))):
            return hit
        if rs_match:
            try:
                found = await self._from_replicaset(namespace, rs_match["rs"])
            except KubeNotFound:
                found = None
            if found is not None:
                return found
        obj = await self.kube.get(ns_path("v1", namespace, "pods", pod))
        ref = controller_ref(obj) or {}
        owner_kind, owner = str(ref.get("kind", "")), str(ref.get("name", ""))
        if owner_kind == "ReplicaSet" and is_k8s_name(owner):
            return await self._from_replicaset(namespace, owner)
        if owner_kind == "StatefulSet" and is_k8s_name(owner):
            target = Target(kind="statefulset", namespace=namespace, name=owner)
            if sts_match and sts_match["sts"] == owner:
                self._remember((namespace, "sts", owner), target)
            return target
        log.info(
            "the pod is not run by a Deployment or StatefulSet", pod=f"{namespace}/{pod}", owner=owner_kind
        )
        return None

    async def _from_replicaset(self, namespace: str, name: str) -> Target | None:
        rs: Obj = await self.kube.get(ns_path("apps/v1", namespace, "replicasets", name))
        ref = controller_ref(rs) or {}
        kind = _WORKLOAD_KIND.get(str(ref.get("kind", "")))
        owner = str(ref.get("name", ""))
        if kind != "deployment" or not is_k8s_name(owner):
            return None
        return self._remember((namespace, "rs", name), Target(kind=kind, namespace=namespace, name=owner))


def _backend_services(ingress: Obj) -> list[str]:
    """The Services an Ingress routes to (default backend and every rule path)."""
    spec = ingress.get("spec") or {}
    backends = [spec.get("defaultBackend") or {}]
    for rule in spec.get("rules") or []:
        backends += [p.get("backend") or {} for p in ((rule.get("http") or {}).get("paths") or [])]
    names = [str((b.get("service") or {}).get("name", "")) for b in backends]
    return [n for n in names if n and is_k8s_name(n)]
