"""Embedded (SQLite) implementation of the state interfaces."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from medic.clients.sqlite import SqliteDB, storage_failure
from medic.domain.errors import BackendUnavailable
from medic.domain.redact import redact_text
from medic.inbox.base import AcceptResult, DeadLetter, InboxItem, Payload, kept_delivery, payload_json

T = TypeVar("T")

MAX_ATTEMPTS = 5
RETRY_DELAY = 5.0  # a failed item is handed out again after this many seconds
# Few statements per group, and none that returns a row per item: each step of a statement lets
# go of the GIL and takes it back, which waits for the event loop's thread to let go of it (up to
# the switch interval when the loop is busy). A statement or a result row per delivery made a
# group's write wait longer than its SQL took (bench/bench_inbox_group.py; docs/benchmarks.md).
# The live episode keys among some keys (a duplicate), as one JSON array; the others are (re)set.
# Keys are bound parameters (never JSON going in: SQLite's JSON reader cuts a text at a NUL, and a
# fingerprint may hold one), up to LARGEST_KEYS per statement.
_LIVE_KEYS = "SELECT json_group_array(key) FROM dedup WHERE expires_at > ? AND key IN ({keys})"
_SET_KEYS = (
    "INSERT INTO dedup(key, expires_at) VALUES {rows} "
    "ON CONFLICT(key) DO UPDATE SET expires_at = excluded.expires_at"
)
LARGEST_KEYS = 128
_INSERT_ITEMS = "INSERT INTO inbox(payload, new_episodes, received_at) VALUES {rows}"
LARGEST_INSERT = 64  # rows per statement: sizes are powers of two, so few statements are cached
_CLAIMABLE = (
    "SELECT json_group_array(id) FROM (SELECT id FROM inbox WHERE dead = 0 AND "
    "(lease_until IS NULL OR lease_until < ?) ORDER BY id LIMIT ?)"
)
_LEASE = (
    "UPDATE inbox SET claimed_by = ?, lease_until = ?, attempts = attempts + 1 "
    "WHERE id IN (SELECT value FROM json_each(?))"
)
_CLAIMED = (
    "SELECT json_group_array(json_array(id, payload, new_episodes, received_at, attempts)) "
    "FROM inbox WHERE id IN (SELECT value FROM json_each(?))"
)
_ACK = "DELETE FROM inbox WHERE id IN (SELECT value FROM json_each(?))"


@dataclass
class _Arrival:
    """A delivery waiting for the next group write: its text, its episode keys (each once, in
    order), how many it named, when it came, and the future its ``accept`` awaits."""

    body: str
    episodes: list[str]
    named: int
    received_at: str
    future: asyncio.Future[AcceptResult]


def _chunks(items: list[T], largest: int) -> Iterator[list[T]]:
    """Pure: ``items`` in order, in chunks whose sizes are powers of two of at most ``largest``
    (so that few statement texts exist: SQLite's statement cache keeps them prepared)."""
    start = 0
    while start < len(items):
        size = min(largest, 1 << ((len(items) - start).bit_length() - 1))
        yield items[start : start + size]
        start += size


def _claim_new(conn: sqlite3.Connection, keys: list[str], now: float, expires: float) -> set[str]:
    """Record ``keys`` (each once) until ``expires``; the ones that were new, i.e. not live
    (bound parameters, never text in SQL)."""
    taken: set[str] = set()
    for chunk in _chunks(keys, LARGEST_KEYS):
        (live,) = conn.execute(_LIVE_KEYS.format(keys=",".join("?" * len(chunk))), (now, *chunk)).fetchone()
        taken.update(json.loads(live))
    new = [key for key in keys if key not in taken]
    for chunk in _chunks(new, LARGEST_KEYS):
        rows = ",".join(["(?, ?)"] * len(chunk))
        conn.execute(_SET_KEYS.format(rows=rows), [value for key in chunk for value in (key, expires)])
    return set(new)


def _insert_items(conn: sqlite3.Connection, rows: list[tuple[str, str, str]]) -> list[int]:
    """Insert inbox rows (payload, episodes, received_at) in a few statements; their ids, in the
    order given. The rows of one statement get consecutive ids: AUTOINCREMENT gives each new row
    one more than the largest id so far, the statement inserts them in order, and the write
    transaction (BEGIN IMMEDIATE) lets no other writer in between."""
    ids: list[int] = []
    for chunk in _chunks(rows, LARGEST_INSERT):
        sql = _INSERT_ITEMS.format(rows=",".join(["(?, ?, ?)"] * len(chunk)))
        last = conn.execute(sql, [value for row in chunk for value in row]).lastrowid
        if last is None:  # an INSERT of rows always sets it; keeps the type honest
            raise sqlite3.DatabaseError("the inbox insert reported no row id")
        ids.extend(range(last - len(chunk) + 1, last + 1))
    return ids


def _accept_group(
    conn: sqlite3.Connection, group: list[_Arrival], now: float, expires: float
) -> list[AcceptResult]:
    """Store a group of deliveries (one transaction, run by the store's thread): all their
    episode keys looked up and set in a statement each (per 128 keys), then one inbox row per
    delivery that has a new one (a statement per 64). In order, as if one after the other: a key
    is new for the first delivery of the group that names it, a duplicate for the later ones."""
    unclaimed = _claim_new(conn, list(dict.fromkeys(k for a in group for k in a.episodes)), now, expires)
    news: list[list[str]] = []
    rows: list[tuple[str, str, str]] = []
    for arrival in group:
        new = [k for k in arrival.episodes if k in unclaimed]
        unclaimed.difference_update(new)
        news.append(new)
        if new:
            rows.append((arrival.body, json.dumps(new), arrival.received_at))
    ids = iter(_insert_items(conn, rows))
    return [
        AcceptResult(
            item_id=str(next(ids)) if new else None, new_episodes=new, duplicates=arrival.named - len(new)
        )
        for arrival, new in zip(group, news, strict=True)
    ]


def _claim(
    conn: sqlite3.Connection, consumer: str, limit: int, now: float, lease_until: float
) -> list[tuple[int, str, str, str, int]]:
    """Lease up to ``limit`` claimable rows (oldest first) in three statements of one result
    row each; the rows as stored, by id."""
    (ids,) = conn.execute(_CLAIMABLE, (now, limit)).fetchone()
    if ids == "[]":
        return []
    conn.execute(_LEASE, (consumer, lease_until, ids))
    (rows,) = conn.execute(_CLAIMED, (ids,)).fetchone()
    return sorted((int(r[0]), r[1], r[2], r[3], int(r[4])) for r in json.loads(rows))


def _row_id(item_id: str) -> int | None:
    """An inbox row id from an id given by a user (API, CLI): None if it cannot be one."""
    return int(item_id) if item_id.isascii() and item_id.isdigit() and len(item_id) < 19 else None


def _dead_letter(row: tuple[Any, ...]) -> DeadLetter:
    return DeadLetter(
        id=str(row[0]),
        payload=json.loads(row[1]),
        episodes=json.loads(row[2]),
        received_at=datetime.fromisoformat(row[3]),
        dead_at=datetime.fromtimestamp(row[4], UTC) if row[4] is not None else None,
        attempts=int(row[5]),
        error=row[6] or "",
    )


class SqliteInbox:
    """Inbox rows are deleted on ack; a claimed row whose lease ran out is claimed again."""

    def __init__(self, db: SqliteDB, *, dedup_ttl: float, lease_seconds: float = 300.0) -> None:
        self.db = db
        self.dedup_ttl = dedup_ttl
        self.lease_seconds = lease_seconds
        self._arrivals: list[_Arrival] = []  # deliveries waiting for the next group write
        self._storing: asyncio.Task[None] | None = None

    async def accept(self, payload: Payload, episodes: list[str], received_at: datetime) -> AcceptResult:
        """Stored together with the deliveries that arrive while the previous group is being
        committed (one write of a few statements for all of them, see :func:`_accept_group`);
        answered once the commit that holds it has returned."""
        future: asyncio.Future[AcceptResult] = asyncio.get_running_loop().create_future()
        unique = list(dict.fromkeys(episodes))
        self._arrivals.append(
            _Arrival(payload_json(payload), unique, len(episodes), received_at.isoformat(), future)
        )
        if self._storing is None or self._storing.done():
            self._storing = asyncio.create_task(self._store_arrivals())
        return await future

    async def _store_arrivals(self) -> None:
        """Write the waiting deliveries as one group, again until none is waiting."""
        while self._arrivals:
            group, self._arrivals = self._arrivals, []
            try:
                outcomes = await self._store_group(group)
            except BaseException:  # cancelled (the loop is closing): nobody waits for ever
                for arrival in group:
                    arrival.future.cancel()
                raise
            for arrival, outcome in zip(group, outcomes, strict=True):
                if arrival.future.done():  # its request went away; it is stored all the same
                    continue
                if isinstance(outcome, BaseException):
                    arrival.future.set_exception(outcome)
                else:
                    arrival.future.set_result(outcome)

    async def _store_group(self, group: list[_Arrival]) -> list[AcceptResult | BaseException]:
        now = time.time()
        try:
            return [*await self.db.write(lambda conn: _accept_group(conn, group, now, now + self.dedup_ttl))]
        except Exception as exc:
            if len(group) == 1 or isinstance(exc, BackendUnavailable) or storage_failure(exc):
                return [exc] * len(group)  # the storage refused: none of them is stored
        # a failure tied to one delivery's data must not take the others: each on its own
        alone = [self._store_group([arrival]) for arrival in group]
        return [outcome for outcomes in await asyncio.gather(*alone) for outcome in outcomes]

    async def claim(self, consumer: str, limit: int) -> list[InboxItem]:
        return [
            InboxItem(
                id=str(r[0]),
                payload=json.loads(r[1]),
                new_episodes=json.loads(r[2]),
                received_at=datetime.fromisoformat(r[3]),
                attempts=r[4],
            )
            for r in await self.claim_rows(consumer, limit)
        ]

    async def claim_rows(self, consumer: str, limit: int) -> list[tuple[int, str, str, str, int]]:
        """:meth:`claim` as stored: (id, payload JSON, episodes JSON, received_at, attempts),
        in order; what the intake hands the diagnosis process without parsing it."""
        now = time.time()
        lease_until = now + self.lease_seconds
        return await self.db.write(lambda conn: _claim(conn, consumer, limit, now, lease_until))

    async def ack_many(self, item_ids: list[str]) -> None:
        ids = json.dumps([int(i) for i in item_ids])
        await self.db.write(lambda c: c.execute(_ACK, (ids,)))

    async def release(
        self, item_id: str, error: str, *, episodes: list[str] | None = None, dead: bool = False
    ) -> None:
        now = time.time()

        def tx(conn: sqlite3.Connection) -> None:
            row = conn.execute(
                "SELECT attempts, new_episodes FROM inbox WHERE id = ?", (int(item_id),)
            ).fetchone()
            if row is None:
                return
            left = json.dumps(episodes) if episodes is not None else row[1]
            if not (dead or row[0] >= MAX_ATTEMPTS):
                conn.execute(
                    "UPDATE inbox SET lease_until = ?, last_error = ?, new_episodes = ? WHERE id = ?",
                    (now + RETRY_DELAY, error[:2000], left, int(item_id)),
                )
                return
            (body,) = conn.execute("SELECT payload FROM inbox WHERE id = ?", (int(item_id),)).fetchone()
            conn.execute(
                "UPDATE inbox SET dead = 1, dead_at = ?, lease_until = NULL, claimed_by = NULL, "
                "last_error = ?, new_episodes = ?, payload = ? WHERE id = ?",
                (now, redact_text(error[:2000]), left, kept_delivery(body), int(item_id)),
            )
            released = [(key,) for key in json.loads(left)]
            conn.executemany("DELETE FROM dedup WHERE key = ?", released)

        await self.db.write(tx)

    async def list_dead_letters(self, limit: int = 100, offset: int = 0) -> tuple[list[DeadLetter], int]:
        def run(conn: sqlite3.Connection) -> tuple[list[DeadLetter], int]:
            total = conn.execute("SELECT COUNT(*) FROM inbox WHERE dead = 1").fetchone()[0]
            rows = conn.execute(
                "SELECT id, payload, new_episodes, received_at, dead_at, attempts, last_error "
                "FROM inbox WHERE dead = 1 ORDER BY id DESC LIMIT ? OFFSET ?",
                (limit, offset),
            ).fetchall()
            return [_dead_letter(r) for r in rows], int(total)

        return await self.db.read(run)

    async def retry_dead_letter(self, item_id: str) -> bool:
        key = _row_id(item_id)
        if key is None:
            return False
        cur = await self.db.write(
            lambda c: c.execute(
                "UPDATE inbox SET dead = 0, dead_at = NULL, attempts = 0, lease_until = NULL, "
                "claimed_by = NULL WHERE id = ? AND dead = 1",
                (key,),
            )
        )
        return bool(cur.rowcount)

    async def drop_dead_letter(self, item_id: str) -> bool:
        key = _row_id(item_id)
        if key is None:
            return False
        cur = await self.db.write(lambda c: c.execute("DELETE FROM inbox WHERE id = ? AND dead = 1", (key,)))
        return bool(cur.rowcount)

    async def depth(self) -> int:
        row = await self.db.read(lambda c: c.execute("SELECT COUNT(*) FROM inbox WHERE dead = 0").fetchone())
        return int(row[0])

    async def dead_letters(self) -> int:
        row = await self.db.read(lambda c: c.execute("SELECT COUNT(*) FROM inbox WHERE dead = 1").fetchone())
        return int(row[0])

    async def purge_expired(self, at: datetime | None = None) -> int:
        """Delete the dedup keys that expired (by ``at``, default now); returns how many."""
        now = at.timestamp() if at is not None else time.time()
        cur = await self.db.write(lambda c: c.execute("DELETE FROM dedup WHERE expires_at < ?", (now,)))
        return int(cur.rowcount)

    # ---- retention (medic.app.retention): dead letters older than the retention are deleted
    async def purge_dead_letters(self, before: datetime) -> int:
        cutoff = before.timestamp()
        cur = await self.db.write(
            lambda c: c.execute(
                "DELETE FROM inbox WHERE dead = 1 AND COALESCE(dead_at, lease_until, 0) < ?", (cutoff,)
            )
        )
        return int(cur.rowcount)

    async def recover(self) -> int:
        """At start-up of the single embedded replica every lease is a dead process's: free them."""
        cur = await self.db.write(
            lambda c: c.execute(
                "UPDATE inbox SET lease_until = NULL, claimed_by = NULL WHERE dead = 0 "
                "AND lease_until IS NOT NULL"
            )
        )
        return int(cur.rowcount)

    async def ping(self) -> None:
        await self.db.read(lambda c: c.execute("SELECT 1").fetchone())
