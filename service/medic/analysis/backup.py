"""Runbook 5.1, backups: why the backup CronJob's last run failed, and how long ago the last
backup succeeded. Pure: reads ``k8s.cronjob_runs`` evidence only.

Findings:

- ``backup.failed`` (critical): the newest finished Job failed; ``details.cause`` is what its
  pods say: ``oom_killed`` (exit 137 / OOMKilled), ``mongo_auth`` (authentication refused),
  ``no_space`` (ENOSPC), ``mongo_unreachable`` (connection refused, server selection), ``timeout``
  (activeDeadlineSeconds), ``image`` (image pull), ``config`` (missing Secret/ConfigMap) or
  ``unknown`` (with the exit code). It suggests ``backup_now`` (create a Job from the CronJob);
  the next steps say what to fix first when a re-run would fail the same way.
- ``backup.overdue`` (critical): no successful backup for longer than the schedule's period
  plus a grace; ``details.hours_since_success``.
- ``backup.suspended`` (warning): the CronJob is suspended (no run is ever scheduled).
- ``backup.running`` (info; warning after :data:`LONG_RUN`): a backup Job is running now. While
  one runs, nothing argues for another run: ``backup.failed`` and ``backup.overdue`` then suggest
  nothing (two dumps side by side would only load MongoDB twice).
- ``backup.recovered`` (info): the alert's Job failed but a later run succeeded (KubeJobFailed
  lasts as long as the failed Job exists).
- ``backup.ok`` (info): the newest run succeeded and the last success is recent.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from medic.analysis.dataplane import typed_first
from medic.collectors.k8s.jobs_output import CronJobInfo, CronJobRunsOutput, JobPod, JobRun, LogTail
from medic.domain.incident import Finding
from medic.domain.rollout import parse_time
from medic.playbooks.contract import AnalysisInput, AnalyzerDef

COLLECTOR = "k8s.cronjob_runs"
DEFAULT_PERIOD = timedelta(hours=24)
MIN_GRACE = timedelta(hours=1)
LONG_RUN = timedelta(hours=1)  # kube-prometheus-stack's KubeCronJobRunning fires after an hour

# (cause, pattern over the log tail and the termination messages), first match wins
_CAUSES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("no_space", re.compile(r"no space left on device|ENOSPC|disk quota exceeded", re.I)),
    (
        "mongo_auth",
        re.compile(
            r"authentication failed|auth(entication)? error|not authorized|SCRAM|Unauthorized|"
            r"bad auth|AuthenticationFailed",
            re.I,
        ),
    ),
    (
        "mongo_unreachable",
        re.compile(
            r"ECONNREFUSED|connection refused|server selection|no reachable servers|"
            r"could not connect|timed out connecting|no such host",
            re.I,
        ),
    ),
)
_NEXT = {
    "oom_killed": "raise the backup container's memory limit (kubectl edit cronjob/{cj} -n {ns}), re-run",
    "no_space": "free or grow the backup volume / bucket (it is full), then re-run",
    "mongo_auth": "check the backup user's credentials (the Secret the CronJob mounts) and roles, re-run",
    "mongo_unreachable": "check MongoDB first (runbook 3.3: kubectl get pods -n {ns} -l app=mongodb)",
    "timeout": "the backup ran past activeDeadlineSeconds: check MongoDB's load and the data size",
    "image": "fix the backup image (kubectl describe pod -n {ns} -l job-name={job})",
    "config": "create the missing Secret/ConfigMap the backup pod needs",
}


def schedule_period(schedule: str | None) -> timedelta:
    """The period of the common cron forms (``M H * * *`` daily, ``M */N * * *`` every N
    hours, ``M * * * *`` hourly, ``*/N * * * *``, ``M H * * D`` weekly); a day otherwise."""
    fields = str(schedule or "").split()
    if str(schedule or "").strip() in ("@hourly",):
        return timedelta(hours=1)
    if str(schedule or "").strip() in ("@weekly",):
        return timedelta(days=7)
    if len(fields) != 5:
        return DEFAULT_PERIOD
    minute, hour, dom, month, dow = fields
    if dom != "*" or month != "*":
        return DEFAULT_PERIOD
    if dow != "*":
        return timedelta(days=7) if dow.isdigit() else DEFAULT_PERIOD
    if hour == "*":
        if minute.startswith("*/") and minute[2:].isdigit():
            return timedelta(minutes=int(minute[2:]))
        return timedelta(hours=1)
    if hour.startswith("*/") and hour[2:].isdigit():
        return timedelta(hours=int(hour[2:]))
    if "," in hour and all(h.isdigit() for h in hour.split(",")):
        return timedelta(hours=24 / len(hour.split(",")))
    return DEFAULT_PERIOD


def overdue_after(schedule: str | None) -> timedelta:
    period = schedule_period(schedule)
    return period + max(MIN_GRACE, period / 10)


def classify(pods: list[JobPod], logs: list[LogTail], job: JobRun) -> tuple[str, str]:
    """(cause, evidence line) for a failed Job from its pods and their log tails."""
    containers = [c for p in pods for c in p.containers]
    for c in containers:
        if c.reason == "OOMKilled" or c.exit_code == 137:
            return "oom_killed", f"container {c.name} was OOMKilled (exit {c.exit_code})"
    for c in containers:
        if c.reason in ("ImagePullBackOff", "ErrImagePull", "InvalidImageName"):
            return "image", f"container {c.name}: {c.reason}"
        if c.reason == "CreateContainerConfigError":
            return "config", f"container {c.name}: {c.message or c.reason}"
    texts = [c.message or "" for c in containers]
    for log in logs:
        texts.extend(log.lines)
    for cause, pattern in _CAUSES:
        for line in reversed(texts):
            if pattern.search(line):
                return cause, line.strip()[:300]
    reasons = " ".join(c.reason or "" for c in job.conditions)
    if "DeadlineExceeded" in reasons:
        return "timeout", "the Job ran past its activeDeadlineSeconds"
    codes = sorted({c.exit_code for c in containers if c.exit_code}, key=str)
    line = next((t for t in reversed(texts) if t.strip()), "")
    return "unknown", (f"exit code {', '.join(map(str, codes))}" if codes else "no exit code") + (
        f"; last log line: {line.strip()[:200]}" if line else ""
    )


def _hours(delta: timedelta) -> float:
    return round(delta.total_seconds() / 3600, 1)


@dataclass(frozen=True)
class _Backup:
    """What the findings are read from: the CronJob, its runs and the evidence steps."""

    data: CronJobRunsOutput
    cj: CronJobInfo
    name: str
    ns: str
    jobs: list[JobRun]
    newest: JobRun | None  # the newest finished Job
    running: list[JobRun]
    since: timedelta | None  # since the last success
    now: datetime
    steps: list[str]

    @property
    def base(self) -> dict[str, Any]:
        return {"cronjob": self.name, "namespace": self.ns, "schedule": self.cj.schedule}

    @property
    def rerun(self) -> str | None:
        """``backup_now`` unless a backup is running already."""
        return None if self.running or self.cj.active else "backup_now"

    def manual_run(self) -> str:
        return f"kubectl create job --from=cronjob/{self.name} manual-backup-$(date +%Y%m%d) -n {self.ns}"


def _read(inp: AnalysisInput, data: CronJobRunsOutput) -> _Backup:
    cj, jobs = data.cronjob, data.jobs
    finished = [j for j in jobs if j.state in ("complete", "failed")]
    last_success = parse_time(cj.last_successful) or max(
        (t for j in jobs if j.state == "complete" and (t := parse_time(j.completion))),
        default=None,
    )
    return _Backup(
        data=data,
        cj=cj,
        name=cj.name,
        ns=cj.namespace,
        jobs=jobs,
        newest=finished[0] if finished else None,
        running=[j for j in jobs if j.state == "running"],
        since=inp.now - last_success if last_success else None,
        now=inp.now,
        steps=[e.step for e in inp.of(COLLECTOR) if e.ok],
    )


def _failed(b: _Backup) -> Finding | None:
    if b.newest is None or b.newest.state != "failed":
        return None
    job = str(b.newest.name)
    pods = [p for p in b.data.pods if p.job == job]
    pod_names = {p.name for p in pods}
    logs = [lg for lg in b.data.logs if lg.pod in pod_names]
    cause, line = classify(pods, logs, b.newest)
    fix = _NEXT.get(cause, "read the failed pod's log (kubectl logs -n {ns} job/{job})")
    return Finding(
        analyzer="backup",
        code="backup.failed",
        severity="critical",
        summary=f"backup job {job} failed ({cause.replace('_', ' ')}): {line}",
        details={
            **b.base,
            "job": job,
            "cause": cause,
            "evidence_line": line,
            "pods": sorted(str(p) for p in pod_names),
            "hours_since_success": _hours(b.since) if b.since else None,
        },
        evidence=b.steps,
        next_steps=[
            fix.format(cj=b.name, ns=b.ns, job=job),
            f"kubectl logs -n {b.ns} job/{job}",
            b.manual_run(),
        ],
        suggests=b.rerun,
    )


def _overdue(b: _Backup) -> Finding | None:
    limit = overdue_after(b.cj.schedule)
    if b.since is not None and b.since <= limit:
        return None
    when = f"{_hours(b.since)} h ago" if b.since is not None else "never (no successful run on record)"
    return Finding(
        analyzer="backup",
        code="backup.overdue",
        severity="critical",
        summary=f"the last successful backup of cronjob {b.ns}/{b.name} was {when} "
        f"(expected every {_hours(schedule_period(b.cj.schedule))} h)",
        details={
            **b.base,
            "last_successful": b.cj.last_successful,
            "hours_since_success": _hours(b.since) if b.since is not None else None,
            "overdue_after_hours": _hours(limit),
        },
        evidence=b.steps,
        next_steps=[f"kubectl get cronjob {b.name} -n {b.ns} -o wide", b.manual_run()],
        suggests=b.rerun,
    )


def _suspended(b: _Backup) -> Finding | None:
    if not b.cj.suspend:
        return None
    return Finding(
        analyzer="backup",
        code="backup.suspended",
        severity="warning",
        summary=f"cronjob {b.ns}/{b.name} is suspended: no backup is scheduled",
        details=b.base,
        evidence=b.steps,
        next_steps=[f'kubectl patch cronjob {b.name} -n {b.ns} -p \'{{"spec":{{"suspend":false}}}}\''],
    )


def _running(b: _Backup) -> Finding | None:
    if not b.running:
        return None
    job = b.running[0]
    started = parse_time(job.start or job.created)
    for_long = started is not None and b.now - started > LONG_RUN
    return Finding(
        analyzer="backup",
        code="backup.running",
        severity="warning" if for_long else "info",
        summary=f"backup job {job.name} is running (started {job.start}"
        + (f", {_hours(b.now - started)} h ago)" if started is not None else ")"),
        details={
            **b.base,
            "job": job.name,
            "hours_running": _hours(b.now - started) if started is not None else None,
        },
        evidence=b.steps,
        next_steps=[f"kubectl logs -n {b.ns} job/{job.name} --tail=50"],
    )


def _recovered(b: _Backup) -> Finding | None:
    # KubeJobFailed fires as long as the failed Job exists, also after later runs succeeded
    states = {str(j.name): j.state for j in b.jobs}
    newest = b.newest or JobRun()
    stale = [j for j in b.data.alert_jobs if states.get(j) == "failed" and j != newest.name]
    if not stale or newest.state != "complete":
        return None
    return Finding(
        analyzer="backup",
        code="backup.recovered",
        severity="info",
        summary=f"job {stale[0]} failed, but the later run {newest.name} succeeded: the alert "
        "lasts as long as the failed Job exists",
        details={**b.base, "failed_jobs": stale, "succeeded_job": newest.name},
        evidence=b.steps,
        next_steps=[f"kubectl delete job {j} -n {b.ns}  # clears KubeJobFailed" for j in stale],
    )


def _ok(b: _Backup, found: list[Finding]) -> Finding | None:
    if b.since is None or any(f.code in ("backup.failed", "backup.overdue") for f in found):
        return None
    return Finding(
        analyzer="backup",
        code="backup.ok",
        severity="info",
        summary=f"the last backup of cronjob {b.ns}/{b.name} succeeded {_hours(b.since)} h ago",
        details={**b.base, "hours_since_success": _hours(b.since)},
        evidence=b.steps,
    )


# One function per finding, in the order the findings are reported (``backup.ok`` comes last).
_FINDINGS: tuple[Callable[[_Backup], Finding | None], ...] = (
    _failed,
    _overdue,
    _suspended,
    _running,
    _recovered,
)


def analyze_backup(inp: AnalysisInput) -> list[Finding]:
    data = typed_first(inp, COLLECTOR, CronJobRunsOutput)
    if data is None or not data.model_fields_set:  # no run, or an empty one
        return []
    backup = _read(inp, data)
    findings = [f for f in (check(backup) for check in _FINDINGS) if f is not None]
    ok = _ok(backup, findings)
    return findings if ok is None else [*findings, ok]


ANALYZERS = [
    AnalyzerDef(
        "backup",
        analyze_backup,
        "runbook 5.1: why the backup CronJob's last run failed, hours since the last good backup",
        codes=tuple(f"backup.{c}" for c in ("failed", "ok", "overdue", "recovered", "running", "suspended")),
    ),
]
