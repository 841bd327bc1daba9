"""KubeTargetResolver against the fake kube-apiserver, through the real kubernetes_asyncio client
(KubeClient): pod → ReplicaSet → Deployment, StatefulSet pods, the namespace allow-list, label
validation before any request, the inferred fallback when the API is down, and constant API calls
however many pods of one Deployment crash."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from kubernetes_asyncio.client import Configuration

from medic.app.backends import Backends
from medic.app.runtime import Runtime
from medic.app.settings import Settings
from medic.clients.kube.client import KubeClient
from medic.collectors.k8s.resolver import KubeTargetResolver
from medic.domain.incident import Target
from medic.rules.targets import LabelTargetResolver
from tests.fakes.kube_apiserver import FakeKubeApiserver
from tests.integration.kube_support import FAST
from tests.medic_app import medic_settings

NS = "playcode"
APP = "playcode-app"


def crashing_pods(fake: FakeKubeApiserver, name: str = APP, replicas: int = 3) -> list[str]:
    """A Deployment whose new revision crash-loops; every pod is replaced (Recreate)."""
    fake.add_deployment(NS, name, f"{name}:v1", replicas=replicas, strategy={"type": "Recreate"})
    fake.bad_images.add(f"{name}:v2")
    fake.set_image(NS, name, f"{name}:v2")
    pods = [p["metadata"]["name"] for p in fake.pods_of(NS, name)]
    assert len(pods) == replicas
    return pods


def pod_labels(pod: str, namespace: str = NS) -> dict[str, str]:
    return {"alertname": "KubePodCrashLooping", "namespace": namespace, "pod": pod, "container": APP}


async def test_pod_resolves_to_its_deployment_through_owner_references(
    fake: FakeKubeApiserver, kube: KubeClient
) -> None:
    pod = crashing_pods(fake)[0]
    fake.clear_requests()
    target = await KubeTargetResolver(kube, [NS]).resolve("deployment", pod_labels(pod))
    assert target == Target(kind="deployment", namespace=NS, name=APP, inferred=False)
    # one GET of the ReplicaSet named after the pod; the pod itself is not read
    assert [(r.method, r.path) for r in fake.requests] == [
        ("GET", f"/apis/apps/v1/namespaces/{NS}/replicasets/{pod.rsplit('-', 1)[0]}")
    ]


async def test_api_calls_stay_constant_for_ten_crashing_pods(
    fake: FakeKubeApiserver, kube: KubeClient
) -> None:
    pods = crashing_pods(fake, replicas=10)
    others = crashing_pods(fake, name="worker", replicas=2)
    resolver = KubeTargetResolver(kube, [NS])
    fake.clear_requests()
    for pod in pods:
        assert await resolver.resolve("deployment", pod_labels(pod)) == Target(
            kind="deployment", namespace=NS, name=APP
        )
    assert len(fake.requests) == 1
    for pod in others:
        assert (await resolver.resolve("deployment", pod_labels(pod))) == Target(
            kind="deployment", namespace=NS, name="worker"
        )
    assert len(fake.requests) == 2
    assert kube.total_requests == 2


async def test_the_replicaset_answer_expires_after_the_ttl(fake: FakeKubeApiserver, kube: KubeClient) -> None:
    pod = crashing_pods(fake)[0]
    now = [1000.0]
    resolver = KubeTargetResolver(kube, [NS], ttl=60, clock=lambda: now[0])
    fake.clear_requests()
    await resolver.resolve("deployment", pod_labels(pod))
    now[0] += 59
    await resolver.resolve("deployment", pod_labels(pod))
    assert len(fake.requests) == 1
    now[0] += 2
    assert await resolver.resolve("deployment", pod_labels(pod)) == Target(
        kind="deployment", namespace=NS, name=APP
    )
    assert len(fake.requests) == 2


async def test_falls_back_to_reading_the_pod_when_the_derived_replicaset_is_not_found(
    fake: FakeKubeApiserver, kube: KubeClient
) -> None:
    pod = crashing_pods(fake)[0]
    fake.inject_fault("GET", r"/replicasets/", 404, times=1)
    fake.clear_requests()
    target = await KubeTargetResolver(kube, [NS]).resolve("deployment", pod_labels(pod))
    assert target == Target(kind="deployment", namespace=NS, name=APP, inferred=False)
    assert [(r.method, r.path.rsplit("/", 2)[-2], r.status) for r in fake.requests] == [
        ("GET", "replicasets", 404),
        ("GET", "pods", 200),
        ("GET", "replicasets", 200),
    ]


async def test_statefulset_pod_resolves_through_owner_references(
    fake: FakeKubeApiserver, kube: KubeClient
) -> None:
    fake.add_statefulset(NS, "mongodb", "mongo:7", replicas=3, volume_claims={"data": "10Gi"})
    resolver = KubeTargetResolver(kube, [NS])
    fake.clear_requests()
    mongo = Target(kind="statefulset", namespace=NS, name="mongodb")
    assert await resolver.resolve("statefulset", pod_labels("mongodb-0")) == mongo
    assert [r.path for r in fake.requests] == [f"/api/v1/namespaces/{NS}/pods/mongodb-0"]
    # the other ordinals are known now: no more requests
    assert await resolver.resolve("statefulset", pod_labels("mongodb-1")) == mongo
    assert await resolver.resolve("statefulset", pod_labels("mongodb-2")) == mongo
    assert len(fake.requests) == 1
    # a crashloop playbook (target: deployment) on mongodb-0 gets the StatefulSet: what runs the pod
    assert await KubeTargetResolver(kube, [NS]).resolve("deployment", pod_labels("mongodb-0")) == mongo


async def test_pod_without_a_deployment_or_statefulset_has_no_target(
    fake: FakeKubeApiserver, kube: KubeClient
) -> None:
    fake.add_object(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "debug-shell", "namespace": NS},
            "spec": {"containers": [{"name": "c", "image": "busybox:1"}]},
        }
    )
    assert await KubeTargetResolver(kube, [NS]).resolve("deployment", pod_labels("debug-shell")) is None


async def test_namespace_outside_the_allow_list_is_refused_without_a_request(
    fake: FakeKubeApiserver, kube: KubeClient
) -> None:
    fake.add_deployment("kube-system", "coredns", "coredns:1", replicas=1)
    pod = fake.pods_of("kube-system", "coredns")[0]["metadata"]["name"]
    resolver = KubeTargetResolver(kube, [NS])
    fake.clear_requests()
    assert await resolver.resolve("deployment", pod_labels(pod, namespace="kube-system")) is None
    assert await resolver.resolve("deployment", {"namespace": "kube-system", "deployment": "coredns"}) is None
    assert await resolver.resolve("deployment", {"pod": pod}) is None  # no namespace at all
    assert fake.requests == []


@pytest.mark.parametrize(
    "labels",
    [
        {"namespace": NS, "pod": "../../secrets/x"},
        {"namespace": NS, "pod": "Playcode_App-1"},
        {"namespace": NS, "pod": "a" * 300},
        {"namespace": "play code", "pod": "playcode-app-5d4f7b9c8d-x2x7k"},
        {"namespace": "../playcode", "deployment": "playcode-app"},
    ],
)
async def test_invalid_label_values_are_refused_before_any_request(
    fake: FakeKubeApiserver, kube: KubeClient, labels: dict[str, str]
) -> None:
    crashing_pods(fake)
    fake.clear_requests()
    assert (
        await KubeTargetResolver(kube, [NS, "play code", "../playcode"]).resolve("deployment", labels) is None
    )
    assert fake.requests == []
    assert kube.total_requests == 0


async def test_explicit_labels_need_no_request(fake: FakeKubeApiserver, kube: KubeClient) -> None:
    resolver = KubeTargetResolver(kube, [NS])
    base = {"namespace": NS}
    assert await resolver.resolve("deployment", {**base, "deployment": "redis"}) == Target(
        kind="deployment", namespace=NS, name="redis"
    )
    assert await resolver.resolve("statefulset", {**base, "statefulset": "mongodb"}) == Target(
        kind="statefulset", namespace=NS, name="mongodb"
    )
    assert await resolver.resolve("horizontalpodautoscaler", {**base, "horizontalpodautoscaler": "app"}) == (
        Target(kind="horizontalpodautoscaler", namespace=NS, name="app")
    )
    assert await resolver.resolve(
        "persistentvolumeclaim", {**base, "persistentvolumeclaim": "data-mongodb-0"}
    ) == (Target(kind="persistentvolumeclaim", namespace=NS, name="data-mongodb-0"))
    assert await resolver.resolve("pod", {**base, "pod": "mongodb-0"}) == Target(
        kind="pod", namespace=NS, name="mongodb-0"
    )
    assert await resolver.resolve("namespace", base) == Target(kind="namespace", name=NS)
    assert await resolver.resolve("none", base) is None
    assert fake.requests == []


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


async def test_api_unreachable_falls_back_to_the_pod_name_marked_inferred() -> None:
    kube = await KubeClient.from_configuration(
        Configuration(host=f"http://127.0.0.1:{_closed_port()}"), retry=FAST
    )
    try:
        target = await KubeTargetResolver(kube, [NS]).resolve(
            "deployment", pod_labels("playcode-app-5d4f7b9c8d-x2x7k")
        )
        assert target == Target(kind="deployment", namespace=NS, name=APP, inferred=True)
        assert kube.total_requests == FAST.attempts  # retried, boundedly
    finally:
        await kube.close()


async def test_api_failing_falls_back_with_bounded_retries(fake: FakeKubeApiserver, kube: KubeClient) -> None:
    pod = crashing_pods(fake)[0]
    fake.inject_fault(None, r"^/api", 500, times=None)
    fake.clear_requests()
    target = await KubeTargetResolver(kube, [NS]).resolve("deployment", pod_labels(pod))
    assert target == Target(kind="deployment", namespace=NS, name=APP, inferred=True)
    assert len(fake.requests) == FAST.attempts


async def test_backends_from_a_kubeconfig_give_a_client_and_the_app_resolves_with_it(
    fake: FakeKubeApiserver, tmp_path: Path
) -> None:
    pod = crashing_pods(fake)[0]
    path = fake.write_kubeconfig(tmp_path / "kubeconfig")
    backends = await Backends.from_settings(Settings(kube_mode="kubeconfig", kubeconfig=str(path)).diagnosed)
    try:
        assert backends.kube is not None
        resolver = KubeTargetResolver(backends.kube, [NS])
        assert await resolver.resolve("deployment", pod_labels(pod)) == Target(
            kind="deployment", namespace=NS, name=APP
        )
    finally:
        await backends.close()
    assert (await Backends.from_settings(Settings(kube_mode="off").diagnosed)).kube is None


async def test_the_app_uses_the_kube_resolver_when_kubernetes_is_configured(
    fake: FakeKubeApiserver, tmp_path: Path
) -> None:
    path = fake.write_kubeconfig(tmp_path / "kubeconfig")
    runtime = await Runtime.open(medic_settings(tmp_path, kube_mode="kubeconfig", kubeconfig=str(path)))
    try:
        assert isinstance(runtime.pipeline.resolver, KubeTargetResolver)
        assert runtime.backends.kube is not None
    finally:
        await runtime.close()
    runtime = await Runtime.open(medic_settings(tmp_path / "off"))
    try:
        assert isinstance(runtime.pipeline.resolver, LabelTargetResolver)
    finally:
        await runtime.close()


# ------------------------------------------------------------ alerts without a workload label (12.9)

KSM_POD = "kube-prometheus-stack-kube-state-metrics-6d4f8b7c9-x2x4p"


def service_and_ingress(fake: FakeKubeApiserver, *services: str) -> None:
    for name in services:
        fake.add_object({
            "apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": NS},
            "spec": {"selector": {"app": name}, "ports": [{"port": 80, "targetPort": 3000}]},
        })  # fmt: skip
    paths = [
        {"path": f"/{s}", "pathType": "Prefix", "backend": {"service": {"name": s, "port": {"number": 80}}}}
        for s in services
    ]
    fake.add_object({
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "web", "namespace": NS},
        "spec": {"rules": [{"host": "play.example", "http": {"paths": paths}}]},
    })  # fmt: skip


async def test_an_aggregated_alert_resolves_through_the_namespaces_ingress(
    fake: FakeKubeApiserver, kube: KubeClient
) -> None:
    """``sum by (namespace)``: only the namespace is known; its Ingress routes to one Service, whose
    pods belong to playcode-app (inferred: a guess from the only route)."""
    fake.add_deployment(NS, APP, f"{APP}:v1", replicas=2)
    service_and_ingress(fake, APP)
    labels = {"alertname": "PlayCodeHighLatency", "namespace": NS, "severity": "warning"}
    target = await KubeTargetResolver(kube, [NS]).resolve("deployment", labels)
    assert target == Target(kind="deployment", namespace=NS, name=APP, inferred=True)


async def test_a_service_or_ingress_label_resolves_to_the_workload_behind_it(
    fake: FakeKubeApiserver, kube: KubeClient
) -> None:
    fake.add_deployment(NS, APP, f"{APP}:v1", replicas=1)
    fake.add_deployment(NS, "admin", "admin:v1", replicas=1)
    service_and_ingress(fake, APP, "admin")
    resolver = KubeTargetResolver(kube, [NS])
    by_service = await resolver.resolve("deployment", {"namespace": NS, "service": "admin"})
    assert by_service == Target(kind="deployment", namespace=NS, name="admin")
    # two routes and nothing else: ambiguous, no guess
    assert await resolver.resolve("deployment", {"namespace": NS, "alertname": "X"}) is None


async def test_kube_state_metrics_own_pod_is_never_the_apps(
    fake: FakeKubeApiserver, kube: KubeClient
) -> None:
    """KubeDeploymentReplicasMismatch carries the exporter's pod/container/service; the subject is
    the deployment label, or, without it, what the cluster says, never kube-state-metrics."""
    fake.add_deployment(NS, APP, f"{APP}:v1", replicas=1)
    service_and_ingress(fake, APP)
    ksm = {
        "alertname": "KubeDeploymentReplicasMismatch", "namespace": NS, "pod": KSM_POD,
        "container": "kube-state-metrics", "job": "kube-state-metrics",
        "service": "kube-prometheus-stack-kube-state-metrics",
    }  # fmt: skip
    resolver = KubeTargetResolver(kube, [NS])
    fake.clear_requests()
    assert await resolver.resolve("deployment", {**ksm, "deployment": APP}) == Target(
        kind="deployment", namespace=NS, name=APP
    )
    assert fake.requests == []
    target = await resolver.resolve("deployment", ksm)
    assert target is not None and target.name == APP
    assert not any(KSM_POD in r.path for r in fake.requests)
    assert await LabelTargetResolver().resolve("deployment", ksm) is None  # no guess from its name
