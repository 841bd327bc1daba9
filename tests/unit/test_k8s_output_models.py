"""The output models of the k8s collectors (issue 16.3) keep the evidence JSON's shape: what a
collector stored before them, or a rule test wrote by hand, reads; what they dump is what was
stored (no key added where the collector left it out)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

from medic.collectors.k8s.cluster_output import IngressOutput, NodeDescribeOutput
from medic.collectors.k8s.pods_output import PodDescribeOutput, PodLogsOutput, TopPodsOutput
from medic.collectors.k8s.workload_output import EventsOutput, HpaStatusOutput, PvcStatusOutput


def roundtrip(model: type[BaseModel], data: dict[str, Any]) -> dict[str, Any]:
    return model.model_validate(data).model_dump(mode="json")


def test_an_env_var_keeps_either_its_value_or_its_reference() -> None:
    env = [
        {"name": "LOG_LEVEL", "value": "info"},
        {"name": "DB_PASSWORD", "value_from": {"secretKeyRef": {"name": "db", "key": "password"}}},
        {"name": "EMPTY", "value": ""},
    ]
    data = roundtrip(
        PodDescribeOutput, {"pods": [{"name": "p", "containers": [{"name": "app", "env": env}]}]}
    )
    assert data["pods"][0]["containers"][0]["env"] == env


def test_a_container_without_a_last_termination_stores_an_empty_last_state() -> None:
    described = PodDescribeOutput.model_validate(
        {
            "pods": [
                {
                    "name": "p",
                    "containers": [
                        {"name": "a"},
                        {
                            "name": "b",
                            "last_state": {"terminated": {"exit_code": 137, "reason": "OOMKilled"}},
                        },
                    ],
                }
            ]
        }
    )
    a, b = described.pods[0].containers
    assert a.terminated is None and a.model_dump()["last_state"] == {}
    assert b.terminated is not None and (b.terminated.reason, b.terminated.exit_code) == ("OOMKilled", 137)


def test_a_node_that_is_gone_and_one_whose_pods_cannot_be_listed_say_why_and_no_other_does() -> None:
    data = roundtrip(
        NodeDescribeOutput,
        {
            "nodes": [
                {"name": "gone", "error": "node not found"},
                {"name": "n1", "ready": True, "requested": None, "requested_error": "403 forbidden"},
                {"name": "n2", "ready": True},
            ]
        },
    )
    gone, denied, fine = data["nodes"]
    assert gone["error"] == "node not found" and gone["ready"] is None
    assert denied["requested_error"] == "403 forbidden" and "error" not in denied
    assert "error" not in fine and "requested_error" not in fine


def test_an_ingress_class_is_stored_and_read_as_class() -> None:
    data = roundtrip(IngressOutput, {"ingresses": [{"name": "web", "class": "nginx"}], "scope": "target"})
    assert data["ingresses"][0]["class"] == "nginx" and "ingress_class" not in data["ingresses"][0]
    assert IngressOutput.model_validate(data).ingresses[0].ingress_class == "nginx"


@pytest.mark.parametrize(
    ("model", "written"),
    [
        (PvcStatusOutput, {"pvcs": [{"name": "data-mongodb-0", "phase": "Bound", "capacity": "10Gi"}]}),
        (HpaStatusOutput, {"hpas": [{"name": "app", "max": 6, "current": 6, "desired": 9, "at_max": True}]}),
        (EventsOutput, {"events": [{"reason": "Unhealthy", "object": {"kind": "Pod", "name": "p"}}]}),
        (PodLogsOutput, {"logs": [{"pod": "p", "container": "app", "lines": ["boom"]}]}),
        (TopPodsOutput, {"pods": [{"name": "p", "containers": [{"name": "app", "memory_bytes": 1}]}]}),
        # a rule test's pod with a key the collector never writes ("ready") still reads
        (PodDescribeOutput, {"pods": [{"name": "p", "ready": False, "conditions": {"Ready": "False"}}]}),
    ],
)
def test_evidence_written_by_hand_reads_with_the_collectors_defaults(
    model: type[BaseModel], written: dict[str, Any]
) -> None:
    parsed = model.model_validate(written)
    assert set(parsed.model_dump()) == set(model.model_fields)
    assert parsed.model_dump(exclude_unset=True).keys() == written.keys()


def test_the_models_read_what_they_store() -> None:
    hpa = HpaStatusOutput.model_validate({"hpas": [{"name": "app", "max": 6, "current": 6, "at_max": True}]})
    assert roundtrip(HpaStatusOutput, hpa.model_dump()) == hpa.model_dump(mode="json")
    assert hpa.hpas[0].min == 1 and hpa.hpas[0].desired == 0  # the collector's own defaults
