"""Why does it crash-loop? (runbook 3.1) Pure: evidence in, findings out.

Classes, in the order they explain a crash: config error, image pull error, dependency down,
OOMKilled, liveness probe, then — only if nothing else explains it — a regression after a recent
rollout (the new revision crashes, the previous one was healthy). Only a regression suggests a
rollback; a crash that predates the rollout, a dead Mongo/Redis, or a config error is explained,
not rolled back.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from medic.domain.incident import Finding
from medic.playbooks.contract import AnalysisInput, AnalyzerDef

CONFIG_REASONS = {
    "CreateContainerConfigError",
    "CreateContainerError",
    "InvalidImageName",
    "RunContainerError",
}
PULL_REASONS = {"ImagePullBackOff", "ErrImagePull", "ErrImageNeverPull"}
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
ERROR_LINE = re.compile(r"(error|exception|fatal|panic|unhandled|cannot|failed|refused)", re.IGNORECASE)


@dataclass
class Crash:
    pod: str
    container: str
    revision: int
    image: str
    restarts: int
    waiting_reason: str = ""
    waiting_message: str = ""
    exit_code: int | None = None
    terminated_reason: str = ""
    limits: dict[str, Any] = field(default_factory=dict)


def _crashes(describe: Any) -> list[Crash]:
    out: list[Crash] = []
    for pod in (describe or {}).get("pods", []):
        for c in [*pod.get("init_containers", []), *pod.get("containers", [])]:
            waiting = (c.get("state") or {}).get("waiting") or {}
            last = (c.get("last_state") or {}).get("terminated") or {}
            reason = waiting.get("reason", "")
            crashing = (
                reason in CONFIG_REASONS | PULL_REASONS
                or reason == "CrashLoopBackOff"
                or (not c.get("ready") and int(c.get("restart_count") or 0) > 0)
            )
            if not crashing:
                continue
            out.append(
                Crash(
                    pod=pod.get("name", ""),
                    container=c.get("name", ""),
                    revision=int(pod.get("revision") or 0),
                    image=c.get("image", ""),
                    restarts=int(c.get("restart_count") or 0),
                    waiting_reason=reason,
                    waiting_message=waiting.get("message", ""),
                    exit_code=last.get("exit_code"),
                    terminated_reason=last.get("reason", ""),
                    limits=(c.get("resources") or {}).get("limits") or {},
                )
            )
    return out


def _log_lines(logs: Any) -> list[str]:
    return [line for entry in (logs or {}).get("logs", []) for line in entry.get("lines", [])]


def _steps(inp: AnalysisInput, *collectors: str) -> list[str]:
    return [e.step for c in collectors for e in inp.of(c) if e.ok]


def _first(crashes: Iterable[Crash]) -> Crash | None:
    return next(iter(crashes), None)


def _commands(ns: str, pod: str, deployment: str) -> list[str]:
    return [
        f"kubectl describe pod {pod} -n {ns}",
        f"kubectl logs {pod} -n {ns} --previous",
        f"kubectl top pods -n {ns}",
        f"kubectl rollout history deployment/{deployment} -n {ns}",
    ]


def _parse_time(raw: Any) -> datetime | None:
    if not raw:
        return None
    try:
        return datetime.fromisoformat(str(raw).replace("Z", "+00:00"))
    except ValueError:
        return None


def analyze_crashloop(inp: AnalysisInput) -> list[Finding]:
    describe = inp.data("k8s.pod_describe")
    crashes = _crashes(describe)
    if not crashes:
        if describe is not None:
            return [
                Finding(
                    analyzer="crashloop",
                    code="crashloop.not_reproduced",
                    severity="info",
                    summary="no container of the target is crash-looping now (it may have recovered)",
                    evidence=_steps(inp, "k8s.pod_describe"),
                )
            ]
        return []
    ns = inp.target.namespace if inp.target else inp.labels.get("namespace", "")
    deployment = inp.target.name if inp.target else ""
    pod = crashes[0].pod
    steps_describe = _steps(inp, "k8s.pod_describe")
    commands = _commands(ns, pod, deployment)
    findings: list[Finding] = []

    # 1. configuration errors: the container cannot even be created
    if c := _first(x for x in crashes if x.waiting_reason in CONFIG_REASONS):
        findings.append(
            Finding(
                analyzer="crashloop",
                code="crashloop.config_error",
                severity="critical",
                summary=f"{c.pod}/{c.container} cannot start: {c.waiting_reason}: "
                f"{c.waiting_message or 'no detail'}",
                details={"reason": c.waiting_reason, "message": c.waiting_message, "pod": c.pod},
                evidence=steps_describe,
                next_steps=[
                    f"kubectl describe pod {c.pod} -n {ns}",
                    f"kubectl get secrets,configmaps -n {ns}",
                    *commands[3:],
                ],
            )
        )
    # 2. image cannot be pulled
    pull = _first(x for x in crashes if x.waiting_reason in PULL_REASONS)
    # 3. a dependency is down (connection errors in the logs)
    lines = _log_lines(inp.data("k8s.pod_logs"))
    deps = {name: [ln for ln in lines if pat.search(ln)][:3] for name, pat in DEPENDENCY_PATTERNS.items()}
    deps = {k: v for k, v in deps.items() if v}
    for dep, sample in deps.items():
        findings.append(
            Finding(
                analyzer="crashloop",
                code="crashloop.dependency_down",
                severity="critical",
                summary=f"the app cannot reach {dep}: {sample[0][:200]}",
                details={"dependency": dep, "lines": sample},
                evidence=_steps(inp, "k8s.pod_logs"),
                next_steps=(
                    [
                        f"kubectl get pods -n {ns} -l app=mongodb",
                        f'kubectl exec -it mongodb-0 -n {ns} -- mongosh --eval "rs.status()"',
                    ]
                    if dep == "mongodb"
                    else [
                        f"kubectl exec -it deployment/redis -n {ns} -- redis-cli ping",
                        f"kubectl exec -it deployment/redis -n {ns} -- redis-cli info persistence",
                    ]
                ),
            )
        )
    # 4. OOMKilled
    oom = [x for x in crashes if x.terminated_reason == "OOMKilled"]
    # 5. liveness probe
    events = (inp.data("k8s.events") or {}).get("events", [])
    probe_events = [
        e for e in events if e.get("reason") == "Unhealthy" and "Liveness" in e.get("message", "")
    ]

    history = inp.data("k8s.rollout_history") or {}
    dep_info = history.get("deployment") or {}
    revisions = history.get("revisions") or []
    current_rev = int(dep_info.get("revision") or 0)
    current = next((r for r in revisions if r.get("revision") == current_rev), None)
    previous = next((r for r in revisions if r.get("revision", 0) < current_rev), None)
    crash_revs = {x.revision for x in crashes if x.revision}
    new_only = bool(crash_revs) and crash_revs == {current_rev}
    old_crashing = any(r and r < current_rev for r in crash_revs)
    steps_history = _steps(inp, "k8s.rollout_history")

    if oom:
        c = oom[0]
        usage = _memory_usage(inp.data("k8s.top_pods"), c.pod, c.container)
        explained_by_new = new_only and previous is not None
        findings.append(
            Finding(
                analyzer="crashloop",
                code="crashloop.oom_killed",
                severity="critical",
                summary=f"{c.pod}/{c.container} is OOMKilled (limit {c.limits.get('memory', 'none')}"
                + (f", last usage {usage}" if usage else "")
                + ")"
                + (" — only the new revision" if explained_by_new else ""),
                details={
                    "limit": c.limits.get("memory"),
                    "usage": usage,
                    "revision": c.revision,
                    "exit_code": c.exit_code,
                },
                evidence=steps_describe + _steps(inp, "k8s.top_pods"),
                next_steps=[f"kubectl top pods -n {ns}", "kubectl describe node", *commands[:2]],
            )
        )
    if probe_events and not oom:
        findings.append(
            Finding(
                analyzer="crashloop",
                code="crashloop.liveness_probe",
                severity="warning",
                summary=f"the liveness probe kills the container: {probe_events[0].get('message', '')[:200]}",
                details={"events": probe_events[:3]},
                evidence=_steps(inp, "k8s.events"),
                next_steps=commands[:2],
            )
        )

    # 6. regression after rollout: the new revision crashes and the previous one did not
    blocking = bool(deps) or any(f.code == "crashloop.config_error" for f in findings)
    older = sorted(r for r in crash_revs if r and r < current_rev)
    if old_crashing:
        findings.append(
            Finding(
                analyzer="crashloop",
                code="crashloop.predates_rollout",
                severity="warning",
                summary=f"pods of older revisions ({', '.join(str(r) for r in older)}) "
                "crash too: the crash is not caused by the latest rollout",
                details={"crashing_revisions": sorted(crash_revs), "current_revision": current_rev},
                evidence=steps_describe + steps_history,
                next_steps=commands,
            )
        )
    elif new_only and previous is not None and not blocking:
        c = pull or crashes[0]
        since = _parse_time(current.get("created")) if current else None
        age = f"{int((inp.now - since).total_seconds() // 60)} min ago" if since else "recently"
        why = (
            f"its image cannot be pulled ({c.waiting_reason})"
            if pull
            else f"{c.container} exits with {c.terminated_reason or 'an error'}"
            + (f" (code {c.exit_code})" if c.exit_code is not None else "")
            + (" after OOMKilled" if oom else "")
        )
        sample = [ln for ln in lines if ERROR_LINE.search(ln)][-3:]
        current_images = current.get("images", []) if current else [c.image]
        findings.append(
            Finding(
                analyzer="crashloop",
                code="crashloop.regression",
                severity="critical",
                summary=f"revision {current_rev} ({', '.join(current_images)}), "
                f"rolled out {age}, crash-loops: {why}; revision {previous.get('revision')} "
                f"({', '.join(previous.get('images', []))}) ran without crashing",
                details={
                    "current_revision": current_rev,
                    "previous_revision": previous.get("revision"),
                    "current_images": current.get("images") if current else [c.image],
                    "previous_images": previous.get("images"),
                    "crashing_pods": sorted({x.pod for x in crashes}),
                    "log_sample": sample,
                },
                evidence=steps_describe + steps_history + _steps(inp, "k8s.pod_logs", "k8s.events"),
                next_steps=[
                    *commands,
                    f"kubectl rollout undo deployment/{deployment} -n {ns}",
                    f"kubectl rollout status deployment/{deployment} -n {ns} --timeout=120s",
                ],
                suggests="rollback",
            )
        )
    elif pull:
        findings.append(
            Finding(
                analyzer="crashloop",
                code="crashloop.image_pull",
                severity="critical",
                summary=f"{pull.pod}: image {pull.image} cannot be pulled ({pull.waiting_reason})",
                details={"image": pull.image, "message": pull.waiting_message},
                evidence=steps_describe,
                next_steps=commands[:1],
            )
        )
    if not findings:
        c = crashes[0]
        sample = [ln for ln in lines if ERROR_LINE.search(ln)][-3:]
        findings.append(
            Finding(
                analyzer="crashloop",
                code="crashloop.crash",
                severity="critical",
                summary=f"{c.pod}/{c.container} restarts ({c.restarts}x), last exit "
                f"{c.terminated_reason or '?'} code {c.exit_code}"
                + (f": {sample[-1][:200]}" if sample else ""),
                details={"log_sample": sample, "revision": c.revision},
                evidence=steps_describe + _steps(inp, "k8s.pod_logs"),
                next_steps=commands,
            )
        )
    return findings


def _memory_usage(top: Any, pod: str, container: str) -> str | None:
    for p in (top or {}).get("pods", []):
        if p.get("name") != pod:
            continue
        for c in p.get("containers", []):
            if c.get("name") == container and c.get("memory_bytes") is not None:
                return f"{int(c['memory_bytes']) // (1024 * 1024)}Mi"
    return None


ANALYZERS = [
    AnalyzerDef("crashloop", analyze_crashloop, "why a workload crash-loops; rollback only for a regression")
]
