"""Retention of Medic's own data in the embedded backend (issue 11.5): the purge deletes what
the retention settings no longer keep — and nothing else — gives the space back to the file
system, runs by itself, and the data dir and its files are private."""

from __future__ import annotations

import asyncio
import sqlite3
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

from medic.app.backend_select import EmbeddedBackend, ProductionBackend, open_backend
from medic.app.retention import RetentionPolicy
from medic.app.settings import load_settings
from medic.clients.sqlite import SqliteDB
from medic.domain.actions import ActionMark
from medic.domain.incident import Incident, IncidentAlert, new_incident_id
from medic.inbox.spool import LocalSpool
from tests.fakes.mongo_server import FakeMongoServer
from tests.servers.redis_server import RedisServer

NOW = datetime.now(UTC)
DAY = timedelta(days=1)


def settings_for(tmp_path: Path, **kw: object):  # type: ignore[no-untyped-def]
    return load_settings(data_dir=tmp_path / "data", **kw)


async def embedded(tmp_path: Path, **kw: object) -> EmbeddedBackend:
    backend = await open_backend(settings_for(tmp_path, **kw))
    assert isinstance(backend, EmbeddedBackend)
    return backend


def alert(identity: str, status: str = "firing") -> IncidentAlert:
    return IncidentAlert(
        identity=identity,
        status=status,
        labels={"alertname": "KubePodCrashLooping", "pod": identity, "blob": "x" * 2000},
        startsAt=NOW - 2 * DAY,
    )


async def make_incident(
    backend: EmbeddedBackend, key: str, *, status: str, changed: datetime, alerts: int = 5
) -> Incident:
    incident = Incident(id=new_incident_id(changed), key=key, created_at=changed, updated_at=changed)
    incident.status = "resolved" if status == "resolved" else "open"
    await backend.store.save(incident)
    await backend.store.merge_alerts(incident.id, [alert(f"{key}-{i}", "resolved") for i in range(alerts)])
    await backend.marks("notify:").claim(f"{incident.id}|oncall|opened", "ev-1")
    await backend.marks("approval:").claim(f"{incident.id}|rollback|{key}", "{}")
    return incident


async def kv_keys(db: SqliteDB) -> set[str]:
    rows = await db.read(lambda c: c.execute("SELECT key FROM kv").fetchall())
    return {r[0] for r in rows}


async def test_the_purge_deletes_what_retention_no_longer_keeps_and_nothing_else(tmp_path: Path) -> None:
    backend = await embedded(tmp_path)
    old = await make_incident(backend, "r|old", status="resolved", changed=NOW - 31 * DAY)
    recent = await make_incident(backend, "r|recent", status="resolved", changed=NOW - 29 * DAY)
    still_open = await make_incident(backend, "r|open", status="open", changed=NOW - 400 * DAY)
    # a neighbour whose id extends the old one's must keep its marks
    await backend.marks("notify:").claim(f"{old.id}x|oncall|opened", "ev-2")
    await backend.marks("approval:").claim("secret", "s")  # not an incident's mark

    def audit_at(at: datetime, incident_id: str) -> None:
        backend.db.conn.execute(
            "INSERT INTO audit(at, incident_id, kind, record) VALUES (?, ?, 'action', '{}')",
            (at.isoformat(), incident_id),
        )

    await backend.db.write(lambda c: audit_at(NOW - 91 * DAY, "old-audit"))
    await backend.store.append_audit("new-audit", "action", {"status": "refused"})
    # dead letters: one dead-lettered 15 days ago, one yesterday
    for days, episode in ((15, "dead-old"), (1, "dead-new")):
        item = (await backend.inbox.accept({"a": episode}, [episode], NOW)).item_id
        assert item is not None
        await backend.inbox.db.write(  # the inbox's file (its own, or the one file)
            lambda c, i=item, d=days: c.execute(
                "UPDATE inbox SET dead = 1, dead_at = ? WHERE id = ?", ((NOW - d * DAY).timestamp(), int(i))
            )
        )
    pending = (await backend.inbox.accept({"a": "live"}, ["live"], NOW)).item_id
    # the ledger: one mark past its 30 days, one inside every window
    for key, at in (("k-old", NOW - 31 * DAY), ("k-new", NOW - DAY)):
        await backend.state.begin_action(
            ActionMark(key, "deployment/playcode/app", "rollback", "i", at, "succeeded")
        )

    counts = await backend.purge(backend.policy.cutoffs(NOW))

    assert counts["incidents"] == 1 and counts["audit"] == 1 and counts["dead_letters"] == 1
    assert counts["ledger"] == 1
    assert await backend.store.get(old.id) is None
    assert (await backend.store.alerts(old.id))[1] == 0  # its alerts went with it
    assert await backend.store.get(recent.id) is not None
    assert (await backend.store.alerts(recent.id))[1] == 5
    assert await backend.store.get(still_open.id) is not None  # open incidents are never purged
    keys = await kv_keys(backend.db)
    assert not any(k.startswith((f"notify:{old.id}|", f"approval:{old.id}|")) for k in keys)
    assert {f"notify:{recent.id}|oncall|opened", f"notify:{old.id}x|oncall|opened", "approval:secret"} <= keys
    assert [e["incident_id"] for e in await backend.store.audit()] == ["new-audit"]
    letters, total = await backend.inbox.list_dead_letters()
    assert total == 1 and letters[0].payload == {"a": "dead-new"}
    assert await backend.inbox.depth() == 1 and pending is not None  # live deliveries untouched
    assert (await backend.state.last_action("deployment/playcode/app")).idempotency_key == "k-new"  # type: ignore[union-attr]
    await backend.close()


async def test_expired_dedup_keys_are_purged_by_their_own_ttl(tmp_path: Path) -> None:
    backend = await embedded(tmp_path, dedup_ttl_seconds=3600)
    now = datetime.now(UTC)  # the inbox stamps expiries with the real clock
    await backend.inbox.accept({}, [f"ep-{i}" for i in range(100)], now)
    assert (await backend.purge(backend.policy.cutoffs(now)))["dedup_keys"] == 0  # not expired yet
    counts = await backend.purge(backend.policy.cutoffs(now + timedelta(hours=1, seconds=5)))
    assert counts["dedup_keys"] == 100
    rows = await backend.inbox_db.read(lambda c: c.execute("SELECT COUNT(*) FROM dedup").fetchone())
    assert rows == (0,)
    await backend.close()


async def test_zero_retention_keeps_everything(tmp_path: Path) -> None:
    backend = await embedded(
        tmp_path, retention_incidents="0s", retention_audit=0, retention_dead_letters="0s"
    )
    old = await make_incident(backend, "r|old", status="resolved", changed=NOW - 3000 * DAY)
    counts = await backend.purge(backend.policy.cutoffs(NOW))
    assert "incidents" not in counts and "audit" not in counts and "dead_letters" not in counts
    assert await backend.store.get(old.id) is not None
    await backend.close()


async def test_the_purge_gives_the_space_back(tmp_path: Path) -> None:
    backend = await embedded(tmp_path)
    for n in range(20):
        await make_incident(backend, f"r|{n}", status="resolved", changed=NOW - 40 * DAY, alerts=200)
    await backend.db.reclaim()
    db_file = tmp_path / "data" / "medic.sqlite3"
    await backend.db.read(lambda c: c.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall())
    full = db_file.stat().st_size
    counts = await backend.purge(backend.policy.cutoffs(NOW))
    assert counts["incidents"] == 20 and counts["bytes_reclaimed"] > 0
    assert db_file.stat().st_size < full / 4, (full, db_file.stat().st_size)
    await backend.close()


async def test_the_purge_runs_by_itself_at_start_and_every_interval(tmp_path: Path) -> None:
    backend = await embedded(tmp_path, purge_interval="100ms")
    first = await make_incident(backend, "r|first", status="resolved", changed=NOW - 40 * DAY)
    backend.start()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while await backend.store.get(first.id) is not None:
        assert loop.time() < deadline, "the purge did not run at start"
        await asyncio.sleep(0.05)
    later = await make_incident(backend, "r|later", status="resolved", changed=NOW - 40 * DAY)
    while await backend.store.get(later.id) is not None:
        assert loop.time() < deadline, "the purge did not run again"
        await asyncio.sleep(0.05)
    await backend.close()


def test_the_policy_is_pure() -> None:
    policy = RetentionPolicy.from_settings(load_settings(retention_incidents="2d", retention_audit="0s"))
    cut = policy.cutoffs(NOW)
    assert cut.incidents == NOW - 2 * DAY and cut.audit is None
    assert cut.dead_letters == NOW - 14 * DAY and cut.ledger == NOW - 30 * DAY


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_the_data_dir_is_private_and_so_are_its_files(tmp_path: Path) -> None:
    backend = await embedded(tmp_path)
    await backend.inbox.accept({"a": 1}, ["e"], NOW)  # the WAL and shared memory exist now
    data = tmp_path / "data"
    assert mode(data) == 0o700
    files = {p.name: mode(p) for p in data.iterdir()}
    assert {"medic.sqlite3", "medic.sqlite3-wal", "medic.sqlite3-shm", "medic.lock"} <= set(files)
    assert set(files.values()) == {0o600}, files
    await backend.close()
    spool = LocalSpool(tmp_path / "spooldir" / "spool.sqlite3", dedup_ttl=60, lease_seconds=60)
    await spool.open()
    await spool.inbox.accept({"a": 1}, ["e"], NOW)
    assert mode(tmp_path / "spooldir") == 0o700
    assert {mode(p) for p in (tmp_path / "spooldir").iterdir()} == {0o600}
    await spool.close()


async def test_files_an_earlier_medic_left_open_are_made_private(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    old = sqlite3.connect(data / "medic.sqlite3")
    old.execute("CREATE TABLE t(x)")
    old.commit()
    old.close()
    (data / "medic.sqlite3").chmod(0o644)
    backend = await embedded(tmp_path)
    assert mode(data / "medic.sqlite3") == 0o600
    # and the older file was converted to incremental auto_vacuum (space can be given back)
    assert await backend.db.read(lambda c: c.execute("PRAGMA auto_vacuum").fetchone()) == (2,)
    await backend.close()


async def test_production_purge_trims_old_dead_letters_in_redis_and_the_spool(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    async with FakeMongoServer() as mongo:
        backend = await open_backend(settings_for(tmp_path, redis_url=redis_server.url, mongo_url=mongo.url))
        assert isinstance(backend, ProductionBackend)
        dead = backend.redis_inbox.keys.dead
        old_ms = int((NOW - 15 * DAY).timestamp() * 1000)
        await backend.redis_inbox.client.xadd(dead, {"id": "1-0", "error": "old"}, id=f"{old_ms}-0")
        await backend.redis_inbox.client.xadd(dead, {"id": "2-0", "error": "new"})
        spooled = (await backend.spool.inbox.accept({"a": 1}, ["e"], NOW)).item_id
        assert spooled is not None
        await backend.spool.db.write(
            lambda c: c.execute(
                "UPDATE inbox SET dead = 1, dead_at = ? WHERE id = ?",
                ((NOW - 15 * DAY).timestamp(), int(spooled)),
            )
        )
        counts = await backend.purge(RetentionPolicy.from_settings(backend.settings).cutoffs(NOW))
        assert counts["dead_letters"] == 2
        left = await backend.redis_inbox.client.xrange(dead)
        assert [fields["error"] for _, fields in left] == ["new"]
        assert await backend.spool.inbox.dead_letters() == 0
        await backend.close()


async def test_production_purge_forgets_the_marks_of_incidents_mongodb_deleted(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    async with FakeMongoServer() as mongo:
        backend = await open_backend(settings_for(tmp_path, redis_url=redis_server.url, mongo_url=mongo.url))
        assert isinstance(backend, ProductionBackend)
        stored = Incident(id=new_incident_id(NOW - 60 * DAY), key="r|stored")
        await backend.mongo.setup()
        await backend.mongo.save(stored)
        deleted = new_incident_id(NOW - 60 * DAY)  # its TTL index removed it
        recent = new_incident_id(NOW - DAY)  # not stored yet (spooled, or just opened)
        for incident_id in (stored.id, deleted, recent):
            await backend.marks("notify:").claim(f"{incident_id}|oncall|opened", "ev")
            await backend.marks("approval:").claim(f"{incident_id}|rollback|t", "{}")
        await backend.marks("approval:").claim("secret", "s")
        counts = await backend.purge(RetentionPolicy.from_settings(backend.settings).cutoffs(NOW))
        assert counts["incident_marks"] == 2
        left = {str(k) async for k in backend.redis_inbox.client.scan_iter(match="medic:mark:*")}
        assert not any(deleted in k for k in left)
        assert sum(stored.id in k for k in left) == 2 and sum(recent in k for k in left) == 2
        assert "medic:mark:approval:secret" in left
        await backend.close()
