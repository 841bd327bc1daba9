"""Issue 16.3: the analyzers read collector evidence through the output models. A bundle written by
hand (rule tests, older bundles) gives only some fields: they read with their defaults; a value of
the wrong type is not read (never misread as something else, never a crash in the analyzer)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from medic.analysis.builtin import metric_thresholds
from medic.analysis.crashloop.classify import container_trouble
from medic.analysis.dataplane import EvidenceShapeError, query, series_over, typed
from medic.analysis.verification import measure, window_of
from medic.analysis.volumes import volumes
from medic.collectors.k8s.pods_output import ContainerDescription, ContainerState, PodDescribeOutput
from medic.collectors.k8s.workload_output import RevisionRow, RolloutHistoryOutput
from medic.collectors.output_base import unknown_keys
from medic.collectors.prometheus_output import PrometheusQueryOutput
from medic.domain.evidence import Evidence, StepStatus
from medic.playbooks.contract import AnalysisInput
from tests.unit.test_crashloop_analyzer import container, pod, run

NOW = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)


def ev(collector: str, data: Any) -> Evidence:
    return Evidence(step=collector, collector=collector, status=StepStatus.OK, data=data)


def given(**evidence: Any) -> AnalysisInput:
    steps = {name.replace("__", "."): ev(name.replace("__", "."), data) for name, data in evidence.items()}
    return AnalysisInput(target=None, labels={}, alerts=[], now=NOW, evidence=steps)


# ---------------------------------------------------------------- prometheus.query


def test_a_hand_written_query_reads_with_its_defaults() -> None:
    inp = given(prometheus__query={"queries": [{"name": "error_ratio_5xx", "value": 0.2, "warn": 0.05}]})
    found = metric_thresholds(inp)
    assert [(f.code, f.severity) for f in found] == [("metric.error_ratio_5xx", "warning")]
    assert found[0].summary == "error_ratio_5xx is 0.2, above the warning threshold of 0.05"  # no unit
    result = query(inp, "error_ratio_5xx")
    assert result is not None and result.value == 0.2 and result.values == []


def test_a_query_value_of_the_wrong_type_is_never_read_as_no_value() -> None:
    """It was a TypeError comparing "high" with 0.05; it is an error naming the field, never a
    silent "nothing over its threshold"; the value itself is not in the message."""
    inp = given(prometheus__query={"queries": [{"name": "error_ratio_5xx", "value": "high", "warn": 0.05}]})
    with pytest.raises(EvidenceShapeError, match=r"queries\.0\.value: Input should be a valid number") as err:
        metric_thresholds(inp)
    assert "high" not in str(err.value)
    with pytest.raises(EvidenceShapeError):
        query(inp, "error_ratio_5xx")


def test_series_are_typed() -> None:
    series = [
        {"labels": {"pod": "a"}, "value": 0.97},
        {"labels": {"pod": "b"}, "value": None},  # NaN in Prometheus
        {"labels": {}, "value": 0.99},
    ]
    result = query(given(prometheus__query={"queries": [{"name": "cpu", "series": series}]}), "cpu")
    assert result is not None
    assert series_over(result, 0.95, "pod") == [("?", 0.99), ("a", 0.97)]
    assert result.by_label("pod") == {"a": 0.97, "?": 0.99}
    assert [v.model_dump() for v in result.values] == series  # as the collector stored them


def test_a_volume_query_written_by_hand_reads() -> None:
    q = {
        "name": "volume_used_bytes",
        "series": [{"labels": {"persistentvolumeclaim": "data-mongodb-0"}, "value": 90.0}],
        "range": [
            {
                "labels": {"persistentvolumeclaim": "data-mongodb-0"},
                "points": [[0, 50.0], [1800, None], [3600, 90.0]],
            }
        ],
    }
    cap = {
        "name": "volume_capacity_bytes",
        "series": [{"labels": {"persistentvolumeclaim": "data-mongodb-0"}, "value": 100}],
    }
    v = volumes(given(prometheus__query={"queries": [q, cap]}))["data-mongodb-0"]
    assert (v.used_bytes, v.capacity_bytes, v.used_ratio) == (90.0, 100.0, 0.9)
    assert (v.growth_bytes, v.window_s, v.seconds_to_full) == (40.0, 3600.0, 900.0)


# ---------------------------------------------------------------- k8s.pod_describe


def test_container_state_reads_waiting_and_stores_the_api_state_as_is() -> None:
    api_state = {"running": {"startedAt": "2026-12-01T09:00:00Z"}}
    assert ContainerState.model_validate(api_state).model_dump() == api_state
    waiting = {"waiting": {"reason": "CreateContainerConfigError", "message": 'secret "db" not found'}}
    assert ContainerState.model_validate(waiting).model_dump() == waiting
    only_reason = {"waiting": {"reason": "CrashLoopBackOff"}}
    assert ContainerState.model_validate(only_reason).model_dump() == only_reason  # no message: none stored
    c = ContainerDescription.model_validate({"name": "app", "state": waiting})
    assert container_trouble(c) == (
        "config_error",
        'cannot start: CreateContainerConfigError: secret "db" not found',
    )


def test_a_waiting_reason_of_the_wrong_type_is_refused() -> None:
    with pytest.raises(ValidationError):
        ContainerDescription.model_validate(
            {"name": "app", "state": {"waiting": {"reason": ["CrashLoopBackOff"]}}}
        )


# ---------------------------------------------------------------- k8s.rollout_history


def test_a_revision_without_limits_is_not_read_as_no_limits() -> None:
    assert RevisionRow.model_validate({"revision": 3}).limits is None  # unknown, not {}
    old = {"revision": 1, "images": ["app:v1"], "created": "2026-11-10T10:00:00Z"}
    current = {"revision": 2, "images": ["app:v2"], "created": "2026-11-20T10:00:00Z"}
    crashing = [pod("a", 2, container())]

    def changed(hist: dict[str, Any]) -> list[str]:
        return list(run(crashing, hist=hist)["crashloop.predates_rollout"].details["changed"])

    dep = {"name": "playcode-app", "revision": 2}
    assert changed({"deployment": dep, "revisions": [current, old]}) == []
    with_limits = [
        current | {"limits": {"app": {"memory": "1Gi"}}},
        old | {"limits": {"app": {"memory": "512Mi"}}},
    ]
    assert changed({"deployment": dep, "revisions": with_limits}) == [
        "limits {'app': {'memory': '1Gi'}} (revision 1 had {'app': {'memory': '512Mi'}})"
    ]


def test_a_hand_written_history_reads_with_defaults_and_an_extra_key_is_refused_by_the_reader() -> None:
    """The model validates partial data (defaults); the analyzers' reader refuses a key the model
    lacks, which a misspelling would be."""
    given_history = {"deployment": {"revision": 4, "config_refs": [{"kind": "ConfigMap", "name": "cfg"}]}}
    h = RolloutHistoryOutput.model_validate(given_history)
    assert h.deployment.revision == 4 and h.deployment.config_refs[0].via == "" and h.revisions == []
    assert unknown_keys(RolloutHistoryOutput, given_history) == []
    assert unknown_keys(RolloutHistoryOutput, {**given_history, "note": "by hand"}) == [("note",)]


# ---------------------------------------------------------------- the verification window


def _window(**extra: Any) -> dict[str, Any]:
    verification = {
        "namespace": "playcode",
        "deployment": "playcode-app",
        "revision": 8,
        "replicaset": "playcode-app-7d9c8f",
        "started_at": NOW.isoformat(),
        "window_s": 600,
        "interval_s": 60,
        "ends_at": (NOW + timedelta(minutes=10)).isoformat(),
        "next_at": NOW.isoformat(),
    }
    return {"verification": verification, **extra}


def test_the_window_reads_through_the_domain_models() -> None:
    spec, v = window_of(given(verification__window=_window()))
    assert v is not None and v.revision == 8 and spec.min_requests == 100  # no spec: the defaults
    spec, _ = window_of(given(verification__window=_window(spec=None)))
    assert spec.min_requests == 100
    spec, _ = window_of(given(verification__window=_window(spec={"min_requests": 5})))
    assert spec.min_requests == 5
    assert window_of(given()) == (spec.__class__(), None)


@pytest.mark.parametrize(
    "data",
    [
        {"verification": {"revision": "eight"}},
        [1, 2],
        "window",
        7,
        *(_window(spec=falsy) for falsy in ([], 0, "", False)),  # not "no spec": another shape
    ],
)
def test_a_window_of_another_shape_is_an_error_not_a_window_less_verdict(data: Any) -> None:
    with pytest.raises(EvidenceShapeError, match=r"verification\.window"):
        window_of(given(verification__window=data))


@pytest.mark.parametrize(
    ("collector", "data", "field"),
    [
        ("k8s.pod_describe", {"items": [{"name": "p"}]}, "items"),  # the API's list, not the collector's
        ("k8s.pod_describe", {"pods": [{"name": "p", "restartCount": 40}]}, "pods.0.restartCount"),
        ("prometheus.query", {"queries": [{"name": "x", "valu": 3}]}, "queries.0.valu"),
        (  # inside an optional list of models (range: list[SeriesRange] | None)
            "prometheus.query",
            {"queries": [{"name": "x", "range": [{"labels": {}, "pionts": [[1, 2]]}]}]},
            "queries.0.range.0.pionts",
        ),
    ],
)
def test_a_misspelt_key_is_an_error_never_read_as_its_default(collector: str, data: Any, field: str) -> None:
    """A key the output model lacks would leave the field it meant at its default: pods read as
    none, and the crash as "not reproduced". Data of that shape is refused, naming the key."""
    inp = given(**{collector.replace(".", "__"): data})
    with pytest.raises(EvidenceShapeError, match=f"{re.escape(field)}: not a field"):
        model = {"k8s.pod_describe": PodDescribeOutput, "prometheus.query": PrometheusQueryOutput}[collector]
        list(typed(inp, collector, model))


def test_partial_revision_evidence_measures_what_it_gives() -> None:
    evidence = {
        "s": ev("k8s.revision_status", {"rollout": {"complete": True}, "pods": [{"restarts": 2}]}),
        "p": ev("prometheus.revision_compare", {"queries": [{"name": "requests", "new": 200}]}),
        "l": ev("loki.revision_errors", {"baseline_per_minute": 0.5}),
    }
    s = measure(evidence, NOW, None)
    assert s.rollout is not None and s.rollout.complete and s.pods is not None and s.pods.restarts == 2
    assert s.requests.new == 200 and s.error_ratio_5xx.new is None  # no errors_5xx query: unknown, not 0
    assert s.error_logs_per_minute.new is None  # not given: not measured (not 0 lines a minute)
    assert s.error_logs_per_minute.baseline == 0.5


def test_a_revision_status_of_the_wrong_type_is_not_read() -> None:
    evidence = {"s": ev("k8s.revision_status", {"pods": [{"name": "p", "restarts": "many"}]})}
    s = measure(evidence, NOW, None)  # was: ValueError from int("many")
    assert s.rollout is None and s.pods is None
    assert any("pods.0.restarts" in gap for gap in s.gaps), s.gaps  # not measured, and the sample says why
