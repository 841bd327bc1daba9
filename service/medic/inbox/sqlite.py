"""Embedded (SQLite) implementation of the state interfaces."""

from __future__ import annotations

import json
import sqlite3
import time
from datetime import UTC, datetime
from typing import Any

from medic.clients.sqlite import SqliteDB
from medic.domain.redact import redact_text
from medic.inbox.base import AcceptResult, DeadLetter, InboxItem, Payload, kept_delivery, payload_json

MAX_ATTEMPTS = 5
RETRY_DELAY = 5.0  # a failed item is handed out again after this many seconds
# A new episode key, or one whose expiry passed, is (re)set and returned; a live one is not.
_CLAIM_EPISODE = (
    "INSERT INTO dedup(key, expires_at) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET "
    "expires_at = excluded.expires_at WHERE dedup.expires_at <= ? RETURNING key"
)


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

    async def accept(self, payload: Payload, episodes: list[str], received_at: datetime) -> AcceptResult:
        now = time.time()
        expires = now + self.dedup_ttl
        body = payload_json(payload)

        def tx(conn: sqlite3.Connection) -> AcceptResult:
            new: list[str] = []
            for key in dict.fromkeys(episodes):
                # one statement: a new key, or one whose expiry passed, is (re)set and returned
                if conn.execute(_CLAIM_EPISODE, (key, expires, now)).fetchone() is not None:
                    new.append(key)
            if not new:
                return AcceptResult(item_id=None, new_episodes=[], duplicates=len(episodes))
            cur = conn.execute(
                "INSERT INTO inbox(payload, new_episodes, received_at) VALUES (?, ?, ?)",
                (body, json.dumps(new), received_at.isoformat()),
            )
            return AcceptResult(
                item_id=str(cur.lastrowid), new_episodes=new, duplicates=len(episodes) - len(new)
            )

        return await self.db.write(tx)

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

        def tx(conn: sqlite3.Connection) -> list[tuple[int, str, str, str, int]]:
            rows = conn.execute(
                "UPDATE inbox SET claimed_by = ?, lease_until = ?, attempts = attempts + 1 "
                "WHERE id IN (SELECT id FROM inbox WHERE dead = 0 AND "
                "(lease_until IS NULL OR lease_until < ?) ORDER BY id LIMIT ?) "
                "RETURNING id, payload, new_episodes, received_at, attempts",
                (consumer, lease_until, now, limit),
            ).fetchall()
            return sorted(rows, key=lambda r: int(r[0]))

        return await self.db.write(tx)

    async def ack_many(self, item_ids: list[str]) -> None:
        ids = [(int(i),) for i in item_ids]
        await self.db.write(lambda c: c.executemany("DELETE FROM inbox WHERE id = ?", ids))

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
