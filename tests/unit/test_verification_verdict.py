"""The pure verdict of a deploy verification (medic.analysis.verification): measurements from the
evidence, thresholds absolute and relative to the baseline, early failures, the end of the window."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from medic.analysis.verification import judge, limit_breach, measure, target_alerts
from medic.collectors.revision_output import RevisionCompareOutput
from medic.domain.evidence import Evidence, StepStatus
from medic.domain.verification import (
    Limit,
    Pair,
    PodsSample,
    RolloutSample,
    Sample,
    Verification,
    VerificationSpec,
    judge_revisions,
)

T0 = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
SPEC = VerificationSpec()


def verification(**kw: object) -> Verification:
    base: dict[str, object] = {
        "namespace": "playcode",
        "deployment": "playcode-app",
        "revision": 8,
        "baseline_revision": 7,
        "replicaset": "playcode-app-7d9c8f",
        "baseline_replicaset": "playcode-app-5b6c7d",
        "started_at": T0,
        "window_s": 600,
        "interval_s": 60,
        "ends_at": T0 + timedelta(minutes=10),
        "next_at": T0,
    }
    return Verification.model_validate(base | kw)


def sample(minutes: float = 10, **kw: object) -> Sample:
    base: dict[str, object] = {
        "at": T0 + timedelta(minutes=minutes),
        "elapsed_s": minutes * 60,
        "rollout": RolloutSample(current_revision=8, desired=3, updated=3, ready=3, complete=True),
        "pods": PodsSample(total=3, ready=3),
        "requests": Pair(new=5000, baseline=60000),
        "error_ratio_5xx": Pair(new=0.002, baseline=0.001),
        "latency_p99": Pair(new=0.09, baseline=0.08),
        "error_logs_per_minute": Pair(new=0.5, baseline=0.4),
    }
    return Sample.model_validate(base | kw)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


# ---------------------------------------------------------------- limits
@pytest.mark.parametrize(
    ("limit", "pair", "breached"),
    [
        (Limit(max=0.05), Pair(new=0.06), True),  # over the ceiling, no baseline needed
        (Limit(max=0.05), Pair(new=0.05), False),
        (Limit(max_increase=0.02), Pair(new=0.031, baseline=0.01), True),
        (Limit(max_increase=0.02), Pair(new=0.029, baseline=0.01), False),
        (Limit(max_factor=1.5), Pair(new=0.31, baseline=0.2), True),
        (Limit(max_factor=1.5, floor=0.25), Pair(new=0.2, baseline=0.01), False),  # below the noise floor
        (
            Limit(max_factor=3.0, floor=1.0),
            Pair(new=0.9, baseline=0.0),
            False,
        ),  # 0 errors before: 1 line is noise
        (Limit(max_factor=3.0, floor=1.0), Pair(new=5.0, baseline=0.0), True),
        (Limit(max_factor=1.5), Pair(new=1.0, baseline=None), False),  # relative needs a baseline
        (Limit(max=1.0), Pair(new=None, baseline=0.5), False),  # not measured
    ],
)
def test_limits_absolute_and_relative(limit: Limit, pair: Pair, breached: bool) -> None:
    assert (limit_breach("x", limit, pair) is not None) is breached


def test_a_breach_says_the_numbers() -> None:
    why = limit_breach("error_ratio_5xx", Limit(max_increase=0.02), Pair(new=0.08, baseline=0.01))
    assert why == "8.0 % against 1.0 % on the baseline (more than +2.0 %)"


# ---------------------------------------------------------------- during the window
def test_nothing_wrong_before_the_end_is_verifying() -> None:
    v = verification()
    verdict = judge(SPEC, v, [sample(3)], at(3))
    assert verdict.state == "verifying" and "interval 3 of 10" in verdict.reason


def test_a_threshold_breach_before_the_end_waits_for_the_window() -> None:
    """A p99 over its bound may be a warm-up: judged at the end, over the whole window."""
    v = verification()
    verdict = judge(SPEC, v, [sample(3, latency_p99=Pair(new=0.5, baseline=0.08))], at(3))
    assert verdict.state == "verifying"


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"rollout": RolloutSample(current_revision=8, deadline_exceeded=True)}, "progress deadline"),
        (
            {"pods": PodsSample(total=3, ready=2, waiting={"CrashLoopBackOff": 1})},
            "cannot run: CrashLoopBackOff",
        ),
        (
            {"pods": PodsSample(total=3, ready=2, waiting={"InvalidImageName": 1})},
            "cannot run: InvalidImageName",
        ),
        ({"pods": PodsSample(total=3, ready=3, restarts=3)}, "restarted 3 times"),
        ({"error_ratio_5xx": Pair(new=0.3, baseline=0.001)}, "5xx ratio 30.0 %"),
    ],
)
def test_early_failures_end_the_window_at_once(changes: dict[str, object], reason: str) -> None:
    verdict = judge(SPEC, verification(), [sample(1, **changes)], at(1))
    assert verdict.state == "failed" and verdict.early and reason in verdict.reason


def test_a_pull_or_config_error_fails_only_when_it_lasts_an_interval() -> None:
    """A registry's rate limit, a Secret applied a moment after the Deployment: not yet a failure."""
    stuck = {"pods": PodsSample(total=3, ready=2, waiting={"CreateContainerConfigError": 1})}
    assert judge(SPEC, verification(), [sample(1, **stuck)], at(1)).state == "verifying"
    recovered = [sample(1, **stuck), sample(2)]
    assert judge(SPEC, verification(), recovered, at(2)).state == "verifying"
    lasting = judge(SPEC, verification(), [sample(1, **stuck), sample(2, **stuck)], at(2))
    assert lasting.state == "failed" and "CreateContainerConfigError" in lasting.reason


def test_a_5xx_query_that_failed_is_unknown_not_zero() -> None:
    """A failed query is a gap: the 5xx ratio is not measured (not 0 %), and the window cannot pass."""
    evidence = {
        "prometheus.revision_compare": Evidence(
            step="prometheus.revision_compare",
            collector="prometheus.revision_compare",
            status=StepStatus.OK,
            data={
                "revision": 8,
                "queries": [
                    {"name": "requests", "new": 5000, "baseline": 60000},
                    {"name": "errors_5xx", "new": None, "baseline": None, "error": "HTTPError: 503"},
                    {"name": "latency_p99", "new": 0.09, "baseline": 0.08},
                ],
                "alerts_error": "timeout",
            },
        )
    }
    s = measure(evidence, at(10), verification())
    assert s.error_ratio_5xx == Pair(new=None, baseline=None)
    assert s.gaps == [
        "prometheus.revision_compare: errors_5xx: HTTPError: 503",
        "prometheus.revision_compare: alerts: timeout",
    ]
    no_5xx = dict(evidence["prometheus.revision_compare"].data)
    no_5xx["queries"] = [{"name": "requests", "new": 5000}, {"name": "errors_5xx", "new": None}]
    ok = Evidence(step="p", collector="prometheus.revision_compare", status=StepStatus.OK, data=no_5xx)
    assert measure({"p": ok}, at(10), verification()).error_ratio_5xx.new == 0.0  # no 5xx series: none


def test_the_end_needs_the_rollout_read_once_at_least() -> None:
    blind = [sample(5, rollout=None, pods=None), sample(10, rollout=None, pods=None)]
    assert judge(SPEC, verification(), blind, at(10)).state == "inconclusive"
    # a step that failed at the end leaves the last reading (restarts seen earlier still count)
    earlier = [sample(5, pods=PodsSample(total=3, ready=3, restarts=2)), sample(10, rollout=None, pods=None)]
    verdict = judge(SPEC, verification(), earlier, at(10))
    assert verdict.state == "failed" and "restarts" in verdict.reason


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        # a fresh ReplicaSet: its predecessor is the baseline
        ([(7, "app-old", T0 - timedelta(days=2), False), (8, "app-new", T0, False)], ("app-new", 7, False)),
        # kubectl rollout undo: revision 9 reuses the oldest template's ReplicaSet
        (
            [
                (7, "app-v1", T0 - timedelta(days=2), False),
                (8, "app-v2", T0 - timedelta(hours=1), False),
                (9, "app-v1", T0 - timedelta(days=2), True),
            ],
            ("app-v1", None, True),
        ),
        # a ReplicaSet older than its predecessor (history annotation trimmed): restored too
        (
            [(8, "app-v2", T0 - timedelta(hours=1), False), (9, "app-v1", T0 - timedelta(days=2), False)],
            ("app-v1", None, True),
        ),
        # the first revision: no baseline
        ([(1, "app-v1", T0, False)], ("app-v1", None, False)),
    ],
)
def test_the_baseline_is_the_predecessor_unless_the_revision_restores_an_old_template(
    rows: list[tuple[int, str, datetime | None, bool]], expected: tuple[str, int | None, bool]
) -> None:
    rev = max(r[0] for r in rows)
    found = judge_revisions(rev, rows, T0)
    assert found is not None and (found.replicaset, found.baseline_revision, found.restored) == expected
    assert judge_revisions(42, rows, T0) is None


def test_a_5xx_ratio_over_too_few_requests_does_not_fail_early() -> None:
    few = sample(1, requests=Pair(new=8), error_ratio_5xx=Pair(new=0.5))
    assert judge(SPEC, verification(), [few], at(1)).state == "verifying"


def test_a_deployment_that_moved_on_supersedes_the_verification() -> None:
    moved = sample(2, rollout=RolloutSample(current_revision=9))
    verdict = judge(SPEC, verification(), [moved], at(2))
    assert verdict.state == "inconclusive" and "revision 9" in verdict.reason


# ---------------------------------------------------------------- at the end
def test_a_clean_window_passes() -> None:
    assert judge(SPEC, verification(), [sample(5), sample(10)], at(10)).state == "passed"


def test_a_breach_at_the_end_fails_naming_every_breach() -> None:
    bad = sample(10, latency_p99=Pair(new=0.3, baseline=0.08), error_logs_per_minute=Pair(new=12, baseline=1))
    verdict = judge(SPEC, verification(), [bad], at(10))
    assert verdict.state == "failed" and not verdict.early
    assert "latency_p99:" in verdict.reason and "error_logs_per_minute:" in verdict.reason
    assert {c.name for c in verdict.checks if c.breached} == {"latency_p99", "error_logs_per_minute"}


def test_an_alert_seen_in_any_interval_fails_the_window() -> None:
    samples = [sample(3, alerts_firing=["PlaycodeHighMemory"]), sample(10)]
    verdict = judge(SPEC, verification(), samples, at(10))
    assert verdict.state == "failed" and "PlaycodeHighMemory" in verdict.reason


def test_too_few_requests_is_inconclusive_not_failed() -> None:
    quiet = sample(10, requests=Pair(new=40), error_ratio_5xx=Pair(new=0.5), latency_p99=Pair(new=9.0))
    verdict = judge(SPEC, verification(), [quiet], at(10))
    assert verdict.state == "inconclusive" and "only 40 requests" in verdict.reason


def test_no_request_metrics_is_inconclusive() -> None:
    blind = sample(10, requests=Pair(), error_ratio_5xx=Pair(), latency_p99=Pair())
    verdict = judge(SPEC, verification(), [blind], at(10))
    assert verdict.state == "inconclusive" and "no request metrics" in verdict.reason


def test_a_rollout_still_in_progress_at_the_end_is_inconclusive() -> None:
    slow = sample(10, rollout=RolloutSample(current_revision=8, desired=3, updated=2, complete=False))
    assert judge(SPEC, verification(), [slow], at(10)).state == "inconclusive"


# ---------------------------------------------------------------- measuring
def test_measure_reads_the_evidence_and_names_the_gaps() -> None:
    evidence = {
        "k8s.revision_status": Evidence(
            step="k8s.revision_status",
            collector="k8s.revision_status",
            status=StepStatus.OK,
            data={
                "revision": 8,
                "replicaset": "playcode-app-7d9c8f",
                "rollout": {"revision": 8, "desired": 2, "updated": 2, "ready": 1, "complete": False},
                "pods": [
                    {"name": "playcode-app-7d9c8f-a", "ready": True, "restarts": 0},
                    {
                        "name": "playcode-app-7d9c8f-b",
                        "ready": False,
                        "restarts": 2,
                        "waiting": "CrashLoopBackOff",
                    },
                ],
                "pods_total": 2,
            },
        ),
        "prometheus.revision_compare": Evidence(
            step="prometheus.revision_compare",
            collector="prometheus.revision_compare",
            status=StepStatus.OK,
            data={
                "revision": 8,
                "queries": [
                    {"name": "requests", "new": 200, "baseline": 1000},
                    {"name": "errors_5xx", "new": 20, "baseline": 1},
                    {"name": "latency_p99", "new": 0.2, "baseline": 0.1},
                ],
            },
        ),
        "loki.revision_errors": Evidence(
            step="loki.revision_errors",
            collector="loki.revision_errors",
            status=StepStatus.TIMEOUT,
            error="slow",
        ),
    }
    s = measure(evidence, at(2), verification())
    assert s.elapsed_s == 120
    assert s.pods == PodsSample(total=2, ready=1, restarts=2, waiting={"CrashLoopBackOff": 1})
    assert PodsSample.counts(s.pods.waiting) == {"CrashLoopBackOff": 1}
    assert s.error_ratio_5xx == Pair(new=0.1, baseline=0.001)
    assert s.latency_p99 == Pair(new=0.2, baseline=0.1)
    assert s.gaps == ["loki.revision_errors: timeout (slow)"]


def test_only_the_deployments_alerts_count() -> None:
    cmp = {
        "alerts": [
            {"alertname": "PlaycodeHighMemory", "pod": "playcode-app-7d9c8f-abcde"},
            {"alertname": "KubeDeploymentReplicasMismatch", "deployment": "playcode-app"},
            {"alertname": "KubePodNotReady", "pod": "playcode-app-5b6c7d-zzzzz"},  # the old revision's pod
            {"alertname": "KubePodNotReady", "pod": "other-app-7d9c8f-abcde"},
            {"alertname": "MedicDeadLetters", "deployment": "playcode-app"},  # about Medic itself
        ]
    }
    got = target_alerts(RevisionCompareOutput.model_validate(cmp), "playcode-app", "playcode-app-7d9c8f")
    assert got == ["KubeDeploymentReplicasMismatch", "PlaycodeHighMemory"]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"window": "5m", "interval": "10m"}, "interval must be at least 5s and at most the window"),
        ({"interval": "1s"}, "interval must be at least 5s"),
        ({"window": "7h"}, "window must be at most"),
        ({"thresholds": {"latency_p99": {"max_factor": 0.5}}}, "greater than or equal to 1"),
        ({"thresholds": {"nope": {}}}, "Extra inputs are not permitted"),
    ],
)
def test_the_spec_is_checked_when_loaded(spec: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        VerificationSpec.model_validate(spec)


def test_a_secret_looking_reason_is_redacted_and_the_sample_still_reads() -> None:
    """Reasons are values, not keys: redaction masks one, the stored incident reads back."""
    from medic.domain.incident import Incident
    from medic.domain.redact import redact_model

    s = sample(1, pods=PodsSample(total=1, waiting={"password=Hunter2Pw": 1}))
    inc = Incident(id="inc-1", key="k", verification=verification(samples=[s]))
    stored = redact_model(inc)
    again = Incident.model_validate(stored.model_dump(mode="json"))
    assert again.verification is not None
    assert "Hunter2Pw" not in again.model_dump_json()
    assert again.verification.samples[0].pods is not None
    assert again.verification.samples[0].pods.waiting[0].pods == 1
