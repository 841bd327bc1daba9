"""Pods not ready, HPA at max, PVCs."""

from datetime import UTC, datetime
from typing import Any

from medic.analysis.workload import analyze_hpa, analyze_not_ready, analyze_pvc
from medic.domain.evidence import Evidence, StepStatus
from medic.domain.incident import Target
from medic.playbooks.contract import AnalysisInput


def inp(**data: Any) -> AnalysisInput:
    ev = {
        k.replace("_", ".", 1): Evidence(
            step=k.replace("_", ".", 1), collector=k.replace("_", ".", 1), status=StepStatus.OK, data=v
        )
        for k, v in data.items()
    }
    return AnalysisInput(
        target=Target(kind="deployment", namespace="playcode", name="playcode-app"),
        labels={},
        alerts=[],
        evidence=ev,
        now=datetime(2026, 11, 26, tzinfo=UTC),
    )


def test_not_ready_reasons() -> None:
    pods = {
        "pods": [
            {
                "name": "a",
                "phase": "Running",
                "node": "n1",
                "conditions": {"Ready": "False"},
                "containers": [],
            },
            {"name": "b", "phase": "Pending", "node": None, "conditions": {}, "containers": []},
            {
                "name": "c",
                "phase": "Running",
                "node": "n1",
                "conditions": {"Ready": "True"},
                "containers": [],
            },
        ]
    }
    events = {
        "events": [
            {
                "reason": "Unhealthy",
                "message": "Readiness probe failed: 503",
                "object": {"kind": "Pod", "name": "a"},
            },
            {
                "reason": "FailedScheduling",
                "message": "0/3 nodes are available: 3 Insufficient memory",
                "object": {"kind": "Pod", "name": "b"},
            },
        ]
    }
    found = analyze_not_ready(inp(k8s_pod_describe=pods, k8s_events=events))
    assert [f.details["pod"] for f in found] == ["a", "b"]
    assert "Readiness probe failed: 503" in found[0].summary
    assert "Insufficient memory" in found[1].summary


def test_hpa_maxed_out() -> None:
    hpas = {
        "hpas": [
            {"name": "playcode-app", "min": 2, "max": 10, "current": 10, "desired": 14, "at_max": True},
            {"name": "other", "min": 1, "max": 5, "current": 2, "desired": 2, "at_max": False},
        ]
    }
    (f,) = analyze_hpa(inp(k8s_hpa_status=hpas))
    assert f.code == "hpa.maxed_out" and "maximum of 10" in f.summary and "wants 14" in f.summary


def test_pvc_filling_and_unbound() -> None:
    prom = {
        "queries": [
            {
                "name": "volume_usage_ratio",
                "series": [
                    {"labels": {"persistentvolumeclaim": "data-mongodb-0"}, "value": 0.93},
                    {"labels": {"persistentvolumeclaim": "cache"}, "value": 0.85},
                    {"labels": {"persistentvolumeclaim": "logs"}, "value": 0.2},
                ],
            }
        ]
    }
    pvcs = {"pvcs": [{"name": "data-mongodb-0", "phase": "Bound"}, {"name": "new", "phase": "Pending"}]}
    found = {f.summary: f for f in analyze_pvc(inp(prometheus_query=prom, k8s_pvc_status=pvcs))}
    assert found["volume data-mongodb-0 is 93% full"].severity == "critical"
    assert "df -h /data/db" in found["volume data-mongodb-0 is 93% full"].next_steps[1]
    assert found["volume cache is 85% full"].severity == "warning"
    assert found["PVC new is Pending, not Bound"].severity == "critical"
    assert not any("logs" in s for s in found)
