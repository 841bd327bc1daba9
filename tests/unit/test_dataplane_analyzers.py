"""The data-plane analyzers over evidence built by the collectors' own pure summarizers."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from medic.analysis import websocket as websocket_analysis
from medic.analysis.latency import latency
from medic.analysis.mongodb import mongodb
from medic.analysis.redis_health import redis_health
from medic.analysis.websocket import ingress_timeouts, websocket
from medic.collectors.k8s.cluster_output import IngressInfo
from medic.collectors.loki_output import LokiQueryOutput
from medic.collectors.mongo import (
    CurrentOpParams,
    summarize_current_op,
    summarize_db_stats,
    summarize_rs_status,
    summarize_server_status,
)
from medic.collectors.redis import parse_info, summarize_info
from medic.domain.evidence import Evidence, StepStatus
from medic.domain.incident import Finding, IncidentAlert, Target
from medic.playbooks.contract import AnalysisInput
from tests.fakes.mongo_server import (
    current_op_fixture,
    db_stats,
    db_stats_nearly_full,
    fast_op,
    replset_member,
    replset_status,
    replset_status_healthy,
    replset_status_no_primary,
    server_status,
    slow_collscan_op,
)

APP = Target(kind="deployment", namespace="playcode", name="playcode-app")
MONGO = Target(kind="statefulset", namespace="playcode", name="mongodb")
REDIS = Target(kind="deployment", namespace="playcode", name="redis")


def ev(
    step: str,
    data: Any = None,
    *,
    collector: str | None = None,
    status: StepStatus = StepStatus.OK,
    error: str | None = None,
) -> Evidence:
    return Evidence(
        step=step, collector=collector or step.split("#")[0], status=status, data=data, error=error
    )


def given(*evidence: Evidence, target: Target | None = APP) -> AnalysisInput:
    return AnalysisInput(
        target=target,
        labels={"namespace": "playcode"},
        alerts=[],
        evidence={e.step: e for e in evidence},
        now=datetime.now(UTC),
    )


def prom(*queries: dict[str, Any], step: str = "prometheus.query") -> Evidence:
    return ev(step, {"queries": list(queries)}, collector="prometheus.query")


def q(
    name: str,
    value: float | None,
    *,
    label: str = "",
    series: dict[str, float] | None = None,
    warn: float | None = None,
    crit: float | None = None,
) -> dict[str, Any]:
    rows = [{"labels": {label: k}, "value": v} for k, v in (series or {}).items()]
    return {
        "name": name,
        "value": value,
        "series": rows or [{"labels": {}, "value": value}],
        "warn": warn,
        "crit": crit,
    }


def codes(findings: list[Finding]) -> list[str]:
    return [f.code for f in findings]


def by_code(findings: list[Finding], code: str) -> Finding:
    (found,) = [f for f in findings if f.code == code]
    return found


def loki_data(query: str, patterns: list[tuple[str, int, str | None]], since: str = "30m") -> dict[str, Any]:
    """``loki.query`` data as the collector stores it (LokiQueryOutput): (pattern, count, level)."""
    rows = [
        {"pattern": p, "count": c, "distinct": 1, "level": level, "first_seen": "2026-12-01T21:00:00+00:00",
         "last_seen": "2026-12-01T21:10:00+00:00", "pods": [], "sample": p}
        for p, c, level in patterns
    ]  # fmt: skip
    lines = sum(c for _, c, _ in patterns)
    return {
        "query": query, "description": "", "logql": "...", "since": since,
        "start": "2026-12-01T20:40:00+00:00", "end": "2026-12-01T21:10:00+00:00", "limit": 500,
        "limit_reached": False, "lines": lines, "distinct_lines": len(rows), "complete": True,
        "patterns_total": len(rows), "capped": False, "patterns": rows,
    }  # fmt: skip


def redis_info(**fields: Any) -> dict[str, Any]:
    base = {
        "redis_version": "7.0.15",
        "connected_clients": 5,
        "maxclients": 10000,
        "used_memory": 1_000_000,
        "maxmemory": 0,
        "maxmemory_policy": "noeviction",
        "loading": 0,
        "aof_enabled": 1,
        "aof_last_bgrewrite_status": "ok",
        "aof_last_write_status": "ok",
        "rdb_last_bgsave_status": "ok",
        "aof_delayed_fsync": 0,
        "evicted_keys": 0,
        "rejected_connections": 0,
        "role": "master",
    }
    errorstats = fields.pop("errorstats", {})
    base.update(fields)
    text = "# All\r\n" + "".join(f"{k}:{v}\r\n" for k, v in base.items())
    sections = parse_info(text)
    for section in ("server", "clients", "memory", "persistence", "stats", "replication"):
        sections[section] = sections["all"]
    sections["errorstats"] = {f"errorstat_{k}": f"count={v}" for k, v in errorstats.items()}
    return summarize_info(sections)


# ------------------------------------------------------------------------------------ latency


def test_latency_names_slow_mongo_ops_with_runbook_commands() -> None:
    data = summarize_current_op(current_op_fixture(slow_collscan_op(), fast_op()), CurrentOpParams())
    findings = latency(given(ev("mongo.current_op", data)))
    f = by_code(findings, "latency.mongo_slow_ops")
    assert f.severity == "critical"
    assert "12 s" in f.summary and "userdb.users" in f.summary and "COLLSCAN" in f.summary
    assert f.evidence == ["mongo.current_op"]
    assert f.next_steps[0] == (
        "kubectl exec -it mongodb-0 -n playcode -- mongosh --eval "
        "\"db.currentOp({'secs_running': {'\\$gte': 3}})\""
    )
    assert f.next_steps[1] == (
        "kubectl exec -it mongodb-0 -n playcode -- mongosh userdb "
        "--eval \"db.getCollection('users').getIndexes()\""
    )
    assert f.details["ops"][0]["opid"] == 4242


def test_latency_causes_from_pods_hpa_redis_and_errors() -> None:
    metrics = prom(
        q("latency_p99", 2.4, warn=1.0, crit=3.0),
        q("error_ratio_5xx", 0.08, warn=0.01, crit=0.05),
        q("pod_cpu_limit_ratio", 0.97, label="pod", series={"playcode-app-1": 0.97, "playcode-app-2": 0.4}),
        q("pod_memory_limit_ratio", 0.5, label="pod", series={"playcode-app-1": 0.5}),
        q("hpa_replicas_ratio", 1.0, label="horizontalpodautoscaler", series={"playcode-app": 1.0}),
        q("hpa_current_replicas", 10, label="horizontalpodautoscaler", series={"playcode-app": 10}),
        q("hpa_max_replicas", 10, label="horizontalpodautoscaler", series={"playcode-app": 10}),
    )
    info = ev(
        "redis.info",
        redis_info(
            used_memory=2_080_000, maxmemory=2_097_152, maxmemory_policy="allkeys-lru", evicted_keys=512
        ),
    )
    loki = ev(
        "loki.errors",
        loki_data("app_errors", [("db timeout after <n>ms", 40, None)]),
        collector="loki.query",
    )
    findings = latency(given(metrics, info, loki))
    assert codes(findings) == [
        "latency.redis_evicting",
        "latency.cpu_saturation",
        "latency.hpa_maxed",
        "latency.error_spike",
    ]
    cpu = by_code(findings, "latency.cpu_saturation")
    assert "playcode-app-1 97%" in cpu.summary and "playcode-app-2" not in cpu.summary
    assert cpu.severity == "warning" and cpu.next_steps[0] == "kubectl top pods -n playcode"
    hpa = by_code(findings, "latency.hpa_maxed")
    assert "playcode-app (10/10 replicas)" in hpa.summary
    assert hpa.next_steps == ["kubectl get hpa -n playcode", "kubectl describe hpa playcode-app -n playcode"]
    spike = by_code(findings, "latency.error_spike")
    assert (
        spike.severity == "critical"
        and "8%" in spike.summary
        and "db timeout after <n>ms (x40)" in spike.summary
    )
    assert spike.evidence == ["prometheus.query", "loki.errors"]
    evicting = by_code(findings, "latency.redis_evicting")
    assert "512 keys" in evicting.summary
    assert evicting.next_steps[0] == "kubectl exec -it deployment/redis -n playcode -- redis-cli info memory"


def test_latency_falls_back_to_kubectl_top_and_get_hpa() -> None:
    top = {
        "pods": [
            {
                "name": "playcode-app-7d9f8b6c5d-x2k9p",
                "containers": [
                    {
                        "name": "playcode-app",
                        "cpu_millicores": 980,
                        "cpu_limit_millicores": 1000,
                        "memory_bytes": 200,
                        "memory_limit_bytes": 1000,
                    },
                    {"name": "istio-proxy", "cpu_millicores": 10, "cpu_limit_millicores": 2000},
                ],
            },
            {
                "name": "playcode-app-7d9f8b6c5d-q8m4z",
                "containers": [
                    {
                        "name": "playcode-app",
                        "cpu_millicores": 100,
                        "cpu_limit_millicores": 1000,
                        "memory_bytes": 950,
                        "memory_limit_bytes": 1000,
                    }
                ],
            },
            {"name": "no-limits", "containers": [{"name": "playcode-app", "cpu_millicores": 5000}]},
        ]
    }
    hpas = {
        "hpas": [
            {"name": "playcode-app", "min": 2, "max": 8, "current": 8, "desired": 8, "at_max": True},
            {"name": "worker", "min": 1, "max": 4, "current": 2, "desired": 2, "at_max": False},
        ]
    }
    findings = latency(given(ev("k8s.top_pods", top), ev("k8s.hpa_status", hpas)))
    assert codes(findings) == ["latency.cpu_saturation", "latency.memory_pressure", "latency.hpa_maxed"]
    cpu = by_code(findings, "latency.cpu_saturation")
    assert cpu.summary.startswith(
        "1 pod of playcode-app at 90%+ of the CPU limit: playcode-app-7d9f8b6c5d-x2k9p 98%"
    )
    assert cpu.evidence == ["k8s.top_pods"]
    assert "q8m4z 95%" in by_code(findings, "latency.memory_pressure").summary
    hpa = by_code(findings, "latency.hpa_maxed")
    assert hpa.summary.endswith("playcode-app (8/8 replicas)") and hpa.evidence == ["k8s.hpa_status"]


def test_prometheus_wins_over_kubectl_when_it_has_series() -> None:
    metrics = prom(q("pod_cpu_limit_ratio", 0.5, label="pod", series={"playcode-app-1": 0.5}))
    top = {
        "pods": [
            {
                "name": "playcode-app-1",
                "containers": [{"name": "playcode-app", "cpu_millicores": 990, "cpu_limit_millicores": 1000}],
            }
        ]
    }
    assert latency(given(metrics, ev("k8s.top_pods", top))) == []


def test_latency_without_a_cause_says_what_was_checked() -> None:
    metrics = prom(
        q("latency_p99", 1.5, warn=1.0, crit=3.0),
        q("pod_cpu_limit_ratio", 0.3, label="pod", series={"p": 0.3}),
    )
    ops = ev("mongo.current_op", summarize_current_op(current_op_fixture(fast_op()), CurrentOpParams()))
    findings = latency(given(metrics, ops, ev("redis.info", redis_info())))
    (f,) = findings
    assert f.code == "latency.unexplained" and f.severity == "info"
    assert "1.5 s" in f.summary and "mongo.current_op" in f.summary and "redis.info" in f.summary


def test_latency_is_quiet_when_all_is_well() -> None:
    metrics = prom(q("latency_p99", 0.2, warn=1.0, crit=3.0), q("error_ratio_5xx", 0.001, warn=0.01))
    assert latency(given(metrics, ev("redis.info", redis_info()))) == []


# ------------------------------------------------------------------------------------ mongodb


def test_mongodb_lost_primary() -> None:
    evidence = [
        ev("mongo.rs_status", summarize_rs_status(replset_status_no_primary())),
        ev("mongo.server_status", summarize_server_status(server_status(is_primary=False))),
        ev("mongo.db_stats", summarize_db_stats(db_stats())),
    ]
    findings = mongodb(given(*evidence, target=MONGO))
    assert codes(findings) == ["mongodb.no_primary", "mongodb.member_unhealthy"]
    primary = by_code(findings, "mongodb.no_primary")
    assert primary.severity == "critical" and "rs0" in primary.summary
    assert primary.next_steps[0] == 'kubectl exec -it mongodb-0 -n playcode -- mongosh --eval "rs.status()"'
    member = by_code(findings, "mongodb.member_unhealthy")
    assert member.severity == "warning"  # 2 of 3 healthy: the majority holds
    assert "mongodb-2" in member.summary and "Connection refused" in member.summary


def test_mongodb_healthy_set_gives_nothing() -> None:
    evidence = [
        ev("mongo.rs_status", summarize_rs_status(replset_status_healthy())),
        ev("mongo.server_status", summarize_server_status(server_status())),
        ev("mongo.db_stats", summarize_db_stats(db_stats())),
        ev("mongo.current_op", summarize_current_op(current_op_fixture(fast_op()), CurrentOpParams())),
    ]
    assert mongodb(given(*evidence, target=MONGO)) == []


def test_mongodb_disk_connections_and_cache() -> None:
    status = server_status(
        connections_current=990,
        connections_available=10,
        cache_used_bytes=1_500 * 1024 * 1024,
        cache_max_bytes=1536 * 1024 * 1024,
    )
    evidence = [
        ev("mongo.db_stats", summarize_db_stats(db_stats_nearly_full(ratio=0.96))),
        ev("mongo.server_status", summarize_server_status(status)),
    ]
    findings = mongodb(given(*evidence, target=MONGO))
    assert codes(findings) == [
        "mongodb.disk_nearly_full",
        "mongodb.connections_exhausted",
        "mongodb.cache_pressure",
    ]
    disk = by_code(findings, "mongodb.disk_nearly_full")
    assert disk.severity == "critical" and "96%" in disk.summary
    assert disk.next_steps == [
        "kubectl get pvc -n playcode",
        "kubectl exec -it mongodb-0 -n playcode -- df -h /data/db",
    ]
    assert by_code(findings, "mongodb.connections_exhausted").severity == "critical"


def test_mongodb_unreachable_with_a_full_volume_from_kubelet_stats() -> None:
    down = "StepError: MongoDB unreachable (serverStatus): ServerSelectionTimeoutError: connection refused"
    evidence = [
        ev("mongo.rs_status", status=StepStatus.ERROR, error=down),
        ev("mongo.server_status", status=StepStatus.TIMEOUT, error="no answer within 15s"),
        prom(
            q(
                "volume_usage_ratio",
                0.99,
                label="persistentvolumeclaim",
                series={"datadir-mongodb-0": 0.99, "redis-data": 0.97, "grafana": 0.2},
            )
        ),
    ]
    findings = mongodb(
        given(*evidence, target=Target(kind="statefulset", namespace="prod", name="mongo-main"))
    )
    assert codes(findings) == ["mongodb.unreachable", "mongodb.disk_nearly_full"]
    down_f = by_code(findings, "mongodb.unreachable")
    assert down_f.evidence == ["mongo.rs_status", "mongo.server_status"]
    assert "kubectl get pods -n prod -l app=mongo-main" in down_f.next_steps
    assert "kubectl logs mongo-main-0 -n prod --previous" in down_f.next_steps
    disk = by_code(findings, "mongodb.disk_nearly_full")
    assert "datadir-mongodb-0 99%" in disk.summary and "redis-data" not in disk.summary


def test_mongodb_not_configured_is_not_unreachable() -> None:
    evidence = [ev("mongo.rs_status", status=StepStatus.NOT_CONFIGURED, error="not configured")]
    assert mongodb(given(*evidence)) == []


# ------------------------------------------------------------------------------------ redis


@pytest.mark.parametrize(
    ("fields", "code", "severity"),
    [
        (
            {"used_memory": 2_097_000, "maxmemory": 2_097_152, "errorstats": {"OOM": 12}},
            "redis.maxmemory_oom",
            "critical",
        ),
        (
            {
                "used_memory": 1_900_000,
                "maxmemory": 2_097_152,
                "maxmemory_policy": "allkeys-lru",
                "evicted_keys": 40,
            },
            "redis.evicting",
            "warning",
        ),
        (
            {"used_memory": 1_950_000, "maxmemory": 2_097_152, "maxmemory_policy": "allkeys-lru"},
            "redis.memory_high",
            "warning",
        ),
        ({"aof_last_write_status": "err"}, "redis.aof_write_error", "critical"),
        (
            {"aof_last_bgrewrite_status": "err", "aof_rewrites_consecutive_failures": 3},
            "redis.aof_rewrite_failed",
            "warning",
        ),
        (
            {"rdb_last_bgsave_status": "err", "errorstats": {"MISCONF": 2}},
            "redis.rdb_save_failed",
            "critical",
        ),
        ({"aof_enabled": 0}, "redis.aof_disabled", "info"),
        ({"aof_delayed_fsync": 4}, "redis.aof_fsync_delayed", "info"),
        (
            {"rejected_connections": 7, "connected_clients": 20, "maxclients": 20},
            "redis.rejected_connections",
            "critical",
        ),
        ({"connected_clients": 19, "maxclients": 20}, "redis.clients_near_limit", "warning"),
        ({"loading": 1}, "redis.loading", "warning"),
        ({"role": "slave", "master_link_status": "down"}, "redis.replication_broken", "warning"),
    ],
)
def test_redis_states(fields: dict[str, Any], code: str, severity: str) -> None:
    findings = redis_health(given(ev("redis.info", redis_info(**fields)), target=REDIS))
    assert codes(findings) == [code]
    assert findings[0].severity == severity
    assert findings[0].evidence == ["redis.info"]
    assert all("deployment/redis -n playcode" in s for s in findings[0].next_steps if "redis-cli" in s)


def test_redis_healthy_gives_nothing() -> None:
    evidence = [
        ev("redis.ping", {"pong": True, "latency_ms": {"median": 0.3}}),
        ev("redis.info", redis_info()),
    ]
    assert redis_health(given(*evidence, target=REDIS)) == []


def test_redis_down() -> None:
    evidence = [
        ev("redis.ping", status=StepStatus.ERROR, error="StepError: Redis unreachable: Error 111 connecting"),
        ev("redis.info", status=StepStatus.ERROR, error="StepError: Redis unreachable: Error 111 connecting"),
    ]
    (f,) = redis_health(
        given(*evidence, target=Target(kind="deployment", namespace="playcode", name="redis-cache"))
    )
    assert f.code == "redis.unreachable" and f.severity == "critical"
    assert f.next_steps[0] == "kubectl exec -it deployment/redis-cache -n playcode -- redis-cli ping"


def test_redis_slow_commands() -> None:
    slowlog = {
        "total": 3,
        "entries": [
            {"command": "KEYS", "key_pattern": "session:*", "duration_ms": 250.0},
            {"command": "GET", "key_pattern": "user:<n>", "duration_ms": 0.5},
        ],
    }
    (f,) = redis_health(given(ev("redis.slowlog", slowlog), target=REDIS))
    assert f.code == "redis.slow_commands" and f.severity == "warning"
    assert "KEYS session:*, took 250 ms" in f.summary


def test_old_slow_commands_are_not_the_incidents_cause() -> None:
    """The slowlog keeps its entries as long as Redis runs: a KEYS of last week is not today's cause;
    one shortly before the first alert is."""
    now = datetime.now(UTC)
    first_alert = now - timedelta(minutes=5)
    alert = IncidentAlert(
        identity="a", status="firing", labels={"alertname": "RedisDown"}, startsAt=first_alert
    )

    def slowlog_at(when: datetime) -> dict[str, Any]:
        entry = {
            "command": "KEYS",
            "key_pattern": "session:*",
            "duration_ms": 900.0,
            "started_at": when.isoformat(),
        }
        return {"total": 1, "entries": [entry]}

    def analyze(data: dict[str, Any]) -> list[str]:
        inp = replace(given(ev("redis.slowlog", data), target=REDIS), alerts=[alert], now=now)
        return [f.code for f in redis_health(inp)] + [f.code for f in latency(inp)]

    assert analyze(slowlog_at(now - timedelta(days=7))) == []
    recent = analyze(slowlog_at(first_alert - timedelta(minutes=10)))
    assert recent == ["redis.slow_commands", "latency.redis_slow_commands"]


# ------------------------------------------------------------------------------------ websocket


def test_websocket_drop_from_prometheus() -> None:
    metrics = prom(
        q("websocket_connections", 300),
        q("websocket_connections_30m_ago", 1200),
        q("websocket_connections_change_30m", -0.75),
    )
    (f,) = websocket(given(metrics))
    assert f.code == "websocket.connection_drop" and f.severity == "critical"
    assert "75%" in f.summary and "1200 → 300" in f.summary
    assert f.next_steps[:2] == [
        "kubectl get ingress -n playcode -o yaml",
        'kubectl logs deployment/playcode-app -n playcode | grep -i "socket"',
    ]


def test_websocket_small_change_is_fine() -> None:
    assert websocket(given(prom(q("websocket_connections_change_30m", -0.1)))) == []


def test_ingress_timeouts() -> None:
    nginx = "nginx.ingress.kubernetes.io/"
    assert ingress_timeouts(IngressInfo()) == {
        nginx + "proxy-read-timeout": (60, False),
        nginx + "proxy-send-timeout": (60, False),
    }
    assert ingress_timeouts(
        IngressInfo(annotations={nginx + "proxy-read-timeout": "3600", nginx + "proxy-send-timeout": "3600s"})
    ) == {nginx + "proxy-read-timeout": (3600, True), nginx + "proxy-send-timeout": (3600, True)}
    alb = {"alb.ingress.kubernetes.io/load-balancer-attributes": "idle_timeout.timeout_seconds=4000"}
    alb_timeout = {"alb idle_timeout.timeout_seconds": (4000, True)}
    assert ingress_timeouts(IngressInfo(annotations=alb)) == alb_timeout
    ingresses = {
        "ingresses": [
            {"name": "playcode", "annotations": {nginx + "proxy-read-timeout": "60"}},
            {
                "name": "ok",
                "annotations": {nginx + "proxy-read-timeout": "3600", nginx + "proxy-send-timeout": "3600"},
            },
        ]
    }
    (f,) = websocket(given(ev("k8s.ingress", ingresses)))
    assert f.code == "websocket.ingress_timeout_short"
    assert "playcode: proxy-read-timeout 60s, proxy-send-timeout not set (default 60s)" in f.summary
    assert "ok:" not in f.summary
    assert f.next_steps[-1] == "kubectl describe ingress playcode -n playcode"


def test_websocket_redis_adapter_errors_and_redis_down() -> None:
    adapter = loki_data(
        "redis_adapter",
        [
            ("redis adapter error: connect ECONNREFUSED <ip>", 41, "error"),
            ("redis adapter subscribed to <n> channels", 3, "info"),
        ],
    )
    socket_ok = loki_data("socket", [("socket connected", 9, None)])
    evidence = [
        ev("loki.redis_adapter", adapter, collector="loki.query"),
        ev("loki.socket", socket_ok, collector="loki.query"),
        ev("redis.ping", status=StepStatus.TIMEOUT, error="no answer within 5s"),
    ]
    findings = websocket(given(*evidence))
    assert codes(findings) == ["websocket.redis_adapter_errors", "websocket.redis_unreachable"]
    adapter_f = by_code(findings, "websocket.redis_adapter_errors")
    assert "41 socket.io Redis adapter error lines" in adapter_f.summary
    assert "subscribed" not in adapter_f.summary
    assert adapter_f.next_steps == [
        'kubectl logs deployment/playcode-app -n playcode | grep -i "redis"',
        "kubectl exec -it deployment/redis -n playcode -- redis-cli ping",
    ]


# ------------------------------------------------------------------------ redis error replies (12.4)


def ping_reply(code: str, message: str) -> Evidence:
    return ev(
        "redis.ping",
        {"pong": False, "samples": 0, "latency_ms": None, "reply_error": {"code": code, "message": message}},
    )


def answered(step: str, code: str, message: str) -> Evidence:
    return ev(
        step,
        status=StepStatus.ERROR,
        error=f"StepError: Redis answered {step.split('.')[1].upper()} with -{code} {message}",
    )


@pytest.mark.parametrize(
    ("code", "message", "finding", "severity", "first_step"),
    [
        ("MISCONF", "Errors writing to the AOF file: No space left on device",
         "redis.writes_refused_misconf", "critical", "redis-cli info persistence"),
        ("LOADING", "Redis is loading the dataset in memory", "redis.loading", "warning",
         "redis-cli info persistence"),
        ("BUSY", "Redis is busy running a script.", "redis.busy_script", "critical", "redis-cli script kill"),
        ("NOAUTH", "Authentication required.", "redis.auth_refused", "warning", "kubectl get secret"),
        ("WRONGPASS", "invalid username-password pair", "redis.auth_refused", "warning",
         "kubectl get secret"),
        ("READONLY", "You can't write against a read only replica.", "redis.read_only_replica", "critical",
         "redis-cli info replication"),
        ("MASTERDOWN", "Link with MASTER is down", "redis.master_down", "critical",
         "redis-cli info replication"),
        ("ERR", "max number of clients reached", "redis.maxclients_reached", "critical",
         "redis-cli info clients"),
        ("WEIRD", "something new", "redis.error_reply", "warning", "redis-cli ping"),
    ],
)  # fmt: skip
def test_an_error_reply_is_reachable_but_unhealthy(
    code: str, message: str, finding: str, severity: str, first_step: str
) -> None:
    evidence = [
        ping_reply(code, message),
        answered("redis.info", code, message),
        answered("redis.dbsize", code, message),
    ]
    findings = redis_health(given(*evidence, target=REDIS))
    assert codes(findings) == [finding]  # never "did not answer" beside it
    (f,) = findings
    assert f.severity == severity and f"-{code} {message}" in f.summary
    assert first_step in f.next_steps[0]
    assert set(f.evidence) == {"redis.ping", "redis.info", "redis.dbsize"}


def test_an_error_reply_on_info_alone_is_not_unreachable() -> None:
    """No PING step (the latency playbook): INFO's error reply still says Redis answered."""
    findings = redis_health(given(answered("redis.info", "LOADING", "loading the dataset"), target=REDIS))
    assert codes(findings) == ["redis.loading"]


def test_misconf_joins_the_aof_failure_that_causes_it() -> None:
    evidence = [
        ping_reply("MISCONF", "Errors writing to the AOF file: No space left on device"),
        ev("redis.info", redis_info(aof_last_write_status="err", errorstats={"MISCONF": 12})),
    ]
    findings = redis_health(given(*evidence, target=REDIS))
    assert codes(findings) == ["redis.aof_write_error"]  # one critical story, not two
    (f,) = findings
    assert f.severity == "critical" and "-MISCONF" in f.summary and "while it is up" in f.summary
    assert set(f.evidence) == {"redis.info", "redis.ping"}


def test_loading_in_info_and_in_the_reply_is_one_finding() -> None:
    evidence = [ping_reply("LOADING", "Redis is loading"), ev("redis.info", redis_info(loading=1))]
    assert codes(redis_health(given(*evidence, target=REDIS))) == ["redis.loading"]


# ------------------------------------------------------------------------ websocket: ingress logs (12.6)


def loki(step: str, query: str, patterns: list[tuple[str, int]]) -> Evidence:
    return ev(step, loki_data(query, [(p, c, None) for p, c in patterns]), collector="loki.query")


INGRESS_LINES = [
    ("<n>/<n>/<n> <n>:<n>:<n> [error] <n>#<n>: *<n> upstream timed out (<n>: Connection timed out) while "
     "proxying upgraded connection, client: <ip>, server: play.playcode.gg", 120),
    ("<n>/<n>/<n> <n>:<n>:<n> [error] <n>#<n>: *<n> upstream prematurely closed connection while reading "
     'upstream, request: "GET /socket.io/?EIO=<n>&transport=websocket"', 7),
]  # fmt: skip


def test_ingress_log_reasons_are_counted_in_plain_words() -> None:
    data = loki_data("ingress_websocket", [(p, c, None) for p, c in [*INGRESS_LINES, ("[warn] other", 2)]])
    patterns = LokiQueryOutput.model_validate(data).patterns
    assert websocket_analysis.ingress_log_reasons(patterns) == {
        "upstream_timeout": 120,
        "upstream_closed": 7,
        "other": 2,
    }


def test_ingress_timeouts_without_a_short_annotation_are_their_own_finding() -> None:
    findings = websocket(given(loki("loki.ingress", "ingress_websocket", INGRESS_LINES)))
    (f,) = findings
    assert f.code == "websocket.ingress_upstream_timeouts" and f.evidence == ["loki.ingress"]
    assert f.summary.startswith(
        'the ingress controller logged, in the last 30m: 120 "upstream timed out … while proxying '
        "upgraded connection\" (the proxy's read/send timeout ended WebSockets that were quiet for longer"
    )
    assert '7 "upstream prematurely closed / reset by peer" (the app closed or reset' in f.summary


def test_ingress_timeouts_confirm_a_short_annotation_in_one_critical_finding() -> None:
    ingress = ev("k8s.ingress", {"ingresses": [{"name": "playcode", "annotations": {}}]})
    findings = websocket(given(ingress, loki("loki.ingress", "ingress_websocket", INGRESS_LINES)))
    assert codes(findings) == ["websocket.ingress_timeout_short"]
    (f,) = findings
    assert f.severity == "critical" and set(f.evidence) == {"k8s.ingress", "loki.ingress"}
    assert '120 "upstream timed out' in f.summary


def test_socket_io_disconnect_reasons_stay_in_the_finding() -> None:
    socket = loki(
        "loki.socket",
        "socket",
        [("socket disconnected: transport close", 40), ("client left: ping timeout", 15), ("sock error", 3)],
    )
    (f,) = websocket(given(socket))
    assert f.code == "websocket.socket_errors"
    assert f.details["disconnect_reasons"] == {"transport close": 40, "ping timeout": 15}
    assert "disconnect reasons: transport close x40 (the connection was closed under socket.io" in f.summary
    assert "ping timeout x15 (the client stopped answering heartbeats" in f.summary


# ------------------------------------------------ mongodb: aim at the member that answers (12.8)

HOSTS = [f"mongo-rs-{i}.mongo-rs-svc.shop.svc.cluster.local:27017" for i in range(3)]
SHOP_MONGO = Target(kind="statefulset", namespace="shop", name="mongo-rs")


def first_member_down() -> dict[str, Any]:
    """mongo-rs-0 is down; Medic reached mongo-rs-1, the new primary."""
    return replset_status([
        replset_member(0, HOSTS[0], "PRIMARY", healthy=False, heartbeat_message="Connection refused"),
        replset_member(1, HOSTS[1], "PRIMARY", self_=True),
        replset_member(2, HOSTS[2], "SECONDARY", sync_source=HOSTS[1]),
    ])  # fmt: skip


def test_mongodb_next_steps_aim_at_the_member_that_answers() -> None:
    rs = ev("mongo.rs_status", summarize_rs_status(first_member_down()))
    (f,) = mongodb(given(rs, target=SHOP_MONGO))
    assert f.code == "mongodb.member_unhealthy"
    assert f.next_steps[0] == 'kubectl exec -it mongo-rs-1 -n shop -- mongosh --eval "rs.status()"'
    assert "kubectl describe pod mongo-rs-0 -n shop" in f.next_steps  # the one that is down
    assert not any("mongodb-0" in s for s in f.next_steps)
    assert f.details["commands_run_in"] == "the member Medic reached (mongo-rs-1)"


def test_mongodb_down_aims_at_a_ready_pod_and_looks_at_the_alerts_pod() -> None:
    down = [
        ev(step, status=StepStatus.ERROR, error="StepError: MongoDB unreachable (ping): refused")
        for step in ("mongo.rs_status", "mongo.server_status")
    ]
    pods = ev(
        "k8s.pod_describe",
        {"pods": [
            {"name": "mongo-rs-0", "conditions": {"Ready": "False"}},
            {"name": "mongo-rs-2", "conditions": {"Ready": "True"}},
        ]},
    )  # fmt: skip
    inp = given(*down, pods, target=SHOP_MONGO)
    inp = AnalysisInput(inp.target, {"namespace": "shop", "pod": "mongo-rs-0"}, [], inp.evidence, inp.now)
    (f,) = mongodb(inp)
    assert f.code == "mongodb.unreachable"
    assert "kubectl describe pod mongo-rs-0 -n shop" in f.next_steps
    assert "kubectl logs mongo-rs-0 -n shop --previous" in f.next_steps
    assert f.next_steps[-1] == 'kubectl exec -it mongo-rs-2 -n shop -- mongosh --eval "rs.status()"'


def test_member_names_map_to_pods() -> None:
    from medic.analysis.mongodb import member_pod

    assert member_pod("mongodb-2.mongodb-headless.playcode.svc.cluster.local:27017", "mongodb") == "mongodb-2"
    assert member_pod("mongodb-1:27017", "mongodb") == "mongodb-1"
    assert member_pod("rs-a-3.rs-a.db.svc:27017", "mongodb") == "rs-a-3"
    assert member_pod("10.0.3.7:27017", "mongodb") is None
    assert member_pod("db.example.com:27017", "mongodb") is None


def test_latency_names_a_busy_redis_and_says_what_it_could_not_check() -> None:
    busy = answered("redis.info", "BUSY", "Redis is busy running a script.")
    findings = latency(given(prom(q("latency_p99", 2.5, warn=1.0)), busy))
    assert codes(findings) == ["latency.redis_busy_script"]
    assert findings[0].analyzer == "latency" and "Lua script" in findings[0].summary
    down = ev("mongo.current_op", status=StepStatus.TIMEOUT, error="no answer within 5s")
    (f,) = latency(given(prom(q("latency_p99", 2.5, warn=1.0)), down))
    assert f.code == "latency.unexplained" and "could not check: mongo.current_op (timeout)" in f.summary


@pytest.mark.parametrize(
    ("error", "status", "why"),
    [
        ("StepError: Redis unreachable: Error 111 connecting to redis:6379. Connection refused.",
         StepStatus.ERROR, "nothing accepts connections at its address"),
        ("StepError: Redis unreachable: Error -2 connecting to redis:6379. Name or service not known.",
         StepStatus.ERROR, "its host name does not resolve"),
        ("no answer within 3s", StepStatus.TIMEOUT, "it gave no answer in time"),
        ("StepError: Redis unreachable: Connection reset by peer", StepStatus.ERROR,
         "it dropped the connection mid-answer"),
    ],
)  # fmt: skip
def test_redis_down_says_why_in_plain_words(error: str, status: StepStatus, why: str) -> None:
    (f,) = redis_health(given(ev("redis.ping", status=status, error=error), target=REDIS))
    assert f.code == "redis.unreachable"
    assert f.summary.startswith(f"Redis did not answer: {why}")


def test_websocket_names_a_redis_that_answers_with_an_error_not_unreachable() -> None:
    evidence = [ping_reply("MISCONF", "Errors writing to the AOF"), answered("redis.info", "MISCONF", "x")]
    findings = websocket(given(*evidence))
    assert codes(findings) == ["websocket.redis_writes_refused_misconf"]
    assert "adapter cannot relay events" in findings[0].summary


def test_hand_written_loki_evidence_is_read_too() -> None:
    """A `medic test` file gives only what matters; the model's defaults fill the rest."""
    short = {"query": "socket", "since": "30m", "patterns": [{"pattern": "x: ping timeout", "count": 4}]}
    (f,) = websocket(given(ev("loki.socket", short, collector="loki.query")))
    assert f.details["disconnect_reasons"] == {"ping timeout": 4}
