"""``mongodb``: MongoDB down or degraded (runbook 3.3), from the ``mongo.*`` evidence.

Findings: unreachable, no primary, unhealthy members (majority lost), replication lag, disk of
/data/db nearly full (dbStats, or the PVC's kubelet volume stats when mongod is down), connections
exhausted, WiredTiger cache pressure, and long-running operations.

Next steps aim at real pods, never a fixed ``mongodb-0``: replica-set members map to pods by their
host name (``mongodb-2.mongodb-headless.playcode.svc:27017`` -> ``mongodb-2``); ``mongosh`` runs
in the member that answered Medic (or the primary, or a healthy member, or a Ready pod), and
``describe``/``logs`` look at the member that is down, or the pod the alert names.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from medic.analysis.dataplane import (
    Names,
    all_failed,
    current_op_cmd,
    human_bytes,
    mongosh,
    names,
    pct,
    query,
    typed,
    typed_first,
    why_no_answer,
)
from medic.analysis.volumes import Volume, mounting_pod
from medic.collectors.k8s.pods_output import PodDescribeOutput
from medic.collectors.mongo_output import (
    CurrentOpOutput,
    DbStatsOutput,
    MongoOp,
    RsStatusOutput,
    ServerStatusOutput,
)
from medic.domain.evidence import Evidence
from medic.domain.incident import Finding, Severity
from medic.playbooks.contract import AnalysisInput, AnalyzerDef
from medic.rules.targets import subject_label

DISK_WARN, DISK_CRIT = 0.85, 0.95
CONN_WARN, CONN_CRIT = 0.80, 0.95
CONN_MIN_AVAILABLE = 50
LAG_WARN, LAG_CRIT = 30.0, 300.0
CACHE_USED_WARN, CACHE_DIRTY_WARN = 0.95, 0.20
SLOW_OP_CRIT_SECS = 30


_ORDINAL_POD = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?-\d+$")


def member_pod(member: str, statefulset: str) -> str | None:
    """The pod of a replica-set member named ``host:port``, when the host is a StatefulSet pod's
    DNS name (``<pod>.<service>...``); None for an IP or a name that is no pod's."""
    host = member.rsplit(":", 1)[0].strip("[]")
    first_label = host.split(".", 1)[0]
    if first_label.startswith(f"{statefulset}-") and _ORDINAL_POD.match(first_label):
        return first_label
    if "." in host and not host.replace(".", "").isdigit() and _ORDINAL_POD.match(first_label):
        return first_label
    return None


@dataclass(frozen=True)
class Aim:
    """Where the next steps point: ``exec_pod`` answers commands, ``inspect`` are pods to look at."""

    exec_pod: str | None
    why: str
    inspect: tuple[str, ...]


def _alert_pods(inp: AnalysisInput, statefulset: str) -> list[str]:
    pods = [subject_label(inp.labels, "pod")] + [subject_label(a.labels, "pod") for a in inp.alerts]
    return list(dict.fromkeys(p for p in pods if p.startswith(f"{statefulset}-") and _ORDINAL_POD.match(p)))


def _ready_pods(inp: AnalysisInput, statefulset: str) -> list[str]:
    describe = typed_first(inp, "k8s.pod_describe", PodDescribeOutput)
    return [
        p.name
        for p in (describe.pods if describe else [])
        if p.name and p.name.startswith(f"{statefulset}-") and p.conditions.get("Ready") == "True"
    ]


def aim(inp: AnalysisInput, n: Names) -> Aim:
    """The member that answers (the one Medic reached, the primary, a healthy one, a Ready pod) for
    commands; the unhealthy members and the alert's pod for describe/logs."""
    sts = n.mongo_statefulset
    found = next(typed(inp, "mongo.rs_status", RsStatusOutput), None)
    members = found[1].members if found else []
    pod = {m.name: member_pod(m.name, sts) for m in members}
    alerted = _alert_pods(inp, sts)
    down = [p for m in members if not m.healthy and (p := pod[m.name])]
    inspect = tuple(dict.fromkeys([*alerted, *down]))
    candidates = [
        ("the member Medic reached", [m for m in members if m.self and m.healthy]),
        ("the primary", [m for m in members if m.state == "PRIMARY" and m.healthy]),
        ("a healthy member", [m for m in members if m.healthy]),
    ]
    for why, chosen in candidates:
        pods = [p for m in chosen if (p := pod[m.name])]
        if pods:
            return Aim(pods[0], f"{why} ({pods[0]})", inspect)
    ready = [p for p in _ready_pods(inp, sts) if p not in inspect] or _ready_pods(inp, sts)
    if ready:
        return Aim(ready[0], f"a Ready pod ({ready[0]})", inspect)
    if alerted:
        return Aim(alerted[0], f"the pod the alert names ({alerted[0]})", inspect)
    return Aim(None, "", inspect)


def _pod_steps(n: Names, inspect: tuple[str, ...] = ()) -> list[str]:
    looked_at = inspect or (n.mongo_pod,)
    return [
        f"kubectl get pods -n {n.namespace} -l app={n.mongo_statefulset}",
        *(f"kubectl describe pod {p} -n {n.namespace}" for p in looked_at[:3]),
        *(f"kubectl logs {p} -n {n.namespace} --previous" for p in looked_at[:3]),
    ]


def _disk_steps(n: Names) -> list[str]:
    return [
        f"kubectl get pvc -n {n.namespace}",
        f"kubectl exec -it {n.mongo_pod} -n {n.namespace} -- df -h /data/db",
    ]


def _op_details(o: MongoOp) -> dict[str, object]:
    return {
        "opid": o.opid,
        "ns": o.ns,
        "op": o.op,
        "secs_running": o.secs_running,
        "plan_summary": o.plan_summary,
        "client": o.client,
    }


def slow_ops_finding(
    analyzer: str, code: str, ev: Evidence, data: CurrentOpOutput, n: Names
) -> Finding | None:
    """A finding for client operations running >= min_secs (COLLSCAN called out), or None."""
    ops = [o for o in data.ops if not o.internal]
    count = data.app_ops or len(ops)
    if not count:
        return None
    longest = ops[0] if ops else MongoOp()
    collscans, secs = data.collscans, data.max_secs_running
    severity: Severity = "critical" if collscans or secs >= SLOW_OP_CRIT_SECS else "warning"
    summary = (
        f"{count} MongoDB operation{'s' if count != 1 else ''} running for "
        f"{data.min_secs} s or more; the longest has run {secs} s "
        f"({longest.op} on {longest.ns}, plan {longest.plan_summary or 'unknown'})"
    )
    if collscans:
        summary += f"; {collscans} scan{'' if collscans != 1 else 's'} a whole collection (COLLSCAN)"
    if data.waiting_for_lock:
        summary += f"; {data.waiting_for_lock} waiting for a lock"
    steps = [current_op_cmd(n, data.min_secs)]
    for ns in dict.fromkeys(o.ns for o in ops if o.collscan and o.ns and "." in o.ns):
        db, _, coll = ns.partition(".")
        steps.append(mongosh(n, f"db.getCollection('{coll}').getIndexes()", db))
    if longest.opid is not None:
        kill = mongosh(n, f"db.killOp({longest.opid})")
        steps.append(f"# only if it must stop now: {kill}")
    return Finding(
        analyzer=analyzer,
        code=code,
        severity=severity,
        summary=summary,
        details={
            "count": count,
            "collscans": collscans,
            "max_secs_running": secs,
            "capped": data.capped,
            "by_ns": dict(data.by_ns),
            "ops": [_op_details(o) for o in ops[:5]],
        },
        evidence=[ev.step],
        next_steps=steps,
    )


def _unreachable(inp: AnalysisInput, n: Names, inspect: tuple[str, ...] = ()) -> list[Finding]:
    failed = all_failed(inp, "mongo.")
    if not failed:
        return []
    errors = "; ".join(f"{e.step}: {e.error or e.status.value}" for e in failed[:3])
    return [
        Finding(
            analyzer="mongodb",
            code="mongodb.unreachable",
            severity="critical",
            summary="MongoDB did not answer any diagnostic command"
            + (f": {why}" if (why := why_no_answer(failed)) else "")
            + f" ({errors})",
            details={"steps": {e.step: e.status.value for e in failed}},
            evidence=[e.step for e in failed],
            next_steps=[*_pod_steps(n, inspect), mongosh(n, "rs.status()")],
        )
    ]


def _no_primary(ev: Evidence, rs: RsStatusOutput, steps: list[str], n: Names) -> Finding | None:
    if rs.has_primary is not False:  # True, or not said (a bundle written by hand)
        return None
    states = {m.name: m.state for m in rs.members}
    return Finding(
        analyzer="mongodb",
        code="mongodb.no_primary",
        severity="critical",
        summary=f"replica set {rs.set} has no PRIMARY: writes fail until one is elected "
        f"(members: {', '.join(f'{k} {v}' for k, v in states.items())})",
        details={"set": rs.set, "members": states},
        evidence=[ev.step],
        next_steps=steps,
    )


def _member_unhealthy(ev: Evidence, rs: RsStatusOutput, steps: list[str], n: Names) -> Finding | None:
    members = rs.members
    unhealthy = [m for m in members if not m.healthy]
    if not unhealthy:
        return None
    majority = rs.majority or len(members) // 2 + 1
    lost = len(members) - len(unhealthy) < majority  # the healthy voters are no majority
    reasons = [
        f"{m.name} {m.state}" + (f" ({m.last_heartbeat_message})" if m.last_heartbeat_message else "")
        for m in unhealthy
    ]
    return Finding(
        analyzer="mongodb",
        code="mongodb.member_unhealthy",
        severity="critical" if lost else "warning",
        summary=f"{len(unhealthy)} of {len(members)} replica set members unhealthy: "
        + "; ".join(reasons)
        + (" — the set has lost its majority and cannot elect a primary" if lost else ""),
        details={"unhealthy": [m.name for m in unhealthy], "majority": majority},
        evidence=[ev.step],
        next_steps=steps,
    )


def _replication_lag(ev: Evidence, rs: RsStatusOutput, steps: list[str], n: Names) -> Finding | None:
    lag = rs.max_lag_seconds
    lagging = [m for m in rs.members if m.lag_seconds is not None]
    if lag is None or lag < LAG_WARN or not lagging:
        return None
    laggard = max(lagging, key=lambda m: m.lag_seconds or 0.0)
    return Finding(
        analyzer="mongodb",
        code="mongodb.replication_lag",
        severity="critical" if lag >= LAG_CRIT else "warning",
        summary=f"{laggard.name} is {lag:.0f} s behind the {rs.lag_reference}",
        details={"max_lag_seconds": lag, "member": laggard.name},
        evidence=[ev.step],
        next_steps=[mongosh(n, "rs.printSecondaryReplicationInfo()")],
    )


def _replica_set(inp: AnalysisInput, n: Names, inspect: tuple[str, ...] = ()) -> list[Finding]:
    """One finding per replica set problem: no primary, unhealthy members, replication lag."""
    found = next(typed(inp, "mongo.rs_status", RsStatusOutput), None)
    if found is None or not found[1].replica_set:
        return []
    ev, rs = found
    steps = [mongosh(n, "rs.status()"), *_pod_steps(n, inspect)]
    checks = (_no_primary, _member_unhealthy, _replication_lag)
    return [f for f in (check(ev, rs, steps, n) for check in checks) if f is not None]


def _disk(inp: AnalysisInput, n: Names) -> list[Finding]:
    found = next(typed(inp, "mongo.db_stats", DbStatsOutput), None)
    ratio = found[1].fs_used_ratio if found else None
    if found is not None and ratio is not None:
        ev, stats = found
        if ratio < DISK_WARN:
            return []
        return [
            Finding(
                analyzer="mongodb",
                code="mongodb.disk_nearly_full",
                severity="critical" if ratio >= DISK_CRIT else "warning",
                summary=f"the filesystem of /data/db is {pct(ratio)} full "
                f"({human_bytes(stats.fs_used_size)} of {human_bytes(stats.fs_total_size)}); "
                "mongod stops accepting writes and may shut down when it runs out",
                details={"fs_used_ratio": ratio, "db": stats.db, "data_size": stats.data_size},
                evidence=[ev.step],
                next_steps=_disk_steps(n),
            )
        ]
    # mongod down (maybe because of the disk): the kubelet still reports the volume.
    volumes = query(inp, "volume_usage_ratio")
    if volumes is None:
        return []
    hits = [
        (claim, ratio)
        for claim, ratio in volumes.by_label("persistentvolumeclaim").items()
        if ratio >= DISK_WARN and ("mongo" in claim or n.mongo_statefulset in claim)
    ]
    if not hits:
        return []
    worst = max(h[1] for h in hits)
    return [
        Finding(
            analyzer="mongodb",
            code="mongodb.disk_nearly_full",
            severity="critical" if worst >= DISK_CRIT else "warning",
            summary="MongoDB's volume is nearly full: "
            + ", ".join(f"PVC {name} {pct(v)}" for name, v in hits),
            details={"volumes": dict(hits)},
            evidence=[volumes.step],
            next_steps=_disk_steps(n)[:1]
            + [
                f"kubectl exec -it {pod} -n {n.namespace} -- df -h /data/db"
                for name, _ in hits
                if (pod := mounting_pod(Volume(claim=name)))
            ],
        )
    ]


def _server(inp: AnalysisInput, n: Names) -> list[Finding]:
    found = next(typed(inp, "mongo.server_status", ServerStatusOutput), None)
    if found is None:
        return []
    ev, status = found
    out: list[Finding] = []
    conns = status.connections
    ratio, available = conns.used_ratio, conns.available
    few_left = available is not None and available <= CONN_MIN_AVAILABLE
    if ratio is not None and (ratio >= CONN_WARN or few_left):
        exhausted = ratio >= CONN_CRIT or few_left
        out.append(
            Finding(
                analyzer="mongodb",
                code="mongodb.connections_exhausted",
                severity="critical" if exhausted else "warning",
                summary=f"MongoDB has {conns.current} connections open and {available} available "
                f"({pct(ratio)} used): new clients will be refused",
                details=conns.model_dump(),
                evidence=[ev.step],
                next_steps=[
                    mongosh(n, "db.serverStatus().connections"),
                    mongosh(n, "db.currentOp(true).inprog.length"),
                ],
            )
        )
    cache = status.wiredtiger_cache
    used, dirty = cache.used_ratio, cache.dirty_ratio
    if (used is not None and used >= CACHE_USED_WARN) or (dirty is not None and dirty >= CACHE_DIRTY_WARN):
        out.append(
            Finding(
                analyzer="mongodb",
                code="mongodb.cache_pressure",
                severity="warning",
                summary=f"WiredTiger cache is {pct(used or 0)} full ({pct(dirty or 0)} dirty): "
                "application threads are drafted into eviction, which slows every operation",
                details=cache.model_dump(),
                evidence=[ev.step],
                next_steps=[mongosh(n, "db.serverStatus().wiredTiger.cache")],
            )
        )
    return out


def mongodb(inp: AnalysisInput) -> list[Finding]:
    target = aim(inp, names(inp))
    n = replace(names(inp), mongo_exec_pod=target.exec_pod or "")
    findings = (
        _unreachable(inp, n, target.inspect)
        + _replica_set(inp, n, target.inspect)
        + _disk(inp, n)
        + _server(inp, n)
    )
    found = next(typed(inp, "mongo.current_op", CurrentOpOutput), None)
    if found is not None and (slow := slow_ops_finding("mongodb", "mongodb.slow_operations", *found, n)):
        findings.append(slow)
    if target.why:
        for f in findings:
            f.details.setdefault("commands_run_in", target.why)
    return findings


ANALYZERS = [
    AnalyzerDef(
        "mongodb",
        mongodb,
        "MongoDB down or degraded (runbook 3.3)",
        codes=tuple(
            f"mongodb.{c}"
            for c in (
                "unreachable",
                "no_primary",
                "member_unhealthy",
                "replication_lag",
                "disk_nearly_full",
                "connections_exhausted",
                "cache_pressure",
                "slow_operations",
            )
        ),
    )
]
