"""``redis``: Redis down or degraded (runbook 3.4), from the ``redis.*`` evidence.

Findings: unreachable (no answer at all), an error reply (reachable but unhealthy: MISCONF,
LOADING, BUSY, OOM, NOAUTH/WRONGPASS/NOPERM, READONLY, MASTERDOWN, max clients; one finding per
reply, never beside "unreachable"), loading, maxmemory reached (OOM refusals with ``noeviction``, evictions
otherwise, or close to it), AOF write / rewrite failures, RDB save failures, AOF off, delayed
fsyncs, rejected connections or clients near ``maxclients``, a broken replica link, slow commands
and slow PINGs.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from medic.analysis.dataplane import (
    Names,
    all_failed,
    failures,
    human_bytes,
    names,
    pct,
    redis_cli,
    typed,
    why_no_answer,
)
from medic.collectors.redis_output import (
    InfoOutput,
    Persistence,
    PingOutput,
    SlowlogEntry,
    SlowlogOutput,
)
from medic.domain.evidence import Evidence
from medic.domain.incident import Finding, Severity
from medic.domain.rollout import parse_time
from medic.playbooks.contract import AnalysisInput, AnalyzerDef

MEMORY_WARN, MEMORY_FULL = 0.90, 0.98
CLIENTS_WARN = 0.90
SLOW_COMMAND_MS, SLOW_COMMAND_WARN_MS = 10.0, 100.0
SLOWLOG_LOOKBACK = timedelta(minutes=30)  # slow commands this long before the first alert still count
PING_WARN_MS = 50.0


def _pod_steps(n: Names) -> list[str]:
    return [
        redis_cli(n, "ping"),
        f"kubectl get pods -n {n.namespace} -l app={n.redis}",
        f"kubectl describe deployment/{n.redis} -n {n.namespace}",
        f"kubectl logs deployment/{n.redis} -n {n.namespace} --tail=100",
    ]


def _finding(
    code: str, severity: Severity, summary: str, ev: Evidence, details: dict[str, Any], steps: list[str]
) -> Finding:
    return Finding(
        analyzer="redis",
        code=code,
        severity=severity,
        summary=summary,
        details=details,
        evidence=[ev.step],
        next_steps=steps,
    )


# --------------------------------------------------------------------------- error replies

# How a collector says Redis answered with an error (medic.collectors.redis._errors).
_ANSWERED = re.compile(r"Redis answered \S+ with -(?P<code>[A-Z][A-Z_]*) ?(?P<message>.*)", re.S)


@dataclass(frozen=True)
class Reply:
    """An error reply Redis gave one of the steps."""

    step: str
    code: str
    message: str


def reply_errors(inp: AnalysisInput) -> list[Reply]:
    """The error replies of every redis.* step: PING's data, the other steps' error messages."""
    pings = {ev.step: ping.reply_error for ev, ping in typed(inp, "redis.ping", PingOutput)}
    out: list[Reply] = []
    for ev in inp.evidence.values():
        if not ev.collector.startswith("redis."):
            continue
        if ev.collector == "redis.ping" and ev.ok:
            if (reply := pings.get(ev.step)) is not None:
                out.append(Reply(ev.step, reply.code, reply.message))
        elif ev.error and (m := _ANSWERED.search(ev.error)):
            out.append(Reply(ev.step, m.group("code"), m.group("message").strip()))
    return out


@dataclass(frozen=True)
class ReplyKind:
    """What one error reply means for on-call, and the runbook step it calls for."""

    code: str
    severity: Severity
    meaning: str
    steps: Callable[[Names], list[str]]


def _persistence_steps(n: Names) -> list[str]:
    return [
        redis_cli(n, "info persistence"),
        f"kubectl logs deployment/{n.redis} -n {n.namespace} --tail=100",
        f"kubectl get pvc -n {n.namespace}",
        f"kubectl exec -it deployment/{n.redis} -n {n.namespace} -- df -h /data",
    ]


_REPLY_KINDS: dict[str, ReplyKind] = {
    "MISCONF": ReplyKind(
        "redis.writes_refused_misconf",
        "critical",
        "Redis is up but refuses writes and PING: its last RDB snapshot or AOF write failed "
        "(disk full, read-only or missing data directory), so it stops accepting writes until "
        "persisting works again",
        _persistence_steps,
    ),
    "LOADING": ReplyKind(
        "redis.loading",
        "warning",
        "Redis is up but still loading its dataset from disk: it refuses commands until the load "
        "is done (usually after a restart; large AOF files take longest)",
        lambda n: [
            redis_cli(n, "info persistence"),
            f"kubectl logs deployment/{n.redis} -n {n.namespace} --tail=100",
        ],
    ),
    "BUSY": ReplyKind(
        "redis.busy_script",
        "critical",
        "Redis is blocked by a Lua script or function that has run longer than busy-reply-threshold: "
        "every other client is refused until it ends or is killed",
        lambda n: [
            redis_cli(n, "script kill"),
            redis_cli(n, "function kill"),
            redis_cli(n, "slowlog get 10"),
        ],
    ),
    "OOM": ReplyKind(
        "redis.maxmemory_oom",
        "critical",
        "Redis is at maxmemory with policy noeviction: it refuses writes with OOM",
        lambda n: [redis_cli(n, "info memory"), redis_cli(n, "dbsize"), redis_cli(n, "--bigkeys")],
    ),
    "NOAUTH": ReplyKind(
        "redis.auth_refused",
        "warning",
        "Redis is up but refuses Medic's connection: it requires a password (or another one) than "
        "MEDIC_TARGET_REDIS_URL gives, so nothing else could be checked; if the password changed, "
        "the app's connections fail the same way",
        lambda n: [
            f"kubectl get secret -n {n.namespace} | grep -i redis",
            f"kubectl logs deployment/{n.app} -n {n.namespace} --tail=100 | grep -i -E 'NOAUTH|WRONGPASS'",
        ],
    ),
    "READONLY": ReplyKind(
        "redis.read_only_replica",
        "critical",
        "the Redis at this address is a read-only replica: writes are refused (a failover may have "
        "demoted it, or the Service points at a replica)",
        lambda n: [redis_cli(n, "info replication"), f"kubectl get endpoints {n.redis} -n {n.namespace}"],
    ),
    "MASTERDOWN": ReplyKind(
        "redis.master_down",
        "critical",
        "this Redis is a replica that lost its link to its master and does not serve stale data: "
        "it refuses commands until the master is back",
        lambda n: [redis_cli(n, "info replication"), f"kubectl get pods -n {n.namespace} -l app={n.redis}"],
    ),
    "MAXCLIENTS": ReplyKind(
        "redis.maxclients_reached",
        "critical",
        "Redis is up but refuses new connections: maxclients is reached",
        lambda n: [redis_cli(n, "info clients"), redis_cli(n, "client list")],
    ),
}
_REPLY_ALIASES = {"WRONGPASS": "NOAUTH", "NOPERM": "NOAUTH"}


def _kind(reply: Reply) -> ReplyKind:
    code = _REPLY_ALIASES.get(reply.code, reply.code)
    if code == "ERR" and "max number of clients" in reply.message:
        code = "MAXCLIENTS"
    return _REPLY_KINDS.get(code) or ReplyKind(
        "redis.error_reply",
        "warning",
        f"Redis is up but answers -{reply.code}",
        lambda n: [redis_cli(n, "ping"), f"kubectl logs deployment/{n.redis} -n {n.namespace} --tail=100"],
    )


def reply_findings(replies: list[Reply], n: Names) -> list[Finding]:
    """One finding per kind of error reply: Redis answered, so it is reachable but unhealthy."""
    by_kind: dict[str, tuple[ReplyKind, list[Reply]]] = {}
    for reply in replies:
        kind = _kind(reply)
        by_kind.setdefault(kind.code, (kind, []))[1].append(reply)
    out = []
    for kind, seen in by_kind.values():
        said = seen[0]
        steps = ", ".join(sorted({r.step for r in seen}))
        out.append(
            Finding(
                analyzer="redis",
                code=kind.code,
                severity=kind.severity,
                summary=f"{kind.meaning} (Redis answered {steps} with -{said.code} {said.message})".strip(),
                details={"reply": said.code, "message": said.message, "steps": [r.step for r in seen]},
                evidence=[r.step for r in seen],
                next_steps=kind.steps(n),
            )
        )
    return out


def _merge(findings: list[Finding], replies: list[Finding]) -> list[Finding]:
    """The reply findings beside what INFO showed, without saying one thing twice: a MISCONF reply
    joins the persistence failure that causes it; a code INFO already reported is not repeated."""
    codes = {f.code for f in findings}
    cause = next((f for f in findings if f.code in ("redis.aof_write_error", "redis.rdb_save_failed")), None)
    out = list(findings)
    for r in replies:
        if r.code == "redis.writes_refused_misconf" and cause is not None:
            i = out.index(cause)
            out[i] = cause.model_copy(
                update={
                    "severity": "critical",
                    "summary": f"{cause.summary}; Redis therefore refuses writes and even PING "
                    f"(-MISCONF), while it is up",
                    "details": {**cause.details, "reply": "MISCONF", "message": r.details.get("message")},
                    "evidence": sorted({*cause.evidence, *r.evidence}),
                }
            )
        elif r.code not in codes:
            out.append(r)
    return out


def unreachable(
    inp: AnalysisInput, n: Names, analyzer: str = "redis", code: str = "redis.unreachable", context: str = ""
) -> list[Finding]:
    """Redis did not answer: PING failed, or every redis.* step failed, and no step got an
    error reply (an error reply is an answer: Redis is reachable, see :func:`reply_findings`)."""
    if reply_errors(inp):
        return []
    failed = [e for e in failures(inp, "redis.") if e.collector == "redis.ping"] or all_failed(inp, "redis.")
    if not failed:
        return []
    errors = "; ".join(f"{e.step}: {e.error or e.status.value}" for e in failed[:3])
    return [
        Finding(
            analyzer=analyzer,
            code=code,
            severity="critical",
            summary=f"Redis did not answer{context}"
            + (f": {why}" if (why := why_no_answer(failed)) else "")
            + f" ({errors})",
            details={"steps": {e.step: e.status.value for e in failed}},
            evidence=[e.step for e in failed],
            next_steps=_pod_steps(n),
        )
    ]


def _memory_details(info: InfoOutput) -> dict[str, Any]:
    memory = info.memory
    return {
        "used_memory": memory.used_memory,
        "maxmemory": memory.maxmemory,
        "used_ratio": memory.used_ratio,
        "maxmemory_policy": memory.maxmemory_policy,
        "evicted_keys": info.stats.evicted_keys or 0,
        "oom_errors": info.errorstats.get("OOM", 0),
    }


def _memory_verdict(info: InfoOutput) -> tuple[str, Severity, str] | None:
    """``(code suffix, severity, summary)`` of the memory state, or None when there is room."""
    memory, evicted, oom = info.memory, info.stats.evicted_keys or 0, info.errorstats.get("OOM", 0)
    ratio, policy = memory.used_ratio, memory.maxmemory_policy
    limit = f"maxmemory {human_bytes(memory.maxmemory)}, policy {policy}"
    used = f"{human_bytes(memory.used_memory)} used" + (f" ({pct(ratio)})" if ratio is not None else "")
    full = ratio is not None and ratio >= MEMORY_FULL
    if policy == "noeviction" and (oom or full):
        summary = f"Redis is out of memory ({used}, {limit}): writes are refused with OOM errors"
        return "maxmemory_oom", "critical", summary + (f" ({oom} so far)" if oom else "")
    if evicted > 0:
        summary = (
            f"Redis has evicted {evicted} keys since it started ({used}, {limit}): "
            "cached data such as sessions and socket.io adapter state is being dropped"
        )
        return "evicting", "critical" if full else "warning", summary
    if ratio is not None and ratio >= MEMORY_WARN:
        return "memory_high", "warning", f"Redis memory is close to its limit ({used}, {limit})"
    return None


def memory_findings(ev: Evidence, info: InfoOutput, n: Names, analyzer: str, prefix: str) -> list[Finding]:
    """maxmemory reached: OOM refusals (noeviction), evictions, or close to the limit."""
    verdict = _memory_verdict(info)
    if verdict is None:
        return []
    code, severity, summary = verdict
    return [
        Finding(
            analyzer=analyzer,
            code=f"{prefix}{code}",
            severity=severity,
            summary=summary,
            details=_memory_details(info),
            evidence=[ev.step],
            next_steps=[redis_cli(n, "info memory"), redis_cli(n, "dbsize"), redis_cli(n, "--bigkeys")],
        )
    ]


def _persistence_log_steps(n: Names) -> list[str]:
    return [
        redis_cli(n, "info persistence"),
        f"kubectl logs deployment/{n.redis} -n {n.namespace} --tail=100",
    ]


# One check per persistence finding: (evidence, INFO persistence, INFO errorstats, names).
_PersistenceCheck = Callable[[Evidence, Persistence, dict[str, int], Names], Finding | None]


def _loading(ev: Evidence, p: Persistence, errors: dict[str, int], n: Names) -> Finding | None:
    if p.loading != 1:
        return None
    return _finding(
        "redis.loading",
        "warning",
        "Redis is loading its dataset from disk and answers LOADING until it is done",
        ev,
        {"loading": 1},
        _persistence_log_steps(n),
    )


def _aof_write_error(ev: Evidence, p: Persistence, errors: dict[str, int], n: Names) -> Finding | None:
    if p.aof_enabled != 1 or p.aof_last_write_status in (None, "ok"):
        return None
    return _finding(
        "redis.aof_write_error",
        "critical",
        "Redis could not write its AOF "
        f"(aof_last_write_status {p.aof_last_write_status}): it refuses writes while "
        "the disk is full or failing",
        ev,
        p.model_dump(),
        [*_persistence_log_steps(n), f"kubectl get pvc -n {n.namespace}"],
    )


def _aof_rewrite_failed(ev: Evidence, p: Persistence, errors: dict[str, int], n: Names) -> Finding | None:
    if p.aof_last_bgrewrite_status in (None, "ok"):
        return None
    failures_in_a_row = p.aof_rewrites_consecutive_failures
    return _finding(
        "redis.aof_rewrite_failed",
        "warning",
        "the last AOF rewrite failed"
        + (f" ({failures_in_a_row} in a row)" if failures_in_a_row else "")
        + ": the AOF keeps growing until a rewrite succeeds",
        ev,
        p.model_dump(),
        _persistence_log_steps(n),
    )


def _rdb_save_failed(ev: Evidence, p: Persistence, errors: dict[str, int], n: Names) -> Finding | None:
    if p.rdb_last_bgsave_status in (None, "ok"):
        return None
    misconf = errors.get("MISCONF", 0) > 0
    return _finding(
        "redis.rdb_save_failed",
        "critical" if misconf else "warning",
        "the last RDB snapshot failed" + (": writes are refused with MISCONF" if misconf else ""),
        ev,
        p.model_dump(),
        _persistence_log_steps(n),
    )


def _aof_disabled(ev: Evidence, p: Persistence, errors: dict[str, int], n: Names) -> Finding | None:
    if p.aof_enabled != 0:
        return None
    return _finding(
        "redis.aof_disabled",
        "info",
        "AOF persistence is off (appendonly no): writes since the last snapshot are lost when Redis restarts",
        ev,
        {"aof_enabled": 0},
        [redis_cli(n, "config get appendonly")],
    )


def _aof_fsync_delayed(ev: Evidence, p: Persistence, errors: dict[str, int], n: Names) -> Finding | None:
    delayed = p.aof_delayed_fsync
    if delayed is None or delayed <= 0:
        return None
    return _finding(
        "redis.aof_fsync_delayed",
        "info",
        f"{delayed} AOF fsyncs were delayed: the disk is slower than the write load",
        ev,
        {"aof_delayed_fsync": delayed},
        _persistence_log_steps(n),
    )


_PERSISTENCE_CHECKS: tuple[_PersistenceCheck, ...] = (
    _loading,
    _aof_write_error,
    _aof_rewrite_failed,
    _rdb_save_failed,
    _aof_disabled,
    _aof_fsync_delayed,
)


def _persistence(ev: Evidence, info: InfoOutput, n: Names) -> list[Finding]:
    found = (check(ev, info.persistence, info.errorstats, n) for check in _PERSISTENCE_CHECKS)
    return [f for f in found if f is not None]


def _clients(ev: Evidence, info: InfoOutput, n: Names) -> list[Finding]:
    clients = info.clients
    rejected = info.stats.rejected_connections or 0
    ratio = clients.used_ratio
    details = {**clients.model_dump(), "rejected_connections": rejected}
    steps = [redis_cli(n, "info clients"), redis_cli(n, "client list")]
    connected = f"{clients.connected_clients} of maxclients {clients.maxclients} connected"
    if rejected > 0:
        return [
            _finding(
                "redis.rejected_connections",
                "critical" if (ratio or 0) >= 1 else "warning",
                f"Redis rejected {rejected} connections since it started ({connected})",
                ev,
                details,
                steps,
            )
        ]
    if ratio is not None and ratio >= CLIENTS_WARN:
        return [
            _finding(
                "redis.clients_near_limit",
                "warning",
                f"Redis is close to maxclients ({connected})",
                ev,
                details,
                steps,
            )
        ]
    return []


def _replication(ev: Evidence, info: InfoOutput, n: Names) -> list[Finding]:
    repl = info.replication
    if repl.role == "slave" and repl.master_link_status not in (None, "up"):
        return [
            _finding(
                "redis.replication_broken",
                "warning",
                f"this Redis is a replica whose link to its master is {repl.master_link_status}",
                ev,
                repl.model_dump(),
                [redis_cli(n, "info replication")],
            )
        ]
    return []


def slowlog_since(inp: AnalysisInput) -> datetime:
    """Where the slow commands that can explain this incident begin: the slowlog keeps its last
    entries for as long as Redis runs, so a KEYS from last week must not read as today's cause."""
    starts = [a.startsAt for a in inp.alerts]
    return (min(starts) if starts else inp.now) - SLOWLOG_LOOKBACK


def _recent(entry: SlowlogEntry, since: datetime | None) -> bool:
    if since is None:
        return True
    when = parse_time(entry.started_at)
    return when is None or when >= since  # an entry without a time is not dismissed


def slowlog_finding(
    ev: Evidence, data: SlowlogOutput, n: Names, analyzer: str, code: str, since: datetime | None = None
) -> Finding | None:
    """Slow commands in the slowlog since ``since`` (None: all of them)."""
    slow = [e for e in data.entries if e.duration_ms >= SLOW_COMMAND_MS and _recent(e, since)]
    if not slow:
        return None
    worst = max(slow, key=lambda e: e.duration_ms)
    commands = sorted({e.command for e in slow})
    return Finding(
        analyzer=analyzer,
        code=code,
        severity="warning" if worst.duration_ms >= SLOW_COMMAND_WARN_MS else "info",
        summary=f"{len(slow)} slow Redis commands in the slowlog ({', '.join(commands)}); the slowest, "
        f"{worst.command} {worst.key_pattern or ''}".rstrip()
        + f", took {worst.duration_ms:.0f} ms and blocked every other client meanwhile",
        details={"total": data.total, "slow": [e.model_dump() for e in slow[:5]]},
        evidence=[ev.step],
        next_steps=[redis_cli(n, "slowlog get 10")],
    )


def _slow_ping(inp: AnalysisInput, n: Names) -> list[Finding]:
    found = next(typed(inp, "redis.ping", PingOutput), None)
    median = found[1].latency_ms.median if found and found[1].latency_ms else None
    if found is None or median is None or median < PING_WARN_MS:
        return []
    ev, ping = found
    return [
        _finding(
            "redis.slow_ping",
            "warning",
            f"Redis answers PING in {median:.0f} ms (median)",
            ev,
            ping.model_dump(),
            [redis_cli(n, "--latency")],
        )
    ]


def redis_health(inp: AnalysisInput) -> list[Finding]:
    n = names(inp)
    findings = unreachable(inp, n)
    found = next(typed(inp, "redis.info", InfoOutput), None)
    if found is not None:
        ev, info = found
        findings += memory_findings(ev, info, n, "redis", "redis.")
        findings += _persistence(ev, info, n) + _clients(ev, info, n) + _replication(ev, info, n)
    findings = _merge(findings, reply_findings(reply_errors(inp), n))
    slowlog = next(typed(inp, "redis.slowlog", SlowlogOutput), None)
    since = slowlog_since(inp)
    if slowlog is not None and (slow := slowlog_finding(*slowlog, n, "redis", "redis.slow_commands", since)):
        findings.append(slow)
    return findings + _slow_ping(inp, n)


ANALYZERS = [
    AnalyzerDef(
        "redis",
        redis_health,
        "Redis down or degraded (runbook 3.4)",
        codes=tuple(
            f"redis.{c}"
            for c in (
                "unreachable",
                "writes_refused_misconf",
                "loading",
                "busy_script",
                "maxmemory_oom",
                "auth_refused",
                "read_only_replica",
                "master_down",
                "maxclients_reached",
                "error_reply",
                "aof_write_error",
                "rdb_save_failed",
                "aof_rewrite_failed",
                "aof_disabled",
                "aof_fsync_delayed",
                "evicting",
                "memory_high",
                "rejected_connections",
                "clients_near_limit",
                "replication_broken",
                "slow_commands",
                "slow_ping",
            )
        ),
    )
]
