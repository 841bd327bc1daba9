"""Embedded (SQLite) implementation of the state interfaces."""

from __future__ import annotations

import json
import sqlite3
import time
from datetime import datetime
from typing import Any

from medic.sqlitedb import SqliteDB
from medic.state.base import AcceptResult, InboxItem

MAX_ATTEMPTS = 5


class SqliteInbox:
    """Inbox rows are deleted on ack; a claimed row whose lease ran out is claimed again."""

    def __init__(self, db: SqliteDB, *, dedup_ttl: float, lease_seconds: float = 300.0) -> None:
        self.db = db
        self.dedup_ttl = dedup_ttl
        self.lease_seconds = lease_seconds

    async def accept(
        self, payload: dict[str, Any], episodes: list[str], received_at: datetime
    ) -> AcceptResult:
        now = time.time()
        expires = now + self.dedup_ttl
        body = json.dumps(payload, separators=(",", ":"))

        def tx(conn: sqlite3.Connection) -> AcceptResult:
            new: list[str] = []
            for key in dict.fromkeys(episodes):
                row = conn.execute("SELECT expires_at FROM dedup WHERE key = ?", (key,)).fetchone()
                if row is not None and row[0] > now:
                    continue
                conn.execute("INSERT OR REPLACE INTO dedup(key, expires_at) VALUES (?, ?)", (key, expires))
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
        now = time.time()
        lease_until = now + self.lease_seconds

        def tx(conn: sqlite3.Connection) -> list[InboxItem]:
            rows = conn.execute(
                "UPDATE inbox SET claimed_by = ?, lease_until = ?, attempts = attempts + 1 "
                "WHERE id IN (SELECT id FROM inbox WHERE dead = 0 AND "
                "(lease_until IS NULL OR lease_until < ?) ORDER BY id LIMIT ?) "
                "RETURNING id, payload, new_episodes, received_at, attempts",
                (consumer, lease_until, now, limit),
            ).fetchall()
            rows.sort(key=lambda r: r[0])
            return [
                InboxItem(
                    id=str(r[0]),
                    payload=json.loads(r[1]),
                    new_episodes=json.loads(r[2]),
                    received_at=datetime.fromisoformat(r[3]),
                    attempts=r[4],
                )
                for r in rows
            ]

        return await self.db.write(tx)

    async def ack_many(self, item_ids: list[str]) -> None:
        ids = [(int(i),) for i in item_ids]
        await self.db.write(lambda c: c.executemany("DELETE FROM inbox WHERE id = ?", ids))

    async def release(self, item_id: str, error: str) -> None:
        def tx(conn: sqlite3.Connection) -> None:
            conn.execute(
                "UPDATE inbox SET lease_until = ?, last_error = ?, "
                "dead = CASE WHEN attempts >= ? THEN 1 ELSE 0 END WHERE id = ?",
                (time.time() + 5.0, error[:2000], MAX_ATTEMPTS, int(item_id)),
            )

        await self.db.write(tx)

    async def depth(self) -> int:
        row = await self.db.read(lambda c: c.execute("SELECT COUNT(*) FROM inbox WHERE dead = 0").fetchone())
        return int(row[0])

    async def dead_letters(self) -> int:
        row = await self.db.read(lambda c: c.execute("SELECT COUNT(*) FROM inbox WHERE dead = 1").fetchone())
        return int(row[0])

    async def purge_expired(self) -> int:
        now = time.time()
        cur = await self.db.write(lambda c: c.execute("DELETE FROM dedup WHERE expires_at < ?", (now,)))
        return int(cur.rowcount)

    async def recover(self) -> int:
        """At start-up of the single embedded replica every lease is a dead process's: free them."""
        cur = await self.db.write(
            lambda c: c.execute("UPDATE inbox SET lease_until = NULL, claimed_by = NULL WHERE dead = 0 "
                                "AND lease_until IS NOT NULL")
        )
        return int(cur.rowcount)

    async def ping(self) -> None:
        await self.db.read(lambda c: c.execute("SELECT 1").fetchone())
