"""The runbook 5.1 (backup) and 6.3 (certificates) analyzers over hand-made evidence: pure, no
server. Each cause is told apart from its neighbours, and only what a re-run or a renewal can help
argues for it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from medic.analysis.backup import analyze_backup, classify, overdue_after, schedule_period
from medic.analysis.certificates import analyze_certificate
from medic.analysis.dataplane import EvidenceShapeError
from medic.collectors.k8s.certs_output import CertificateInfo, CertificateStatusOutput
from medic.collectors.k8s.jobs_output import ContainerExit, CronJobRunsOutput, JobPod, JobRun, LogTail
from medic.domain.evidence import Evidence, StepStatus
from medic.domain.incident import Finding, Target
from medic.playbooks.contract import AnalysisInput

NOW = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
NS = "playcode"


def at(hours_ago: float) -> str:
    return (NOW - timedelta(hours=hours_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")


def inp(collector: str, data: Any, target: Target) -> AnalysisInput:
    ev = Evidence(step=collector, collector=collector, status=StepStatus.OK, data=data)
    return AnalysisInput(target, {"namespace": NS}, [], {collector: ev}, NOW)


def by_code(findings: list[Finding]) -> dict[str, Finding]:
    return {f.code: f for f in findings}


# ---------------------------------------------------------------------------------- backup


def runs(
    *,
    state: str = "failed",
    containers: list[dict[str, Any]] | None = None,
    lines: list[str] = (),
    last_success: float | None = 20,
    schedule: str = "0 3 * * *",
    suspend: bool = False,
    conditions: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    job = "mongodb-backup-29400000"
    pod = f"{job}-abcde"
    return {
        "cronjob": {
            "name": "mongodb-backup",
            "namespace": NS,
            "schedule": schedule,
            "suspend": suspend,
            "last_schedule": at(1),
            "last_successful": at(last_success) if last_success else None,
            "active": 0,
        },
        "jobs": [
            {
                "name": job,
                "state": state,
                "created": at(1),
                "completion": at(0.5) if state == "complete" else None,
                "conditions": conditions or [],
            }
        ],
        "pods": [
            {
                "name": pod,
                "job": job,
                "phase": "Failed" if state == "failed" else "Succeeded",
                "containers": containers or [{"name": "backup", "exit_code": 1, "reason": "Error"}],
            }
        ],
        "logs": [{"pod": pod, "container": "backup", "lines": list(lines)}],
        "events": [],
    }


def backup(data: dict[str, Any]) -> dict[str, Finding]:
    return by_code(analyze_backup(inp("k8s.cronjob_runs", data, Target(kind="namespace", name=NS))))


@pytest.mark.parametrize(
    ("containers", "lines", "cause"),
    [
        (
            [{"name": "backup", "exit_code": 137, "reason": "OOMKilled"}],
            ["dumping userdb.games"],
            "oom_killed",
        ),
        (
            None,
            ["Failed: error connecting to db server: (AuthenticationFailed) Authentication failed."],
            "mongo_auth",
        ),
        (
            None,
            ["writing userdb.users to archive", "write /backup/dump.gz: no space left on device"],
            "no_space",
        ),
        (None, ["server selection error: connect ECONNREFUSED 10.0.3.4:27017"], "mongo_unreachable"),
        ([{"name": "backup", "reason": "ImagePullBackOff"}], [], "image"),
        (None, ["something odd"], "unknown"),
    ],
)
def test_a_failed_backup_names_its_cause(containers: Any, lines: list[str], cause: str) -> None:
    found = backup(runs(containers=containers, lines=lines))
    failed = found["backup.failed"]
    assert failed.details["cause"] == cause, failed.summary
    assert failed.severity == "critical" and failed.suggests == "backup_now"
    assert failed.details["job"] == "mongodb-backup-29400000" and failed.details["hours_since_success"] == 20
    assert "backup.ok" not in found and "backup.overdue" not in found  # 20 h < a day + grace


def test_the_unknown_cause_quotes_the_exit_code_and_last_line() -> None:
    failed = backup(runs(lines=["first", "segfault in mongodump"]))["backup.failed"]
    assert "exit code 1" in failed.summary and "segfault in mongodump" in failed.summary


def test_a_deadline_is_a_timeout() -> None:
    found = backup(runs(conditions=[{"type": "Failed", "status": "True", "reason": "DeadlineExceeded"}]))
    assert found["backup.failed"].details["cause"] == "timeout"


def test_hours_since_the_last_success_decide_overdue() -> None:
    overdue = backup(runs(state="complete", last_success=30))["backup.overdue"]
    assert overdue.details["hours_since_success"] == 30 and overdue.details["overdue_after_hours"] == 26.4
    assert overdue.suggests == "backup_now"
    fine = backup(runs(state="complete", last_success=2))
    assert set(fine) == {"backup.ok"} and fine["backup.ok"].details["hours_since_success"] == 2
    never = backup(runs(last_success=None))
    assert never["backup.overdue"].details["hours_since_success"] is None
    assert "never" in never["backup.overdue"].summary


def test_an_hourly_backup_is_overdue_sooner_and_a_suspended_one_says_so() -> None:
    found = backup(runs(state="complete", last_success=3, schedule="15 * * * *", suspend=True))
    assert found["backup.overdue"].details["overdue_after_hours"] == 2.0
    assert found["backup.suspended"].severity == "warning"


@pytest.mark.parametrize(
    ("schedule", "hours"),
    [
        ("0 3 * * *", 24),
        ("0 */6 * * *", 6),
        ("30 * * * *", 1),
        ("*/15 * * * *", 0.25),
        ("0 3 * * 0", 168),
        ("0 3,15 * * *", 12),
        ("@hourly", 1),
        ("0 3 1 * *", 24),
        ("nonsense", 24),
    ],
)
def test_schedule_periods(schedule: str, hours: float) -> None:
    assert schedule_period(schedule) == timedelta(hours=hours)
    assert overdue_after(schedule) >= schedule_period(schedule) + timedelta(hours=1)


def test_classify_prefers_the_oom_kill_over_log_lines() -> None:
    pods = [JobPod(containers=[ContainerExit(name="b", exit_code=137, reason="OOMKilled")])]
    cause, _ = classify(pods, [LogTail(lines=["Authentication failed"])], JobRun())
    assert cause == "oom_killed"


def test_no_evidence_no_findings() -> None:
    assert analyze_backup(AnalysisInput(None, {}, [], {}, NOW)) == []


# ---------------------------------------------------------------------------------- certificates


def cond(kind: str, status: str, reason: str = "", message: str = "") -> dict[str, Any]:
    return {"type": kind, "status": status, "reason": reason, "message": message}


def chain(
    *,
    ready: str = "False",
    not_after_days: float = 40,
    issuing: dict[str, Any] | None = None,
    request: list[dict[str, Any]] | None = None,
    orders: list[dict[str, Any]] | None = None,
    challenges: list[dict[str, Any]] | None = None,
    issuer: dict[str, Any] | None = None,
) -> dict[str, Any]:
    conditions = [cond("Ready", ready, "Ready" if ready == "True" else "Failed", "")]
    if issuing:
        conditions.append(issuing)
    return {
        "certificate": {
            "name": "playcode-tls",
            "namespace": NS,
            "dns_names": ["playcode.example"],
            "not_after": (NOW + timedelta(days=not_after_days)).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "renewal_time": None,
            "revision": 3,
            "conditions": conditions,
        },
        "requests": [{"name": "playcode-tls-4", "revision": 4, "conditions": request or []}],
        "orders": orders or [],
        "challenges": challenges or [],
        "issuer": issuer
        or {
            "kind": "ClusterIssuer",
            "name": "letsencrypt",
            "conditions": [cond("Ready", "True", "ACMEAccountRegistered")],
        },
    }


def certs(data: dict[str, Any]) -> dict[str, Finding]:
    target = Target(kind="certificate", namespace=NS, name="playcode-tls")
    return by_code(analyze_certificate(inp("k8s.certificate_status", data, target)))


ORDER = {"name": "playcode-tls-4-1", "request": "playcode-tls-4", "state": "invalid", "reason": ""}


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("HTTP-01", "Waiting for HTTP-01 challenge propagation: wrong status code '404', expected '200'"),
        ("DNS-01", "NXDOMAIN looking up TXT for _acme-challenge.playcode.example"),
    ],
)
def test_a_failed_acme_challenge_is_named_with_its_reason_and_argues_for_a_renewal(
    kind: str, reason: str
) -> None:
    challenge = {
        "name": "ch-1",
        "order": ORDER["name"],
        "type": kind,
        "dns_name": "playcode.example",
        "state": "invalid",
        "reason": reason,
    }
    found = certs(
        chain(
            orders=[ORDER],
            challenges=[challenge],
            request=[cond("Ready", "False", "Failed", "order is in invalid state")],
        )
    )
    failed = found["cert.challenge_failed"]
    assert failed.details["type"] == kind and failed.details["reason"] == reason and reason in failed.summary
    assert failed.suggests == "renew" and failed.severity == "critical"
    assert ("dig TXT" in " ".join(failed.next_steps)) == (kind == "DNS-01")
    # the more specific cause stands alone: no vague not-ready, no order or request duplicate
    assert not {"cert.not_ready", "cert.order_failed", "cert.request_failed"} & set(found)


def test_a_challenge_of_an_older_request_does_not_count() -> None:
    old = {
        "name": "ch-0",
        "order": "playcode-tls-3-1",
        "type": "HTTP-01",
        "dns_name": "x",
        "state": "invalid",
        "reason": "old failure",
    }
    found = certs(
        chain(orders=[{**ORDER, "name": "playcode-tls-3-1", "request": "playcode-tls-3"}], challenges=[old])
    )
    assert "cert.challenge_failed" not in found and "cert.not_ready" in found


def test_an_order_failing_without_a_challenge_reason() -> None:
    found = certs(chain(orders=[{**ORDER, "reason": "rateLimited: too many certificates"}]))
    assert (
        "rateLimited" in found["cert.order_failed"].summary and found["cert.order_failed"].suggests == "renew"
    )


@pytest.mark.parametrize(
    "issuer",
    [
        {"kind": "ClusterIssuer", "name": "letsencrypt", "missing": True},
        {
            "kind": "Issuer",
            "name": "le",
            "conditions": [
                cond("Ready", "False", "ErrRegisterACMEAccount", "Failed to register ACME account: 403")
            ],
        },
    ],
)
def test_a_broken_issuer_is_the_cause_and_a_renewal_is_not_proposed(issuer: dict[str, Any]) -> None:
    found = certs(chain(issuer=issuer, not_after_days=3))
    assert found["cert.issuer_not_ready"].suggests is None
    assert found["cert.expiring"].suggests is None  # renewing cannot help until the issuer works
    assert not any(f.suggests for f in found.values())


def test_a_request_waiting_on_its_issuer_counts_as_a_broken_issuer() -> None:
    message = "Referenced issuer does not have a Ready status condition"
    found = certs(
        chain(
            request=[cond("Ready", "False", "Pending", message)],
            issuer={"kind": "Issuer", "name": "x", "error": "403"},
        )
    )
    assert found["cert.issuer_not_ready"].details["reason"] == message


def test_a_denied_request() -> None:
    found = certs(
        chain(
            request=[
                cond("Denied", "True", "Policy", "not allowed by policy"),
                cond("Ready", "False", "Denied", "not allowed by policy"),
            ]
        )
    )
    assert "not allowed by policy" in found["cert.request_failed"].summary


def test_expiry() -> None:
    soon = certs(chain(ready="True", not_after_days=5))
    assert set(soon) == {"cert.expiring"} and soon["cert.expiring"].suggests == "renew"
    assert soon["cert.expiring"].details["days_left"] == 5
    gone = certs(chain(ready="False", not_after_days=-1))
    assert gone["cert.expired"].severity == "critical"
    assert certs(chain(ready="True", not_after_days=60)) == {}


def test_an_issuance_in_progress_is_information() -> None:
    found = certs(chain(ready="True", issuing=cond("Issuing", "True", "Renewing", "renewal scheduled")))
    assert set(found) == {"cert.issuing"} and found["cert.issuing"].severity == "info"


def test_while_a_backup_runs_nothing_argues_for_another_run() -> None:
    data = runs(state="complete", last_success=40)
    data["jobs"].insert(
        0, {"name": "mongodb-backup-29400060", "state": "running", "start": at(3), "conditions": []}
    )
    found = backup(data)
    assert found["backup.overdue"].suggests is None
    assert (
        found["backup.running"].severity == "warning"
        and found["backup.running"].details["hours_running"] == 3
    )
    data["jobs"][0]["start"] = at(0.2)
    assert backup(data)["backup.running"].severity == "info"
    data["jobs"].pop(0)
    data["cronjob"]["active"] = 1  # the CronJob says one runs, even beyond the jobs shown
    assert backup(data)["backup.overdue"].suggests is None


def test_an_expired_certificate_is_not_also_a_vague_not_ready() -> None:
    found = certs(chain(ready="False", not_after_days=-2))
    assert set(found) == {"cert.expired"} and found["cert.expired"].suggests == "renew"


def test_a_failed_job_followed_by_a_good_run_is_recovered_not_failed() -> None:
    data = runs(state="failed", last_success=0.1)
    data["jobs"].insert(0, {"name": "mongodb-backup-29400060", "state": "complete", "completion": at(0.1)})
    data["alert_jobs"] = ["mongodb-backup-29400000"]
    found = backup(data)
    assert set(found) == {"backup.recovered", "backup.ok"}
    assert found["backup.recovered"].details["failed_jobs"] == ["mongodb-backup-29400000"]
    assert "kubectl delete job mongodb-backup-29400000 -n playcode" in found["backup.recovered"].next_steps[0]
    assert not any(f.suggests for f in found.values())


# ---------------------------------------------------------------------------------- output models


def test_hand_written_partial_evidence_reads_with_the_collectors_defaults() -> None:
    runs_ = CronJobRunsOutput.model_validate(
        {"cronjob": {"name": "mongodb-backup"}, "jobs": [{"name": "j", "state": "failed"}], "note": "ignored"}
    )
    assert (runs_.cronjob.suspend, runs_.cronjob.active, runs_.cronjob.schedule) == (False, 0, None)
    assert runs_.jobs[0].conditions == [] and runs_.jobs[0].manual is False
    assert runs_.pods == [] and runs_.logs == [] and runs_.alert_jobs == [] and runs_.events_complete
    status = CertificateStatusOutput.model_validate(
        {"certificate": {"name": "tls"}, "issuer": {"kind": "Issuer", "conditions": [{"type": "Ready"}]}}
    )
    assert status.certificate.conditions == [] and status.certificate.not_after is None
    assert status.issuer.name is None and status.issuer.missing is False
    assert status.issuer.conditions[0].status is None and status.requests == []


def test_an_issuer_ref_stores_only_the_keys_the_api_gave() -> None:
    info = CertificateInfo.model_validate({"issuer_ref": {"name": "le", "kind": "ClusterIssuer"}})
    assert info.model_dump()["issuer_ref"] == {"name": "le", "kind": "ClusterIssuer"}
    assert CertificateInfo().model_dump()["issuer_ref"] == {}


def test_typed_values_written_as_strings_read_as_what_they_say() -> None:
    """A hand-written ``suspend: "false"`` was truthy (a suspended CronJob) and an exit code
    ``"137"`` was not 137; the model reads them as the bool and the number."""
    data = runs(state="complete", last_success=2, containers=[{"name": "backup", "exit_code": "137"}])
    data["cronjob"]["suspend"] = "false"
    assert set(backup(data)) == {"backup.ok"}
    data = runs(containers=[{"name": "backup", "exit_code": "137", "reason": "Error"}])
    assert backup(data)["backup.failed"].details["cause"] == "oom_killed"


@pytest.mark.parametrize(
    ("where", "value"),
    [
        ("lines", "Authentication failed"),  # a string where the log's lines are due: not its characters
        ("state", "done"),  # a state the collector never writes
        ("suspend", "maybe"),
    ],
)
def test_evidence_of_the_wrong_shape_is_an_error_never_a_finding(where: str, value: Any) -> None:
    data = runs()
    {"lines": data["logs"][0], "state": data["jobs"][0], "suspend": data["cronjob"]}[where][where] = value
    with pytest.raises(EvidenceShapeError, match=where):
        backup(data)


def test_a_certificate_field_of_the_wrong_type_is_not_read() -> None:
    data = chain(not_after_days=-1)
    data["certificate"]["conditions"] = "Ready"  # not a list of conditions
    with pytest.raises(EvidenceShapeError, match=r"certificate.conditions"):
        certs(data)
