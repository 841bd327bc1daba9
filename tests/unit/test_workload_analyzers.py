"""Pods not ready, HPA at max, PVCs."""

from datetime import UTC, datetime
from typing import Any

import pytest

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
    found = {
        f.summary.split(" (")[0]: f for f in analyze_pvc(inp(prometheus_query=prom, k8s_pvc_status=pvcs))
    }
    assert found["volume data-mongodb-0 is 93% full"].severity == "critical"
    assert found["volume data-mongodb-0 is 93% full"].next_steps[-1] == (
        "kubectl exec -it mongodb-0 -n playcode -- df -h /data/db"
    )
    assert found["volume cache is 85% full"].severity == "warning"
    unbound = (
        "PVC new is Pending, not Bound: the pods that mount it cannot start "
        "until a volume is provisioned or bound"
    )
    assert found[unbound].severity == "critical"
    assert not any("logs" in s for s in found)


GIB = 1024**3


def volume_evidence(used: list[float], capacity: float, *, every_s: float = 600) -> dict[str, Any]:
    """The pvc-filling-up playbook's queries: ratio, used bytes (with their 6h range), capacity."""
    labels = {"persistentvolumeclaim": "datadir-mongodb-0"}
    now = used[-1]
    return {
        "queries": [
            {"name": "volume_usage_ratio", "series": [{"labels": labels, "value": now / capacity}]},
            {
                "name": "volume_used_bytes",
                "series": [{"labels": labels, "value": now}],
                "range": [
                    {"labels": labels, "points": [[1000.0 + i * every_s, v] for i, v in enumerate(used)]}
                ],
            },
            {"name": "volume_capacity_bytes", "series": [{"labels": labels, "value": capacity}]},
        ]
    }


def test_pvc_filling_up_states_capacity_used_growth_time_to_full_class_and_state() -> None:
    # 6 h of 10-minute points: 8.0 GiB -> 9.2 GiB on a 10 GiB volume (0.2 GiB/h: 4 h left)
    used = [8.0 * GIB + i * (1.2 * GIB / 36) for i in range(37)]
    pvcs = {
        "pvcs": [
            {
                "name": "datadir-mongodb-0",
                "phase": "Bound",
                "capacity": "10Gi",
                "storage_class": "gp3",
                "pods": ["mongodb-1"],
            }
        ]
    }
    (f,) = analyze_pvc(inp(prometheus_query=volume_evidence(used, 10 * GIB), k8s_pvc_status=pvcs))
    assert f.code == "pvc.filling_up" and f.severity == "critical"
    assert f.summary == (
        "volume datadir-mongodb-0 is 92% full (9.2 GiB used of 10.0 GiB, storage class gp3, Bound); "
        "it grew 1.2 GiB in the last 6.0 h and is full in about 4.0 h at that rate"
    )
    assert f.details["seconds_to_full"] == pytest.approx(4 * 3600, rel=0.01)
    assert f.details["storage_class"] == "gp3" and f.details["phase"] == "Bound"
    assert (
        f.next_steps[-1] == "kubectl exec -it mongodb-1 -n playcode -- df -h /data/db"
    )  # the pod that mounts it
    assert f.evidence == ["prometheus.query", "k8s.pvc_status"]


def test_a_full_volume_that_stopped_growing_says_so() -> None:
    (f,) = analyze_pvc(inp(prometheus_query=volume_evidence([9.5 * GIB] * 37, 10 * GIB)))
    assert "9.5 GiB used of 10.0 GiB" in f.summary
    assert "did not grow in the last 6.0 h" in f.summary and "is full in" not in f.summary
    assert f.details["seconds_to_full"] is None
