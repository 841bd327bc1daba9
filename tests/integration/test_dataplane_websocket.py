"""The shipped websocket playbook end to end, every collector real: a backfilled Prometheus with a
WebSocket drop, the fake kube-apiserver with the app's ingress (default nginx proxy timeouts), the
fake Loki with socket.io Redis adapter errors, and a real Redis that has just been stopped."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from medic.app.backends import Backends
from medic.app.settings import Settings
from medic.clients.kube.client import KubeClient, RetryPolicy
from medic.domain.evidence import StepStatus
from medic.domain.incident import Target
from medic.playbooks.contract import AnalysisInput
from tests.fakes.kube_apiserver import FakeKubeApiserver
from tests.fakes.loki import FakeLoki, now_ns
from tests.integration.kube_support import run_shipped_playbook
from tests.servers.fixtures import PrometheusFactory
from tests.servers.playcode_series import Timeline, websocket_connections
from tests.servers.redis_server import RedisServer

pytestmark = pytest.mark.integration

NS, APP = "playcode", "playcode-app"
TARGET = Target(kind="deployment", namespace=NS, name=APP)
NGINX = "nginx.ingress.kubernetes.io/"


def kube_objects(fake: FakeKubeApiserver) -> None:
    fake.add_node("node-a")
    fake.add_deployment(NS, APP, image="app:v1", replicas=2)
    fake.add_object({
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": APP, "namespace": NS},
        "spec": {"selector": {"app": APP}, "ports": [{"port": 80, "targetPort": 3000}]},
    })  # fmt: skip
    backend = {"service": {"name": APP, "port": {"number": 80}}}
    fake.add_object({
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": "playcode", "namespace": NS, "annotations": {NGINX + "proxy-body-size": "8m"}},
        "spec": {"ingressClassName": "nginx", "rules": [{"host": "play.playcode.gg", "http": {"paths": [
            {"path": "/", "pathType": "Prefix", "backend": backend}]}}]},
    })  # fmt: skip


async def test_websocket_playbook_end_to_end(
    prometheus_factory: PrometheusFactory, redis_server: RedisServer
) -> None:
    timeline = Timeline.recent(minutes=60)
    prom = await prometheus_factory([websocket_connections(timeline, level=1500, anomaly_level=600)])
    await redis_server.stop()  # the socket.io adapter's Redis is gone
    async with FakeKubeApiserver(token="t0k3n") as fake_kube, FakeLoki() as loki:
        kube_objects(fake_kube)
        ts = now_ns() - 300 * 1_000_000_000
        labels = {"namespace": NS, "container": APP, "pod": f"{APP}-7d9f8b6c5d-x2k9p"}
        loki.push(labels, [
            (ts + i * 1_000_000_000, json.dumps({"level": "error", "msg": "Redis adapter error",
                                                  "err": "connect ECONNREFUSED 10.0.3.7:6379"}))
            for i in range(25)
        ])  # fmt: skip
        loki.push(
            labels, [(ts, json.dumps({"level": "warn", "msg": f"socket {i} disconnected"})) for i in range(4)]
        )
        settings = Settings(
            kube_mode="off", prometheus_url=prom.url, loki_url=loki.url, target_redis_url=redis_server.url
        )
        backends = await Backends.from_settings(settings)
        backends.kube = await KubeClient.from_configuration(
            fake_kube.client_configuration(),
            retry=RetryPolicy(attempts=2, base_delay=0.01, request_timeout=2),
        )
        try:
            pb, evidence = await run_shipped_playbook("websocket", backends, TARGET, {"namespace": NS})
        finally:
            await backends.close()

    statuses = {step: e.status for step, e in evidence.items()}
    assert statuses == {
        "prometheus.query": StepStatus.OK,
        "k8s.ingress": StepStatus.OK,
        "loki.socket": StepStatus.OK,
        "loki.redis_adapter": StepStatus.OK,
        "redis.ping": StepStatus.ERROR,
        "redis.info": StepStatus.ERROR,
    }, {s: e.error for s, e in evidence.items()}
    ingress: dict[str, Any] = evidence["k8s.ingress"].data
    assert [i["name"] for i in ingress["ingresses"]] == ["playcode"]

    inp = AnalysisInput(TARGET, {"namespace": NS}, [], evidence, datetime.now(UTC))
    findings = [f for a in pb.analyzers for f in a.fn(inp)]
    assert [(f.code, f.severity) for f in findings] == [
        ("websocket.connection_drop", "critical"),
        ("websocket.ingress_timeout_short", "warning"),
        ("websocket.socket_errors", "warning"),
        ("websocket.redis_adapter_errors", "warning"),
        ("websocket.redis_unreachable", "critical"),
    ]
    by = {f.code: f for f in findings}
    assert "fell 60% in 30 minutes (1500 → 600)" in by["websocket.connection_drop"].summary
    assert (
        "playcode: proxy-read-timeout not set (default 60s), proxy-send-timeout not set (default 60s)"
        in by["websocket.ingress_timeout_short"].summary
    )
    assert "25 socket.io Redis adapter error lines" in by["websocket.redis_adapter_errors"].summary
    assert "socket <n> disconnected (x4)" in by["websocket.socket_errors"].summary
    assert by["websocket.redis_unreachable"].next_steps[0] == (
        "kubectl exec -it deployment/redis -n playcode -- redis-cli ping"
    )
