"""The Redis and MongoDB analyzers read evidence through the collectors' output models (issue
16.3): a bundle written by hand gives only the fields that matter and reads with defaults; a
wrong-typed value is not read as something it is not; what a collector stored dumps back as it was
(no key added, INFO's and serverStatus' other fields kept), in the findings' details too."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import BaseModel

from medic.analysis.dataplane import EvidenceShapeError
from medic.analysis.latency import latency
from medic.analysis.mongodb import mongodb
from medic.analysis.redis_health import redis_health
from medic.collectors.mongo import (
    CurrentOpParams,
    summarize_current_op,
    summarize_profile,
    summarize_server_status,
)
from medic.collectors.mongo_output import CurrentOpOutput, ProfilerOutput, ServerStatusOutput
from medic.collectors.redis import parse_info, summarize_info
from medic.collectors.redis_output import InfoOutput, PingOutput
from medic.domain.evidence import Evidence, StepStatus
from medic.domain.incident import Finding, Target
from medic.playbooks.contract import AnalysisInput
from tests.fakes.mongo_server import current_op_fixture, fast_op, server_status, slow_collscan_op

REDIS = Target(kind="deployment", namespace="playcode", name="redis")
MONGO = Target(kind="statefulset", namespace="playcode", name="mongodb")


def given(target: Target, **data: Any) -> AnalysisInput:
    """Evidence by collector name (``redis_info`` -> ``redis.info``), each a successful run."""
    evidence = {}
    for key, value in data.items():
        step = key.replace("_", ".", 1)
        evidence[step] = Evidence(step=step, collector=step, status=StepStatus.OK, data=value)
    return AnalysisInput(target, {"namespace": "playcode"}, [], evidence, datetime.now(UTC))


def codes(findings: list[Finding]) -> list[str]:
    return [f.code for f in findings]


def dumped(model: type[BaseModel], data: dict[str, Any]) -> Any:
    return model.model_validate(data).model_dump(mode="json")


# ------------------------------------------------------------------------------------ redis


INFO = (
    "# Server\r\nredis_version:7.0.15\r\nuptime_in_seconds:10\r\n"
    "# Memory\r\nused_memory:100\r\nused_memory_human:100B\r\nmaxmemory:0\r\nmaxmemory_policy:noeviction\r\n"
    "# Persistence\r\nloading:0\r\naof_enabled:0\r\nrdb_last_bgsave_status:ok\r\n"
    "# Replication\r\nrole:master\r\nconnected_slaves:0\r\n"
    "# Errorstats\r\nerrorstat_ERR:count=3\r\n"
    "# Keyspace\r\ndb0:keys=2,expires=0,avg_ttl=0\r\n"
)


def test_info_as_the_collector_stores_it_dumps_back_unchanged() -> None:
    """Fields INFO left out (no master_link_status on a master) are not added; the fields Medic
    does not read (used_memory_human, connected_slaves) pass through."""
    summary = summarize_info(parse_info(INFO))
    summary["info_bytes"] = len(INFO)
    assert dumped(InfoOutput, summary) == summary
    assert "master_link_status" not in dumped(InfoOutput, summary)["replication"]
    info = InfoOutput.model_validate(summary)
    assert info.memory.maxmemory == 0 and info.memory.used_ratio is None
    assert info.replication.role == "master" and info.replication.master_link_status is None
    assert info.keyspace == {"db0": {"keys": 2, "expires": 0, "avg_ttl": 0}}


def test_hand_written_info_reads_with_defaults_and_its_details_are_what_was_written() -> None:
    persistence = {"rdb_last_bgsave_status": "err", "aof_enabled": 1, "aof_last_write_status": "ok"}
    (f,) = redis_health(given(REDIS, redis_info={"persistence": persistence}))
    assert f.code == "redis.rdb_save_failed" and f.severity == "warning"  # no errorstats: no MISCONF
    assert f.details == persistence


@pytest.mark.parametrize(
    ("section", "fields", "code"),
    [
        ("memory", {"used_ratio": 0.99, "maxmemory_policy": "noeviction"}, "redis.maxmemory_oom"),
        ("persistence", {"loading": 1}, "redis.loading"),
        ("clients", {"used_ratio": 0.95}, "redis.clients_near_limit"),
    ],
)
def test_a_wrong_typed_info_field_is_not_read_as_a_number(
    section: str, fields: dict[str, Any], code: str
) -> None:
    assert codes(redis_health(given(REDIS, redis_info={section: fields}))) == [code]
    (name,) = [k for k, v in fields.items() if isinstance(v, int | float)]
    wrong = {**fields, name: "lots"}
    with pytest.raises(EvidenceShapeError, match=rf"{section}\.{name}"):
        redis_health(given(REDIS, redis_info={section: wrong}))


def test_a_hand_written_ping_with_only_its_median_is_a_slow_ping() -> None:
    ping = {"latency_ms": {"median": 80.0}}
    (f,) = redis_health(given(REDIS, redis_ping=ping))
    assert f.code == "redis.slow_ping" and f.details == ping
    assert PingOutput.model_validate(ping).reply_error is None


def test_slowlog_entries_written_by_hand_read_with_defaults() -> None:
    slowlog = {"entries": [{"command": "KEYS", "duration_ms": 120}, {"duration_ms": 0.2}]}
    (f,) = redis_health(given(REDIS, redis_slowlog=slowlog))
    assert f.code == "redis.slow_commands" and f.severity == "warning"
    assert f.details == {"total": 0, "slow": [{"command": "KEYS", "duration_ms": 120.0}]}
    wrong = {"entries": [{"command": "KEYS", "duration_ms": "slow"}]}
    with pytest.raises(EvidenceShapeError, match=r"entries.0.duration_ms"):
        redis_health(given(REDIS, redis_slowlog=wrong))


# ------------------------------------------------------------------------------------ mongo


def test_server_status_as_stored_dumps_back_and_hand_written_figures_read() -> None:
    stored = summarize_server_status(server_status(connections_current=990, connections_available=10))
    assert dumped(ServerStatusOutput, stored) == stored
    conns = {"current": 990, "available": 10, "used_ratio": 0.99, "rejected": 4}  # an extra key stays
    (f,) = mongodb(given(MONGO, mongo_server_status={"connections": conns}))
    assert f.code == "mongodb.connections_exhausted" and f.severity == "critical"
    assert f.details == conns
    with pytest.raises(EvidenceShapeError, match=r"connections.used_ratio"):
        mongodb(given(MONGO, mongo_server_status={"connections": {**conns, "used_ratio": "99%"}}))


def test_current_op_as_stored_dumps_back_and_a_wrong_opid_is_not_read() -> None:
    stored = summarize_current_op(current_op_fixture(slow_collscan_op(), fast_op()), CurrentOpParams())
    assert dumped(CurrentOpOutput, stored) == stored
    (f,) = mongodb(given(MONGO, mongo_current_op=stored))
    assert f.code == "mongodb.slow_operations" and f.details["ops"][0]["opid"] == 4242
    broken = {**stored, "ops": [{**stored["ops"][0], "opid": [4242]}]}
    with pytest.raises(EvidenceShapeError, match=r"ops.0.opid"):
        mongodb(given(MONGO, mongo_current_op=broken))


def test_a_hand_written_op_without_its_namespace_reads_as_unknown() -> None:
    ops = {"app_ops": 1, "max_secs_running": 5, "ops": [{"op": "query", "secs_running": 5}]}
    (f,) = mongodb(given(MONGO, mongo_current_op=ops))
    assert f.severity == "warning" and "(query on None, plan unknown)" in f.summary
    assert f.details["ops"] == [
        {"opid": None, "ns": None, "op": "query", "secs_running": 5, "plan_summary": None, "client": None}
    ]
    assert not any("killOp" in s for s in f.next_steps)  # no opid: nothing to kill


def test_a_replica_set_written_without_has_primary_is_not_said_to_have_none() -> None:
    members = [
        {"name": "mongodb-0:27017", "state": "PRIMARY"},
        {"name": "mongodb-1:27017", "state": "(not reachable/healthy)", "healthy": False},
    ]
    assert codes(mongodb(given(MONGO, mongo_rs_status={"members": members}))) == ["mongodb.member_unhealthy"]
    said = {"members": members, "has_primary": False}
    assert codes(mongodb(given(MONGO, mongo_rs_status=said))) == [
        "mongodb.no_primary",
        "mongodb.member_unhealthy",
    ]


def test_profiler_entries_are_typed_and_the_slowest_is_repeated_as_stored() -> None:
    entries = summarize_profile(
        [{"op": "query", "ns": "userdb.users", "millis": 2500, "planSummary": "COLLSCAN", "ts": None}]
    )
    data = {"db": "userdb", "since": "2026-12-01T09:00:00+00:00", "collscans": 1, "entries": entries}
    assert ProfilerOutput.model_validate(data).entries[0].millis == 2500
    (f,) = latency(given(MONGO, mongo_profiler=data))
    assert f.code == "latency.mongo_slow_queries" and f.severity == "warning"
    assert f.details["slowest"] == entries[0]
    assert "2500 ms on userdb.users (plan COLLSCAN); 1 were collection scans" in f.summary
    with pytest.raises(EvidenceShapeError, match=r"entries.0.millis"):
        latency(given(MONGO, mongo_profiler={**data, "entries": [{"millis": "slow"}]}))
