"""The embedded backend: inbox hand-off, dedup, dead letters, and the remediation ledger,
including what must survive a restart."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from medic.clients.sqlite import SqliteDB
from medic.coordination.sqlite import SqliteRemediationState
from medic.domain.actions import ActionLimit, ActionMark, BudgetExhausted
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


async def test_target_locks(tmp_path: Path) -> None:
    db = await open_db(tmp_path)
    state = SqliteRemediationState(db)
    assert await state.acquire_lock("t", "a", ttl=60)
    assert not await state.acquire_lock("t", "b", ttl=60)
    assert await state.acquire_lock("t", "a", ttl=60)  # re-entrant for its owner
    await state.release_lock("t", "b")  # not the owner: no effect
    assert not await state.acquire_lock("t", "b", ttl=60)
    await state.release_lock("t", "a")
    assert await state.acquire_lock("t", "b", ttl=0.05)
    await asyncio.sleep(0.1)
    assert await state.acquire_lock("t", "a", ttl=60)  # expired
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


async def test_budgets_are_checked_where_the_action_is_recorded(tmp_path: Path) -> None:
    db = await open_db(tmp_path)
    state = SqliteRemediationState(db)
    limits = (
        ActionLimit("budget", 1, timedelta(hours=1), per_target=True),
        ActionLimit("global_budget", 2, timedelta(hours=1), per_target=False),
    )

    async def begin(key: str, target: str) -> str:
        try:
            mark = ActionMark(key, target, "rollback", "inc-1", NOW, "started")
            return "begun" if await state.begin_action(mark, limits) else "duplicate"
        except BudgetExhausted as exc:
            return exc.limit.name

    outcomes = await asyncio.gather(*(begin(f"k{i}", f"deployment/playcode/svc-{i % 3}") for i in range(9)))
    assert outcomes.count("begun") == 2 and set(outcomes) == {"begun", "budget", "global_budget"}, outcomes
    assert await state.count_actions(NOW - timedelta(hours=1)) == 2
    assert await begin("k0", "deployment/playcode/svc-0") == "duplicate"  # already begun, not refused
    await db.close()
