"""The MongoDB incident store against the OP_MSG fake (or a real MongoDB when
``MEDIC_TEST_MONGO_URL`` is set: then every test uses a fresh database, dropped afterwards), and
the fail-safe store that spools what MongoDB does not take."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from pymongo import AsyncMongoClient

from medic.clients.availability import Availability
from medic.coordination.keylock import fence_token
from medic.domain.errors import BackendUnavailable, StoreError
from medic.domain.incident import Incident, Target, new_incident_id
from medic.inbox.spool import LocalSpool
from medic.incidents.base import IncidentQuery
from medic.incidents.failsafe import FailSafeIncidentStore
from medic.incidents.mongo import MongoIncidentStore, StaleWrite, connect
from tests.fakes.mongo_server import FakeMongoServer, dead_url
from tests.medic_app import medic_settings, running_medic
from tests.payloads import alert, payload
from tests.servers.redis_server import RedisServer

pytestmark = pytest.mark.integration

REAL_MONGO = os.environ.get("MEDIC_TEST_MONGO_URL", "")
Doc = dict[str, object]


@dataclass
class MongoUnderTest:
    url: str
    database: str
    fake: FakeMongoServer | None

    def store(self, **kw: object) -> MongoIncidentStore:
        return MongoIncidentStore(connect(self.url, timeout=1.0), database=self.database, **kw)  # type: ignore[arg-type]


@pytest.fixture
async def mongo() -> AsyncIterator[MongoUnderTest]:
    database = f"medic_test_{secrets.token_hex(4)}"
    if REAL_MONGO:
        yield MongoUnderTest(REAL_MONGO, database, None)
        client: AsyncMongoClient[Doc] = AsyncMongoClient(REAL_MONGO)
        await client.drop_database(database)
        await client.close()
        return
    async with FakeMongoServer() as fake:
        yield MongoUnderTest(fake.url, database, fake)


@pytest.fixture
async def stores(mongo: MongoUnderTest) -> AsyncIterator[Callable[..., MongoIncidentStore]]:
    opened: list[MongoIncidentStore] = []

    def make(**kw: object) -> MongoIncidentStore:
        store = mongo.store(**kw)
        opened.append(store)
        return store

    yield make
    for store in opened:
        await store.close()


def incident(key: str = "crashloop-rollback|deployment/playcode/app", **kw: object) -> Incident:
    now = kw.pop("now", datetime.now(UTC))
    assert isinstance(now, datetime)
    return Incident(
        id=new_incident_id(now),
        key=key,
        rule="crashloop-rollback",
        target=Target(kind="deployment", namespace="playcode", name=key.rsplit("/", 1)[-1]),
        title="KubePodCrashLooping",
        created_at=now,
        updated_at=now,
        labels={"alertname": "X", "$db": "a.b"},
        alerts_total=1,
        alerts_firing=1,
        **kw,  # type: ignore[arg-type]
    )


async def test_indexes_schema_and_round_trip(stores: Callable[..., MongoIncidentStore]) -> None:
    store = stores(retention=timedelta(days=30))
    await store.setup()
    await store.setup()  # idempotent
    indexes = {i["name"]: i async for i in await store.incidents.list_indexes()}
    assert set(indexes) >= {"_id_", "status_created", "key", "target", "one_open_per_key", "retention"}
    assert dict(indexes["status_created"]["key"]) == {"status": 1, "created_at": -1}
    assert indexes["one_open_per_key"]["unique"] is True
    assert dict(indexes["one_open_per_key"]["partialFilterExpression"]) == {"status": "open"}
    assert indexes["retention"]["expireAfterSeconds"] == 0
    audit_indexes = {i["name"] async for i in await store.audit_log.list_indexes()}
    assert audit_indexes >= {"incident_at", "at"}
    alert_indexes = {i["name"] async for i in await store.alert_docs.list_indexes()}
    assert alert_indexes >= {"incident_status", "incident_arrival", "retention"}

    inc = incident()
    stored, created = await store.create_or_get_open(inc)
    assert created and stored.id == inc.id
    doc = await store.incidents.find_one({"_id": inc.id})
    assert doc is not None
    assert (
        doc["schema_version"] == 2 and doc["status"] == "open" and doc["target"] == "deployment/playcode/app"
    )
    assert doc["expire_at"] is None
    back = await store.get(inc.id)
    assert back == inc  # the whole bundle, keys MongoDB would refuse as field names included
    assert await store.find_open(inc.key) == inc


async def test_two_replicas_open_one_incident_per_key(stores: Callable[..., MongoIncidentStore]) -> None:
    replicas = [stores(), stores(), stores()]
    await replicas[0].setup()
    racers = [incident() for _ in replicas]
    results = await asyncio.gather(*(r.create_or_get_open(i) for r, i in zip(replicas, racers, strict=True)))
    assert sum(created for _, created in results) == 1
    assert len({stored.id for stored, _ in results}) == 1
    assert await replicas[0].incidents.count_documents({"key": racers[0].key}) == 1
    # once resolved, the key may open a new incident
    (winner, _) = results[0]
    winner.status = "resolved"
    winner.resolved_at = datetime.now(UTC)
    await replicas[1].save(winner)
    again, created = await replicas[2].create_or_get_open(incident())
    assert created and again.id != winner.id


async def test_save_is_an_idempotent_upsert_and_query_pages(
    stores: Callable[..., MongoIncidentStore],
) -> None:
    store = stores()
    await store.setup()
    t0 = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)
    made = [incident(f"r|deployment/playcode/app{i}", now=t0 + timedelta(minutes=i)) for i in range(5)]
    for inc in made:
        await store.save(inc)
        await store.save(inc)
    made[1].status = "resolved"
    made[1].resolved_at = t0 + timedelta(hours=1)
    await store.save(made[1])
    assert await store.incidents.count_documents({}) == 5
    items, total = await store.query(IncidentQuery(limit=2, offset=1))
    assert total == 5 and [i.id for i in items] == [made[3].id, made[2].id]
    items, total = await store.query(IncidentQuery(status="resolved"))
    assert total == 1 and items[0].id == made[1].id
    items, total = await store.query(
        IncidentQuery(status="open", namespace="playcode", rule="crashloop-rollback")
    )
    assert total == 4


async def test_fenced_writes_refuse_an_older_lock_holder(stores: Callable[..., MongoIncidentStore]) -> None:
    store = stores()
    await store.setup()
    inc = incident()
    await store.create_or_get_open(inc)
    newer = fence_token.set(7)
    inc.title = "written by the holder of token 7"
    await store.save(inc)
    fence_token.reset(newer)
    stale = fence_token.set(5)
    inc.title = "a replica that lost its lock"
    with pytest.raises(StaleWrite):
        await store.save(inc)
    fence_token.reset(stale)
    stored = await store.get(inc.id)
    assert stored is not None and stored.title == "written by the holder of token 7"
    later = fence_token.set(9)
    inc.title = "token 9"
    await store.save(inc)
    fence_token.reset(later)
    assert (await store.get(inc.id)).title == "token 9"  # type: ignore[union-attr]


async def test_retention_of_resolved_incidents(
    mongo: MongoUnderTest, stores: Callable[..., MongoIncidentStore]
) -> None:
    store = stores(retention=timedelta(days=30))
    await store.setup()
    resolved_at = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
    old, current = incident("r|deployment/playcode/old"), incident("r|deployment/playcode/current")
    old.status, old.resolved_at = "resolved", resolved_at
    await store.save(old)
    await store.save(current)
    doc = await store.incidents.find_one({"_id": old.id})
    assert doc is not None and doc["expire_at"] == resolved_at + timedelta(days=30)
    if mongo.fake is not None:  # the fake's TTL monitor runs when asked
        assert mongo.fake.expire_ttl(resolved_at + timedelta(days=30, seconds=1)) == 1
        assert await store.get(old.id) is None
        assert await store.get(current.id) is not None  # open incidents never expire
    keep = stores(retention=None)
    await keep.save(old)
    doc = await keep.incidents.find_one({"_id": old.id})
    assert doc is not None and doc["expire_at"] is None


async def test_audit_is_append_only_and_stored_once(stores: Callable[..., MongoIncidentStore]) -> None:
    store = stores()
    await store.setup()
    await store.append_audit("inc-1", "action", {"status": "refused", "reason": "cooldown"}, audit_id="a1")
    await store.append_audit("inc-1", "action", {"status": "refused", "reason": "cooldown"}, audit_id="a1")
    await store.append_audit("inc-2", "action", {"status": "succeeded"})
    assert await store.audit_log.count_documents({}) == 2
    entries = await store.audit("inc-1")
    assert [e["seq"] for e in entries] == ["a1"] and entries[0]["record"]["reason"] == "cooldown"
    assert [e["incident_id"] for e in await store.audit()] == ["inc-2", "inc-1"]


async def test_audit_retention_is_a_ttl_index_the_setting_drives(
    mongo: MongoUnderTest, stores: Callable[..., MongoIncidentStore]
) -> None:
    """MEDIC_RETENTION_AUDIT becomes the TTL of the audit log's ``retention`` index; a changed
    setting replaces the index at the next start, 0 removes it."""

    async def ttl(store: MongoIncidentStore) -> object:
        indexes = {i["name"]: i async for i in await store.audit_log.list_indexes()}
        return indexes["retention"].get("expireAfterSeconds") if "retention" in indexes else None

    store = stores(audit_retention=timedelta(days=90))
    await store.setup()
    assert await ttl(store) == 90 * 86400
    written = datetime(2026, 9, 1, 12, 0, tzinfo=UTC)
    await store.append_audit("inc-old", "action", {"status": "refused"}, audit_id="old", at=written)
    await store.append_audit("inc-new", "action", {"status": "refused"}, audit_id="new")
    if mongo.fake is not None:  # the fake's TTL monitor runs when asked
        assert mongo.fake.expire_ttl(written + timedelta(days=90, seconds=1)) == 1
        assert [e["seq"] for e in await store.audit()] == ["new"]
    shorter = stores(audit_retention=timedelta(days=7))
    await shorter.setup()
    assert await ttl(shorter) == 7 * 86400
    forever = stores(audit_retention=None)
    await forever.setup()
    assert await ttl(forever) is None


async def test_unreachable_and_future_schema(stores: Callable[..., MongoIncidentStore]) -> None:
    down = MongoIncidentStore(connect(dead_url(), timeout=0.3), database="medic")
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(BackendUnavailable):
        await down.get("inc-x")
    assert loop.time() - started < 3
    await down.close()
    store = stores()
    await store.incidents.insert_one({"_id": "inc-future", "schema_version": 3, "bundle": "{}"})
    with pytest.raises(StoreError, match="newer Medic"):
        await store.get("inc-future")


async def test_failsafe_store_spools_while_mongo_is_down(tmp_path: Path) -> None:
    async with FakeMongoServer() as fake:
        up = Availability("Medic's MongoDB")
        mongo = MongoIncidentStore(connect(fake.url, timeout=0.5), database="medic", availability=up)
        await mongo.setup()
        spool = LocalSpool(tmp_path / "spool.sqlite3", dedup_ttl=3600, lease_seconds=30)
        await spool.open()
        store = FailSafeIncidentStore(mongo, spool)
        try:
            inc, created = await store.create_or_get_open(incident())
            assert created
            await fake.stop()  # MongoDB goes away
            inc.title = "diagnosed while MongoDB was down"
            await store.save(inc)  # kept locally, no error
            assert not up.up
            await store.append_audit(inc.id, "action", {"status": "refused", "reason": "coordination"})
            assert (await store.get(inc.id)).title == inc.title  # type: ignore[union-attr]
            assert (await store.find_open(inc.key)).id == inc.id  # type: ignore[union-attr]
            with pytest.raises(BackendUnavailable):  # a new incident needs the unique index
                await store.create_or_get_open(incident("r|deployment/playcode/other"))
            inc.title = "a later save goes to the spool too, in order"
            await store.save(inc)
            assert (await spool.counts())["bundles"] == 1
            await fake.start()  # back, same port
            await mongo.ping()
            assert up.up
            assert await store.flush() == 2
            assert await spool.counts() == {"deliveries": 0, "dedup_keys": 0, "bundles": 0, "audit": 0}
            doc = await mongo.get(inc.id)
            assert doc is not None and doc.title == "a later save goes to the spool too, in order"
            assert [e["record"]["reason"] for e in await mongo.audit(inc.id)] == ["coordination"]
            # a spooled version older than MongoDB's is not written over it
            stale = doc.model_copy(
                update={"title": "stale", "updated_at": doc.updated_at - timedelta(minutes=5)}
            )
            await spool.put_incident(stale)
            await store.flush()
            assert (await mongo.get(inc.id)).title == doc.title  # type: ignore[union-attr]
        finally:
            await spool.close()
            await mongo.close()


@contextlib.asynccontextmanager
async def black_hole() -> AsyncIterator[str]:
    """A 'Prometheus' that accepts connections and never answers: a diagnosis stays in flight."""
    held: list[asyncio.StreamWriter] = []

    async def handle(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        for w in held:
            w.close()
        server.close()


async def test_medic_rides_out_a_mongo_outage(tmp_path: Path, redis_server: RedisServer) -> None:
    """Medic on the production backends loses its MongoDB mid-diagnosis: the bundle is kept in
    the local spool, intake keeps accepting, new incidents wait; when MongoDB is back everything
    is written and nothing is dropped."""
    async with FakeMongoServer() as fake, black_hole() as prometheus:
        settings = medic_settings(
            tmp_path,
            redis_url=redis_server.url,
            mongo_url=fake.url,
            lease_seconds=2.0,
            prometheus_url=prometheus,
            collector_timeout_seconds=1.0,
        )
        async with running_medic(settings) as medic, aiohttp.ClientSession() as http:
            backend: Any = medic.runtime.backend

            async def send(deployment: str, instance: str) -> None:
                body = payload(
                    [
                        alert(
                            "PlayCodeHighLatency",
                            namespace="playcode",
                            deployment=deployment,
                            instance=instance,
                        )
                    ]
                )
                async with http.post(f"{medic.url}/api/v1/alerts", json=body) as r:
                    assert r.status == 200, await r.text()

            await send("app-a", "i1")

            async def diagnosing() -> bool:
                found = await backend.mongo.find_open("high-latency|deployment/playcode/app-a")
                return found is not None and found.phase.value == "diagnosing"

            await wait_until(diagnosing)
            await fake.stop()  # MongoDB goes away while the diagnosis runs
            await send("app-b", "i2")  # a new incident: must wait for MongoDB
            await send("app-a", "i3")  # joins it: waits for MongoDB (its alerts are kept there)

            async def spooled() -> bool:
                return (await backend.spool.counts())["bundles"] == 1 and not backend.mongo_up.up

            await wait_until(spooled)
            async with http.get(f"{medic.url}/readyz") as r:
                ready = await r.json()
            assert r.status == 200 and ready["status"] == "degraded"
            assert ready["checks"]["mongo"].startswith("unreachable") and ready["checks"]["redis"] == "ok"
            assert await medic.runtime.inbox.depth() >= 1  # app-b's delivery is kept, not dropped
            async with http.get(f"{medic.url}/api/v1/incidents") as r:
                assert r.status == 503 and r.headers["Retry-After"] == "5"
                assert r.content_type == "application/problem+json"

            await fake.start()  # back, same port
            await medic.drain(30)

            async def caught_up() -> bool:
                return (await backend.spool.counts())["bundles"] == 0

            await wait_until(caught_up)
            incidents, total = await backend.mongo.query(IncidentQuery())
            assert total == 2
            by_target = {i.target.name: i for i in incidents if i.target}
            assert by_target["app-a"].phase.value == "diagnosed" and by_target["app-a"].alerts_total == 2
            assert by_target["app-b"].phase.value == "diagnosed" and by_target["app-b"].alerts_total == 1
            for inc in incidents:
                alerts, count = await backend.mongo.alerts(inc.id)
                assert count == inc.alerts_total == len(alerts)


async def wait_until(check: Callable[[], Any], within: float = 20.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + within
    while not await check():
        assert loop.time() < end, "condition not met in time"
        await asyncio.sleep(0.05)


async def run_medic_cli(*args: str, env: dict[str, str]) -> tuple[int, str, str]:
    medic = Path(sys.executable).with_name("medic")
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MEDIC_")} | env
    proc = await asyncio.create_subprocess_exec(
        str(medic), *args, env=clean, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await proc.communicate()
    return int(proc.returncode or 0), out.decode(), err.decode()


async def test_the_cli_reads_incidents_from_medics_mongodb(tmp_path: Path) -> None:
    """``medic incidents`` without --url in a replica (production backends configured) lists and
    shows what every replica stored in MongoDB, not an empty replica-local SQLite file."""
    async with FakeMongoServer() as fake:
        store = MongoIncidentStore(connect(fake.url))
        await store.setup()
        stored = incident("crashloop-rollback|deployment/playcode/checkout")
        await store.save(stored)
        await store.close()
        env = {
            "MEDIC_REDIS_URL": "redis://127.0.0.1:1/0",
            "MEDIC_MONGO_URL": fake.url,
            "MEDIC_DATA_DIR": str(tmp_path / "data"),
        }
        code, out, err = await run_medic_cli("incidents", "list", "-o", "json", env=env)
        assert code == 0, err
        listed = json.loads(out)
        assert listed["total"] == 1 and listed["items"][0]["id"] == stored.id
        code, out, err = await run_medic_cli("incidents", "show", stored.id, "-o", "json", env=env)
        assert code == 0, err
        assert json.loads(out)["id"] == stored.id
        assert not (tmp_path / "data" / "medic.sqlite3").exists(), "not read from a replica-local store"
