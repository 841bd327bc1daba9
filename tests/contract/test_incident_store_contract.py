"""The one contract every incident store passes (``medic.incidents.base.IncidentStore``), run against
the embedded SQLite store, the MongoDB store (the OP_MSG fake) and the fail-safe store (MongoDB
with the local spool; MongoDB answering): one open incident per key, find_open, save (an upsert,
redacted), merge_alerts (idempotent, counts), alert pages, query filters and pages, the audit
log, discard_if_empty, and retention (SQLite's purge, MongoDB's TTL indexes).

And the fail-safe store while MongoDB is down (as the inbox suite has its spooling case), for
what it promises then: ``save`` and ``append_audit`` never fail (the local spool keeps them,
redacted), reads of a spooled incident (``get``, ``find_open``) give its newest version, later
saves of it stay in order, what needs MongoDB fails with ``BackendUnavailable`` (never another
error), and once MongoDB answers ``flush`` writes everything there and empties the spool.

What only one backend has (MongoDB: fenced writes, schema versions, the TTL index settings; the
fail-safe store: a spooled version older than MongoDB's is not written) stays in
tests/integration/test_mongo_store.py."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from medic.clients.availability import Availability
from medic.clients.sqlite import SqliteDB
from medic.domain.errors import BackendUnavailable, StoreError
from medic.domain.incident import Finding, Incident, IncidentAlert, Target, new_incident_id
from medic.inbox.spool import LocalSpool
from medic.incidents.base import IncidentQuery, IncidentStore
from medic.incidents.failsafe import FailSafeIncidentStore
from medic.incidents.mongo import MongoIncidentStore, connect
from medic.incidents.sqlite import SqliteIncidentStore
from tests.fakes.mongo_server import FakeMongoServer

pytestmark = pytest.mark.integration

RETENTION = timedelta(days=30)
AUDIT_RETENTION = timedelta(days=90)
SECRET = "S3cretPw-contract-0123"
BACKENDS = ["sqlite", "mongo", "failsafe"]
T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


@dataclass
class StoreUnderTest:
    name: str
    store: IncidentStore
    # Run the backend's retention as if the clock read ``at`` (SQLite: the periodic purge with
    # the cutoffs of RETENTION / AUDIT_RETENTION; MongoDB: its TTL monitor).
    expire: Callable[[datetime], Awaitable[None]]


@pytest.fixture(params=BACKENDS)
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[StoreUnderTest]:
    name: str = request.param
    if name == "sqlite":
        db = SqliteDB(tmp_path / "medic.sqlite3")
        await db.open()
        sqlite = SqliteIncidentStore(db)

        async def purge(at: datetime) -> None:
            await sqlite.purge_resolved(at - RETENTION)
            await sqlite.purge_audit(at - AUDIT_RETENTION)

        yield StoreUnderTest(name, sqlite, purge)
        await db.close()
        return
    async with FakeMongoServer() as fake:
        mongo = MongoIncidentStore(
            connect(fake.url, timeout=1.0),
            database=f"medic_{secrets.token_hex(3)}",
            retention=RETENTION,
            audit_retention=AUDIT_RETENTION,
        )
        await mongo.setup()

        async def ttl(at: datetime) -> None:
            fake.expire_ttl(at)

        if name == "mongo":
            yield StoreUnderTest(name, mongo, ttl)
        else:
            spool = LocalSpool(tmp_path / "spool.sqlite3", dedup_ttl=3600, lease_seconds=30)
            await spool.open()
            yield StoreUnderTest(name, FailSafeIncidentStore(mongo, spool), ttl)
            await spool.close()
        await mongo.close()


def incident(
    name: str = "app", *, rule: str = "crashloop-rollback", namespace: str = "playcode", at: datetime = T0
) -> Incident:
    return Incident(
        id=new_incident_id(at),
        key=f"{rule}|deployment/{namespace}/{name}",
        rule=rule,
        target=Target(kind="deployment", namespace=namespace, name=name),
        title="KubePodCrashLooping",
        created_at=at,
        updated_at=at,
        labels={"alertname": "KubePodCrashLooping", "namespace": namespace},
    )


def alert(identity: str, status: str = "firing", *, seen: datetime = T0, **labels: str) -> IncidentAlert:
    return IncidentAlert(
        identity=identity,
        status=status,
        labels={"alertname": "KubePodCrashLooping", "pod": identity, **labels},
        startsAt=T0,
        endsAt=seen if status == "resolved" else None,
        first_seen=seen,
        last_seen=seen,
    )


# ---------------------------------------------------------------- incidents


async def test_one_open_incident_per_key(backend: StoreUnderTest) -> None:
    store = backend.store
    first, created = await store.create_or_get_open(incident())
    assert created
    second, created = await store.create_or_get_open(incident())  # same key, another id
    assert not created and second.id == first.id
    found = await store.find_open(first.key)
    assert found is not None and found.id == first.id and found.target == first.target
    assert await store.find_open("crashloop-rollback|deployment/playcode/other") is None
    first.status, first.resolved_at = "resolved", T0 + timedelta(minutes=5)
    await store.save(first)
    assert await store.find_open(first.key) is None  # resolved: no longer the open one
    third, created = await store.create_or_get_open(incident())
    assert created and third.id != first.id
    assert (await store.find_open(first.key)).id == third.id  # type: ignore[union-attr]


async def test_concurrent_opens_of_one_key_create_one_incident(backend: StoreUnderTest) -> None:
    results = await asyncio.gather(*(backend.store.create_or_get_open(incident()) for _ in range(5)))
    assert sum(created for _, created in results) == 1
    assert len({inc.id for inc, _ in results}) == 1


async def test_save_is_an_upsert_and_get_round_trips(backend: StoreUnderTest) -> None:
    store = backend.store
    inc = incident()
    assert await store.get(inc.id) is None
    await store.save(inc)  # an incident never opened through create_or_get_open: inserted
    inc.title = "diagnosed"
    inc.findings.append(Finding(analyzer="crashloop", code="crashloop.regression", summary="v2 crashes"))
    inc.note("diagnosed", "found it", T0 + timedelta(minutes=1))
    await store.save(inc)
    await store.save(inc)
    got = await store.get(inc.id)
    assert got is not None
    assert got.model_dump(mode="json") == inc.model_dump(mode="json")
    assert (await store.query(IncidentQuery()))[1] == 1


async def test_what_is_saved_is_redacted(backend: StoreUnderTest) -> None:
    store = backend.store
    inc, _ = await store.create_or_get_open(incident())
    leaked = f"mongodb://app:{SECRET}@mongodb-0.mongodb:27017/userdb"
    inc.findings.append(
        Finding(
            analyzer="mongodb", code="mongodb.down", summary=f"cannot reach {leaked}", details={"url": leaked}
        )
    )
    inc.note("diagnosed", f"password={SECRET}", T0)
    await store.save(inc)
    await store.append_audit(inc.id, "action", {"status": "refused", "reason": f"token {leaked}"})
    stored = await store.get(inc.id)
    assert stored is not None and "mongodb-0.mongodb" in stored.findings[0].summary
    everything = json.dumps(
        [
            stored.model_dump(mode="json"),
            await store.audit(inc.id),
            *(i.model_dump(mode="json") for i in (await store.query(IncidentQuery()))[0]),
        ],
        default=str,
    )
    assert SECRET not in everything


# ---------------------------------------------------------------- alerts


async def test_merge_alerts_counts_and_is_idempotent(backend: StoreUnderTest) -> None:
    store = backend.store
    inc, _ = await store.create_or_get_open(incident())
    batch = [alert("pod-a"), alert("pod-b"), alert("pod-c")]
    merge = await store.merge_alerts(inc.id, batch)
    assert (merge.joined, merge.resolved, merge.total, merge.firing) == (3, 0, 3, 3)
    again = await store.merge_alerts(inc.id, batch)  # a redelivered batch
    assert (again.joined, again.resolved, again.total, again.firing) == (0, 0, 3, 3)
    later = T0 + timedelta(minutes=3)
    resolved = await store.merge_alerts(inc.id, [alert("pod-b", "resolved", seen=later), alert("pod-d")])
    assert (resolved.joined, resolved.resolved, resolved.total, resolved.firing) == (1, 1, 4, 3)
    refire = await store.merge_alerts(inc.id, [alert("pod-b", seen=later), alert("pod-b", seen=later)])
    assert (refire.joined, refire.resolved, refire.total, refire.firing) == (1, 0, 4, 4)
    other, _ = await store.create_or_get_open(incident("other"))
    assert (await store.merge_alerts(other.id, [alert("pod-a")])).total == 1  # per incident


async def test_alert_pages_keep_arrival_order_and_first_seen(backend: StoreUnderTest) -> None:
    store = backend.store
    inc, _ = await store.create_or_get_open(incident())
    names = [f"pod-{i:02d}" for i in range(7)]
    await store.merge_alerts(inc.id, [alert(n, seen=T0 + timedelta(seconds=i)) for i, n in enumerate(names)])
    later = T0 + timedelta(hours=1)
    await store.merge_alerts(inc.id, [alert("pod-03", "resolved", seen=later, extra="ignored")])
    page, total = await store.alerts(inc.id, limit=3)
    assert total == 7 and [a.identity for a in page] == names[:3]
    rest, _ = await store.alerts(inc.id, limit=10, offset=3)
    assert [a.identity for a in rest] == names[3:]
    three = rest[0]
    assert three.status == "resolved" and three.last_seen == later
    assert three.first_seen == T0 + timedelta(seconds=3) and "extra" not in three.labels  # first labels
    resolved, n = await store.alerts(inc.id, status="resolved")
    assert n == 1 and [a.identity for a in resolved] == ["pod-03"]
    firing, n = await store.alerts(inc.id, status="firing", limit=2, offset=5)
    assert n == 6 and [a.identity for a in firing] == ["pod-06"]
    assert await store.alerts("inc-none") == ([], 0)


async def test_discard_if_empty_only_discards_an_incident_without_alerts(backend: StoreUnderTest) -> None:
    store = backend.store
    empty, _ = await store.create_or_get_open(incident("empty"))
    full, _ = await store.create_or_get_open(incident("full"))
    await store.merge_alerts(full.id, [alert("pod-a")])
    assert not await store.discard_if_empty(full.id)
    assert await store.get(full.id) is not None
    assert await store.discard_if_empty(empty.id)
    assert await store.get(empty.id) is None and await store.find_open(empty.key) is None
    assert not await store.discard_if_empty(empty.id)
    again, created = await store.create_or_get_open(incident("empty"))  # the key is free again
    assert created and again.id != empty.id


# ---------------------------------------------------------------- query


async def test_query_filters_and_pages_newest_first(backend: StoreUnderTest) -> None:
    store = backend.store
    made = []
    for i, (rule, ns) in enumerate(
        [("a", "playcode"), ("b", "playcode"), ("a", "staging"), ("a", "playcode")]
    ):
        inc, _ = await store.create_or_get_open(
            incident(f"app{i}", rule=rule, namespace=ns, at=T0 + timedelta(minutes=i))
        )
        made.append(inc)
    made[1].status = "resolved"
    await store.save(made[1])
    everything, total = await store.query(IncidentQuery())
    assert total == 4 and [i.id for i in everything] == [m.id for m in reversed(made)]
    page, total = await store.query(IncidentQuery(limit=2, offset=1))
    assert total == 4 and [i.id for i in page] == [made[2].id, made[1].id]
    by_rule, total = await store.query(IncidentQuery(rule="a"))
    assert total == 3 and {i.rule for i in by_rule} == {"a"}
    by_ns, total = await store.query(IncidentQuery(rule="a", namespace="playcode"))
    assert total == 2 and [i.id for i in by_ns] == [made[3].id, made[0].id]
    resolved, total = await store.query(IncidentQuery(status="resolved"))
    assert total == 1 and resolved[0].id == made[1].id
    assert await store.query(IncidentQuery(namespace="nowhere")) == ([], 0)


# ---------------------------------------------------------------- audit


async def test_audit_is_append_only_newest_first(backend: StoreUnderTest) -> None:
    store = backend.store
    for i in range(3):
        await store.append_audit("inc-1", "action", {"status": "refused", "n": i})
    await store.append_audit("inc-2", "action", {"status": "succeeded", "n": 3})
    await store.append_audit(None, "kill_switch", {"enabled": True, "n": 4})
    everything = await store.audit()
    assert [e["record"]["n"] for e in everything] == [4, 3, 2, 1, 0]
    assert {k for e in everything for k in e} >= {"seq", "at", "incident_id", "kind", "record"}
    assert len({str(e["seq"]) for e in everything}) == 5
    assert everything[0]["incident_id"] is None and everything[0]["kind"] == "kill_switch"
    mine = await store.audit("inc-1", limit=2)
    assert [(e["incident_id"], e["record"]["n"]) for e in mine] == [("inc-1", 2), ("inc-1", 1)]
    for e in everything:
        at = datetime.fromisoformat(e["at"])
        assert at.utcoffset() == timedelta(0)  # one time format for the API, whatever the backend
    json.dumps(everything)


# ---------------------------------------------------------------- retention


async def test_retention_deletes_old_resolved_incidents_with_their_alerts(backend: StoreUnderTest) -> None:
    store = backend.store
    now = datetime.now(UTC)
    old, _ = await store.create_or_get_open(incident("old", at=now - timedelta(days=40)))
    recent, _ = await store.create_or_get_open(incident("recent", at=now - timedelta(days=40)))
    still_open, _ = await store.create_or_get_open(incident("open", at=now - timedelta(days=90)))
    for inc in (old, recent, still_open):
        await store.merge_alerts(inc.id, [alert("pod-a")])
    for inc, ago in ((old, timedelta(days=31)), (recent, timedelta(days=29))):
        inc.status, inc.resolved_at = "resolved", now - ago
        inc.updated_at = now - ago
        await store.save(inc)
    await backend.expire(now)
    assert await store.get(old.id) is None and await store.alerts(old.id) == ([], 0)
    assert await store.get(recent.id) is not None and (await store.alerts(recent.id))[1] == 1
    assert await store.get(still_open.id) is not None  # open incidents are never deleted
    assert (await store.alerts(still_open.id))[1] == 1
    assert (await store.query(IncidentQuery()))[1] == 2


async def test_retention_deletes_old_audit_records(backend: StoreUnderTest) -> None:
    store = backend.store
    await store.append_audit("inc-1", "action", {"status": "refused", "n": 0})
    await store.append_audit("inc-1", "action", {"status": "refused", "n": 1})
    await backend.expire(datetime.now(UTC) + AUDIT_RETENTION - timedelta(minutes=1))
    assert len(await store.audit()) == 2  # not old enough yet
    await backend.expire(datetime.now(UTC) + AUDIT_RETENTION + timedelta(seconds=1))
    await store.append_audit("inc-1", "action", {"status": "refused", "n": 2})
    assert [e["record"]["n"] for e in await store.audit()] == [2]


async def test_a_second_open_incident_for_a_key_is_refused(backend: StoreUnderTest) -> None:
    store = backend.store
    first, _ = await store.create_or_get_open(incident())
    other = incident()  # another id, the same key, open
    with pytest.raises(StoreError):
        await store.save(other)
    assert (await store.find_open(first.key)).id == first.id  # type: ignore[union-attr]
    assert await store.get(other.id) is None


# ---------------------------------------------------------------- the fail-safe store, MongoDB down


@dataclass
class MongoDown:
    """The fail-safe store after MongoDB went away (``come_back`` starts it again, same port)."""

    store: FailSafeIncidentStore
    mongo: MongoIncidentStore
    spool: LocalSpool
    spool_path: Path
    fake: FakeMongoServer
    up: Availability
    opened: Incident  # opened while MongoDB answered

    async def come_back(self) -> None:
        await self.fake.start()
        await self.mongo.ping()  # the probe: marks it up again
        assert self.up.up


@pytest.fixture
async def mongo_down(tmp_path: Path) -> AsyncIterator[MongoDown]:
    async with FakeMongoServer() as fake:
        up = Availability("Medic's MongoDB")
        mongo = MongoIncidentStore(
            connect(fake.url, timeout=0.5),
            database=f"medic_{secrets.token_hex(3)}",
            retention=RETENTION,
            audit_retention=AUDIT_RETENTION,
            availability=up,
        )
        await mongo.setup()
        path = tmp_path / "spool.sqlite3"
        spool = LocalSpool(path, dedup_ttl=3600, lease_seconds=30)
        await spool.open()
        store = FailSafeIncidentStore(mongo, spool)
        opened, created = await store.create_or_get_open(incident())
        assert created
        await fake.stop()
        try:
            yield MongoDown(store, mongo, spool, path, fake, up, opened)
        finally:
            await spool.close()
            await mongo.close()


def spool_bytes(path: Path) -> bytes:
    return b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))


async def test_while_mongo_is_down_saves_and_audit_records_are_kept_redacted(mongo_down: MongoDown) -> None:
    store, inc = mongo_down.store, mongo_down.opened
    leaked = f"mongodb://app:{SECRET}@mongodb-0.mongodb:27017/userdb"
    inc.title = "diagnosed while MongoDB was down"
    inc.findings.append(
        Finding(
            analyzer="mongodb", code="mongodb.down", summary=f"cannot reach {leaked}", details={"url": leaked}
        )
    )
    inc.note("diagnosed", f"password={SECRET}", T0 + timedelta(minutes=1))
    await store.save(inc)  # no error: kept locally
    assert not mongo_down.up.up
    never_opened = incident("other")  # e.g. a deploy verification's incident, saved directly
    await store.save(never_opened)
    await store.append_audit(inc.id, "action", {"status": "refused", "reason": f"no coordination: {leaked}"})
    await store.append_audit(None, "kill_switch", {"enabled": True})
    got = await store.get(inc.id)
    assert got is not None and got.title == inc.title and "mongodb-0.mongodb" in got.findings[0].summary
    assert SECRET not in got.model_dump_json()
    assert (await store.get(never_opened.id)) is not None
    found = await store.find_open(inc.key)
    assert found is not None and found.id == inc.id and found.title == inc.title
    assert SECRET.encode() not in spool_bytes(mongo_down.spool_path)  # redacted before it is kept
    counts = await mongo_down.spool.counts()
    assert (counts["bundles"], counts["audit"]) == (2, 2)

    await mongo_down.come_back()
    assert await store.flush() == 4
    counts = await mongo_down.spool.counts()
    assert (counts["bundles"], counts["audit"]) == (0, 0)
    stored = await mongo_down.mongo.get(inc.id)
    assert stored is not None and stored.model_dump(mode="json") == got.model_dump(mode="json")
    assert await mongo_down.mongo.get(never_opened.id) is not None
    audit = await store.audit()
    assert [e["kind"] for e in audit] == ["kill_switch", "action"]
    assert not any(e.get("spooled") for e in audit)  # read back from MongoDB
    assert SECRET not in json.dumps(audit, default=str)


async def test_later_saves_of_a_spooled_incident_reach_mongo_in_order(mongo_down: MongoDown) -> None:
    store, inc = mongo_down.store, mongo_down.opened
    for i in range(3):
        inc.title = f"version {i}"
        await store.save(inc)
    assert (await store.get(inc.id)).title == "version 2"  # type: ignore[union-attr]
    await mongo_down.come_back()
    inc.title = "saved after MongoDB came back, before the flush"
    await store.save(inc)  # still behind a spooled version: spooled too, not written around it
    assert (await store.get(inc.id)).title == inc.title  # type: ignore[union-attr]
    await store.flush()
    assert (await mongo_down.mongo.get(inc.id)).title == inc.title  # type: ignore[union-attr]
    assert (await mongo_down.spool.counts())["bundles"] == 0
    inc.title = "after the flush"
    await store.save(inc)  # nothing spooled any more: straight to MongoDB
    assert (await mongo_down.spool.counts())["bundles"] == 0
    assert (await mongo_down.mongo.get(inc.id)).title == "after the flush"  # type: ignore[union-attr]


async def test_while_mongo_is_down_what_needs_it_is_unavailable(mongo_down: MongoDown) -> None:
    """A new incident needs MongoDB's unique index, alerts are kept beside the bundle in MongoDB:
    these fail with BackendUnavailable (the worker keeps the delivery and retries), fast."""
    store, inc = mongo_down.store, mongo_down.opened
    needs_mongo: dict[str, Callable[[], Awaitable[object]]] = {
        "create_or_get_open": lambda: store.create_or_get_open(incident("new")),
        "merge_alerts": lambda: store.merge_alerts(inc.id, [alert("pod-a")]),
        "discard_if_empty": lambda: store.discard_if_empty(inc.id),
        "alerts": lambda: store.alerts(inc.id),
        "query": lambda: store.query(IncidentQuery()),
        "get (not spooled)": lambda: store.get(inc.id),
        "find_open (not spooled)": lambda: store.find_open("crashloop-rollback|deployment/playcode/x"),
    }
    for name, op in needs_mongo.items():
        with pytest.raises(BackendUnavailable):
            await asyncio.wait_for(op(), 5.0)
        assert not mongo_down.up.up, name
    await mongo_down.come_back()
    assert (await store.merge_alerts(inc.id, [alert("pod-a")])).total == 1  # it answers again
    assert await store.get(inc.id) is not None
