"""The offline decision behind ``medic test`` / ``replay --since``: evidence fixtures, the history
as the guards' ledger, and the comparison with an expectation (only the fields a test sets)."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from medic.app.catalogue import default_registry
from medic.app.config import Config, load_config
from medic.app.testing.cases import Expectation, compare, fixture_evidence
from medic.app.testing.evaluate import Case, ClusterFacts, HistoryEntry, Outcome, Policy, evaluate, required
from medic.domain.actions import Precondition
from medic.domain.evidence import Evidence, StepStatus
from medic.domain.incident import IncidentAlert
from medic.rules.model import Requirements

REPO = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
POLICY = Policy("enforce", ("playcode",), 3, timedelta(hours=1), timedelta(hours=2))


@pytest.fixture(scope="module")
def config() -> Config:
    return load_config([REPO / "rules"], [REPO / "playbooks"], default_registry())


def crash_case(history: Sequence[HistoryEntry] = (), cluster: ClusterFacts | None = None) -> Case:
    labels = {
        "alertname": "KubePodCrashLooping",
        "namespace": "playcode",
        "pod": "playcode-app-7d9c8b5f4-x2x7q",
    }
    container = {
        "name": "playcode-app",
        "image": "app:v2",
        "ready": False,
        "restart_count": 6,
        "state": {"waiting": {"reason": "CrashLoopBackOff"}},
        "last_state": {"terminated": {"reason": "Error", "exit_code": 1}},
    }
    data = {
        "k8s.pod_describe": {"pods": [{"name": labels["pod"], "revision": 2, "containers": [container]}]},
        "k8s.pod_logs": {"logs": [{"pod": labels["pod"], "previous": True, "lines": ["TypeError: x"]}]},
        "k8s.rollout_history": {
            "deployment": {"name": "playcode-app", "revision": 2, "annotations": {}, "labels": {}},
            "revisions": [
                {"revision": 2, "images": ["app:v2"], "created": "2026-12-01T09:52:00Z", "current": True},
                {"revision": 1, "images": ["app:v1"], "created": "2026-11-20T10:00:00Z"},
            ],
        },
    }
    return Case(
        alerts=[IncidentAlert(identity="a", status="firing", labels=labels, startsAt=NOW)],
        evidence={k: Evidence(step=k, collector=k, status=StepStatus.OK, data=v) for k, v in data.items()},
        now=NOW,
        history=history,
        cluster=cluster or ClusterFacts(),
    )


def test_a_regression_would_act_and_a_fresh_history_changes_that(config: Config) -> None:
    registry = default_registry()
    got = evaluate(crash_case(), config, registry, POLICY)
    assert (got.rule, got.target, got.action, got.status) == (
        "crashloop-rollback",
        "deployment/playcode/playcode-app",
        "rollback",
        "would_act",
    )
    assert got.top_finding == "crashloop.regression" and got.refused_by == []
    # exactly at the edge of the budget's window (1h): still counted, as the ledger counts it
    edge = crash_case([HistoryEntry("rollback", NOW - timedelta(hours=1), "succeeded")])
    assert evaluate(edge, config, registry, POLICY).refused_by == ["budget"]
    # an action in the future of the case is not history
    later = crash_case([HistoryEntry("rollback", NOW + timedelta(minutes=1), "failed")])
    assert evaluate(later, config, registry, POLICY).status == "would_act"
    # a skipped action is no action for the ledger: no cooldown, no budget used
    skipped = crash_case([HistoryEntry("rollback", NOW - timedelta(minutes=5), "skipped")])
    assert evaluate(skipped, config, registry, POLICY).status == "would_act"


def test_cluster_facts_and_the_evidences_annotations_feed_the_guards(config: Config) -> None:
    registry = default_registry()
    pre = ClusterFacts(preconditions=[Precondition("recent_rollout", False, "rolled out 3 h ago")])
    got = evaluate(crash_case(cluster=pre), config, registry, POLICY)
    assert got.status == "refused" and got.refused_by == ["precondition:recent_rollout"]
    assert got.reason == "precondition:recent_rollout: rolled out 3 h ago"
    case = crash_case()
    case.evidence["k8s.rollout_history"].data["deployment"]["annotations"] = {
        "medic.playcode.gg/remediate": "false"
    }
    assert evaluate(case, config, registry, POLICY).refused_by == ["opt_out"]
    gitops = ClusterFacts(labels={"argocd.argoproj.io/instance": "playcode"})
    assert evaluate(crash_case(cluster=gitops), config, registry, POLICY).refused_by == ["gitops"]
    outside = Policy("enforce", ("other",), 3, timedelta(hours=1), timedelta(hours=2))
    assert evaluate(crash_case(), config, registry, outside).refused_by == ["namespace"]
    dry = Policy("dry-run", ("playcode",), 3, timedelta(hours=1), timedelta(hours=2))
    assert evaluate(crash_case(), config, registry, dry).status == "planned"


def test_an_evidence_envelope_is_told_from_data_with_a_status_field() -> None:
    env = fixture_evidence("redis.info", "redis.info", {"status": "timeout"}, NOW)
    assert env.status is StepStatus.TIMEOUT and env.data is None
    err = fixture_evidence("redis.info", "redis.info", {"status": "error", "error": "refused"}, NOW)
    assert (err.status, err.error) == (StepStatus.ERROR, "refused")
    # a collector's own "status" field (a pod phase, an HPA condition) is data
    data = fixture_evidence("k8s.x", "k8s.x", {"status": "Running", "pods": []}, NOW)
    assert data.status is StepStatus.OK and data.data == {"status": "Running", "pods": []}
    odd = fixture_evidence("k8s.x", "k8s.x", {"status": "ok-ish"}, NOW)
    assert odd.status is StepStatus.OK and odd.data == {"status": "ok-ish"}


def test_compare_checks_only_what_the_test_sets() -> None:
    got = Outcome("r", "deployment/ns/x", [], "rollback", "refused", "cooldown: soon", [])
    assert compare(Expectation.model_validate({"target": "deployment/ns/x"}), got) == []
    diffs = compare(Expectation.model_validate({"rule": None, "action": None, "refused_by": []}), got)
    assert [(d.field, d.expected) for d in diffs] == [("rule", None), ("action.status", "none")]
    assert diffs[1].got == "refused (cooldown: soon)"


def test_a_rules_require_is_read_from_the_rollout_timeline_unless_the_case_gives_it(
    config: Config, tmp_path: Path
) -> None:
    """``require:`` is re-decided, as the rollback's plan decides it: revision 2 became current
    8 minutes before the case, so 30m is met and a candidate 5m is not; without the rollout
    history (and no cluster facts) the precondition is not met, never skipped."""
    registry = default_registry()
    got = evaluate(crash_case(), config, registry, POLICY)
    assert got.status == "would_act"
    met = {g.guard: g.allowed for g in got.guards if g.guard.startswith("precondition:")}
    assert met == {"precondition:recent_rollout": True, "precondition:previous_revision_healthy": True}

    rules = tmp_path / "rules"
    shutil.copytree(REPO / "rules", rules, ignore=shutil.ignore_patterns("tests"))
    text = (rules / "kubernetes.yaml").read_text(encoding="utf-8")
    (rules / "kubernetes.yaml").write_text(text.replace("recent_rollout: 30m", "recent_rollout: 5m", 1))
    candidate = load_config([rules], [REPO / "playbooks"], registry)
    got = evaluate(crash_case(), candidate, registry, POLICY)
    assert got.refused_by == ["precondition:recent_rollout"], got
    assert "limit 5 min" in got.reason or "limit 5m" in got.reason, got.reason

    blind = crash_case()
    del blind.evidence["k8s.rollout_history"]  # type: ignore[attr-defined]
    require = Requirements(recent_rollout=timedelta(minutes=30), previous_revision_healthy=True)
    unmet = required(require, blind, set())
    assert [(p.name, p.ok) for p in unmet] == [
        ("recent_rollout", False),
        ("previous_revision_healthy", False),
    ]
    assert "no k8s.rollout_history evidence" in unmet[0].reason
    assert required(require, blind, {"recent_rollout", "previous_revision_healthy"}) == []
    given = ClusterFacts(preconditions=[Precondition("recent_rollout", True, "given")])
    got = evaluate(crash_case(cluster=given), candidate, registry, POLICY)
    assert got.status == "would_act"  # what the case gives is not read again


def test_evidence_not_of_its_output_model_is_an_analyzer_error_never_a_false_finding(config: Config) -> None:
    """A restart count of "7x" once read as "no container is crash-looping"
    (crashloop.not_reproduced); the pipeline now says the analyzer could not read the step,
    naming the field and not its value."""
    case = crash_case()
    case.evidence["k8s.pod_describe"].data["pods"][0]["containers"][0]["restart_count"] = "7x-secret"
    got = evaluate(case, config, default_registry(), POLICY)
    codes = [f.code for f in got.findings]
    assert "analyzer.error" in codes and "crashloop.not_reproduced" not in codes, codes
    (err,) = [f for f in got.findings if f.code == "analyzer.error"]
    assert "k8s.pod_describe" in err.summary and "pods.0.containers.0.restart_count" in err.summary
    assert "7x-secret" not in err.summary
    assert got.status == "none"


def test_a_timestamp_yaml_read_as_a_datetime_is_the_iso_text_a_collector_stores(config: Config) -> None:
    """``created: 2026-12-01T09:52:00Z`` unquoted in a test file is a datetime to YAML; the
    evidence holds it as the collector would (text), so the output model reads it."""
    history = {
        "revisions": [{"revision": 2, "created": datetime(2026, 12, 1, 9, 52, tzinfo=UTC), "current": True}]
    }
    ev = fixture_evidence("k8s.rollout_history", "k8s.rollout_history", history, NOW)
    assert ev.data["revisions"][0]["created"] == "2026-12-01T09:52:00+00:00"
    envelope = fixture_evidence(
        "k8s.rollout_history", "k8s.rollout_history", {"status": "ok", "data": history}, NOW
    )
    assert envelope.data == ev.data
    case = crash_case()
    case.evidence["k8s.rollout_history"].data["revisions"][0]["created"] = "2026-12-01T09:52:00+00:00"
    assert evaluate(case, config, default_registry(), POLICY).status == "would_act"


def test_actions_on_other_targets_count_for_the_global_budget_only(config: Config) -> None:
    registry = default_registry()
    elsewhere = [
        HistoryEntry("rollback", NOW - timedelta(minutes=m), "succeeded", target="deployment/playcode/other")
        for m in (5, 10, 15)
    ]
    got = evaluate(crash_case(elsewhere), config, registry, POLICY)  # a global budget of 3 an hour
    assert got.refused_by == ["global_budget"], got.refused_by  # no cooldown, no target budget, no flap
    assert evaluate(crash_case(elsewhere[:2]), config, registry, POLICY).status == "would_act"
