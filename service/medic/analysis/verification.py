"""The verdict of a deploy verification (runbook 1.3): pure, data in, data out.

Every interval the verifier collects the playbook's evidence and this analyzer (``deploy_verify``)
turns it into a :class:`~medic.domain.verification.Sample` and judges the samples so far against
the playbook's thresholds (:class:`~medic.domain.verification.VerificationSpec`):

- **at once**, whenever it happens: the rollout's progress deadline is exceeded, a pod of the new
  revision cannot run (CrashLoopBackOff, image pull, config error), restarts or the 5xx ratio
  reach their ``fail_fast`` level → ``failed``; the Deployment moved on to another revision →
  ``inconclusive`` (superseded);
- **at the end of the window**: any threshold breached → ``failed``; too few requests to judge
  the 5xx ratio and latency (``min_requests``) or a rollout still in progress → ``inconclusive``;
  else ``passed``.

The window's state (spec, revision, samples so far) reaches the analyzer as the evidence of the
``verification.window`` step, which the verifier adds; without it (a rule test, a replay of one
sample) the evidence is judged as a whole window that ends now, with the default thresholds.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, TypeVar

from pydantic import BaseModel, field_validator

from medic.analysis.dataplane import EvidenceShapeError, M, validated
from medic.collectors.k8s.revision_output import RevisionStatusOutput
from medic.collectors.revision_output import ComparedQuery, RevisionCompareOutput, RevisionErrorsOutput
from medic.domain.evidence import Evidence
from medic.domain.incident import Finding
from medic.domain.verification import (
    Limit,
    Pair,
    PodsSample,
    RolloutSample,
    Sample,
    Verification,
    VerificationSpec,
    VerificationState,
)
from medic.playbooks.contract import AnalysisInput, AnalyzerDef

T = TypeVar("T")
WINDOW_STEP = "verification.window"  # the collector name of the window's own evidence
# A new pod that cannot run fails the verification at once when the reason is final
# (CrashLoopBackOff: it crashed again and again; an image name that cannot be valid), and when
# it is still there one interval later for the reasons that may pass (a registry's rate limit,
# a Secret applied a moment after the Deployment).
CANNOT_RUN_AT_ONCE = frozenset({"CrashLoopBackOff", "InvalidImageName"})
CANNOT_RUN_TWICE = frozenset(
    {
        "ImagePullBackOff",
        "ErrImagePull",
        "CreateContainerConfigError",
        "CreateContainerError",
        "RunContainerError",
    }
)


@dataclass(frozen=True)
class Check:
    name: str
    value: float | None
    baseline: float | None
    breached: bool
    text: str


@dataclass
class Verdict:
    state: VerificationState
    reason: str
    early: bool = False
    checks: list[Check] = field(default_factory=list)


# ------------------------------------------------------------------------------ measure
def _read(evidence: Mapping[str, Evidence], collector: str, model: type[M], gaps: list[str]) -> M | None:
    """The first successful run of ``collector`` read as its output model (issue 16.3); data of
    another shape is not measured, and the sample's gaps say why."""
    try:
        found = next(validated((ev for ev in evidence.values() if ev.collector == collector), model), None)
    except EvidenceShapeError as exc:
        gaps.append(str(exc))
        return None
    return found[1] if found else None


def _rollout(status: RevisionStatusOutput) -> tuple[RolloutSample, PodsSample]:
    r = status.rollout
    rollout = RolloutSample(
        desired=r.desired,
        updated=r.updated,
        ready=r.ready,
        available=r.available,
        progressing=r.progressing_reason,
        deadline_exceeded=r.deadline_exceeded,
        complete=r.complete,
        current_revision=r.revision,
    )
    pods = PodsSample(total=status.pods_total)
    for p in status.pods:
        pods.ready += p.ready
        pods.restarts += p.restarts
        for key, reason in (("waiting", p.waiting), ("terminated", p.last_terminated)):
            if reason:
                pods.add(key, reason)
    return rollout, pods


def _ratio(errors: float | None, requests: float | None) -> float | None:
    if errors is None or not requests:
        return None
    return errors / requests


def _count(q: ComparedQuery | None, side: Literal["new", "baseline"]) -> float | None:
    """A counter's increase: no series at all is 0 (no 5xx answered), a failed query unknown."""
    if q is None:
        return None
    value = q.new if side == "new" else q.baseline
    if value is None:
        return None if q.error else 0.0
    return value


def _prometheus(cmp: RevisionCompareOutput) -> tuple[Pair, Pair, Pair]:
    q = {x.name: x for x in cmp.queries}
    req, err, p99 = q.get("requests"), q.get("errors_5xx"), q.get("latency_p99")
    new_requests, base_requests = (req.new, req.baseline) if req else (None, None)
    requests = Pair(new=new_requests, baseline=base_requests)
    ratio = Pair(
        new=_ratio(_count(err, "new"), new_requests),
        baseline=_ratio(_count(err, "baseline"), base_requests),
    )
    return requests, ratio, Pair(new=p99.new, baseline=p99.baseline) if p99 else Pair()


def _query_gaps(step: str, cmp: RevisionCompareOutput) -> list[str]:
    gaps = [f"{step}: {q.name}: {q.error}" for q in cmp.queries if q.error]
    if cmp.alerts_error:
        gaps.append(f"{step}: alerts: {cmp.alerts_error}")
    return gaps


def target_alerts(cmp: RevisionCompareOutput, deployment: str, replicaset: str) -> list[str]:
    """The alerts firing for the verified Deployment (its name, or a pod of the new revision);
    Medic's own alerts are about Medic, not the deploy."""
    names = []
    for a in cmp.alerts:
        name = a.alertname
        if not name or name.startswith("Medic"):
            continue
        pod = a.pod or ""
        mine = a.deployment == deployment or (replicaset and pod.startswith(f"{replicaset}-"))
        if mine:
            names.append(name)
    return sorted(set(names))


def measure(
    evidence: Mapping[str, Evidence], now: datetime, v: Verification | None, deployment: str = ""
) -> Sample:
    """One interval's measurements from the collected evidence (``deployment``: whose alerts
    count, when there is no verification record)."""
    started = v.started_at if v else now
    sample = Sample(at=now, elapsed_s=max(0.0, (now - started).total_seconds()))
    status = _read(evidence, "k8s.revision_status", RevisionStatusOutput, sample.gaps)
    if status is not None:
        sample.rollout, sample.pods = _rollout(status)
    if (
        cmp := _read(evidence, "prometheus.revision_compare", RevisionCompareOutput, sample.gaps)
    ) is not None:
        sample.requests, sample.error_ratio_5xx, sample.latency_p99 = _prometheus(cmp)
        sample.gaps += _query_gaps("prometheus.revision_compare", cmp)
        sample.alerts_read = not cmp.alerts_error
        replicaset = v.replicaset if v else (status.replicaset if status else "")
        sample.alerts_firing = target_alerts(cmp, v.deployment if v else deployment, replicaset)
    if (logs := _read(evidence, "loki.revision_errors", RevisionErrorsOutput, sample.gaps)) is not None:
        sample.error_logs_per_minute = Pair(new=logs.new_per_minute, baseline=logs.baseline_per_minute)
    for ev in evidence.values():
        if ev.collector != WINDOW_STEP and not ev.ok:
            sample.gaps.append(f"{ev.step}: {ev.status.value}{f' ({ev.error})' if ev.error else ''}")
    return sample


# ------------------------------------------------------------------------------ judge
def _pct(x: float) -> str:
    return f"{x * 100:.1f} %"


def _fmt(name: str, x: float | None) -> str:
    if x is None:
        return "n/a"
    if name == "error_ratio_5xx":
        return _pct(x)
    if name == "latency_p99":
        return f"{x * 1000:.0f} ms"
    return f"{x:.1f}"


def limit_breach(name: str, limit: Limit, pair: Pair) -> str | None:
    """Why ``pair.new`` breaches ``limit`` (None: it does not, or it is not measured)."""
    new, base = pair.new, pair.baseline
    if new is None:
        return None
    if limit.max is not None and new > limit.max:
        return f"{_fmt(name, new)} is over the ceiling of {_fmt(name, limit.max)}"
    if base is None or new <= limit.floor:
        return None
    if limit.max_increase is not None and new - base > limit.max_increase:
        bound = _fmt(name, limit.max_increase)
        return f"{_fmt(name, new)} against {_fmt(name, base)} on the baseline (more than +{bound})"
    if limit.max_factor is not None and new > base * limit.max_factor:
        return (
            f"{_fmt(name, new)} against {_fmt(name, base)} on the baseline (more than ×{limit.max_factor:g})"
        )
    return None


def _last(values: Iterable[T | None]) -> T | None:
    """The newest measured value, ``values`` newest first (a step that failed at the end leaves
    an older one)."""
    return next((x for x in values if x is not None), None)


def _checks(spec: VerificationSpec, samples: list[Sample]) -> list[Check]:
    latest = samples[-1]
    enough = (latest.requests.new or 0) >= spec.min_requests
    t = spec.thresholds
    out: list[Check] = []
    measured = [("error_ratio_5xx", t.error_ratio_5xx, latest.error_ratio_5xx, enough)]
    measured.append(("latency_p99", t.latency_p99, latest.latency_p99, enough))
    measured.append(("error_logs_per_minute", t.error_logs_per_minute, latest.error_logs_per_minute, True))
    pods = _last(s.pods for s in reversed(samples))
    measured.append(("restarts", t.restarts, Pair(new=float(pods.restarts) if pods else None), True))
    fired = sorted({a for s in samples for a in s.alerts_firing})
    measured.append(("alerts_firing", t.alerts_firing, Pair(new=float(len(fired))), True))
    for name, limit, pair, judged in measured:
        why = limit_breach(name, limit, pair) if judged else None
        if name == "alerts_firing" and why:
            why = f"alerts fired for the Deployment during the window: {', '.join(fired)}"
        out.append(Check(name, pair.new, pair.baseline, why is not None, why or ""))
    return out


def _cannot_run(samples: list[Sample]) -> Verdict | None:
    def waiting(s: Sample | None) -> dict[str, int]:
        return PodsSample.counts(s.pods.waiting) if s is not None and s.pods else {}

    now, before = waiting(samples[-1]), waiting(samples[-2] if len(samples) > 1 else None)
    bad = sorted(r for r in now if r in CANNOT_RUN_AT_ONCE or (r in CANNOT_RUN_TWICE and r in before))
    if not bad:
        return None
    n = sum(now[r] for r in bad)
    return Verdict("failed", f"{n} pod(s) of the new revision cannot run: {', '.join(bad)}", True)


def _early(spec: VerificationSpec, v: Verification | None, samples: list[Sample]) -> Verdict | None:
    latest = samples[-1]
    rollout, pods = latest.rollout, latest.pods
    if v is not None and rollout and rollout.current_revision not in (None, v.revision):
        return Verdict(
            "inconclusive", f"superseded: the Deployment is at revision {rollout.current_revision} now", True
        )
    if rollout and rollout.deadline_exceeded:
        return Verdict(
            "failed", "the rollout exceeded its progress deadline (ProgressDeadlineExceeded)", True
        )
    if (stuck := _cannot_run(samples)) is not None:
        return stuck
    t = spec.thresholds
    if pods and t.restarts.fail_fast is not None and pods.restarts >= t.restarts.fail_fast:
        return Verdict("failed", f"the new revision's pods restarted {pods.restarts} times", True)
    ratio, requests = latest.error_ratio_5xx.new, latest.requests.new or 0
    fast = t.error_ratio_5xx.fail_fast
    if fast is not None and ratio is not None and ratio >= fast and requests >= spec.min_requests:
        return Verdict(
            "failed",
            f"5xx ratio {_pct(ratio)} of {requests:.0f} requests (fails at once from {_pct(fast)})",
            True,
        )
    return None


def _at_the_end(spec: VerificationSpec, samples: list[Sample], checks: list[Check]) -> Verdict:
    breached = [c for c in checks if c.breached]
    if breached:
        return Verdict("failed", "; ".join(f"{c.name}: {c.text}" for c in breached), checks=checks)
    requests = samples[-1].requests.new
    if requests is None or requests < spec.min_requests:
        seen = "no request metrics" if requests is None else f"only {requests:.0f} requests"
        why = f"{seen} in the window (at least {spec.min_requests} are needed to judge the 5xx ratio and p99)"
        return Verdict("inconclusive", why, checks=checks)
    rollout = _last(s.rollout for s in reversed(samples))
    if rollout is None or _last(s.pods for s in reversed(samples)) is None:
        return Verdict("inconclusive", "the rollout and its pods could not be read", checks=checks)
    if not rollout.complete:
        return Verdict(
            "inconclusive", "the rollout had not completed at the end of the window", checks=checks
        )
    return Verdict("passed", "every check held over the window", checks=checks)


def judge(spec: VerificationSpec, v: Verification | None, samples: list[Sample], now: datetime) -> Verdict:
    """The state of the verification after ``samples`` (the newest last)."""
    latest = samples[-1]
    checks = _checks(spec, samples)
    if (early := _early(spec, v, samples)) is not None:
        early.checks = checks
        return early
    if v is not None and now < v.ends_at:
        done = int(latest.elapsed_s // max(v.interval_s, 1))
        total = int(v.window_s // max(v.interval_s, 1))
        return Verdict("verifying", f"interval {done} of {total}: nothing failed so far", checks=checks)
    return _at_the_end(spec, samples, checks)


# ------------------------------------------------------------------------------ findings
_SEVERITY = {"failed": "critical", "inconclusive": "warning", "passed": "info", "verifying": "info"}


def verdict_findings(verdict: Verdict, v: Verification | None, sample: Sample) -> list[Finding]:
    what = v.label if v else "the new revision"
    against = f" against revision {v.baseline_revision}" if v and v.baseline_revision else ""
    head = Finding(
        analyzer="deploy_verify",
        code=f"verify.{verdict.state}",
        severity=_SEVERITY[verdict.state],
        summary=f"{what}{against}: {verdict.state} — {verdict.reason}",
        details={
            "state": verdict.state,
            "early": verdict.early,
            "sample": sample.model_dump(mode="json"),
            "checks": [c.__dict__ for c in verdict.checks],
            "revision": v.revision if v else None,
            "baseline_revision": v.baseline_revision if v else None,
        },
        evidence=[WINDOW_STEP] if v else [],
        suggests="rollback" if verdict.state == "failed" else None,
    )
    if v is not None:
        ns, name = v.namespace, v.deployment
        head.next_steps = [
            f"kubectl rollout status deployment/{name} -n {ns}",
            f"kubectl get pods -n {ns} -l pod-template-hash={v.replicaset.rsplit('-', 1)[-1]}",
            f"kubectl rollout history deployment/{name} -n {ns}",
        ]
    findings = [head]
    level = "critical" if verdict.state == "failed" else "warning"
    for c in verdict.checks:
        if c.breached:
            findings.append(
                Finding(
                    analyzer="deploy_verify",
                    code=f"verify.{c.name}",
                    severity=level,
                    summary=f"{c.name.replace('_', ' ')}: {c.text}",
                    details={"value": c.value, "baseline": c.baseline},
                )
            )
    return findings


class Window(BaseModel):
    """The data of the ``verification.window`` step: what the verifier stores in it."""

    spec: VerificationSpec = VerificationSpec()
    verification: Verification

    @field_validator("spec", mode="before")
    @classmethod
    def _default_spec(cls, value: object) -> object:
        return {} if value is None else value  # absent or null: the default thresholds


def window_of(inp: AnalysisInput) -> tuple[VerificationSpec, Verification | None]:
    """The window's spec and record; the defaults and None without it. A window of another shape
    raises (the verifier wrote it: it is never silently judged as no window)."""
    found = next(validated((e for e in inp.of(WINDOW_STEP) if e.ok), Window), None)
    if found is None:
        return VerificationSpec(), None
    return found[1].spec, found[1].verification


def deploy_verify(inp: AnalysisInput) -> list[Finding]:
    spec, v = window_of(inp)
    sample = measure(inp.evidence, inp.now, v, inp.target.name if inp.target else "")
    samples = [*(v.samples if v else []), sample]
    return verdict_findings(judge(spec, v, samples, inp.now), v, sample)


ANALYZERS = [
    AnalyzerDef(
        "deploy_verify",
        deploy_verify,
        "a fresh revision against its baseline over the verification window: passed, failed or inconclusive",
        codes=(
            "verify.*",
        ),  # the verdict (verify.passed, ...) and each breached check (verify.error_ratio_5xx, ...)
    )
]
