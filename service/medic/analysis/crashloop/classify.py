"""The crashloop classifier: what the pods' states, logs, events and rollout history say, as
facts (:class:`CrashFacts`) the finding functions read. Pure.

:func:`container_trouble` is the one classification of a container's state that every analyzer
seeing pods uses (crashloop, not_ready): an unpushed image or a missing Secret key reads the same
whichever alert brought the pods in.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime

from medic.analysis.dataplane import typed_first
from medic.collectors.k8s.cluster_output import NodeDescribeOutput, NodeDescription
from medic.collectors.k8s.pods_output import (
    ContainerDescription,
    PodDescribeOutput,
    PodLogsOutput,
    Quantity,
    Waiting,
)
from medic.collectors.k8s.workload_output import EventsOutput, K8sEvent, RolloutHistoryOutput
from medic.domain.rollout import (
    RECENT_ROLLOUT,
    Timeline,
    TimelineEntry,
    build_timeline,
    healthy_before,
    parse_time,
    short_image,
)
from medic.playbooks.contract import AnalysisInput

CONFIG_REASONS = frozenset(
    {"CreateContainerConfigError", "CreateContainerError", "InvalidImageName", "RunContainerError"}
)
PULL_REASONS = frozenset({"ImagePullBackOff", "ErrImagePull", "ErrImageNeverPull"})
DEPENDENCY_PATTERNS: dict[str, re.Pattern[str]] = {
    "mongodb": re.compile(
        r"(Mongo(Network|ServerSelection|Timeout)Error|ECONNREFUSED [\d.]+:27017|"
        r"mongodb[\w.\-]*:27017.*(refused|timed out|ENOTFOUND)|getaddrinfo (ENOTFOUND|EAI_AGAIN) mongodb|"
        r"failed to connect to server .*27017)",
        re.IGNORECASE,
    ),
    "redis": re.compile(
        r"(ECONNREFUSED [\d.]+:6379|Redis connection to .* failed|getaddrinfo (ENOTFOUND|EAI_AGAIN) redis|"
        r"redis[\w.\-]*:6379.*(refused|timed out|ENOTFOUND)|ReplyError: LOADING|"
        r"Connection is closed\..*redis)",
        re.IGNORECASE,
    ),
}
# kubelet events that mark a container failing: the earliest one seen dates the first crash
FAILURE_EVENTS = frozenset({"BackOff", "Failed"})
ERROR_LINE = re.compile(r"(error|exception|fatal|panic|unhandled|cannot|failed|refused)", re.IGNORECASE)


def container_trouble(container: ContainerDescription) -> tuple[str, str] | None:
    """``(kind, why)`` for a container in trouble, kind one of ``config_error`` (it cannot be
    created: missing Secret/ConfigMap or key), ``image_pull``, ``oom_killed``, ``crash``; None
    when it is fine. ``container`` is one entry of ``k8s.pod_describe``'s containers."""
    waiting = container.state.waiting
    reason = (waiting.reason if waiting else None) or ""
    message = (waiting.message if waiting else None) or ""
    if reason in CONFIG_REASONS:
        return "config_error", f"cannot start: {reason}: {message or 'no detail'}"
    if reason in PULL_REASONS:
        return "image_pull", f"image {short_image(str(container.image))} cannot be pulled ({reason})"
    if reason == "CrashLoopBackOff" or (not container.ready and container.restart_count > 0):
        last = container.terminated
        if last and last.reason == "OOMKilled":
            return "oom_killed", "OOMKilled"
        code = last.exit_code if last else None
        return "crash", f"exits with {(last.reason if last else None) or 'an error'}" + (
            f" (code {code})" if code is not None else ""
        )
    return None


@dataclass
class Crash:
    pod: str
    container: str
    revision: int
    image: str
    restarts: int
    kind: str  # container_trouble's kind
    why: str
    waiting_reason: str = ""
    waiting_message: str = ""
    exit_code: int | None = None
    terminated_reason: str = ""
    limits: dict[str, Quantity] = field(default_factory=dict)
    node: str = ""
    finished_at: str = ""  # when the last terminated instance ended


def crashes_of(describe: PodDescribeOutput | None) -> list[Crash]:
    out: list[Crash] = []
    for pod in describe.pods if describe else []:
        for c in [*pod.init_containers, *pod.containers]:
            trouble = container_trouble(c)
            if trouble is None:
                continue
            waiting = c.state.waiting or Waiting()
            last = c.terminated
            out.append(
                Crash(
                    pod=pod.name or "",
                    container=c.name or "",
                    revision=pod.revision,
                    image=c.image or "",
                    restarts=c.restart_count,
                    kind=trouble[0],
                    why=trouble[1],
                    waiting_reason=waiting.reason or "",
                    waiting_message=waiting.message or "",
                    exit_code=last.exit_code if last else None,
                    terminated_reason=(last.reason or "") if last else "",
                    limits=dict(c.resources.limits),
                    node=pod.node or "",
                    finished_at=(last.finished_at or "") if last else "",
                )
            )
    return out


def steps(inp: AnalysisInput, *collectors: str) -> list[str]:
    return [e.step for c in collectors for e in inp.of(c) if e.ok]


@dataclass
class CrashFacts:
    """Everything the finding functions need, computed once."""

    crashes: list[Crash]
    ns: str
    deployment: str
    now: datetime
    lines: list[str]
    deps: dict[str, list[str]]  # dependency -> sample log lines
    probe_events: list[K8sEvent]
    history: RolloutHistoryOutput
    timeline: Timeline
    crash_revs: set[int]
    old_serving: int  # ready pods of other revisions than the current one
    steps_describe: list[str]
    steps_history: list[str]
    nodes: list[NodeDescription]
    first_crash: datetime | None = None  # the earliest failure seen (kubelet events, last exits)
    described: bool = False  # k8s.pod_describe was read

    def first(self, kind: str) -> Crash | None:
        return next((c for c in self.crashes if c.kind == kind), None)

    @property
    def current(self) -> TimelineEntry | None:
        return self.timeline.current

    @property
    def current_rev(self) -> int:
        cur = self.current
        return cur.revision if cur else self.history.deployment.revision

    @property
    def new_only(self) -> bool:
        return bool(self.crash_revs) and self.crash_revs == {self.current_rev}

    @property
    def older_crashing(self) -> list[int]:
        return sorted(r for r in self.crash_revs if r and r < self.current_rev)

    @property
    def recent(self) -> bool:
        return self.timeline.recent(self.now, RECENT_ROLLOUT)

    @property
    def window_start(self) -> datetime:
        """Where "what else changed" starts: when the current revision became current, or
        :data:`RECENT_ROLLOUT` before the first crash (or now) when that is earlier (the crash
        began under an older revision) or the revision's time is unknown."""
        before_crash = (self.first_crash or self.now) - RECENT_ROLLOUT
        cur = self.current
        if cur is not None and cur.became_current is not None:
            return min(cur.became_current, before_crash)
        return before_crash

    def previous_healthy(self) -> tuple[bool, str]:
        return healthy_before(self.timeline, self.timeline.previous, self.now)

    @property
    def pod(self) -> str:
        return self.crashes[0].pod if self.crashes else ""

    def commands(self) -> list[str]:
        ns, pod, dep = self.ns, self.pod, self.deployment
        return [
            f"kubectl describe pod {pod} -n {ns}",
            f"kubectl logs {pod} -n {ns} --previous",
            f"kubectl top pods -n {ns}",
            f"kubectl rollout history deployment/{dep} -n {ns}",
        ]


def _old_serving(describe: PodDescribeOutput | None, history: RolloutHistoryOutput, current_rev: int) -> int:
    from_history = sum(r.ready for r in history.revisions if r.revision != current_rev)
    pods = describe.pods if describe else []
    from_pods = sum(1 for p in pods if p.conditions.get("Ready") == "True" and p.revision != current_rev)
    return max(from_history, from_pods)


def first_crash(crashes: list[Crash], events: EventsOutput) -> datetime | None:
    """The earliest failure of the target's pods Medic sees: the first ``BackOff``/``Failed``
    kubelet event (events expire after about an hour: an older start is not seen), else the end
    of a crashed container's last run. None when neither is there."""
    seen = [e.first_seen for e in events.events if e.object.kind == "Pod" and e.reason in FAILURE_EVENTS]
    times = [t for raw in [*seen, *(c.finished_at for c in crashes)] if (t := parse_time(raw))]
    return min(times) if times else None


def classify(inp: AnalysisInput) -> CrashFacts:
    describe = typed_first(inp, "k8s.pod_describe", PodDescribeOutput)
    crashes = crashes_of(describe)
    history = typed_first(inp, "k8s.rollout_history", RolloutHistoryOutput) or RolloutHistoryOutput()
    events = typed_first(inp, "k8s.events", EventsOutput) or EventsOutput()
    logs = typed_first(inp, "k8s.pod_logs", PodLogsOutput) or PodLogsOutput()
    nodes = typed_first(inp, "k8s.node_describe", NodeDescribeOutput) or NodeDescribeOutput()
    lines = [ln for e in logs.logs for ln in e.lines]
    deps = {name: [ln for ln in lines if pat.search(ln)][:3] for name, pat in DEPENDENCY_PATTERNS.items()}
    # its scaling_events, in the order the API server stored them (the domain reads plain data)
    timeline = build_timeline(history.model_dump())
    current_rev = timeline.current.revision if timeline.current else 0
    return CrashFacts(
        crashes=crashes,
        ns=inp.target.namespace if inp.target else inp.labels.get("namespace", ""),
        deployment=inp.target.name if inp.target else "",
        now=inp.now,
        lines=lines,
        deps={k: v for k, v in deps.items() if v},
        probe_events=[
            e for e in events.events if e.reason == "Unhealthy" and "Liveness" in (e.message or "")
        ],
        history=history,
        timeline=timeline,
        crash_revs={x.revision for x in crashes if x.revision},
        old_serving=_old_serving(describe, history, current_rev),
        described=describe is not None,
        steps_describe=steps(inp, "k8s.pod_describe"),
        steps_history=steps(inp, "k8s.rollout_history"),
        nodes=list(nodes.nodes),
        first_crash=first_crash(crashes, events),
    )
