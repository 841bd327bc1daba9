"""Small durable marks in the state store: "this was already sent / decided / generated".

Used for notification dedupe (one message per incident, channel and event, across retries of
the pipeline and restarts), single-use approvals and the generated approval secret. The embedded
backend keeps them in SQLite's ``kv`` table; ``claim`` is atomic (INSERT OR IGNORE in one
transaction), so two concurrent claimants never both win.
"""

from __future__ import annotations

import sqlite3
from typing import Protocol

from medic.clients.sqlite import SqliteDB


class Marks(Protocol):
    async def claim(self, key: str, value: str) -> str | None:
        """Store ``value`` under ``key`` unless the key exists; None when claimed now, else the
        value stored before."""
        ...

    async def get(self, key: str) -> str | None: ...

    async def put(self, key: str, value: str) -> None: ...


class SqliteMarks:
    def __init__(self, db: SqliteDB, prefix: str = "") -> None:
        self.db = db
        self.prefix = prefix

    async def claim(self, key: str, value: str) -> str | None:
        full = self.prefix + key

        def tx(conn: sqlite3.Connection) -> str | None:
            cur = conn.execute(
                "INSERT OR IGNORE INTO kv(key, value, expires_at) VALUES (?, ?, NULL)", (full, value)
            )
            if cur.rowcount == 1:
                return None
            row = conn.execute("SELECT value FROM kv WHERE key = ?", (full,)).fetchone()
            return str(row[0]) if row else ""

        return await self.db.write(tx)

    async def get(self, key: str) -> str | None:
        full = self.prefix + key
        row = await self.db.read(
            lambda c: c.execute("SELECT value FROM kv WHERE key = ?", (full,)).fetchone()
        )
        return str(row[0]) if row else None

    async def put(self, key: str, value: str) -> None:
        full = self.prefix + key
        await self.db.write(
            lambda c: c.execute(
                "INSERT OR REPLACE INTO kv(key, value, expires_at) VALUES (?, ?, NULL)", (full, value)
            )
        )
