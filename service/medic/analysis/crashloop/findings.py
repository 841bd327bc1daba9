"""One function per crashloop finding, each over the classifier's :class:`CrashFacts`. Pure.

A finding that explains why *not* to roll back says so in ``against={"rollback": why}``
(:attr:`Finding.against`; the decision quotes it: "no rollback: the crash is caused by redis being down").
"""

from __future__ import annotations

from typing import Any

from medic.analysis.crashloop.classify import ERROR_LINE, CrashFacts, steps
from medic.analysis.crashloop.config_changes import (
    ConfigChange,
    config_changes,
    config_metas,
    unknown_statements,
)
from medic.analysis.dataplane import typed_first
from medic.collectors.k8s.pods_output import TopPodsOutput
from medic.domain.incident import Finding
from medic.domain.rollout import iso, minutes, parse_time, short_images
from medic.playbooks.contract import AnalysisInput

A = "crashloop"


def _against(why: str) -> dict[str, str]:
    return {"rollback": why}


def _timeline(f: CrashFacts) -> dict[str, Any]:
    return {"timeline": f.timeline.rows()} if f.timeline.entries else {}


def not_reproduced(f: CrashFacts, inp: AnalysisInput) -> Finding:
    return Finding(
        analyzer=A,
        code="crashloop.not_reproduced",
        severity="info",
        summary="no container of the target is crash-looping now (it may have recovered)",
        against=_against("no container crash-loops now"),
        evidence=f.steps_describe,
    )


def config_error(f: CrashFacts, inp: AnalysisInput) -> Finding | None:
    c = f.first("config_error")
    if c is None:
        return None
    return Finding(
        analyzer=A,
        code="crashloop.config_error",
        severity="critical",
        summary=f"{c.pod}/{c.container} {c.why}",
        details={
            "reason": c.waiting_reason,
            "message": c.waiting_message,
            "pod": c.pod,
            "revision": c.revision,
        },
        evidence=f.steps_describe,
        next_steps=[
            f"kubectl describe pod {c.pod} -n {f.ns}",
            f"kubectl get secrets,configmaps -n {f.ns}",
            *f.commands()[3:],
        ],
    )


def image_pull(f: CrashFacts, inp: AnalysisInput) -> Finding | None:
    c = f.first("image_pull")
    if c is None:
        return None
    return Finding(
        analyzer=A,
        code="crashloop.image_pull",
        severity="critical",
        summary=f"{c.pod}: {c.why}",
        details={"image": c.image, "message": c.waiting_message, "revision": c.revision},
        evidence=f.steps_describe,
        next_steps=f.commands()[:1],
    )


def dependency_down(f: CrashFacts, inp: AnalysisInput) -> list[Finding]:
    out = []
    for dep, sample in f.deps.items():
        out.append(
            Finding(
                analyzer=A,
                code="crashloop.dependency_down",
                severity="critical",
                summary=f"the app cannot reach {dep}: {sample[0][:200]}",
                details={
                    "dependency": dep,
                    "lines": sample,
                },
                against=_against(f"the crash is caused by {dep} being down"),
                evidence=steps(inp, "k8s.pod_logs"),
                next_steps=(
                    [
                        f"kubectl get pods -n {f.ns} -l app=mongodb",
                        f'kubectl exec -it mongodb-0 -n {f.ns} -- mongosh --eval "rs.status()"',
                    ]
                    if dep == "mongodb"
                    else [
                        f"kubectl exec -it deployment/redis -n {f.ns} -- redis-cli ping",
                        f"kubectl exec -it deployment/redis -n {f.ns} -- redis-cli info persistence",
                    ]
                ),
            )
        )
    return out


def _memory_usage(top: TopPodsOutput | None, pod: str, container: str) -> str | None:
    for p in top.pods if top else []:
        if p.name != pod:
            continue
        for c in p.containers:
            if c.name == container and c.memory_bytes is not None:
                return f"{c.memory_bytes // (1024 * 1024)}Mi"
    return None


def oom_killed(f: CrashFacts, inp: AnalysisInput) -> Finding | None:
    c = f.first("oom_killed")
    if c is None:
        return None
    usage = _memory_usage(typed_first(inp, "k8s.top_pods", TopPodsOutput), c.pod, c.container)
    only_new = f.new_only and f.recent and f.timeline.previous is not None
    return Finding(
        analyzer=A,
        code="crashloop.oom_killed",
        severity="critical",
        summary=f"{c.pod}/{c.container} is OOMKilled (limit {c.limits.get('memory', 'none')}"
        + (f", last usage {usage}" if usage else "")
        + ")"
        + (" — only the new revision" if only_new else ""),
        details={
            "limit": c.limits.get("memory"),
            "usage": usage,
            "revision": c.revision,
            "exit_code": c.exit_code,
        },
        evidence=f.steps_describe + steps(inp, "k8s.top_pods"),
        next_steps=[f"kubectl top pods -n {f.ns}", "kubectl describe node", *f.commands()[:2]],
    )


def liveness_probe(f: CrashFacts, inp: AnalysisInput) -> Finding | None:
    if not f.probe_events or f.first("oom_killed"):
        return None
    return Finding(
        analyzer=A,
        code="crashloop.liveness_probe",
        severity="warning",
        summary=f"the liveness probe kills the container: {(f.probe_events[0].message or '')[:200]}",
        details={"events": [e.model_dump(mode="json", exclude_unset=True) for e in f.probe_events[:3]]},
        evidence=steps(inp, "k8s.events"),
        next_steps=f.commands()[:2],
    )


# ---------------------------------------------------------------------- the rollout verdict


def config_of(f: CrashFacts) -> list[ConfigChange]:
    """The ConfigMaps and Secrets the template reads, each against the crash window."""
    refs = f.history.deployment.config_refs
    return config_changes(refs, config_metas(f.history), f.window_start, f.first_crash, f.now)


def _deployment_writes(f: CrashFacts) -> list[str]:
    """Writes to the Deployment inside the window (its managedFields: who, how, when)."""
    out = []
    for w in f.history.deployment.writes:
        when = parse_time(w.time)
        if when is not None and when > f.window_start:
            out.append(
                f"the Deployment was written by {w.manager} ({w.operation}) {minutes(f.now - when)} ago"
            )
    return out


def what_changed(f: CrashFacts, config: list[ConfigChange]) -> list[str]:
    """What else changed around the crash, when the rollout did not, leading suspects first: the
    ConfigMaps the template reads that changed inside the window before the first crash, writes to
    the Deployment inside the window, dependencies, nodes, limits against the previous revision,
    then ConfigMaps changed after the first crash. The window (:attr:`CrashFacts.window_start`)
    starts when the current revision became current."""
    out = [c.text for c in config if c.suspect]
    out += _deployment_writes(f)
    out += [f"{d} is unreachable from the app" for d in f.deps]
    for node in f.nodes:
        bad = [k for k, v in node.conditions.items() if (k == "Ready") != (v == "True")]
        if bad:
            out.append(f"node {node.name}: {', '.join(bad)}")
    prev = f.timeline.previous
    if f.current and prev:
        revs = {r.revision: r for r in f.history.revisions}
        now_r, then_r = revs.get(f.current.revision), revs.get(prev.revision)
        now_l, then_l = (now_r.limits if now_r else None), (then_r.limits if then_r else None)
        if now_l is not None and then_l is not None and now_l != then_l:
            out.append(f"limits {now_l} (revision {prev.revision} had {then_l})")
    return out + [c.text for c in config if c.state == "changed_after_crash"]


def _config_commands(f: CrashFacts, config: list[ConfigChange]) -> list[str]:
    """How to see the last write of what Medic could not read (Secrets: never granted)."""
    return [
        f"kubectl get {c.kind.lower()} {c.name} -n {f.ns} "
        "-o jsonpath='{.metadata.resourceVersion} {.metadata.managedFields[*].time}'"
        for c in config
        if c.state == "unknown"
    ][:4]


def _tail(changed: list[str], config: list[ConfigChange]) -> str:
    """The summary's end: what else changed, then what is known unchanged, missing or unknown."""
    unknown = any(c.state == "unknown" for c in config)
    head = (
        f"; what else changed: {'; '.join(changed)}"
        if changed
        else "; no other change found" + (" in what Medic could read" if unknown else "")
    )
    rest = [c.text for c in config if c.state in ("unchanged", "missing")] + unknown_statements(config)
    return head + "".join(f"; {r}" for r in rest)


def _predates(f: CrashFacts, why: str, against: str) -> Finding:
    config = config_of(f)
    changed = what_changed(f, config)
    return Finding(
        analyzer=A,
        code="crashloop.predates_rollout",
        severity="warning",
        summary=why + _tail(changed, config),
        details={
            "crashing_revisions": sorted(f.crash_revs),
            "current_revision": f.current_rev,
            "changed": changed,
            "config": [c.row() for c in config],
            "first_crash": iso(f.first_crash),
            "window_start": iso(f.window_start),
            "medic_rollback": f.timeline.medic.describe() if f.timeline.medic else None,
            **_timeline(f),
        },
        against=_against(against),
        evidence=f.steps_describe + f.steps_history,
        next_steps=[*f.commands(), *_config_commands(f, config)],
    )


def _regression(f: CrashFacts, inp: AnalysisInput, healthy: bool, healthy_why: str) -> Finding:
    cur, prev = f.current, f.timeline.previous
    assert cur is not None and prev is not None
    start = f.first("image_pull") or f.first("config_error")
    c = start or f.crashes[0]
    why = c.why if start else f"{c.container} {c.why}"
    before = healthy_why.removeprefix(f"revision {prev.revision} ")
    before = before if healthy else f"did not crash, but {before}"
    served = (
        f" Users are still served by {f.old_serving} ready pod(s) of the old revision."
        if f.old_serving
        else " No pod of an older revision serves any more."
    )
    if healthy and prev.ready > 0:
        before, served = f"ran healthy: users are still served by its {prev.ready} ready pod(s)", ""
    sample = [ln for ln in f.lines if ERROR_LINE.search(ln)][-3:]
    return Finding(
        analyzer=A,
        code="crashloop.regression",
        severity="critical",
        summary=f"revision {cur.revision} ({short_images(cur.images)}), which became current "
        f"{f.timeline.when(cur, f.now)}, {'cannot start' if start else 'crash-loops'}: {why}; "
        f"revision {prev.revision} ({short_images(prev.images)}) {before}.{served}",
        details={
            "current_revision": cur.revision,
            "previous_revision": prev.revision,
            "current_images": list(cur.images),
            "previous_images": list(prev.images),
            "crashing_pods": sorted({x.pod for x in f.crashes}),
            "log_sample": sample,
            "start_failure": start is not None,
            "old_pods_serving": f.old_serving,
            **_timeline(f),
        },
        # a revision that cannot start is proposed for approval, never rolled back alone
        max_mode="approve" if start else None,
        evidence=f.steps_describe + f.steps_history + steps(inp, "k8s.pod_logs", "k8s.events"),
        next_steps=[
            *f.commands(),
            f"kubectl rollout undo deployment/{f.deployment} -n {f.ns}",
            f"kubectl rollout status deployment/{f.deployment} -n {f.ns} --timeout=120s",
        ],
        suggests="rollback",
    )


def rollout_verdict(f: CrashFacts, inp: AnalysisInput) -> Finding | None:
    """Regression (the recent change fails while its predecessor ran healthy) or predates."""
    if not f.history or f.current is None or not f.crash_revs:
        return None
    cur, tl = f.current, f.timeline
    if cur.restored_by_medic and tl.medic is not None:
        return _predates(
            f,
            f"{tl.medic.describe()}, and revision {cur.revision} crashes too: the crash is not "
            "caused by a rollout",
            f"{tl.medic.describe()} and the crash continues",
        )
    if f.older_crashing:
        return _predates(
            f,
            f"pods of older revisions ({', '.join(map(str, f.older_crashing))}) crash too: the crash "
            "is not caused by the latest rollout",
            "pods of older revisions crash too",
        )
    if not f.new_only:
        return None
    if f.deps:
        return None  # the dependency finding explains it (and says why not to roll back)
    if not f.recent:
        known = cur.became_current is not None
        return _predates(
            f,
            f"revision {cur.revision} became current {tl.when(cur, f.now)}: "
            + ("too long ago for the crash to be a regression of it" if known else "not treated as recent"),
            f"revision {cur.revision} is not a recent rollout ({tl.when(cur, f.now)})",
        )
    ok, healthy_why = f.previous_healthy()
    prev = tl.previous
    if prev is None:
        return None
    if prev.rolled_back_by_medic:
        return _predates(f, healthy_why, healthy_why)
    return _regression(f, inp, ok, healthy_why)


def crash(f: CrashFacts, inp: AnalysisInput) -> Finding:
    c = f.crashes[0]
    sample = [ln for ln in f.lines if ERROR_LINE.search(ln)][-3:]
    return Finding(
        analyzer=A,
        code="crashloop.crash",
        severity="critical",
        summary=f"{c.pod}/{c.container} restarts ({c.restarts}x), last exit "
        f"{c.terminated_reason or '?'} code {c.exit_code}" + (f": {sample[-1][:200]}" if sample else ""),
        details={"log_sample": sample, "revision": c.revision, **_timeline(f)},
        evidence=f.steps_describe + steps(inp, "k8s.pod_logs"),
        next_steps=f.commands(),
    )
