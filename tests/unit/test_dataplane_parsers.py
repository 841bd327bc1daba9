"""The pure parts of the data-plane collectors: shaping, parsing, capping, masking, grouping."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import pytest
from bson import Int64

from medic.collectors.loki import (
    group_streams,
    logql_string,
    mask_variables,
    message_of,
    render_logql,
)
from medic.collectors.mongo import (
    CurrentOpParams,
    command_shape,
    summarize_current_op,
    summarize_db_stats,
    summarize_rs_status,
    summarize_server_status,
)
from medic.collectors.redis import parse_info, summarize_info, summarize_slowlog_entry
from medic.domain.errors import StepError
from tests.fakes.mongo_server import (
    current_op_fixture,
    db_stats_nearly_full,
    replset_member,
    replset_status,
    replset_status_no_primary,
    server_status,
    slow_collscan_op,
)

JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiI0MjQyIn0.c2lnbmF0dXJlX3ZhbHVl"


# ------------------------------------------------------------------------------------ MongoDB


def test_command_shape_keeps_field_names_and_drops_values() -> None:
    shaped = command_shape(
        {
            "find": "users",
            "filter": {"email": "alice@example.com", "age": {"$gte": 18}, "$or": [{"a": 1}, {"b": "x"}]},
            "sort": {"created": -1},
            "limit": 5,
            "$db": "userdb",
        }
    )
    assert shaped == {
        "find": "users",
        "filter": {"email": "?", "age": {"$gte": "?"}, "$or": [{"a": "?"}, {"b": "?"}]},
        "sort": {"created": -1},
        "limit": 5,
        "$db": "userdb",
    }
    assert command_shape(None) is None


def test_command_shape_is_bounded() -> None:
    deep: dict[str, object] = {"v": "secret"}
    for _ in range(20):
        deep = {"n": deep}
    shaped = command_shape(
        {"aggregate": "x", "pipeline": [{"$match": deep}] * 50, **{f"k{i}": i for i in range(100)}}
    )
    text = json.dumps(shaped)
    assert "secret" not in text
    assert len(text) < 3000


def test_thousands_of_ops_are_capped_longest_first_and_counted_in_full() -> None:
    ops = [
        slow_collscan_op(opid=i, secs_running=3 + i % 500, email=f"user{i}@example.com") for i in range(5000)
    ]
    reply = current_op_fixture(*ops)
    t0 = time.perf_counter()
    data = summarize_current_op(reply, CurrentOpParams(max_ops=50))
    assert time.perf_counter() - t0 < 2
    assert data["total"] == 5000 and data["app_ops"] == 5000
    assert data["shown"] == 50 and data["capped"] is True and len(data["ops"]) == 50
    assert data["collscans"] == 5000
    assert data["max_secs_running"] == 502
    assert data["ops"][0]["secs_running"] == 502
    assert "example.com" not in json.dumps(data)


def test_internal_ops_are_marked() -> None:
    internal = {"opid": 1, "op": "none", "ns": "local.oplog.rs", "secs_running": Int64(40), "desc": "rsSync"}
    data = summarize_current_op(current_op_fixture(internal, slow_collscan_op()), CurrentOpParams())
    assert data["total"] == 2 and data["app_ops"] == 1
    assert data["max_secs_running"] == 12  # the internal op does not count


def test_rs_status_lag_against_the_primary() -> None:
    now = datetime.now(UTC)
    members = [
        replset_member(0, "mongodb-0:27017", "PRIMARY", self_=True),
        replset_member(1, "mongodb-1:27017", "SECONDARY"),
        replset_member(2, "mongodb-2:27017", "SECONDARY"),
    ]
    members[0]["optimeDate"] = now
    members[1]["optimeDate"] = now - timedelta(seconds=95)
    members[2]["optimeDate"] = now - timedelta(seconds=1)
    data = summarize_rs_status(replset_status(members))
    assert data["has_primary"] and data["primary"] == "mongodb-0:27017"
    assert data["max_lag_seconds"] == pytest.approx(95)
    assert [m["lag_seconds"] for m in data["members"]] == pytest.approx([0, 95, 1])


def test_rs_status_without_primary() -> None:
    data = summarize_rs_status(replset_status_no_primary())
    assert not data["has_primary"] and data["primary"] is None
    assert data["unhealthy"] == ["mongodb-2.mongodb-headless.playcode.svc.cluster.local:27017"]
    assert data["lag_reference"] == "most recent healthy member"
    assert "Connection refused" in data["members"][2]["last_heartbeat_message"]


def test_server_status_and_db_stats_ratios() -> None:
    status = summarize_server_status(server_status(connections_current=950, connections_available=50))
    assert status["connections"]["used_ratio"] == 0.95
    assert status["wiredtiger_cache"]["used_ratio"] == pytest.approx(1 / 3, abs=1e-3)
    stats = summarize_db_stats(db_stats_nearly_full(ratio=0.97))
    assert stats["fs_used_ratio"] == pytest.approx(0.97, abs=1e-3)


# ------------------------------------------------------------------------------------ Redis

INFO = """# Server\r
redis_version:7.0.15\r
uptime_in_seconds:120\r
executable:/usr/bin/redis-server\r
\r
# Clients\r
connected_clients:19\r
maxclients:20\r
\r
# Memory\r
used_memory:2090000\r
maxmemory:2097152\r
maxmemory_policy:allkeys-lru\r
\r
# Persistence\r
loading:0\r
aof_enabled:1\r
aof_last_bgrewrite_status:err\r
aof_last_write_status:ok\r
\r
# Stats\r
evicted_keys:1234\r
rejected_connections:7\r
keyspace_hits:90\r
keyspace_misses:10\r
\r
# Errorstats\r
errorstat_OOM:count=3\r
errorstat_ERR:count=1\r
\r
# Keyspace\r
db0:keys=100,expires=5,avg_ttl=0\r
"""


def test_info_is_parsed_to_numbers_and_ratios() -> None:
    info = summarize_info(parse_info(INFO.encode()))
    assert info["server"] == {"redis_version": "7.0.15", "uptime_in_seconds": 120}
    assert info["memory"]["used_memory"] == 2090000 and info["memory"]["used_ratio"] == pytest.approx(
        0.9966, abs=1e-4
    )
    assert info["clients"]["used_ratio"] == 0.95
    assert info["stats"]["evicted_keys"] == 1234 and info["stats"]["hit_ratio"] == 0.9
    assert info["persistence"]["aof_last_bgrewrite_status"] == "err"
    assert info["errorstats"] == {"OOM": 3, "ERR": 1}
    assert info["keyspace"] == {"db0": {"keys": 100, "expires": 5, "avg_ttl": 0}}


def test_huge_info_with_bad_bytes_is_bounded() -> None:
    lines = [INFO]
    lines.append("# Errorstats\r\n" + "".join(f"errorstat_E{i}:count={i}\r\n" for i in range(100_000)))
    lines.append("# Keyspace\r\n" + "".join(f"db{i}:keys={i},expires=0\r\n" for i in range(10_000)))
    lines.append("# Weird\r\nlong:" + "x" * 1_000_000 + "\r\n")
    raw = "".join(lines).encode() + b"\xff\xfe\x80 broken:\xc3\r\n"
    assert len(raw) > 3_000_000
    t0 = time.perf_counter()
    info = summarize_info(parse_info(raw))
    assert time.perf_counter() - t0 < 3
    assert len(json.dumps(info)) < 10_000
    assert len(info["errorstats"]) == 10 and info["errorstats"]["E99999"] == 99999
    assert len(info["keyspace"]) == 16


def test_slowlog_entry_keeps_the_command_and_a_key_pattern_only() -> None:
    entry = [
        14,
        1_764_000_000,
        52_000,
        [b"SET", b"session:8f14e45fceea167a5a36dedd4bea2543", b"password=hunter2"],
        b"10.42.0.17:40000",
        b"playcode-app",
    ]
    data = summarize_slowlog_entry(entry)
    assert data is not None
    assert data["command"] == "SET" and data["key_pattern"] == "session:<hex>"
    assert data["duration_ms"] == 52.0 and data["args"] == 3
    assert "hunter2" not in json.dumps(data)
    auth = summarize_slowlog_entry([1, 1_764_000_000, 10, [b"AUTH", b"S3cret"], b"", b""])
    assert auth is not None and auth["key_pattern"] is None
    assert summarize_slowlog_entry(["garbage"]) is None


# ------------------------------------------------------------------------------------ Loki


def test_logql_string_escapes_like_go() -> None:
    assert logql_string('a"b\\c\nd\te\x01') == '"a\\"b\\\\c\\nd\\te\\x01"'


def test_render_logql_quotes_values_and_appends_filters() -> None:
    query = render_logql(
        "{namespace=$namespace, instance=$instance}",
        {"namespace": "playcode", "instance": '10.0.0.1:3000"} or {x="'},
        ['say "hi" \\ bye'],
    )
    assert query == (
        '{namespace="playcode", instance="10.0.0.1:3000\\"} or {x=\\""} |= "say \\"hi\\" \\\\ bye"'
    )
    with pytest.raises(StepError, match=r"\$container"):
        render_logql("{container=$container}", {})


def test_mask_variables() -> None:
    assert mask_variables("user 4711 not found") == "user <n> not found"
    assert (
        mask_variables("2026-11-26T08:00:01.123Z conn 10.42.0.7:6379 id=65f1c2a9b3e4d5f6a7b8c9d0 took 12.5ms")
        == "<ts> conn <ip> id=<hex> took <n>ms"
    )
    assert (
        mask_variables("req 123e4567-e89b-12d3-a456-426614174000 by bob@example.com")
        == "req <uuid> by <email>"
    )


def test_message_of_json_lines() -> None:
    line = json.dumps(
        {
            "level": "error",
            "msg": "request failed",
            "err": {"message": "timeout after 5000ms"},
            "method": "GET",
            "route": "/api/users/42",
            "res_status": 502,
        }
    )
    assert message_of(line) == ("request failed: timeout after <n>ms GET /api/users/<n> status=502", "error")
    assert message_of("plain socket closed 12") == ("plain socket closed <n>", None)


def _stream(pod: str, lines: list[tuple[int, str]]) -> dict[str, object]:
    return {
        "stream": {"namespace": "playcode", "pod": pod},
        "values": [[str(ts), line] for ts, line in lines],
    }


def test_grouping_dedups_counts_and_orders_by_count() -> None:
    base = 1_764_000_000 * 10**9
    streams = [
        _stream("app-1", [(base + i, f"user {i} not found") for i in range(30)]),
        _stream(
            "app-2", [(base + 100 + i, "redis adapter error ECONNREFUSED 10.0.0.5:6379") for i in range(5)]
        ),
        _stream("app-2", [(base + 200, "user 7 not found")]),
    ]
    data = group_streams(streams, max_patterns=1)
    assert data["lines"] == 36 and data["distinct_lines"] == 31
    assert data["patterns_total"] == 2 and data["capped"] is True
    (top,) = data["patterns"]
    assert top["pattern"] == "user <n> not found"
    assert top["count"] == 31 and top["distinct"] == 30
    assert top["pods"] == ["app-1", "app-2"]
    assert top["first_seen"] == datetime.fromtimestamp(base / 1e9, UTC).isoformat()
    assert top["last_seen"] == datetime.fromtimestamp((base + 200) / 1e9, UTC).isoformat()


def test_grouping_redacts_before_masking_and_survives_bad_input() -> None:
    streams = [
        _stream(
            "p",
            [
                (1, f"auth failed token={JWT}"),
                (2, f"Authorization: Bearer {JWT}"),
                (3, '{"level":"error","msg":"login","password":"hunter2"}'),
                (4, "bad bytes \ufffd\ufffd socket hang up"),
                (5, "x" * 100_000),
            ],
        ),
        {"stream": "not a mapping", "values": [["nan", "skipped"], ["6"], None]},
        "garbage",
    ]
    data = group_streams(streams, max_patterns=10)  # type: ignore[arg-type]
    text = json.dumps(data)
    assert "hunter2" not in text and JWT not in text and "eyJ" not in text
    assert data["lines"] == 5
    assert all(len(p["sample"]) <= 500 and len(p["pattern"]) <= 240 for p in data["patterns"])
    assert any("\ufffd" in p["pattern"] for p in data["patterns"])


def test_grouping_stops_at_its_deadline_and_says_so() -> None:
    streams = [_stream("p", [(i, f"line {i} " + "y" * i) for i in range(50)])]
    done = group_streams(streams, max_patterns=5, deadline=time.monotonic() + 60)
    assert done["complete"] is True and done["lines"] == 50
    late = group_streams(streams, max_patterns=5, deadline=time.monotonic() - 1)
    assert late["complete"] is False and late["lines"] == 50 and late["patterns"] == []
