"""Deploy verification (runbook 1.3): a fresh revision watched over a window against a baseline.

A verification is an incident (rule ``deploy-verify``) that carries a :class:`Verification`: the
revision under test and the baseline revision it is compared with, the window, the samples taken
at every interval, and its state (``verifying`` → ``passed|failed|inconclusive``). The thresholds
come from the playbook's ``verify:`` section (:class:`VerificationSpec`). The judging itself is pure
(:mod:`medic.analysis.verification`); the loop that samples is in :mod:`medic.app.verification`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from medic.domain.durations import Duration

VERIFY_ALERTNAME = "MedicDeployVerification"  # the alert a trigger hands to the rules
VerificationState = Literal["verifying", "passed", "failed", "inconclusive"]
FINAL_STATES = frozenset({"passed", "failed", "inconclusive"})
MAX_WINDOW = timedelta(hours=6)


class Limit(BaseModel):
    """A measurement's bounds: an absolute ceiling (``max``), and ceilings relative to the
    baseline (``max_increase``: new - baseline, for ratios; ``max_factor``: new / baseline) that
    apply only above the noise ``floor`` (a baseline of 0 error lines must not make one line a
    failure). Reaching ``fail_fast`` ends the window at once (a 5xx ratio far over the threshold)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max: float | None = Field(None, ge=0)
    max_increase: float | None = Field(None, ge=0)
    max_factor: float | None = Field(None, ge=1)
    floor: float = Field(0.0, ge=0)
    fail_fast: float | None = Field(None, ge=0)


class Thresholds(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    error_ratio_5xx: Limit = Limit(max=0.05, max_increase=0.02, fail_fast=0.25)
    latency_p99: Limit = Limit(max=2.0, max_factor=1.5, floor=0.25)
    error_logs_per_minute: Limit = Limit(max_factor=3.0, floor=1.0)
    restarts: Limit = Limit(max=0, fail_fast=3)
    alerts_firing: Limit = Limit(max=0)


class VerificationSpec(BaseModel):
    """A playbook's ``verify:`` section: how long, how often, against what, and how strict."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    window: Duration = timedelta(minutes=10)
    interval: Duration = timedelta(minutes=1)
    baseline: Duration = timedelta(hours=1)  # the previous revision's last hour
    min_requests: int = Field(100, ge=0)  # fewer in the window: inconclusive, not failed
    thresholds: Thresholds = Thresholds()

    @model_validator(mode="after")
    def _check(self) -> VerificationSpec:
        if not timedelta(seconds=5) <= self.interval <= self.window:
            raise ValueError("interval must be at least 5s and at most the window")
        if self.window > MAX_WINDOW:
            raise ValueError(f"window must be at most {MAX_WINDOW}")
        return self


class RolloutSample(BaseModel):
    desired: int | None = None
    updated: int | None = None
    ready: int | None = None
    available: int | None = None
    progressing: str | None = None  # the Progressing condition's reason
    deadline_exceeded: bool = False
    complete: bool = False
    current_revision: int | None = None  # the Deployment's, at the time of the sample


class ReasonCount(BaseModel):
    reason: str  # CrashLoopBackOff, OOMKilled...
    pods: int


class PodsSample(BaseModel):
    """The new revision's pods. Reasons are kept as values, not as keys: a reason that looks like
    a secret's name is redacted as a value would be, and the sample still reads back."""

    total: int = 0
    ready: int = 0
    restarts: int = 0
    waiting: list[ReasonCount] = Field(default_factory=list)  # pods waiting, by reason
    terminated: list[ReasonCount] = Field(default_factory=list)  # pods by last termination reason

    @field_validator("waiting", "terminated", mode="before")
    @classmethod
    def _from_mapping(cls, value: Any) -> Any:
        if isinstance(value, dict):  # {reason: pods}
            return [{"reason": k, "pods": n} for k, n in value.items()]
        return value

    @staticmethod
    def counts(reasons: list[ReasonCount]) -> dict[str, int]:
        return {r.reason: r.pods for r in reasons}

    def add(self, field: str, reason: str) -> None:
        reasons: list[ReasonCount] = getattr(self, field)
        for r in reasons:
            if r.reason == reason:
                r.pods += 1
                return
        reasons.append(ReasonCount(reason=reason, pods=1))


class Pair(BaseModel):
    """One measurement for the new revision and its baseline (None: not measured)."""

    new: float | None = None
    baseline: float | None = None


class Sample(BaseModel):
    """What one interval measured."""

    at: datetime
    elapsed_s: float
    rollout: RolloutSample | None = None
    pods: PodsSample | None = None
    requests: Pair = Pair()
    error_ratio_5xx: Pair = Pair()
    latency_p99: Pair = Pair()
    error_logs_per_minute: Pair = Pair()
    alerts_firing: list[str] = Field(default_factory=list)
    alerts_read: bool = False  # the alerts were read (an empty list then means none fired)
    gaps: list[str] = Field(default_factory=list)  # what could not be measured, and why


class Verification(BaseModel):
    namespace: str
    deployment: str
    revision: int
    baseline_revision: int | None = None
    replicaset: str = ""  # the new revision's ReplicaSet (its pods are named after it)
    baseline_replicaset: str = ""
    # when the revision's rollout began (its ReplicaSet's creation; the verification's start for a
    # restored ReplicaSet): an alert already firing then is the previous revision's
    rollout_at: datetime | None = None
    # how much of the baseline hour the baseline revision actually ran (seconds; None: all of it)
    baseline_s: float | None = None
    # the revision restores an older template (a rollback by a human): compared on absolute
    # thresholds only, and never rolled back (its predecessor is what was fled from)
    restored: bool = False
    trigger: str = "api"  # watch | api | cli
    started_at: datetime
    window_s: float
    interval_s: float
    ends_at: datetime
    next_at: datetime
    state: VerificationState = "verifying"
    reason: str = ""
    finished_at: datetime | None = None
    samples: list[Sample] = Field(default_factory=list)

    @property
    def final(self) -> bool:
        return self.state in FINAL_STATES

    @property
    def label(self) -> str:
        return f"deployment/{self.namespace}/{self.deployment} revision {self.revision}"


class RevisionWindow(BaseModel):
    """What a verification's collectors need: whose pods, since when, against which baseline."""

    model_config = ConfigDict(frozen=True)

    namespace: str
    deployment: str
    revision: int
    replicaset: str
    baseline_revision: int | None
    baseline_replicaset: str
    started_at: datetime
    baseline_s: float
    rollout_at: datetime | None = None

    @classmethod
    def of(cls, v: Verification, spec: VerificationSpec) -> RevisionWindow:
        full = spec.baseline.total_seconds()
        return cls(
            namespace=v.namespace,
            deployment=v.deployment,
            revision=v.revision,
            replicaset=v.replicaset,
            baseline_revision=v.baseline_revision,
            baseline_replicaset=v.baseline_replicaset,
            started_at=v.started_at,
            baseline_s=min(full, v.baseline_s) if v.baseline_s else full,
            rollout_at=v.rollout_at,
        )


@dataclass(frozen=True)
class Revisions:
    """What the cluster says about a verified revision and its baseline."""

    replicaset: str
    rollout_at: datetime | None
    baseline_revision: int | None
    baseline_replicaset: str
    baseline_since: datetime | None  # when the baseline's ReplicaSet was created
    restored: bool


MIN_BASELINE_S = 60.0


def judge_revisions(
    rev: int, replicasets: list[tuple[int, str, datetime | None, bool]], now: datetime
) -> Revisions | None:
    """From the Deployment's ReplicaSets as (revision, name, created, has revision-history): the
    verified revision's, and its baseline (the highest older revision). A ReplicaSet created
    before its predecessor's, or reused for several revisions, restores an older template (a
    ``kubectl rollout undo``): no baseline then. None: no ReplicaSet has revision ``rev``."""
    new = next((r for r in replicasets if r[0] == rev), None)
    if new is None:
        return None
    older = [r for r in replicasets if r[0] < rev]
    base = max(older, key=lambda r: r[0], default=None)
    created, base_created = new[2], (base[2] if base is not None else None)
    restored = new[3] or (created is not None and base_created is not None and created < base_created)
    if restored or base is None:
        return Revisions(new[1], now if restored else new[2], None, "", None, restored)
    return Revisions(new[1], new[2], base[0], base[1], base[2], False)
