"""The high-latency playbook with only Kubernetes to ask (no Prometheus): the latency analyzer
reads ``kubectl top pods`` and ``kubectl get hpa`` from the real k8s collectors, served by the
fake kube-apiserver, and names CPU saturation and the HPA at its maximum."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from medic.app.backends import Backends
from medic.app.settings import Settings
from medic.clients.kube.client import KubeClient, RetryPolicy
from medic.domain.evidence import StepStatus
from medic.domain.incident import Target
from medic.playbooks.contract import AnalysisInput
from tests.fakes.kube_apiserver import FakeKubeApiserver
from tests.integration.kube_support import run_shipped_playbook
from tests.servers.fixtures import PrometheusFactory

pytestmark = pytest.mark.integration

NS, APP = "playcode", "playcode-app"
TARGET = Target(kind="deployment", namespace=NS, name=APP)


async def test_latency_causes_from_kubernetes_alone() -> None:
    async with FakeKubeApiserver(token="t0k3n") as fake:
        fake.add_node("node-a")
        resources = {
            "requests": {"cpu": "500m", "memory": "256Mi"},
            "limits": {"cpu": "1", "memory": "512Mi"},
        }
        fake.add_deployment(NS, APP, image="app:v1", replicas=3, resources=resources)
        hot, *cool = sorted(p["metadata"]["name"] for p in fake.pods_of(NS, APP))
        fake.set_pod_metrics(NS, hot, ("970m", "300Mi"))
        for pod in cool:
            fake.set_pod_metrics(NS, pod, ("200m", "480Mi"))
        fake.add_hpa(NS, APP, APP, min_replicas=2, max_replicas=3, current_replicas=3, desired_replicas=3)
        backends = await Backends.from_settings(Settings(kube_mode="off").diagnosed)
        backends.kube = await KubeClient.from_configuration(
            fake.client_configuration(), retry=RetryPolicy(attempts=2, base_delay=0.01, request_timeout=2)
        )
        try:
            pb, evidence = await run_shipped_playbook("high-latency", backends, TARGET, {"namespace": NS})
        finally:
            await backends.close()

    assert evidence["k8s.top_pods"].status is StepStatus.OK, evidence["k8s.top_pods"].error
    assert evidence["k8s.hpa_status"].status is StepStatus.OK, evidence["k8s.hpa_status"].error
    assert evidence["prometheus.query"].status is StepStatus.NOT_CONFIGURED
    inp = AnalysisInput(TARGET, {"namespace": NS}, [], evidence, datetime.now(UTC))
    findings = [f for a in pb.analyzers for f in a.fn(inp)]
    assert [(f.code, f.severity) for f in findings] == [
        ("latency.cpu_saturation", "warning"),
        ("latency.memory_pressure", "warning"),
        ("latency.hpa_maxed", "warning"),
    ]
    by = {f.code: f for f in findings}
    assert by["latency.cpu_saturation"].summary.startswith(
        f"1 pod of playcode-app at 90%+ of the CPU limit: {hot} 97%"
    )
    assert by["latency.cpu_saturation"].evidence == ["k8s.top_pods"]
    assert all(pod in by["latency.memory_pressure"].summary for pod in cool)
    assert by["latency.hpa_maxed"].summary.endswith("playcode-app (3/3 replicas)")
    assert by["latency.hpa_maxed"].evidence == ["k8s.hpa_status"]


async def test_an_aggregated_alert_gets_a_target_and_its_kubernetes_steps_run() -> None:
    """issue 12.9: ``sum by (namespace)`` leaves only the namespace; the resolver finds the workload
    behind the namespace's Ingress, and the playbook's k8s steps run against it instead of failing
    for want of a target."""
    from medic.collectors.k8s.resolver import KubeTargetResolver

    labels = {"alertname": "PlayCodeHighLatency", "namespace": NS, "severity": "warning"}
    async with FakeKubeApiserver(token="t0k3n") as fake:
        fake.add_node("node-a")
        fake.add_deployment(NS, APP, image="app:v1", replicas=2)
        fake.add_deployment(NS, "redis", image="redis:7", replicas=1)  # not routed: not a candidate
        fake.add_object({
            "apiVersion": "v1", "kind": "Service", "metadata": {"name": APP, "namespace": NS},
            "spec": {"selector": {"app": APP}, "ports": [{"port": 80, "targetPort": 3000}]},
        })  # fmt: skip
        fake.add_object({
            "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": {"name": "web", "namespace": NS},
            "spec": {"rules": [{"host": "play.example", "http": {"paths": [{"path": "/", "pathType": "Prefix",
                     "backend": {"service": {"name": APP, "port": {"number": 80}}}}]}}]},
        })  # fmt: skip
        backends = await Backends.from_settings(Settings(kube_mode="off").diagnosed)
        backends.kube = await KubeClient.from_configuration(
            fake.client_configuration(), retry=RetryPolicy(attempts=2, base_delay=0.01, request_timeout=2)
        )
        try:
            target = await KubeTargetResolver(backends.kube, [NS]).resolve("deployment", labels)
            assert target == Target(kind="deployment", namespace=NS, name=APP, inferred=True)
            _, evidence = await run_shipped_playbook("high-latency", backends, target, labels)
        finally:
            await backends.close()
    assert evidence["k8s.top_pods"].status is StepStatus.OK, evidence["k8s.top_pods"].error
    assert evidence["k8s.hpa_status"].status is StepStatus.OK, evidence["k8s.hpa_status"].error


async def test_pvc_filling_up_states_class_state_growth_and_time_to_full(
    prometheus_factory: PrometheusFactory,
) -> None:
    """issue 12.5 end to end: the PVC from the fake kube-apiserver (gp3, Bound, 1Gi) and 6 h of
    kubelet volume stats from a real Prometheus growing 1 MiB a minute."""
    from tests.servers.playcode_series import Timeline, gauge_series

    mib = 1024 * 1024
    timeline = Timeline.recent(minutes=7 * 60, step=60)
    claim = {"namespace": NS, "persistentvolumeclaim": "datadir-mongodb-1"}
    prom = await prometheus_factory([
        gauge_series("kubelet_volume_stats_used_bytes", claim, timeline,
                     lambda ts: 964 * mib - (timeline.end - ts) / 60 * mib),
        gauge_series("kubelet_volume_stats_capacity_bytes", claim, timeline, lambda _: 1024 * mib),
    ])  # fmt: skip
    target = Target(kind="persistentvolumeclaim", namespace=NS, name="datadir-mongodb-1")
    async with FakeKubeApiserver(token="t0k3n") as fake:
        fake.add_pvc(NS, "datadir-mongodb-1", storage="1Gi", storage_class="gp3")
        backends = await Backends.from_settings(Settings(kube_mode="off", prometheus_url=prom.url).diagnosed)
        backends.kube = await KubeClient.from_configuration(
            fake.client_configuration(), retry=RetryPolicy(attempts=2, base_delay=0.01, request_timeout=2)
        )
        try:
            pb, evidence = await run_shipped_playbook("pvc-filling-up", backends, target, {"namespace": NS})
        finally:
            await backends.close()
    assert evidence["k8s.pvc_status"].status is StepStatus.OK, evidence["k8s.pvc_status"].error
    inp = AnalysisInput(target, {"namespace": NS}, [], evidence, datetime.now(UTC))
    (f,) = [f for a in pb.analyzers for f in a.fn(inp)]
    assert f.code == "pvc.filling_up" and f.severity == "critical"
    assert f.summary.startswith(
        "volume datadir-mongodb-1 is 94% full (964.0 MiB used of 1.0 GiB, storage class gp3, Bound); "
        "it grew 360.0 MiB in the last 6.0 h and is full in about"
    )
    assert f.details["capacity"] == "1Gi" and f.details["storage_class"] == "gp3"
    assert f.next_steps[-1] == "kubectl exec -it mongodb-1 -n playcode -- df -h /data/db"
    assert f.evidence == ["prometheus.query", "k8s.pvc_status"]
