"""The embedded inbox stores concurrent deliveries as one group (medic.inbox.sqlite): one write of
a few statements for all of them, with the answers each delivery would get on its own, in order.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from medic.clients.sqlite import SqliteDB
from medic.domain.errors import StoreError
from medic.inbox.sqlite import LARGEST_INSERT, SqliteInbox, _chunks

NOW = datetime(2026, 12, 1, tzinfo=UTC)


@pytest.fixture
async def inbox(tmp_path: Path) -> AsyncIterator[SqliteInbox]:
    db = SqliteDB(tmp_path / "inbox.sqlite3")
    await db.open()
    try:
        yield SqliteInbox(db, dedup_ttl=3600)
    finally:
        await db.close()


async def test_a_group_is_answered_as_if_its_deliveries_came_one_after_the_other(inbox: SqliteInbox) -> None:
    await inbox.accept({"n": 0}, ["old"], NOW)
    # gathered: they arrive while nothing is being written, so they are stored together
    results = await asyncio.gather(
        inbox.accept({"n": 1}, ["a", "b", "a"], NOW),
        inbox.accept({"n": 2}, ["b", "c"], NOW),  # b: taken by the first of the group
        inbox.accept({"n": 3}, ["old", "a"], NOW),  # nothing new: no item
        inbox.accept('{"n":4}', ["d"], NOW),  # the body as received
    )
    assert [(r.new_episodes, r.duplicates) for r in results] == [
        (["a", "b"], 1),
        (["c"], 1),
        ([], 2),
        (["d"], 0),
    ]
    assert results[2].item_id is None
    ids = [int(r.item_id) for r in results if r.item_id is not None]
    assert ids == sorted(ids) and len(set(ids)) == 3
    items = await inbox.claim("w", 10)
    assert [(i.payload, i.new_episodes) for i in items] == [
        ({"n": 0}, ["old"]),
        ({"n": 1}, ["a", "b"]),
        ({"n": 2}, ["c"]),
        ({"n": 4}, ["d"]),
    ]
    assert [int(i.id) for i in items[1:]] == ids


async def test_ids_are_never_reused_after_the_inbox_emptied(inbox: SqliteInbox) -> None:
    first = await inbox.accept({"n": 1}, ["e1"], NOW)
    await inbox.ack_many([i.id for i in await inbox.claim("w", 10)])
    assert await inbox.depth() == 0
    later = await asyncio.gather(*(inbox.accept({"n": n}, [f"e{n}"], NOW) for n in range(2, 6)))
    assert first.item_id is not None
    assert all(int(r.item_id or 0) > int(first.item_id) for r in later)


async def test_large_groups_claim_keys_in_bounded_statements(inbox: SqliteInbox) -> None:
    assert [len(c) for c in _chunks(list(range(LARGEST_INSERT * 2 + 5)), LARGEST_INSERT)] == [
        LARGEST_INSERT,
        LARGEST_INSERT,
        4,
        1,
    ]
    await inbox.accept({"seed": True}, [f"k{n}" for n in range(0, 300, 3)], NOW)  # every third key
    results = await asyncio.gather(
        *(inbox.accept({"n": n}, [f"k{n}", f"k{n + 1}"], NOW) for n in range(0, 300, 2))
    )
    new = [key for r in results for key in r.new_episodes]
    assert new == [f"k{n}" for n in range(300) if n % 3]  # k0..k299 once each, the seeded ones not new
    assert sum(r.duplicates for r in results) == 300 - len(new)


async def test_an_expired_key_is_new_again_in_a_group(tmp_path: Path) -> None:
    db = SqliteDB(tmp_path / "inbox.sqlite3")
    await db.open()
    try:
        inbox = SqliteInbox(db, dedup_ttl=0.05)
        await inbox.accept({"n": 1}, ["e"], NOW)
        await asyncio.sleep(0.1)
        again, dup = await asyncio.gather(
            inbox.accept({"n": 2}, ["e"], NOW), inbox.accept({"n": 3}, ["e"], NOW)
        )
        assert (again.new_episodes, dup.new_episodes, dup.duplicates) == (["e"], [], 1)
    finally:
        await db.close()


async def test_a_delivery_the_store_cannot_write_fails_alone(inbox: SqliteInbox) -> None:
    """Intake refuses such text (400); should one get here, its group's siblings are still stored."""
    results = await asyncio.gather(
        inbox.accept({"n": 1}, ["a"], NOW),
        inbox.accept('{"bad": "\ud800"}', ["b"], NOW),  # a lone surrogate: not UTF-8, SQLite refuses it
        inbox.accept({"n": 3}, ["c"], NOW),
        return_exceptions=True,
    )
    assert isinstance(results[1], StoreError)
    assert [r.new_episodes for r in (results[0], results[2]) if not isinstance(r, BaseException)] == [
        ["a"],
        ["c"],
    ]
    assert [i.payload for i in await inbox.claim("w", 10)] == [{"n": 1}, {"n": 3}]
    again = await inbox.accept({"n": 4}, ["b"], NOW)  # the failed delivery's key was not kept
    assert again.new_episodes == ["b"]


def _statements(db: SqliteDB) -> list[str]:
    """The SQL statements the store's connection runs from now on (SQLite's trace callback)."""
    seen: list[str] = []
    db.conn.set_trace_callback(seen.append)
    return seen


async def test_a_group_is_written_in_a_few_statements_whatever_its_size(inbox: SqliteInbox) -> None:
    """Each statement step lets go of the GIL and waits to take it back from the busy event loop:
    a group of 100 deliveries is a handful of statements, not one (or one result row) each."""
    await inbox.accept({"seed": True}, ["k0", "k1"], NOW)
    seen = _statements(inbox.db)
    results = await asyncio.gather(*(inbox.accept({"n": n}, [f"k{n}"], NOW) for n in range(100)))
    assert [r.duplicates for r in results[:3]] == [1, 1, 0]
    # BEGIN, live keys (64 + 32 + 4), set keys (64 + 32 + 2), inserts (64 + 32 + 2), COMMIT
    assert len(seen) <= 11, seen
    assert sum("INTO inbox" in sql for sql in seen) == 3

    # each answer's id names the row that holds that delivery (ids follow the order of the group)
    items = await inbox.claim("w", 200)
    assert {i.id: i.payload for i in items if "n" in i.payload} == {
        r.item_id: {"n": n} for n, r in enumerate(results) if r.item_id is not None
    }
    del seen[:]
    await inbox.ack_many([i.id for i in items])
    assert len(seen) <= 3 and await inbox.depth() == 0, seen


async def test_a_claim_is_three_statements_of_one_row(inbox: SqliteInbox) -> None:
    await asyncio.gather(*(inbox.accept({"n": n}, [f"e{n}"], NOW) for n in range(40)))
    seen = _statements(inbox.db)
    first, second = await inbox.claim("w", 32), await inbox.claim("w", 32)
    assert [i.payload["n"] for i in first + second] == list(range(40))  # oldest first, each once
    assert [i.attempts for i in first] == [1] * 32
    assert sum(sql.lstrip().upper().startswith(("SELECT", "UPDATE")) for sql in seen) == 6, seen
    assert await inbox.claim("w", 32) == []  # all leased


@pytest.mark.parametrize(
    "key",
    [
        'fp"quoted"|2026-12-01T00:00:00+00:00|firing',
        "back\\slash|t|firing",
        "new\nline|t|firing",
        "caf\u00e9 \U0001f525|t|firing",
        "tab\tand \u2028|t|resolved",
        "nul\x00in a fingerprint|t|firing",  # SQLite's JSON reader would cut it at the NUL
    ],
)
async def test_any_episode_key_round_trips_through_sqlite(inbox: SqliteInbox, key: str) -> None:
    first = await inbox.accept({"n": 1}, [key], NOW)
    again, other = await asyncio.gather(
        inbox.accept({"n": 2}, [key], NOW), inbox.accept({"n": 3}, ["x"], NOW)
    )
    assert (first.new_episodes, again.new_episodes, again.duplicates, other.new_episodes) == (
        [key],
        [],
        1,
        ["x"],
    )
    assert [i.new_episodes for i in await inbox.claim("w", 10)] == [[key], ["x"]]
    if "\x00" in key:  # a key that differs after the NUL is another key, not a duplicate
        other_nul = await inbox.accept({"n": 4}, [key.replace("in a", "in another")], NOW)
        assert other_nul.new_episodes == [key.replace("in a", "in another")]


def test_a_sqlite_without_json_functions_is_a_configuration_error(tmp_path: Path) -> None:
    from medic.clients.sqlite import _require_json
    from medic.domain.errors import ConfigError

    class NoJson:  # what a SQLite built with SQLITE_OMIT_JSON answers
        closed = False

        def execute(self, sql: str) -> None:
            raise sqlite3.OperationalError("no such table: json_each")

        def close(self) -> None:
            self.closed = True

    conn = NoJson()
    with pytest.raises(ConfigError, match="no JSON functions") as caught:
        _require_json(conn, tmp_path / "inbox.sqlite3")  # type: ignore[arg-type]
    assert "inbox.sqlite3" in str(caught.value) and conn.closed
