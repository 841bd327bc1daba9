"""MongoDB collectors and the mongodb/latency analyzers against the OP_MSG fake, via the real
pymongo async client and the runner's real path (run_step: redaction, size cap, statuses)."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from medic.analysis.latency import latency
from medic.analysis.mongodb import mongodb
from medic.app.backends import Backends
from medic.app.catalogue import default_registry
from medic.app.settings import Settings
from medic.clients.mongo import MongoBackend
from medic.domain.errors import ConfigError
from medic.domain.evidence import Evidence, StepStatus
from medic.domain.incident import Target
from medic.playbooks.contract import AnalysisInput, StepContext
from medic.playbooks.runner import PlannedStep, run_step, run_steps
from tests.fakes.mongo_server import (
    FakeMongoServer,
    current_op_fixture,
    dead_url,
    healthy_fixtures,
    lost_primary_fixtures,
    nearly_full_disk_fixtures,
    replset_member,
    replset_status,
    server_status,
    slow_collscan_fixtures,
    slow_collscan_op,
)

pytestmark = pytest.mark.integration

MONGO = Target(kind="statefulset", namespace="playcode", name="mongodb")
REGISTRY = default_registry()
ALL = ("mongo.rs_status", "mongo.server_status", "mongo.db_stats", "mongo.current_op", "mongo.profiler")


@pytest.fixture
async def fake() -> AsyncIterator[FakeMongoServer]:
    async with FakeMongoServer(replica_set=None) as server:
        yield server


@pytest.fixture
async def backends(fake: FakeMongoServer) -> AsyncIterator[Backends]:
    b = await Backends.from_settings(Settings(target_mongo_url=fake.url).diagnosed)
    try:
        yield b
    finally:
        await b.close()


def planned(name: str, params: dict[str, Any] | None = None, timeout: float = 5.0) -> PlannedStep:
    collector = REGISTRY.collectors[name]
    return PlannedStep(name, collector, collector.params.model_validate(params or {}), timeout)


def ctx(backends: Backends, target: Target | None = MONGO) -> StepContext:
    return StepContext(target, {"namespace": "playcode"}, [], backends, datetime.now(UTC), 5.0)


async def collect(
    backends: Backends, name: str, params: dict[str, Any] | None = None, timeout: float = 5.0
) -> Evidence:
    return await run_step(planned(name, params, timeout), ctx(backends), 256 * 1024)


def given(*evidence: Evidence, target: Target | None = MONGO) -> AnalysisInput:
    return AnalysisInput(
        target, {"namespace": "playcode"}, [], {e.step: e for e in evidence}, datetime.now(UTC)
    )


async def test_collscan_slow_query(fake: FakeMongoServer, backends: Backends) -> None:
    fake.set_fixtures(slow_collscan_fixtures())
    ev = await collect(backends, "mongo.current_op")
    assert ev.status is StepStatus.OK, ev.error
    (sent,) = fake.requests_for("currentOp")
    assert sent["active"] is True and sent["secs_running"] == {"$gte": 3}
    assert ev.data["total"] == 1 and ev.data["collscans"] == 1  # the fast op was filtered out by the server
    (op,) = ev.data["ops"]
    assert op["ns"] == "userdb.users" and op["secs_running"] == 12 and op["collscan"] is True
    assert op["command"] == {"find": "users", "filter": {"email": "?"}, "limit": 1, "$db": "userdb"}
    assert "alice@example.com" not in ev.model_dump_json()

    app = Target(kind="deployment", namespace="playcode", name="playcode-app")
    (finding,) = latency(given(ev, target=app))
    assert finding.code == "latency.mongo_slow_ops" and finding.severity == "critical"
    assert "COLLSCAN" in finding.summary and "userdb.users" in finding.summary
    assert "mongodb-0 -n playcode" in finding.next_steps[0]


async def test_min_secs_is_sent_to_the_server(fake: FakeMongoServer, backends: Backends) -> None:
    fake.set_fixtures(slow_collscan_fixtures())
    ev = await collect(backends, "mongo.current_op", {"min_secs": 30})
    assert fake.requests_for("currentOp")[-1]["secs_running"] == {"$gte": 30}
    assert ev.ok and ev.data["total"] == 0
    assert mongodb(given(ev)) == []


async def test_lost_primary(fake: FakeMongoServer, backends: Backends) -> None:
    fake.set_fixtures(lost_primary_fixtures())
    evidence = await run_steps([planned(n) for n in ALL], ctx(backends), deadline=10, max_bytes=256 * 1024)
    assert all(e.ok for e in evidence), [e.error for e in evidence]
    rs = evidence[0].data
    assert rs["has_primary"] is False and len(rs["members"]) == 3
    findings = mongodb(given(*evidence))
    assert [f.code for f in findings] == ["mongodb.no_primary", "mongodb.member_unhealthy"]
    assert findings[0].evidence == ["mongo.rs_status"]
    assert (
        findings[0].next_steps[0] == 'kubectl exec -it mongodb-0 -n playcode -- mongosh --eval "rs.status()"'
    )


async def test_full_disk(fake: FakeMongoServer, backends: Backends) -> None:
    fake.set_fixtures(nearly_full_disk_fixtures(0.97))
    ev = await collect(backends, "mongo.db_stats", {"db": "userdb"})
    assert fake.requests_for("dbStats")[-1]["$db"] == "userdb"
    assert ev.data["fs_used_ratio"] == pytest.approx(0.97, abs=1e-3)
    (finding,) = mongodb(given(ev))
    assert finding.code == "mongodb.disk_nearly_full" and finding.severity == "critical"
    assert "97%" in finding.summary


async def test_healthy_set_and_standalone(fake: FakeMongoServer, backends: Backends) -> None:
    ev = await collect(backends, "mongo.rs_status")  # no fixture: the fake is a standalone
    assert ev.ok and ev.data["replica_set"] is False and ev.data["members"] == []
    assert ev.data["note"] == "mongod is not running with --replSet"
    fake.set_fixtures(healthy_fixtures())
    evidence = await run_steps([planned(n) for n in ALL], ctx(backends), deadline=10, max_bytes=256 * 1024)
    assert all(e.ok for e in evidence)
    assert mongodb(given(*evidence)) == []


async def test_connections_exhausted(fake: FakeMongoServer, backends: Backends) -> None:
    fake.set_fixture("serverStatus", server_status(connections_current=995, connections_available=5))
    ev = await collect(backends, "mongo.server_status")
    (finding,) = mongodb(given(ev))
    assert finding.code == "mongodb.connections_exhausted" and finding.severity == "critical"
    assert "995 connections open and 5 available" in finding.summary


async def test_dead_mongo_is_a_fast_error_and_a_finding() -> None:
    backends = await Backends.from_settings(Settings(target_mongo_url=dead_url()).diagnosed)
    try:
        t0 = time.perf_counter()
        evidence = await run_steps(
            [planned(n, timeout=15) for n in ALL], ctx(backends), deadline=20, max_bytes=256 * 1024
        )
        elapsed = time.perf_counter() - t0
    finally:
        await backends.close()
    assert elapsed < 3.5  # server selection gives up after 2 s, not after the 15 s step budget
    assert {e.status for e in evidence} == {StepStatus.ERROR}
    assert all("MongoDB unreachable" in (e.error or "") for e in evidence)
    (finding,) = mongodb(given(*evidence))
    assert finding.code == "mongodb.unreachable" and finding.severity == "critical"
    assert "kubectl get pods -n playcode -l app=mongodb" in finding.next_steps


async def test_thousands_of_ops_are_capped(fake: FakeMongoServer, backends: Backends) -> None:
    ops = [slow_collscan_op(opid=i, secs_running=3 + i % 100, email=f"u{i}@example.com") for i in range(3000)]
    fake.set_fixture("currentOp", current_op_fixture(*ops))
    ev = await collect(backends, "mongo.current_op", {"max_ops": 25})
    assert ev.ok and not ev.truncated
    assert ev.data["total"] == 3000 and ev.data["shown"] == 25 and ev.data["capped"] is True
    assert len(ev.data["ops"]) == 25 and ev.data["ops"][0]["secs_running"] == 102
    assert len(ev.model_dump_json()) < 64 * 1024
    assert "example.com" not in ev.model_dump_json()


async def test_slow_mongo_times_out(fake: FakeMongoServer, backends: Backends) -> None:
    fake.delay("serverStatus", 5)
    t0 = time.perf_counter()
    ev = await collect(backends, "mongo.server_status", timeout=0.5)
    assert ev.status is StepStatus.TIMEOUT
    assert time.perf_counter() - t0 < 1.5


async def test_refused_command_is_an_error_with_its_code_name(
    fake: FakeMongoServer, backends: Backends
) -> None:
    fake.fail("serverStatus", code=13, errmsg="not authorized on admin to execute command")
    ev = await collect(backends, "mongo.server_status")
    assert ev.status is StepStatus.ERROR
    assert (
        ev.error == "StepError: serverStatus failed: Unauthorized: not authorized on admin to execute command"
    )


async def test_profiler_reads_recent_slow_queries(fake: FakeMongoServer, backends: Backends) -> None:
    now = datetime.now(UTC)
    fake.set_fixture("profile", {"was": 1, "slowms": 100, "sampleRate": 1.0})
    fake.set_profile(
        "userdb",
        [
            {
                "op": "query",
                "ns": "userdb.users",
                "millis": 2300,
                "ts": now - timedelta(minutes=2),
                "planSummary": "COLLSCAN",
                "docsExamined": 900000,
                "nreturned": 1,
                "command": {"find": "users", "filter": {"email": "bob@example.com"}},
            },
            {
                "op": "query",
                "ns": "userdb.users",
                "millis": 40,
                "ts": now - timedelta(minutes=1),
                "planSummary": "IXSCAN { _id: 1 }",
                "command": {"find": "users", "filter": {"_id": 7}},
            },
            {
                "op": "update",
                "ns": "userdb.sessions",
                "millis": 500,
                "ts": now - timedelta(hours=3),
                "planSummary": "COLLSCAN",
                "command": {"update": "sessions"},
            },
        ],
    )
    ev = await collect(backends, "mongo.profiler", {"db": "userdb", "since": "1h", "min_millis": 100})
    assert ev.ok, ev.error
    assert ev.data["enabled"] is True and ev.data["slowms"] == 100
    (entry,) = ev.data["entries"]  # the fast one and the old one are filtered out
    assert entry["millis"] == 2300 and entry["collscan"] is True and entry["docs_examined"] == 900000
    assert entry["command"] == {"find": "users", "filter": {"email": "?"}}
    assert "bob@example.com" not in json.dumps(ev.data)
    (finding,) = latency(given(ev))
    assert finding.code == "latency.mongo_slow_queries" and finding.severity == "warning"
    assert "2300 ms" in finding.summary


def test_a_bad_connection_string_is_a_config_error_without_the_password() -> None:
    with pytest.raises(ConfigError) as info:
        MongoBackend("mongodb://medic:S3cretMongoPw@mongodb-0:notaport/?directConnection=true")
    assert "S3cretMongoPw" not in str(info.value)
    assert info.value.field == "target_mongo_url"


async def test_next_steps_aim_at_the_member_that_answers(fake: FakeMongoServer, backends: Backends) -> None:
    """issue 12.8: Medic reached ``mongodb-2`` (now primary) while ``mongodb-0`` is down: mongosh
    runs in mongodb-2, describe/logs look at mongodb-0 and at the pod the alert names."""
    hosts = [f"mongodb-{i}.mongodb-headless.playcode.svc.cluster.local:27017" for i in range(3)]
    fake.set_fixtures({
        **lost_primary_fixtures(),
        "replSetGetStatus": replset_status([
            replset_member(0, hosts[0], "PRIMARY", healthy=False, heartbeat_message="Connection refused"),
            replset_member(1, hosts[1], "SECONDARY", sync_source=hosts[2]),
            replset_member(2, hosts[2], "PRIMARY", self_=True),
        ]),
        "serverStatus": server_status(),
    })  # fmt: skip
    evidence = await run_steps([planned(n) for n in ALL], ctx(backends), deadline=10, max_bytes=256 * 1024)
    labels = {"namespace": "playcode", "pod": "mongodb-1"}
    inp = AnalysisInput(MONGO, labels, [], {e.step: e for e in evidence}, datetime.now(UTC))
    (f,) = mongodb(inp)
    assert f.code == "mongodb.member_unhealthy"
    assert f.next_steps[0] == 'kubectl exec -it mongodb-2 -n playcode -- mongosh --eval "rs.status()"'
    described = [s for s in f.next_steps if s.startswith("kubectl describe pod")]
    assert described == [
        "kubectl describe pod mongodb-1 -n playcode",  # the alert's
        "kubectl describe pod mongodb-0 -n playcode",  # the one down
    ]
