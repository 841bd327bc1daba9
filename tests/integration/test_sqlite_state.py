"""The embedded backend: inbox hand-off, dedup, and what must survive a restart (the inbox's
leases, the ledger, the kill switch). What every coordination backend does is in
tests/contract/test_coordination_contract.py."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from medic.clients.sqlite import SqliteDB
from medic.coordination.sqlite import SqliteRemediationState
from medic.domain.actions import ActionMark
from medic.domain.errors import ConfigError
from medic.inbox.sqlite import SqliteInbox

NOW = datetime.now(UTC)


async def open_db(path: Path) -> SqliteDB:
    db = SqliteDB(path / "medic.sqlite3")
    await db.open()
    return db


async def test_expired_dedup_keys_accept_again(tmp_path: Path) -> None:
    db = await open_db(tmp_path)
    inbox = SqliteInbox(db, dedup_ttl=0.05)
    await inbox.accept({}, ["a", "b"], NOW)
    await asyncio.sleep(0.1)
    inbox.dedup_ttl = 3600
    assert (await inbox.accept({}, ["a"], NOW)).new_episodes == ["a"]  # expired: a new episode again
    await inbox.accept({}, ["c"], NOW)
    assert await inbox.purge_expired() == 1  # "b" only: "a" was renewed, "c" is fresh
    await db.close()


async def test_restart_recovers_leases_and_keeps_the_ledger(tmp_path: Path) -> None:
    db = await open_db(tmp_path)
    inbox = SqliteInbox(db, dedup_ttl=3600, lease_seconds=3600)
    state = SqliteRemediationState(db)
    await inbox.accept({"x": 1}, ["a"], NOW)
    await inbox.claim("dead-worker", 1)
    await state.set_kill_switch(True, "alice", "freeze")
    mark = ActionMark(
        "k1", "deployment/playcode/app", "rollback", "inc-1", NOW - timedelta(minutes=5), "started"
    )
    assert await state.begin_action(mark)
    await db.close()

    db = await open_db(tmp_path)
    inbox = SqliteInbox(db, dedup_ttl=3600, lease_seconds=3600)
    state = SqliteRemediationState(db)
    assert await inbox.recover() == 1
    assert len(await inbox.claim("new-worker", 1)) == 1
    assert (await inbox.accept({}, ["a"], NOW)).item_id is None  # dedup survived
    ks = await state.kill_switch()
    assert ks.enabled and ks.by == "alice"
    assert not await state.begin_action(mark)  # the idempotency key survived
    await state.finish_action("k1", "succeeded", {"to_hash": "abc"})
    last = await state.last_action("deployment/playcode/app")
    assert last is not None and last.status == "succeeded" and last.detail == {"to_hash": "abc"}
    assert await state.count_actions(NOW - timedelta(hours=1), "deployment/playcode/app") == 1
    assert await state.count_actions(NOW - timedelta(minutes=1)) == 0
    await db.close()


async def test_one_process_per_data_dir(tmp_path: Path) -> None:
    a = SqliteDB(tmp_path / "medic.sqlite3")
    a.lock_exclusive()
    b = SqliteDB(tmp_path / "medic.sqlite3")
    with pytest.raises(ConfigError, match="another Medic process"):
        b.lock_exclusive()
    await a.open()
    await a.close()
    b.lock_exclusive()  # released on close
    await b.open()
    await b.close()


async def test_a_delivery_is_stored_as_the_text_received(tmp_path: Path) -> None:
    """The intake hands over the body it validated: stored as is, not serialized again."""
    db = await open_db(tmp_path)
    inbox = SqliteInbox(db, dedup_ttl=3600)
    text = '{"version": "4",  "alerts": [], "extra": "kept as sent"}'
    item_id = (await inbox.accept(text, ["e1"], NOW)).item_id
    stored = await db.read(
        lambda c: c.execute("SELECT payload FROM inbox WHERE id = ?", (item_id,)).fetchone()
    )
    assert stored == (text,)
    [item] = await inbox.claim("w", 1)
    assert item.payload == {"version": "4", "alerts": [], "extra": "kept as sent"}
    await inbox.accept({"b": 1}, ["e2"], NOW)  # a mapping is stored as compact JSON
    last = await db.read(lambda c: c.execute("SELECT payload FROM inbox ORDER BY id DESC").fetchone())
    assert last == ('{"b":1}',)
    await db.close()
