"""An incident's alerts, kept beside its bundle: one contract for both incident stores (the
embedded SQLite one and MongoDB, through the OP_MSG fake or ``MEDIC_TEST_MONGO_URL``), and
the one-time upgrade of bundles an earlier Medic wrote with the alerts inside."""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pymongo import AsyncMongoClient

from medic.clients.sqlite import SqliteDB
from medic.domain.incident import AlertMerge, Incident, IncidentAlert, new_incident_id
from medic.incidents.base import IncidentStore
from medic.incidents.mongo import MongoIncidentStore, connect
from medic.incidents.sqlite import SqliteIncidentStore
from tests.fakes.mongo_server import FakeMongoServer

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)
REAL_MONGO = os.environ.get("MEDIC_TEST_MONGO_URL", "")


@pytest.fixture(params=["sqlite", "mongo"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Any]:
    if request.param == "sqlite":
        db = SqliteDB(tmp_path / "medic.sqlite3")
        await db.open()
        yield SqliteIncidentStore(db)
        await db.close()
        return
    database = f"medic_test_{secrets.token_hex(4)}"
    if REAL_MONGO:
        mongo = MongoIncidentStore(connect(REAL_MONGO), database=database)
        await mongo.setup()
        yield mongo
        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(REAL_MONGO)
        await client.drop_database(database)
        await client.close()
        await mongo.close()
        return
    async with FakeMongoServer() as fake:
        mongo = MongoIncidentStore(connect(fake.url), database=database)
        await mongo.setup()
        yield mongo
        await mongo.close()


def arriving(identity: str, status: str = "firing", at: datetime = T0, **labels: str) -> IncidentAlert:
    return IncidentAlert(
        identity=identity,
        status=status,
        labels={"alertname": "PlayCodeHighLatency", "pod": identity, **labels},
        annotations={"summary": f"{identity} is {status}"},
        startsAt=T0,
        endsAt=at if status == "resolved" else None,
        first_seen=at,
        last_seen=at,
    )


async def stored_incident(store: IncidentStore) -> Incident:
    inc = Incident(id=new_incident_id(T0), key=f"k|{secrets.token_hex(3)}", created_at=T0, updated_at=T0)
    await store.save(inc)
    return inc


async def test_merge_counts_each_change_once_and_pages_in_arrival_order(store: IncidentStore) -> None:
    inc = await stored_incident(store)
    first = [arriving(f"a{i}") for i in range(3)]
    assert await store.merge_alerts(inc.id, first) == AlertMerge(joined=3, resolved=0, total=3, firing=3)
    # a redelivery changes nothing
    assert await store.merge_alerts(inc.id, first) == AlertMerge(joined=0, resolved=0, total=3, firing=3)
    later = T0 + timedelta(minutes=1)
    merge = await store.merge_alerts(inc.id, [arriving("a1", "resolved", later), arriving("b0", at=later)])
    assert merge == AlertMerge(joined=1, resolved=1, total=4, firing=3)
    alerts, total = await store.alerts(inc.id)
    assert total == 4 and [a.identity for a in alerts] == ["a0", "a1", "a2", "b0"]
    a1 = alerts[1]
    assert a1.status == "resolved" and a1.endsAt == later and a1.annotations["summary"] == "a1 is resolved"
    assert a1.first_seen == T0 and a1.last_seen == later  # first seen stays, last seen moves
    firing, count = await store.alerts(inc.id, status="firing", limit=2, offset=1)
    assert count == 3 and [a.identity for a in firing] == ["a2", "b0"]
    resolved, count = await store.alerts(inc.id, status="resolved")
    assert count == 1 and [a.identity for a in resolved] == ["a1"]
    # firing again, then resolved again within one batch: both transitions count, in order
    merge = await store.merge_alerts(inc.id, [arriving("a1", at=later), arriving("a1", "resolved", later)])
    assert merge == AlertMerge(joined=1, resolved=1, total=4, firing=3)


async def test_alerts_of_one_batch_keep_their_order(store: IncidentStore) -> None:
    inc = await stored_incident(store)
    await store.merge_alerts(inc.id, [arriving(i) for i in ("z", "m", "c")])
    await store.merge_alerts(inc.id, [arriving("b", at=T0 + timedelta(seconds=1)), arriving("z", "resolved")])
    alerts, _ = await store.alerts(inc.id)
    assert [a.identity for a in alerts] == ["z", "m", "c", "b"]  # an update keeps its place


async def test_incidents_do_not_share_alerts(store: IncidentStore) -> None:
    one, two = await stored_incident(store), await stored_incident(store)
    await store.merge_alerts(one.id, [arriving("x")])
    assert await store.merge_alerts(two.id, [arriving("x")]) == AlertMerge(
        joined=1, resolved=0, total=1, firing=1
    )
    assert (await store.alerts(one.id))[1] == 1 and (await store.alerts("inc-nope"))[1] == 0


async def test_a_storm_of_alerts_stays_out_of_the_bundle(store: IncidentStore) -> None:
    """1,200 alerts (more than one ``IN (...)`` of identities) in batches: counts are exact and
    the bundle does not grow with them."""
    inc = await stored_incident(store)
    size_before = len(inc.model_dump_json())
    batch = [arriving(f"p{i:04d}") for i in range(1200)]
    assert (await store.merge_alerts(inc.id, batch)).total == 1200
    merge = await store.merge_alerts(inc.id, [arriving(f"p{i:04d}", "resolved") for i in range(0, 1200, 2)])
    assert merge == AlertMerge(joined=0, resolved=600, total=1200, firing=600)
    back = await store.get(inc.id)
    assert back is not None and len(back.model_dump_json()) == size_before
    page, total = await store.alerts(inc.id, status="firing", limit=1000, offset=500)
    assert total == 600 and len(page) == 100 and page[0].identity == "p1001"  # the odd ones fire


async def test_bundles_with_alerts_inside_are_upgraded_once(store: Any) -> None:
    old_alerts = [arriving("o1", severity="critical", namespace="playcode"), arriving("o2", "resolved")]
    inc = Incident(id=new_incident_id(T0), key="k|old", created_at=T0, updated_at=T0)
    v1 = inc.model_dump(mode="json") | {
        "schema_version": 1,
        "alerts": [a.model_dump(mode="json") for a in old_alerts],
    }
    for key in ("alerts_total", "alerts_firing", "labels"):
        del v1[key]
    if isinstance(store, SqliteIncidentStore):
        await store.db.write(
            lambda c: c.execute(
                "INSERT INTO incidents VALUES (?, ?, 'open', NULL, '', ?, ?, ?)",
                (inc.id, inc.key, T0.isoformat(), T0.isoformat(), json.dumps(v1)),
            )
        )
    else:
        await store.incidents.insert_one(
            {"_id": inc.id, "schema_version": 1, "key": inc.key, "status": "open", "bundle": json.dumps(v1)}
        )
    before = await store.get(inc.id)  # read before the upgrade: the counts come from inside
    assert before is not None and (before.alerts_total, before.alerts_firing) == (2, 1)
    assert await store.upgrade() == 1
    assert await store.upgrade() == 0
    after = await store.get(inc.id)
    assert after is not None and after.schema_version == 2
    assert (after.alerts_total, after.alerts_firing) == (2, 1)
    assert after.labels == {"alertname": "PlayCodeHighLatency"}
    alerts, total = await store.alerts(inc.id)
    assert total == 2 and [a.identity for a in alerts] == ["o1", "o2"]
    assert await store.merge_alerts(inc.id, [arriving("o1")]) == AlertMerge(
        joined=0, resolved=0, total=2, firing=1
    )


async def test_mongo_alerts_expire_with_their_incident(tmp_path: Path) -> None:
    async with FakeMongoServer() as fake:
        store = MongoIncidentStore(connect(fake.url), database="medic")
        await store.setup()
        inc = await stored_incident(store)
        await store.merge_alerts(inc.id, [arriving("a"), arriving("b")])
        assert await store.alert_docs.count_documents({"expire_at": None}) == 2  # open: kept
        inc.status, inc.resolved_at = "resolved", T0
        await store.save(inc)
        expiry = T0 + timedelta(days=30)
        assert await store.alert_docs.count_documents({"expire_at": expiry}) == 2
        assert fake.expire_ttl(expiry + timedelta(seconds=1)) == 3  # the incident and its alerts
        assert await store.alerts(inc.id) == ([], 0)
        await store.close()
