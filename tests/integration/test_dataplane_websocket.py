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
        backends = await Backends.from_settings(settings.diagnosed)
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
        "loki.ingress": StepStatus.OK,
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


NGINX_TIMEOUT = (
    '2026/12/01 21:{m:02d}:{s:02d} [error] 31#31: *{n} upstream timed out (110: Connection timed out) while '
    'proxying upgraded connection, client: 10.0.{m}.{s}, server: play.playcode.gg, request: "GET '
    '/socket.io/?EIO=4&transport=websocket&sid=Ab{n}Cd HTTP/1.1", upstream: '
    '"http://10.1.2.{s}:3000/socket.io/?EIO=4&transport=websocket&sid=Ab{n}Cd", host: "play.playcode.gg"'
)
ACCESS_101 = (
    '10.0.0.{i} - - [01/Dec/2026:21:00:00 +0000] "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1" 101 '
    '0 "-" "Mozilla/5.0" 512 1800.002 [playcode-playcode-app-80] [] 10.1.2.3:3000 0 1800.001 101 abc{i}'
)


async def ingress_world(loki: FakeLoki, controller: dict[str, str]) -> None:
    ts = now_ns() - 600 * 1_000_000_000
    loki.push(controller, [
        (ts + n * 1_000_000_000, NGINX_TIMEOUT.format(m=n % 60, s=(n * 7) % 60, n=n)) for n in range(130)
    ])  # fmt: skip
    loki.push(controller, [(ts + i * 1_000_000, ACCESS_101.format(i=i)) for i in range(50)])
    app = {"namespace": NS, "container": APP, "pod": f"{APP}-7d9f8b6c5d-x2k9p"}
    loki.push(app, [
        (ts + i * 1_000_000_000, json.dumps({"level": "info", "msg": "socket disconnected",
                                             "reason": "x", "err": "transport close"}))
        for i in range(40)
    ] + [
        (ts + i * 1_000_000_000 + 1, json.dumps({"level": "info", "msg": "socket gone: ping timeout"}))
        for i in range(15)
    ])  # fmt: skip


async def run_websocket(
    loki: FakeLoki, fake_kube: FakeKubeApiserver, **settings: Any
) -> tuple[dict[str, Any], list[Any]]:
    diagnosed = Settings(kube_mode="off", loki_url=loki.url, **settings).diagnosed
    backends = await Backends.from_settings(diagnosed)
    backends.kube = await KubeClient.from_configuration(
        fake_kube.client_configuration(), retry=RetryPolicy(attempts=2, base_delay=0.01, request_timeout=2)
    )
    try:
        pb, evidence = await run_shipped_playbook("websocket", backends, TARGET, {"namespace": NS})
    finally:
        await backends.close()
    inp = AnalysisInput(TARGET, {"namespace": NS}, [], evidence, datetime.now(UTC))
    return evidence, [f for a in pb.analyzers for f in a.fn(inp)]


async def test_ingress_controller_logs_confirm_the_proxy_timeout() -> None:
    """issue 12.6: the ingress-nginx controller's 130 "upstream timed out … while proxying upgraded
    connection" lines are read (not only the app's container) and back the timeout finding; the
    app's socket.io disconnect reasons stay in the findings."""
    controller = {"namespace": "ingress-nginx", "container": "controller", "pod": "ingress-nginx-ctl-abc"}
    async with FakeKubeApiserver(token="t0k3n") as fake_kube, FakeLoki() as loki:
        kube_objects(fake_kube)
        await ingress_world(loki, controller)
        evidence, findings = await run_websocket(loki, fake_kube)
        logql = [q.query for q in loki.queries]
    assert evidence["loki.ingress"].status == StepStatus.OK
    assert evidence["loki.ingress"].data["lines"] == 130  # the 101 access lines are not asked for
    assert any(q and q.startswith('{namespace="ingress-nginx"} |~') for q in logql)
    by = {f.code: f for f in findings}
    timeout = by["websocket.ingress_timeout_short"]
    assert timeout.severity == "critical"
    assert '130 "upstream timed out … while proxying upgraded connection"' in timeout.summary
    assert "proxy-read-timeout not set (default 60s)" in timeout.summary
    assert timeout.evidence == ["k8s.ingress", "loki.ingress"]
    assert "websocket.ingress_upstream_timeouts" not in by  # told once, in the timeout finding
    socket = by["websocket.socket_errors"]
    assert socket.details["disconnect_reasons"] == {"transport close": 40, "ping timeout": 15}
    assert "transport close x40" in socket.summary and "ping timeout x15" in socket.summary


async def test_the_ingress_log_selector_is_a_setting() -> None:
    """Another controller's namespace and labels (MEDIC_INGRESS_LOG_SELECTOR); with long proxy
    timeouts set on the Ingress, the logged timeouts are their own finding."""
    controller = {"namespace": "kube-system", "app": "rke2-ingress-nginx", "pod": "rke2-ingress-nginx-x"}
    async with FakeKubeApiserver(token="t0k3n") as fake_kube, FakeLoki() as loki:
        kube_objects(fake_kube)
        fake_kube.patch_object(
            "Ingress", NS, "playcode",
            {"metadata": {"annotations": {NGINX + "proxy-read-timeout": "3600",
                                          NGINX + "proxy-send-timeout": "3600"}}},
        )  # fmt: skip
        await ingress_world(loki, controller)
        _, default = await run_websocket(loki, fake_kube)
        evidence, findings = await run_websocket(
            loki, fake_kube, ingress_log_selector='{namespace="kube-system", app=~"rke2-ingress-nginx|nginx"}'
        )
    assert "websocket.ingress_upstream_timeouts" not in {f.code for f in default}  # wrong place: nothing
    assert evidence["loki.ingress"].data["lines"] == 130
    (f,) = [f for f in findings if f.code == "websocket.ingress_upstream_timeouts"]
    assert f.severity == "warning"
    assert f.summary.startswith("the ingress controller logged, in the last 30m: 130")
