"""Nothing secret leaves Medic: secrets are planted in every data-plane source (MongoDB op filters,
heartbeat messages and profiler entries, Redis slowlog arguments and passwords, Loki lines and
error bodies, credentials in every connection URL), the shipped playbooks run through the runner
(the real redaction path) and their analyzers, and no planted secret may appear anywhere."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from medic.app.backends import Backends
from medic.app.catalogue import default_registry
from medic.app.config import Config, load_config
from medic.app.settings import Settings
from medic.collectors.loki import mask_variables
from medic.domain.evidence import Evidence, StepStatus
from medic.domain.incident import Finding, Target
from medic.playbooks.contract import AnalysisInput, StepContext
from medic.playbooks.runner import PlannedStep, run_steps
from tests.fakes.loki import FakeLoki, now_ns
from tests.fakes.mongo_server import (
    FakeMongoServer,
    current_op_fixture,
    dead_port,
    replset_member,
    replset_status,
    slow_collscan_fixtures,
    slow_collscan_op,
)
from tests.servers.redis_server import RedisServer

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJ1c2VyIjoiUGw0bnRlZCJ9.UGw0bnRlZFNpZ25hdHVyZQ"
PLANTED = (
    "Pl4ntedMongoPw",
    "Pl4ntedHbPw",
    "Pl4ntedProfilePw",
    "Pl4ntedEmail@example.com",
    "Pl4ntedRedisPw",
    "Pl4ntedValuePw",
    "Pl4ntedMasterPw",
    "Pl4ntedLokiPw",
    "Pl4ntedLinePw",
    "Pl4ntedBearerTok",
    "Pl4ntedPromPw",
    "Pl4ntedUrlPw",
    JWT,
    "eyJ1c2VyIjoiUGw0bnRlZCJ9",
)
APP = Target(kind="deployment", namespace="playcode", name="playcode-app")
TARGETS = {
    "high-latency": APP,
    "websocket": APP,
    "redis-down": Target(kind="deployment", namespace="playcode", name="redis"),
    "mongodb-down": Target(kind="statefulset", namespace="playcode", name="mongodb"),
}


@pytest.fixture(scope="module")
def config() -> Config:
    return load_config([ROOT / "rules"], [ROOT / "playbooks"], default_registry())


async def run_playbook(config: Config, name: str, backends: Backends) -> tuple[list[Evidence], list[Finding]]:
    pb, target = config.playbooks[name], TARGETS[name]
    ctx = StepContext(target, {"namespace": "playcode"}, [], backends, datetime.now(UTC), 5)
    steps = [PlannedStep(s.step_id, s.collector, s.params, 5) for s in pb.steps]
    evidence = await run_steps(steps, ctx, deadline=10, max_bytes=256 * 1024)
    inp = AnalysisInput(
        target, {"namespace": "playcode"}, [], {e.step: e for e in evidence}, datetime.now(UTC)
    )
    return evidence, [f for a in pb.analyzers for f in a.fn(inp)]


def leaks(evidence: list[Evidence], findings: list[Finding]) -> list[str]:
    """Planted secrets found in the output, verbatim or in the masked form a log pattern has."""
    text = "".join(e.model_dump_json() for e in evidence) + "".join(f.model_dump_json() for f in findings)
    forms = {form for s in PLANTED for form in (s, mask_variables(s))}
    return sorted(form for form in forms if form.lower() in text.lower())


def plant_mongo(fake: FakeMongoServer) -> None:
    fake.set_fixtures(slow_collscan_fixtures())
    op = slow_collscan_op(email="Pl4ntedEmail@example.com")
    op["command"] = {
        "update": "users",
        "updates": [
            {
                "q": {"email": "Pl4ntedEmail@example.com"},
                "u": {"$set": {"password": "Pl4ntedMongoPw", "jwt": JWT}},
            }
        ],
        "comment": "retry with mongodb://app:Pl4ntedMongoPw@mongodb-0:27017",
        "$db": "userdb",
    }
    fake.set_fixture("currentOp", current_op_fixture(op))
    members = [
        replset_member(0, "mongodb-0:27017", "PRIMARY", self_=True),
        replset_member(
            1,
            "mongodb-1:27017",
            "SECONDARY",
            healthy=False,
            heartbeat_message="auth error for mongodb://__system:Pl4ntedHbPw@mongodb-1:27017",
        ),
    ]
    fake.set_fixture("replSetGetStatus", replset_status(members))
    fake.set_fixture("profile", {"was": 1, "slowms": 100})
    fake.set_profile(
        "userdb",
        [
            {
                "op": "update",
                "ns": "userdb.users",
                "millis": 900,
                "ts": datetime.now(UTC) - timedelta(minutes=1),
                "planSummary": "COLLSCAN",
                "client": "10.0.0.9",
                "command": {"q": {"token": JWT}, "u": {"$set": {"password": "Pl4ntedProfilePw"}}},
            }
        ],
    )


async def plant_redis(server: RedisServer) -> str:
    r = aioredis.Redis.from_url(server.url)
    try:
        await r.config_set("slowlog-log-slower-than", 0)
        await r.set(f"session:{JWT}", "password=Pl4ntedValuePw")
        await r.hset("user:42", mapping={"password": "Pl4ntedValuePw", "token": JWT})
        script = "local p = 'Pl4ntedValuePw' local i = 0 while i < 8000000 do i = i + 1 end return ARGV[1]"
        await r.config_set("slowlog-log-slower-than", 5000)  # keep Medic's own commands out
        await r.eval(script, 0, "password=Pl4ntedValuePw")  # a slow command: the slowlog has a finding
        with contextlib.suppress(Exception):
            await r.config_set("masterauth", "Pl4ntedMasterPw")
        await r.config_set("requirepass", "Pl4ntedRedisPw")
    finally:
        await r.aclose()
    return f"redis://:Pl4ntedRedisPw@{server.host}:{server.port}/0"


def plant_loki(loki: FakeLoki) -> None:
    labels = {"namespace": "playcode", "container": "playcode-app", "pod": "playcode-app-7d9f8b6c5d-x2k9p"}
    ts = now_ns() - 10_000_000_000
    loki.push(
        labels,
        [
            (
                ts,
                f'{{"level":"error","msg":"socket auth failed","token":"{JWT}","password":"Pl4ntedLinePw"}}',
            ),
            (
                ts + 1,
                f"error: redis adapter reconnect to redis://:Pl4ntedLinePw@redis:6379 with Bearer {JWT}",
            ),
            (ts + 2, '{"level":"error","msg":"socket login","err":"bad credentials password=Pl4ntedLinePw"}'),
        ],
    )


@contextlib.asynccontextmanager
async def sources() -> AsyncIterator[tuple[FakeMongoServer, RedisServer, FakeLoki]]:
    async with FakeMongoServer() as mongo, RedisServer() as redis_server, FakeLoki() as loki:
        yield mongo, redis_server, loki


async def test_no_planted_secret_leaves_medic(config: Config) -> None:
    async with sources() as (mongo, redis_server, loki):
        plant_mongo(mongo)
        redis_url = await plant_redis(redis_server)
        plant_loki(loki)
        host, port = loki.url.removeprefix("http://").split(":")
        settings = Settings(
            target_mongo_url=mongo.url,
            target_redis_url=redis_url,
            loki_url=f"http://medic:Pl4ntedLokiPw@{host}:{port}",
            # an HTTP server that is not Prometheus: every query fails at once (404)
            prometheus_url=f"http://medic:Pl4ntedPromPw@{host}:{port}",
        )
        backends = await Backends.from_settings(settings.diagnosed)
        try:
            for name in TARGETS:
                evidence, findings = await run_playbook(config, name, backends)
                statuses = {e.step: e.status for e in evidence}
                data_plane = {
                    s: v for s, v in statuses.items() if s.startswith(("mongo.", "redis.", "loki."))
                }
                assert set(data_plane.values()) == {StepStatus.OK}, (name, [e.error for e in evidence])
                assert (
                    statuses["prometheus.query"] is StepStatus.ERROR
                    if "prometheus.query" in statuses
                    else True
                )
                assert findings, f"{name}: the planted data must give findings"
                assert leaks(evidence, findings) == [], name
            # the planted data did reach Medic: the collectors saw it and redacted it
            evidence, _ = await run_playbook(config, "high-latency", backends)
            by_step = {e.step: e for e in evidence}
            assert by_step["loki.errors"].data["lines"] == 2  # the JSON error lines
            assert by_step["mongo.current_op"].data["ops"][0]["command"]["updates"][0]["u"] == {
                "$set": {"password": "[REDACTED]", "jwt": "?"}  # shaped here, then redacted by key
            }
            assert any(e["command"] == "SET" for e in by_step["redis.slowlog"].data["entries"])
            # error bodies are redacted too
            loki.fail_next(500, body=f"upstream said: Authorization: Bearer Pl4ntedBearerTok {JWT}")
            evidence, findings = await run_playbook(config, "websocket", backends)
            assert any(
                e.status is StepStatus.ERROR and "Bearer [REDACTED]" in (e.error or "") for e in evidence
            )
            assert leaks(evidence, findings) == []
        finally:
            await backends.close()


async def test_credentials_in_connection_urls_never_show_in_errors(config: Config) -> None:
    async with FakeMongoServer() as mongo:
        settings = Settings(
            target_mongo_url=f"mongodb://medic:Pl4ntedUrlPw@127.0.0.1:{mongo.port}/?directConnection=true",
            target_redis_url=f"redis://medic:Pl4ntedUrlPw@127.0.0.1:{dead_port()}/0",
            loki_url=f"http://medic:Pl4ntedUrlPw@127.0.0.1:{dead_port()}",
        )
        backends = await Backends.from_settings(settings.diagnosed)
        try:
            for name in TARGETS:
                evidence, findings = await run_playbook(config, name, backends)
                failed = [e for e in evidence if e.status is StepStatus.ERROR]
                assert failed, name
                assert leaks(evidence, findings) == [], name
        finally:
            await backends.close()
        assert "Pl4ntedUrlPw" not in repr(backends.mongo) + repr(backends.redis) + repr(backends.loki)
