"""Pin FakeMongoServer against the real pymongo clients (async and sync)."""

from __future__ import annotations

import asyncio
import datetime as dt
import socket
import struct
import time
from collections.abc import AsyncIterator
from typing import Any

import bson
import pytest
from bson import ObjectId
from pymongo import (
    ASCENDING,
    DESCENDING,
    AsyncMongoClient,
    MongoClient,
    ReplaceOne,
    ReturnDocument,
    UpdateOne,
)
from pymongo.errors import (
    AutoReconnect,
    BulkWriteError,
    DuplicateKeyError,
    ExecutionTimeout,
    OperationFailure,
    ServerSelectionTimeoutError,
)

from tests.fakes.mongo_server import (
    FakeMongoServer,
    current_op_fixture,
    db_stats_nearly_full,
    dead_url,
    fast_op,
    filter_docs,
    healthy_fixtures,
    lost_primary_fixtures,
    matches,
    matching_positions,
    nearly_full_disk_fixtures,
    slow_collscan_fixtures,
    slow_collscan_op,
)

Client = AsyncMongoClient[dict[str, object]]


@pytest.fixture
async def fake() -> AsyncIterator[FakeMongoServer]:
    async with FakeMongoServer() as server:
        yield server


@pytest.fixture
async def client(fake: FakeMongoServer) -> AsyncIterator[Client]:
    mongo: Client = AsyncMongoClient(fake.url, serverSelectionTimeoutMS=2000, connectTimeoutMS=2000)
    try:
        yield mongo
    finally:
        await mongo.close()


# ------------------------------------------------------------------------------ handshake


async def test_connect_and_ping(fake: FakeMongoServer, client: Client) -> None:
    assert await client.admin.command("ping") == {"ok": 1.0}
    hellos = fake.requests_for("hello")
    assert hellos, "the driver must have performed a handshake"
    assert all("topologyVersion" not in h for h in hellos)
    assert fake.url == f"mongodb://127.0.0.1:{fake.port}/?directConnection=true"
    assert fake.command_names() == ["ping"]


async def test_hello_reply_fields(client: Client) -> None:
    reply = await client.admin.command("hello")
    assert reply["isWritablePrimary"] is True
    assert reply["maxWireVersion"] >= 17
    assert reply["minWireVersion"] == 0
    assert "topologyVersion" not in reply
    assert "compression" not in reply
    assert "setName" not in reply
    for key in ("maxBsonObjectSize", "maxMessageSizeBytes", "maxWriteBatchSize", "localTime",
                "logicalSessionTimeoutMinutes", "connectionId"):
        assert key in reply
    legacy = await client.admin.command("isMaster")
    assert legacy["ismaster"] is True


async def test_build_info(client: Client) -> None:
    info = await client.admin.command("buildInfo")
    assert info["version"] == "7.0.14"
    assert info["versionArray"][:2] == [7, 0]


async def test_replica_set_mode() -> None:
    async with FakeMongoServer(replica_set="rs0") as fake:
        url = f"mongodb://{fake.address}/?replicaSet=rs0"
        mongo: Client = AsyncMongoClient(url, serverSelectionTimeoutMS=2000)
        try:
            await mongo.playcode.things.insert_one({"a": 1})
            hello = await mongo.admin.command("hello")
            assert hello["setName"] == "rs0"
            assert hello["primary"] == fake.address
            status = await mongo.admin.command("replSetGetStatus")
            assert [m["stateStr"] for m in status["members"]] == ["PRIMARY"]
        finally:
            await mongo.close()


# ------------------------------------------------------------------------------ CRUD


async def test_insert_find_update_delete_count(fake: FakeMongoServer, client: Client) -> None:
    coll = client.medic.incidents
    result = await coll.insert_many(
        [{"key": f"k{i}", "n": i, "tags": ["crashloop"] if i % 2 else []} for i in range(5)]
    )
    assert len(result.inserted_ids) == 5
    assert await coll.count_documents({}) == 5
    assert await coll.count_documents({"n": {"$gte": 3}}) == 2
    assert await coll.count_documents({"nothing": "here"}) == 0
    assert await coll.estimated_document_count() == 5

    doc = await coll.find_one({"key": "k3"}, {"_id": 0})
    assert doc == {"key": "k3", "n": 3, "tags": ["crashloop"]}

    updated = await coll.update_many({"tags": "crashloop"}, {"$set": {"seen": True}})
    assert (updated.matched_count, updated.modified_count) == (2, 2)
    again = await coll.update_many({"tags": "crashloop"}, {"$set": {"seen": True}})
    assert (again.matched_count, again.modified_count) == (2, 0)

    upsert = await coll.update_one(
        {"key": "new"}, {"$set": {"n": 99}, "$setOnInsert": {"created": 1}}, upsert=True
    )
    assert upsert.upserted_id is not None and upsert.matched_count == 0
    stored = await coll.find_one({"_id": upsert.upserted_id})
    assert stored is not None
    assert (stored["key"], stored["n"], stored["created"]) == ("new", 99, 1)

    no_insert = await coll.update_one({"key": "new"}, {"$setOnInsert": {"created": 2}},
                                      upsert=True)
    assert no_insert.upserted_id is None and no_insert.modified_count == 0

    deleted = await coll.delete_many({"n": {"$lt": 2}})
    assert deleted.deleted_count == 2
    one = await coll.delete_one({"key": {"$in": ["k2", "k3"]}})
    assert one.deleted_count == 1
    assert await coll.count_documents({}) == 3
    assert len(fake.docs("medic", "incidents")) == 3


async def test_update_operators_and_replacement(client: Client) -> None:
    coll = client.medic.incidents
    _id = (await coll.insert_one({"key": "x", "count": 1, "alerts": ["a"], "tmp": 1})).inserted_id
    await coll.update_one(
        {"_id": _id},
        {
            "$inc": {"count": 2, "stats.retries": 1},
            "$push": {"alerts": {"$each": ["b", "c"]}},
            "$addToSet": {"labels": "x"},
            "$unset": {"tmp": ""},
            "$set": {"state.phase": "open"},
        },
    )
    await coll.update_one({"_id": _id}, {"$addToSet": {"labels": {"$each": ["x", "y"]}}})
    doc = await coll.find_one({"_id": _id})
    assert doc == {
        "_id": _id,
        "key": "x",
        "count": 3,
        "alerts": ["a", "b", "c"],
        "stats": {"retries": 1},
        "labels": ["x", "y"],
        "state": {"phase": "open"},
    }
    assert await coll.count_documents({"state.phase": "open", "tmp": {"$exists": False}}) == 1

    replaced = await coll.replace_one({"_id": _id}, {"key": "x", "replaced": True})
    assert replaced.modified_count == 1
    assert await coll.find_one({"_id": _id}) == {"_id": _id, "key": "x", "replaced": True}

    with pytest.raises(OperationFailure) as info:
        await coll.update_one({"_id": _id}, {"$set": {"_id": ObjectId()}})
    assert info.value.code == 66


async def test_unique_index_and_duplicate_key(fake: FakeMongoServer, client: Client) -> None:
    coll = client.medic.incidents
    name = await coll.create_index("key", unique=True)
    assert name == "key_1"
    await coll.insert_one({"key": "episode-1"})
    with pytest.raises(DuplicateKeyError) as info:
        await coll.insert_one({"key": "episode-1"})
    assert info.value.code == 11000
    assert info.value.details is not None
    assert info.value.details["keyValue"] == {"key": "episode-1"}
    assert "E11000 duplicate key error collection: medic.incidents index: key_1" in str(info.value)

    await coll.insert_one({"key": "episode-2"})
    with pytest.raises(DuplicateKeyError):
        await coll.update_one({"key": "episode-2"}, {"$set": {"key": "episode-1"}})
    with pytest.raises(DuplicateKeyError):
        await coll.find_one_and_update({"key": "episode-2"}, {"$set": {"key": "episode-1"}})

    with pytest.raises(BulkWriteError) as bulk:
        await coll.insert_many([{"key": "episode-3"}, {"key": "episode-1"}, {"key": "episode-4"}])
    assert bulk.value.details["nInserted"] == 1
    assert [e["code"] for e in bulk.value.details["writeErrors"]] == [11000]
    assert await coll.count_documents({}) == 3

    with pytest.raises(DuplicateKeyError):  # the implicit _id index
        await coll.insert_one({"_id": fake.docs("medic", "incidents")[0]["_id"], "key": "zz"})

    # creating a unique index over existing duplicates fails like mongod
    await client.medic.other.insert_many([{"v": 1}, {"v": 1}])
    with pytest.raises(DuplicateKeyError):
        await client.medic.other.create_index("v", unique=True)


async def test_ttl_index_spec_recorded(fake: FakeMongoServer, client: Client) -> None:
    coll = client.medic.audit
    await coll.create_index([("created_at", ASCENDING)], expireAfterSeconds=3600)
    await coll.create_index([("rule", ASCENDING), ("target", DESCENDING)], name="rule_target")
    info = await coll.index_information()
    assert info["created_at_1"]["expireAfterSeconds"] == 3600
    assert info["rule_target"]["key"] == [("rule", 1), ("target", -1)]
    assert fake.indexes("medic", "audit")["created_at_1"]["key"] == {"created_at": 1}
    request = fake.requests_for("createIndexes")[0]
    assert request["indexes"][0]["expireAfterSeconds"] == 3600

    # idempotent re-create, conflicting re-create
    await coll.create_index([("created_at", ASCENDING)], expireAfterSeconds=3600)
    with pytest.raises(OperationFailure) as info_conflict:
        await coll.create_index([("created_at", ASCENDING)], expireAfterSeconds=60)
    assert info_conflict.value.code == 85

    old = dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)
    await coll.insert_many([{"created_at": old}, {"created_at": dt.datetime.now(dt.UTC)}])
    assert fake.expire_ttl() == 1
    assert await coll.count_documents({}) == 1

    await coll.drop_index("rule_target")
    assert "rule_target" not in await coll.index_information()
    with pytest.raises(OperationFailure) as missing:
        await coll.drop_index("nope")
    assert missing.value.code == 27


async def test_find_sort_limit_skip_projection(client: Client) -> None:
    coll = client.medic.incidents
    base = dt.datetime(2024, 5, 1, tzinfo=dt.UTC)
    await coll.insert_many(
        [
            {"n": i, "at": base + dt.timedelta(minutes=i), "meta": {"rule": f"r{i % 3}"},
             "secret": "x"}
            for i in range(10)
        ]
    )
    cursor = coll.find({}, {"n": 1, "_id": 0}).sort("n", DESCENDING).skip(1).limit(3)
    assert [d async for d in cursor] == [{"n": 8}, {"n": 7}, {"n": 6}]

    newest = await coll.find({"meta.rule": "r1"}).sort("at", -1).to_list(None)
    assert [d["n"] for d in newest] == [7, 4, 1]

    excluded = await coll.find_one({"n": 0}, {"secret": 0, "meta.rule": 0})
    assert excluded is not None
    assert "secret" not in excluded and excluded["meta"] == {} and "_id" in excluded

    query = {"$or": [{"n": {"$lte": 1}}, {"n": {"$gt": 8}}], "meta.rule": {"$ne": "r2"}}
    assert sorted([d["n"] async for d in coll.find(query)]) == [0, 1, 9]
    since = base + dt.timedelta(minutes=8)
    assert await coll.count_documents({"at": {"$gte": since.replace(tzinfo=None)}}) == 2
    assert await coll.count_documents({"at": {"$gte": since}}) == 2
    assert await coll.distinct("meta.rule") == ["r0", "r1", "r2"]

    multi = await coll.find().sort([("meta.rule", ASCENDING), ("n", DESCENDING)]).to_list(None)
    assert [d["n"] for d in multi][:4] == [9, 6, 3, 0]


async def test_cursor_batches_use_get_more(fake: FakeMongoServer, client: Client) -> None:
    coll = client.medic.bulk
    await coll.insert_many([{"i": i} for i in range(25)])
    got = [d["i"] async for d in coll.find().batch_size(10)]
    assert got == list(range(25))
    assert len(fake.requests_for("getMore")) == 2

    cursor = coll.find().batch_size(5)
    assert (await cursor.next())["i"] == 0
    await cursor.close()
    assert fake.requests_for("killCursors")


async def test_find_one_and_update(client: Client) -> None:
    coll = client.medic.locks
    created = await coll.find_one_and_update(
        {"_id": "crashloop/playcode-app"},
        {"$set": {"owner": "a"}, "$inc": {"version": 1}},
        upsert=True,
        return_document=ReturnDocument.AFTER,
    )
    assert created == {"_id": "crashloop/playcode-app", "owner": "a", "version": 1}
    before = await coll.find_one_and_update(
        {"_id": "crashloop/playcode-app"}, {"$inc": {"version": 1}},
        return_document=ReturnDocument.BEFORE,
    )
    assert before is not None and before["version"] == 1
    assert await coll.find_one_and_update({"_id": "nope"}, {"$set": {"x": 1}}) is None
    removed = await coll.find_one_and_delete({"_id": "crashloop/playcode-app"})
    assert removed is not None and removed["version"] == 2
    assert await coll.count_documents({}) == 0


async def test_aggregate_subset(client: Client) -> None:
    coll = client.medic.incidents
    await coll.insert_many(
        [{"rule": r, "ms": ms} for r, ms in [("a", 10), ("a", 30), ("b", 5), ("c", 1)]]
    )
    rows = await (
        await coll.aggregate(
            [
                {"$match": {"ms": {"$gte": 5}}},
                {"$group": {"_id": "$rule", "n": {"$sum": 1}, "avg": {"$avg": "$ms"}}},
                {"$sort": {"n": -1}},
                {"$project": {"rule": "$_id", "n": 1, "_id": 0}},
            ]
        )
    ).to_list(None)
    assert rows == [{"n": 2, "rule": "a"}, {"n": 1, "rule": "b"}]
    counted = await (await coll.aggregate([{"$match": {"rule": "a"}}, {"$count": "total"}])
                     ).to_list(None)
    assert counted == [{"total": 2}]
    with pytest.raises(OperationFailure) as info:
        await coll.aggregate([{"$lookup": {}}])
    assert info.value.code == 40324


async def test_list_and_drop_collections(fake: FakeMongoServer, client: Client) -> None:
    db = client.medic
    await db.create_collection("bundles")
    await db.incidents.insert_one({"a": 1})
    assert sorted(await db.list_collection_names()) == ["bundles", "incidents"]
    assert sorted(await client.list_database_names()) == ["medic"]
    await db.drop_collection("bundles")
    await db.drop_collection("never-existed")
    assert await db.list_collection_names() == ["incidents"]
    assert await db.nothing.index_information() == {}
    await client.drop_database("medic")
    assert fake.data == {}


# ------------------------------------------------------------------------------ diagnostics


async def test_current_op_filter(fake: FakeMongoServer, client: Client) -> None:
    fake.set_fixture("currentOp", current_op_fixture(slow_collscan_op(), fast_op()))
    everything = await client.admin.command("currentOp")
    assert [op["opid"] for op in everything["inprog"]] == [4242, 4243]

    slow = await client.admin.command({"currentOp": 1, "secs_running": {"$gte": 3}})
    assert len(slow["inprog"]) == 1
    op = slow["inprog"][0]
    assert op["planSummary"] == "COLLSCAN"
    assert op["ns"] == "userdb.users"
    assert op["secs_running"] == 12
    assert op["command"]["filter"] == {"email": "alice@example.com"}
    assert fake.requests_for("currentOp")[-1]["secs_running"] == {"$gte": 3}

    scans = await client.admin.command(
        {"currentOp": True, "$all": True, "active": True, "planSummary": "COLLSCAN",
         "ns": {"$regex": "^userdb\\."}}
    )
    assert [o["opid"] for o in scans["inprog"]] == [4242]

    agg = await (
        await client.admin.aggregate([{"$currentOp": {}}, {"$match": {"secs_running": {"$gt": 5}}}])
    ).to_list(None)
    assert [o["opid"] for o in agg] == [4242]

    with pytest.raises(OperationFailure) as info:
        await client.userdb.command("currentOp")
    assert info.value.code == 13

    await client.admin.command("killOp", op=4242)
    assert fake.killed_ops == [4242]
    after = await client.admin.command({"currentOp": 1, "secs_running": {"$gte": 3}})
    assert after["inprog"] == []


async def test_repl_set_get_status(fake: FakeMongoServer, client: Client) -> None:
    with pytest.raises(OperationFailure) as info:
        await client.admin.command("replSetGetStatus")
    assert info.value.code == 76  # NoReplicationEnabled on a standalone

    fake.set_fixtures(lost_primary_fixtures())
    status = await client.admin.command("replSetGetStatus")
    states = [m["stateStr"] for m in status["members"]]
    assert "PRIMARY" not in states
    assert [m["health"] for m in status["members"]].count(0.0) == 1
    assert status["set"] == "rs0"

    fake.set_fixtures(healthy_fixtures())
    status = await client.admin.command("replSetGetStatus")
    assert [m["stateStr"] for m in status["members"]] == ["PRIMARY", "SECONDARY", "SECONDARY"]
    assert all(m["health"] == 1.0 for m in status["members"])


async def test_server_status(fake: FakeMongoServer, client: Client) -> None:
    default = await client.admin.command("serverStatus")
    assert default["process"] == "mongod"
    assert default["connections"]["current"] >= 1
    fake.set_fixtures(slow_collscan_fixtures())
    fixture = await client.admin.command("serverStatus")
    assert fixture["repl"]["setName"] == "rs0"
    assert fixture["wiredTiger"]["cache"]["maximum bytes configured"] > 0


async def test_db_stats(fake: FakeMongoServer, client: Client) -> None:
    await client.medic.incidents.insert_many([{"a": 1}, {"a": 2}])
    computed = await client.medic.command("dbStats")
    assert (computed["db"], computed["objects"], computed["collections"]) == ("medic", 2, 1)

    fake.set_fixture("dbStats", db_stats_nearly_full("userdb"), db="userdb")
    full = await client.userdb.command("dbStats")
    assert full["fsUsedSize"] / full["fsTotalSize"] == pytest.approx(0.95, abs=0.001)
    other = await client.medic.command("dbStats")
    assert other["fsUsedSize"] / other["fsTotalSize"] < 0.5

    fake.set_fixtures(nearly_full_disk_fixtures(0.97))
    anywhere = await client.medic.command("dbStats")
    assert anywhere["fsUsedSize"] / anywhere["fsTotalSize"] == pytest.approx(0.97, abs=0.001)


async def test_system_profile_reads(fake: FakeMongoServer, client: Client) -> None:
    now = dt.datetime.now(dt.UTC)
    fake.set_profile(
        "userdb",
        [
            {"op": "query", "ns": "userdb.users", "millis": 4200, "planSummary": "COLLSCAN",
             "ts": now},
            {"op": "query", "ns": "userdb.sessions", "millis": 3, "planSummary": "IXSCAN",
             "ts": now},
            {"op": "update", "ns": "userdb.users", "millis": 900, "planSummary": "COLLSCAN",
             "ts": now},
        ],
    )
    slow = await client.userdb["system.profile"].find(
        {"millis": {"$gte": 100}}, {"_id": 0, "ns": 1, "millis": 1}
    ).sort("millis", -1).limit(5).to_list(None)
    assert slow == [{"ns": "userdb.users", "millis": 4200}, {"ns": "userdb.users", "millis": 900}]
    assert fake.requests_for("find")[-1]["find"] == "system.profile"


# ------------------------------------------------------------------------------ errors and faults


async def test_unknown_command(client: Client) -> None:
    with pytest.raises(OperationFailure) as info:
        await client.admin.command("frobnicate")
    assert info.value.code == 59
    assert info.value.details is not None
    assert info.value.details["codeName"] == "CommandNotFound"
    assert "no such command: 'frobnicate'" in str(info.value)


async def test_fail_fault(fake: FakeMongoServer, client: Client) -> None:
    fake.fail("serverStatus", code=13, errmsg="not authorized on admin", times=1)
    with pytest.raises(OperationFailure) as info:
        await client.admin.command("serverStatus")
    assert info.value.code == 13
    assert info.value.details is not None and info.value.details["codeName"] == "Unauthorized"
    assert (await client.admin.command("serverStatus"))["ok"] == 1.0

    fake.fail("*", code=13, errmsg="command requires authentication")
    with pytest.raises(OperationFailure) as everything:
        await client.admin.command("buildInfo")
    assert everything.value.code == 13
    with pytest.raises(OperationFailure):
        await client.medic.incidents.find_one({})
    fake.clear_faults()
    assert await client.admin.command("ping") == {"ok": 1.0}


async def test_delay_fault(fake: FakeMongoServer, client: Client) -> None:
    fake.delay("ping", 0.3, times=1)
    started = time.monotonic()
    await client.admin.command("ping")
    assert time.monotonic() - started >= 0.3

    fake.delay("find", 5)
    started = time.monotonic()
    with pytest.raises(ExecutionTimeout):
        await client.medic.incidents.find_one({}, max_time_ms=200)
    assert time.monotonic() - started < 2


async def test_drop_connection_fault(fake: FakeMongoServer, client: Client) -> None:
    await client.admin.command("ping")
    fake.drop_connection("buildInfo", times=1)
    with pytest.raises(AutoReconnect):
        await client.admin.command("buildInfo")
    assert (await client.admin.command("buildInfo"))["ok"] == 1.0


async def test_dead_port_fails_fast() -> None:
    mongo: Client = AsyncMongoClient(dead_url(), serverSelectionTimeoutMS=300,
                                     connectTimeoutMS=300)
    started = time.monotonic()
    try:
        with pytest.raises(ServerSelectionTimeoutError):
            await mongo.admin.command("ping")
    finally:
        await mongo.close()
    assert time.monotonic() - started < 3


async def test_restart_keeps_data_and_port(fake: FakeMongoServer) -> None:
    mongo: Client = AsyncMongoClient(fake.url, serverSelectionTimeoutMS=300)
    try:
        await mongo.medic.incidents.insert_one({"a": 1})
        port = fake.port
        await fake.stop()
        with pytest.raises((AutoReconnect, ServerSelectionTimeoutError)):
            await mongo.medic.incidents.find_one({})
        await fake.start()
        assert fake.port == port
        mongo2: Client = AsyncMongoClient(fake.url, serverSelectionTimeoutMS=2000)
        try:
            assert await mongo2.medic.incidents.count_documents({}) == 1
        finally:
            await mongo2.close()
    finally:
        await mongo.close()


def test_sync_client_in_thread() -> None:
    with FakeMongoServer().in_thread() as fake:
        mongo: MongoClient[dict[str, object]] = MongoClient(fake.url, serverSelectionTimeoutMS=2000)
        try:
            mongo.medic.incidents.insert_one({"a": 1})
            assert mongo.medic.incidents.count_documents({"a": 1}) == 1
            fake.fail("ping", code=2, errmsg="bad")
            with pytest.raises(OperationFailure):
                mongo.admin.command("ping")
        finally:
            mongo.close()


# ------------------------------------------------------------------------------ raw wire protocol


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return data


def _op_msg(request_id: int, body: dict[str, object], flags: int = 0,
            sequence: tuple[str, list[dict[str, object]]] | None = None) -> bytes:
    payload = struct.pack("<I", flags) + b"\x00" + bson.encode(body)
    if sequence is not None:
        name, docs = sequence
        inner = name.encode() + b"\x00" + b"".join(bson.encode(d) for d in docs)
        payload += b"\x01" + struct.pack("<i", 4 + len(inner)) + inner
    return struct.pack("<iiii", 16 + len(payload), request_id, 0, 2013) + payload


def _read_reply(sock: socket.socket) -> tuple[int, int, bytes]:
    length, _req, response_to, op_code = struct.unpack("<iiii", _recv_exact(sock, 16))
    return op_code, response_to, _recv_exact(sock, length - 16)


async def test_raw_op_query_handshake_and_more_to_come(fake: FakeMongoServer) -> None:
    def exchange() -> tuple[dict[str, object], dict[str, object]]:
        with socket.create_connection(("127.0.0.1", fake.port), timeout=5) as sock:
            query = bson.encode({"isMaster": 1, "helloOk": True})
            body = struct.pack("<i", 0) + b"admin.$cmd\x00" + struct.pack("<ii", 0, -1) + query
            sock.sendall(struct.pack("<iiii", 16 + len(body), 7, 0, 2004) + body)
            op_code, response_to, payload = _read_reply(sock)
            assert (op_code, response_to) == (1, 7)
            _flags, _cursor, _start, returned = struct.unpack_from("<iqii", payload)
            assert returned == 1
            legacy = bson.decode(payload[20:])

            # moreToCome: an unacknowledged insert with a document sequence gets no reply ...
            sock.sendall(_op_msg(8, {"insert": "c", "$db": "raw", "writeConcern": {"w": 0}},
                                 flags=2, sequence=("documents", [{"x": 1}, {"x": 2}])))
            # ... so the next reply answers request 9
            sock.sendall(_op_msg(9, {"count": "c", "$db": "raw"}))
            op_code, response_to, payload = _read_reply(sock)
            assert (op_code, response_to) == (2013, 9)
            return legacy, bson.decode(payload[5:])

    legacy, count = await asyncio.to_thread(exchange)
    assert legacy["ismaster"] is True and legacy["helloOk"] is True
    assert legacy["maxWireVersion"] == 21
    assert count == {"n": 2, "ok": 1.0}
    assert [d["x"] for d in fake.docs("raw", "c")] == [1, 2]


# ------------------------------------------------------------------------------ matcher semantics


def test_matcher_semantics() -> None:
    doc = {"a": None, "tags": ["x", "y"], "items": [{"k": 1}, {"k": 5}], "n": 3, "s": "Hello"}
    assert matches(doc, {"missing": None})
    assert matches(doc, {"a": None})
    assert not matches(doc, {"a": {"$exists": False}})
    assert matches(doc, {"tags": "y"})
    assert matches(doc, {"tags": ["x", "y"]})
    assert matches(doc, {"items.k": {"$gt": 4}})
    assert matches(doc, {"items": {"$elemMatch": {"k": {"$gte": 5}}}})
    assert not matches(doc, {"tags": {"$ne": "x"}})
    assert matches(doc, {"n": {"$in": [1, 3.0]}})
    assert not matches(doc, {"n": {"$gt": "2"}})  # no cross-type comparison
    assert matches(doc, {"s": {"$regex": "^hel", "$options": "i"}})
    assert matches(doc, {"$and": [{"n": 3}, {"$or": [{"s": "nope"}, {"tags": {"$size": 2}}]}]})
    assert matches(doc, {"$nor": [{"n": 4}]})


def test_string_pins_never_drop_a_match() -> None:
    """The fake's cheap pre-check in front of ``matches`` (it keeps no indexes): a filter that
    pins fields to strings finds exactly what ``matches`` alone finds, arrays included."""
    docs: list[dict[str, Any]] = [
        {"_id": "a/1", "incident_id": "a", "status": "firing"},
        {"_id": "a/2", "incident_id": "a", "status": "resolved"},
        {"_id": "b/1", "incident_id": "b", "status": "firing"},
        {"_id": "c/1", "incident_id": ["a", "c"], "status": "firing"},  # an array holds "a"
        {"_id": 7, "incident_id": 7},  # not a string: never equal to one
        {"_id": "d/1"},  # the field is missing
    ]
    filters: list[dict[str, Any]] = [
        {"incident_id": "a"},
        {"incident_id": "a", "status": "firing"},
        {"_id": {"$in": ["a/2", "b/1", "zz"]}},
        {"incident_id": {"$in": ["c", "b"]}},
        {"incident_id": "7"},
        {"incident_id": "a", "status": {"$ne": "firing"}},
        {"incident_id.x": "a"},  # dotted: not pinned
        {"$or": [{"incident_id": "b"}, {"_id": 7}]},  # top-level operators: not pinned
    ]
    for flt in filters:
        assert filter_docs(docs, flt) == [d for d in docs if matches(d, flt)], flt
    assert [d["_id"] for d in filter_docs(docs, {"incident_id": "a"})] == ["a/1", "a/2", "c/1"]
    assert matching_positions(docs, {"_id": {"$in": ["b/1", "a/1"]}}) == [0, 2]



async def test_bulk_upserts_by_id(client: Client) -> None:
    """A bulk of upserts by ``_id`` (the fake looks them up once per command, not by scanning
    per statement): later statements see earlier ones, and ``_id`` stays unique."""
    coll = client.medic.bulk
    await coll.insert_many([{"_id": f"x{i}", "v": 0} for i in range(50)])
    result = await coll.bulk_write(
        [
            ReplaceOne({"_id": "a"}, {"v": 1}, upsert=True),
            ReplaceOne({"_id": "a"}, {"v": 2}, upsert=True),  # the one just inserted
            UpdateOne({"_id": "x7"}, {"$set": {"v": 7}}, upsert=True),
            UpdateOne({"_id": "b"}, {"$inc": {"v": 1}}, upsert=True),
        ],
        ordered=False,
    )
    assert result.upserted_count == 2 and result.matched_count == 2
    assert await coll.count_documents({}) == 52
    assert (await coll.find_one({"_id": "a"}) or {})["v"] == 2
    assert (await coll.find_one({"_id": "x7"}) or {})["v"] == 7
    assert (await coll.find_one({"_id": "b"}) or {})["v"] == 1
    with pytest.raises(DuplicateKeyError):
        await coll.insert_one({"_id": "a"})
