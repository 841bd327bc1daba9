"""The shipped high-latency, websocket and mongodb-down playbooks against a real Prometheus with
backfilled PlayCode series: a latency spike, a 5xx burst, a WebSocket drop, a CPU-bound pod, an
HPA at its maximum and a full MongoDB volume. Asserts the numbers collected and the findings."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from medic.app.backends import Backends
from medic.app.catalogue import default_registry
from medic.app.config import load_config
from medic.app.settings import Settings
from medic.domain.evidence import Evidence, StepStatus
from medic.domain.incident import Finding, Target
from medic.playbooks.compiled import CompiledPlaybook
from medic.playbooks.contract import AnalysisInput, StepContext
from medic.playbooks.runner import PlannedStep, run_steps
from tests.servers.fixtures import PrometheusFactory
from tests.servers.openmetrics import Series
from tests.servers.playcode_series import (
    Timeline,
    counter_series,
    gauge_series,
    http_requests,
    latency_histogram,
    websocket_connections,
)

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
APP = Target(kind="deployment", namespace="playcode", name="playcode-app")
MIB = 1024 * 1024


def playbook(name: str) -> CompiledPlaybook:
    return load_config([ROOT / "rules"], [ROOT / "playbooks"], default_registry()).playbooks[name]


async def run(pb: CompiledPlaybook, url: str, target: Target) -> tuple[dict[str, Evidence], list[Finding]]:
    """The playbook's steps, concurrently, with only Prometheus configured; then its analyzers."""
    backends = await Backends.from_settings(Settings(prometheus_url=url).diagnosed)
    try:
        ctx = StepContext(target, {"namespace": target.namespace}, [], backends, datetime.now(UTC), 10)
        steps = [PlannedStep(s.step_id, s.collector, s.params, 10) for s in pb.steps]
        evidence = await run_steps(steps, ctx, deadline=20, max_bytes=256 * 1024)
    finally:
        await backends.close()
    by_step = {e.step: e for e in evidence}
    inp = AnalysisInput(target, {"namespace": target.namespace}, [], by_step, datetime.now(UTC))
    return by_step, [f for a in pb.analyzers for f in a.fn(inp)]


def values(ev: Evidence) -> dict[str, Any]:
    assert ev.ok, ev.error
    return {q["name"]: q for q in ev.data["queries"]}


def pod_series(timeline: Timeline) -> list[Series]:
    out: list[Series] = []
    for pod, cores in (("playcode-app-7d9f8b6c5d-x2k9p", 0.95), ("playcode-app-7d9f8b6c5d-q8m4z", 0.30)):
        labels = {"namespace": "playcode", "pod": pod, "container": "playcode-app"}
        out.append(
            counter_series("container_cpu_usage_seconds_total", labels, timeline, lambda _, c=cores: c)
        )
        out.append(gauge_series("container_memory_working_set_bytes", labels, timeline, lambda _: 300 * MIB))
        for resource, limit in (("cpu", 1.0), ("memory", 512 * MIB)):
            out.append(
                gauge_series(
                    "kube_pod_container_resource_limits",
                    {**labels, "resource": resource},
                    timeline,
                    lambda _, v=limit: v,
                )
            )
    hpa = {"namespace": "playcode", "horizontalpodautoscaler": "playcode-app"}
    out.append(
        gauge_series(
            "kube_horizontalpodautoscaler_status_current_replicas",
            hpa,
            timeline,
            lambda ts: 10 if timeline.in_last(ts, 15) else 4,
        )
    )
    out.append(gauge_series("kube_horizontalpodautoscaler_spec_max_replicas", hpa, timeline, lambda _: 10))
    return out


async def test_high_latency_playbook(prometheus_factory: PrometheusFactory) -> None:
    timeline = Timeline.recent(minutes=60)
    prom = await prometheus_factory(
        [
            *latency_histogram(timeline, p99=0.08, spike_p99=2.2, spike_minutes=10),
            *http_requests(timeline, rps=20, error_ratio=0.001, spike_error_ratio=0.08),
            *pod_series(timeline),
        ]
    )
    evidence, findings = await run(playbook("high-latency"), prom.url, APP)

    q = values(evidence["prometheus.query"])
    assert math.isclose(q["latency_p99"]["value"], 2.2, rel_tol=0.01)
    assert q["latency_p99"]["expr"] == (
        "histogram_quantile(0.99, sum by (le) "
        '(rate(http_request_duration_seconds_bucket{namespace="playcode"}[5m])))'
    )
    assert math.isclose(q["error_ratio_5xx"]["value"], 0.08, rel_tol=0.01)
    assert math.isclose(q["request_rate"]["value"], 20, rel_tol=0.05)
    cpu = {s["labels"]["pod"]: s["value"] for s in q["pod_cpu_limit_ratio"]["series"]}
    assert cpu == pytest.approx(
        {"playcode-app-7d9f8b6c5d-x2k9p": 0.95, "playcode-app-7d9f8b6c5d-q8m4z": 0.30}, rel=0.01
    )
    assert q["pod_memory_limit_ratio"]["value"] == pytest.approx(300 / 512, rel=1e-6)
    assert q["hpa_replicas_ratio"]["value"] == 1.0 and q["hpa_max_replicas"]["value"] == 10
    before = [p for p in q["latency_p99"]["range"][0]["points"] if p[1] is not None]
    assert len(before) >= 25 and before[0][1] < 0.1 < 2 < before[-1][1]  # the spike shows in the trend

    others = ("k8s.top_pods", "k8s.hpa_status", "mongo.current_op", "mongo.profiler", "redis.info",
              "redis.slowlog", "loki.errors")  # fmt: skip
    assert {e.step: e.status for e in evidence.values() if e.step != "prometheus.query"} == {
        s: StepStatus.NOT_CONFIGURED for s in others
    }
    assert [(f.code, f.severity) for f in findings] == [
        ("metric.latency_p99", "warning"),
        ("metric.error_ratio_5xx", "critical"),
        ("latency.cpu_saturation", "warning"),
        ("latency.hpa_maxed", "warning"),
        ("latency.error_spike", "critical"),
    ]
    by = {f.code: f for f in findings}
    assert "playcode-app-7d9f8b6c5d-x2k9p 95%" in by["latency.cpu_saturation"].summary
    assert "q8m4z" not in by["latency.cpu_saturation"].summary
    assert "playcode-app (10/10 replicas)" in by["latency.hpa_maxed"].summary
    assert "8% of responses are 5xx" in by["latency.error_spike"].summary


async def test_websocket_drop_and_full_mongo_volume(prometheus_factory: PrometheusFactory) -> None:
    timeline = Timeline.recent(minutes=60)
    pvc = {"namespace": "playcode", "persistentvolumeclaim": "datadir-mongodb-0"}
    prom = await prometheus_factory(
        [
            websocket_connections(timeline, level=1200, anomaly_level=300, anomaly_minutes=10),
            *http_requests(timeline, rps=20, error_ratio=0.001),
            gauge_series("kubelet_volume_stats_used_bytes", pvc, timeline, lambda _: 97 * MIB),
            gauge_series("kubelet_volume_stats_capacity_bytes", pvc, timeline, lambda _: 100 * MIB),
        ]
    )

    evidence, findings = await run(playbook("websocket"), prom.url, APP)
    q = values(evidence["prometheus.query"])
    assert q["websocket_connections"]["value"] == 300
    assert q["websocket_connections_30m_ago"]["value"] == 1200
    assert q["websocket_connections_change_30m"]["value"] == pytest.approx(-0.75)
    assert [(f.code, f.severity) for f in findings] == [("websocket.connection_drop", "critical")]
    assert "fell 75% in 30 minutes (1200 → 300)" in findings[0].summary

    mongo = Target(kind="statefulset", namespace="playcode", name="mongodb")
    evidence, findings = await run(playbook("mongodb-down"), prom.url, mongo)
    assert values(evidence["prometheus.query"])["volume_usage_ratio"]["value"] == pytest.approx(0.97)
    (f,) = findings
    assert f.code == "mongodb.disk_nearly_full" and f.severity == "critical"
    assert "PVC datadir-mongodb-0 97%" in f.summary
    assert f.evidence == ["prometheus.query"]


async def test_pvc_filling_up_with_growth_and_time_to_full(prometheus_factory: PrometheusFactory) -> None:
    """issue 12.5: the pvc-filling-up playbook against a real Prometheus with 6 h of kubelet volume
    stats growing 1 MiB a minute on a 1 GiB volume; the finding states used, capacity, growth and
    the projected time to full (no Kubernetes here: storage class and state are not claimed)."""
    timeline = Timeline.recent(minutes=7 * 60, step=60)
    pvc = {"namespace": "playcode", "persistentvolumeclaim": "datadir-mongodb-0"}
    prom = await prometheus_factory(
        [
            gauge_series(
                "kubelet_volume_stats_used_bytes",
                pvc,
                timeline,
                lambda ts: 1024 * MIB - 60 * MIB - (timeline.end - ts) / 60 * MIB,
            ),
            gauge_series("kubelet_volume_stats_capacity_bytes", pvc, timeline, lambda _: 1024 * MIB),
        ]
    )
    claim = Target(kind="persistentvolumeclaim", namespace="playcode", name="datadir-mongodb-0")
    evidence, findings = await run(playbook("pvc-filling-up"), prom.url, claim)
    q = values(evidence["prometheus.query"])
    assert q["volume_capacity_bytes"]["value"] == 1024 * MIB
    (f,) = [f for f in findings if f.code == "pvc.filling_up"]
    assert f.severity == "critical"
    assert f.summary.startswith("volume datadir-mongodb-0 is 94% full (964.0 MiB used of 1.0 GiB)")
    assert "it grew 360.0 MiB in the last 6.0 h" in f.summary
    assert re.search(r"is full in about (60 min|1\.0 h) at that rate$", f.summary), f.summary
    assert f.details["seconds_to_full"] == pytest.approx(3600, rel=0.05)
