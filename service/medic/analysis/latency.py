"""``latency``: why PlayCode is slow (runbook 3.2). One finding per cause the evidence shows.

Causes checked, each from its own evidence: slow MongoDB operations (COLLSCAN called out) and
slow queries in the profiler, Redis at maxmemory or evicting and slow Redis commands, pods at
their CPU or memory limit and an HPA at its maximum (Prometheus, else ``k8s.top_pods`` /
``k8s.hpa_status``), and an error spike (5xx ratio, with the top error log patterns). When
latency is over its threshold and none of these shows, a finding says so and lists what was
checked, so on-call does not re-check the same things.
"""

from __future__ import annotations

from dataclasses import replace

from medic.analysis.dataplane import (
    Names,
    current_op_cmd,
    mongosh,
    names,
    pct,
    query,
    redis_cli,
    seconds,
    series_over,
    typed,
)
from medic.analysis.mongodb import aim, slow_ops_finding
from medic.analysis.redis_health import (
    memory_findings,
    reply_errors,
    reply_findings,
    slowlog_finding,
    slowlog_since,
)
from medic.collectors.k8s.pods_output import TopPodsOutput
from medic.collectors.k8s.workload_output import HpaStatusOutput
from medic.collectors.loki_output import LogPattern, LokiQueryOutput
from medic.collectors.mongo_output import CurrentOpOutput, ProfilerOutput
from medic.collectors.redis_output import InfoOutput, SlowlogOutput
from medic.domain.incident import Finding, Severity
from medic.playbooks.contract import AnalysisInput, AnalyzerDef

CPU_WARN, CPU_CRIT = 0.90, 1.0
MEMORY_WARN = 0.90
ERROR_RATIO_WARN, ERROR_RATIO_CRIT = 0.01, 0.05
PROFILE_WARN_MS = 1000


def _mongo(inp: AnalysisInput, n: Names) -> list[Finding]:
    out: list[Finding] = []
    found = next(typed(inp, "mongo.current_op", CurrentOpOutput), None)
    if found is not None and (slow := slow_ops_finding("latency", "latency.mongo_slow_ops", *found, n)):
        out.append(slow)
    profile = next(typed(inp, "mongo.profiler", ProfilerOutput), None)
    if profile is None or not profile[1].entries:
        return out
    ev, data = profile
    worst = max(data.entries, key=lambda e: e.millis or 0)
    severity: Severity = "warning" if data.collscans or (worst.millis or 0) >= PROFILE_WARN_MS else "info"
    out.append(
        Finding(
            analyzer="latency",
            code="latency.mongo_slow_queries",
            severity=severity,
            summary=f"the MongoDB profiler recorded {len(data.entries)} slow queries since "
            f"{data.since}; the slowest took {worst.millis} ms on {worst.ns} "
            f"(plan {worst.plan_summary or 'unknown'})"
            + (f"; {data.collscans} were collection scans" if data.collscans else ""),
            details={"shown": len(data.entries), "collscans": data.collscans, "slowest": worst.model_dump()},
            evidence=[ev.step],
            next_steps=[mongosh(n, "db.system.profile.find().sort({ts: -1}).limit(5)", data.db)],
        )
    )
    return out


def _redis(inp: AnalysisInput, n: Names) -> list[Finding]:
    out: list[Finding] = []
    found = next(typed(inp, "redis.info", InfoOutput), None)
    if found is not None:
        out += memory_findings(*found, n, "latency", "latency.redis_")
    slowlog = next(typed(inp, "redis.slowlog", SlowlogOutput), None)
    if slowlog is not None and (
        slow := slowlog_finding(*slowlog, n, "latency", "latency.redis_slow_commands", slowlog_since(inp))
    ):
        out.append(slow)
    # Redis answering with an error (BUSY script, LOADING, MISCONF…) stalls every request using it
    codes = {f.code for f in out}
    for f in reply_findings(reply_errors(inp), n):
        code = "latency.redis_" + f.code.removeprefix("redis.")
        if code not in codes:
            out.append(f.model_copy(update={"analyzer": "latency", "code": code}))
    return out


def _pod_ratios(
    inp: AnalysisInput, n: Names, query_name: str, usage: str, limit: str
) -> tuple[str, dict[str, float]] | None:
    """(evidence step, {pod: usage / limit}) from Prometheus, else from ``kubectl top pods``."""
    result = query(inp, query_name)
    if result is not None:
        ratios = result.by_label("pod")
        if ratios:
            return result.step, ratios
    found = next(typed(inp, "k8s.top_pods", TopPodsOutput), None)
    if found is None:
        return None
    ev, top = found
    ratios = {}
    for pod in top.pods:
        app = [c for c in pod.containers if c.name == n.app] or pod.containers
        pairs = [(getattr(c, usage), getattr(c, limit)) for c in app]
        values = [used / cap for used, cap in pairs if used is not None and cap]
        if values:
            ratios[pod.name] = max(values)
    return (ev.step, ratios) if ratios else None


def _pods(inp: AnalysisInput, n: Names) -> list[Finding]:
    out: list[Finding] = []
    top = f"kubectl top pods -n {n.namespace}"
    cpu = _pod_ratios(inp, n, "pod_cpu_limit_ratio", "cpu_millicores", "cpu_limit_millicores")
    hot = sorted(((p, v) for p, v in (cpu[1] if cpu else {}).items() if v >= CPU_WARN), key=lambda kv: -kv[1])
    if cpu is not None and hot:
        out.append(
            Finding(
                analyzer="latency",
                code="latency.cpu_saturation",
                severity="critical" if hot[0][1] >= CPU_CRIT else "warning",
                summary=f"{len(hot)} pod{'s' if len(hot) != 1 else ''} of {n.app} at "
                f"{pct(CPU_WARN)}+ of the CPU limit: "
                + ", ".join(f"{pod} {pct(v)}" for pod, v in hot[:5])
                + " (CPU throttling adds latency to every request)",
                details={"pods": dict(hot)},
                evidence=[cpu[0]],
                next_steps=[
                    top,
                    f"kubectl describe deployment/{n.app} -n {n.namespace}",
                    "kubectl describe node",
                ],
            )
        )
    memory = _pod_ratios(inp, n, "pod_memory_limit_ratio", "memory_bytes", "memory_limit_bytes")
    full = sorted(
        ((p, v) for p, v in (memory[1] if memory else {}).items() if v >= MEMORY_WARN), key=lambda kv: -kv[1]
    )
    if memory is not None and full:
        out.append(
            Finding(
                analyzer="latency",
                code="latency.memory_pressure",
                severity="warning",
                summary=f"{len(full)} pod{'s' if len(full) != 1 else ''} of {n.app} near the memory "
                "limit: "
                + ", ".join(f"{pod} {pct(v)}" for pod, v in full[:5])
                + " (GC pressure, OOM kills next)",
                details={"pods": dict(full)},
                evidence=[memory[0]],
                next_steps=[top],
            )
        )
    return out


HPA = "horizontalpodautoscaler"  # kube-state-metrics' label of an HPA's series


def _maxed_hpas(inp: AnalysisInput) -> tuple[list[str], list[tuple[str, str]]]:
    """(evidence steps, [(hpa, "current/max replicas")]) from Prometheus, else ``kubectl get hpa``."""
    ratio = query(inp, "hpa_replicas_ratio")
    if ratio is not None and ratio.values:
        current, maximum = query(inp, "hpa_current_replicas"), query(inp, "hpa_max_replicas")
        nows = current.by_label(HPA) if current else {}
        tops = maximum.by_label(HPA) if maximum else {}
        maxed = []
        for hpa, _ in series_over(ratio, 1.0, HPA):
            now, top = nows.get(hpa), tops.get(hpa)
            maxed.append((hpa, f"{now:.0f}/{top:.0f} replicas" if now and top else "at maximum"))
        steps = [ratio.step] + [r.step for r in (current, maximum) if r is not None and r.step != ratio.step]
        return steps, maxed
    found = next(typed(inp, "k8s.hpa_status", HpaStatusOutput), None)
    if found is None:
        return [], []
    ev, status = found
    maxed = [(str(h.name), f"{h.current}/{h.max} replicas") for h in status.hpas if h.at_max]
    return [ev.step], maxed


def _hpa(inp: AnalysisInput, n: Names) -> list[Finding]:
    steps, maxed = _maxed_hpas(inp)
    if not maxed:
        return []
    next_steps = [f"kubectl get hpa -n {n.namespace}"]
    next_steps += [f"kubectl describe hpa {hpa} -n {n.namespace}" for hpa, _ in maxed[:3]]
    return [
        Finding(
            analyzer="latency",
            code="latency.hpa_maxed",
            severity="warning",
            summary="HPA at its maximum, so it cannot add pods for the load: "
            + ", ".join(f"{hpa} ({replicas})" for hpa, replicas in maxed),
            details={"hpas": [h for h, _ in maxed]},
            evidence=list(dict.fromkeys(steps)),
            next_steps=next_steps,
        )
    ]


def _errors(inp: AnalysisInput, n: Names) -> list[Finding]:
    result = query(inp, "error_ratio_5xx")
    if result is None or not isinstance(result.value, int | float):
        return []
    warn = result.warn if result.warn is not None else ERROR_RATIO_WARN
    crit = result.crit if result.crit is not None else ERROR_RATIO_CRIT
    if result.value < warn:
        return []
    patterns: list[LogPattern] = []
    steps_ids = [result.step]
    for ev, logs in typed(inp, "loki.query", LokiQueryOutput):
        if logs.query in ("app_errors", "http_5xx", "app_error_text") and logs.patterns:
            steps_ids.append(ev.step)
            patterns += logs.patterns[:3]
    summary = f"{pct(result.value)} of responses are 5xx: an error spike, not only slowness"
    if patterns:
        summary += "; top error lines: " + "; ".join(f"{p.pattern} (x{p.count})" for p in patterns[:3])
    return [
        Finding(
            analyzer="latency",
            code="latency.error_spike",
            severity="critical" if result.value >= crit else "warning",
            summary=summary,
            details={"error_ratio_5xx": result.value, "patterns": [p.model_dump() for p in patterns[:5]]},
            evidence=steps_ids,
            next_steps=[
                f"kubectl logs deployment/{n.app} -n {n.namespace} --since=30m | grep -i error",
                f'Loki: {{namespace="{n.namespace}", container="{n.app}"}} | json | level="error"',
                f"kubectl rollout history deployment/{n.app} -n {n.namespace}",
            ],
        )
    ]


def _unexplained(inp: AnalysisInput, n: Names) -> list[Finding]:
    slow = []
    for name in ("latency_p99", "latency_p95"):
        r = query(inp, name)
        if r is not None and isinstance(r.value, int | float) and r.warn is not None and r.value >= r.warn:
            slow.append((r, name))
    if not slow:
        return []
    checked = sorted({e.collector for e in inp.evidence.values() if e.ok})
    unchecked = sorted(
        f"{e.step} ({e.status.value})"
        for e in inp.evidence.values()
        if not e.ok and e.status.value in ("error", "timeout")
    )
    r, name = slow[0]
    return [
        Finding(
            analyzer="latency",
            code="latency.unexplained",
            severity="info",
            summary=f"{name.removeprefix('latency_')} latency is {seconds(float(r.value or 0))} but "
            "none of the usual causes shows (checked: "
            + ", ".join(checked)
            + ")"
            + (f"; could not check: {', '.join(unchecked)}" if unchecked else ""),
            details={"checked": checked, "unchecked": unchecked},
            evidence=[r.step],
            next_steps=[
                f"kubectl top pods -n {n.namespace}",
                current_op_cmd(n),
                redis_cli(n, "info memory"),
                f"kubectl get hpa -n {n.namespace}",
            ],
        )
    ]


def latency(inp: AnalysisInput) -> list[Finding]:
    n = replace(names(inp), mongo_exec_pod=aim(inp, names(inp)).exec_pod or "")
    causes = _mongo(inp, n) + _redis(inp, n) + _pods(inp, n) + _hpa(inp, n) + _errors(inp, n)
    return causes or _unexplained(inp, n)


ANALYZERS = [
    AnalyzerDef(
        "latency",
        latency,
        "causes of high latency (runbook 3.2)",
        codes=(
            *(
                f"latency.{c}"
                for c in (
                    "cpu_saturation",
                    "memory_pressure",
                    "hpa_maxed",
                    "error_spike",
                    "mongo_slow_ops",
                    "mongo_slow_queries",
                    "unexplained",
                )
            ),
            "latency.redis_*",  # the Redis findings that explain latency, as latency.redis_<redis code>
        ),
    )
]
