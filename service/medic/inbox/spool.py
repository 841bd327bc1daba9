"""The local fail-safe spool: one SQLite file in the data dir of each replica.

It holds what could not be written to Medic's own backends yet, durably (``synchronous=FULL``):

* deliveries accepted while Medic's Redis was unreachable (an embedded inbox with its own
  dedup), processed locally while Redis stays down and forwarded into the Redis stream when it
  is back, together with the dedup keys of the episodes they carried;
* incident bundles and audit records that MongoDB did not take, written there later (a bundle
  only if MongoDB does not hold a newer version of the incident meanwhile).

One process per data dir (a lock file), like the embedded backend.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from medic.clients.sqlite import SqliteDB
from medic.domain.incident import Incident
from medic.inbox.sqlite import SqliteInbox

SPOOL_TABLES = (
    """CREATE TABLE IF NOT EXISTS spool_incidents (
        id TEXT PRIMARY KEY,
        key TEXT NOT NULL,
        status TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        version INTEGER NOT NULL,
        doc TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS spool_incidents_key ON spool_incidents(key, status)",
    """CREATE TABLE IF NOT EXISTS spool_audit (
        id TEXT PRIMARY KEY,
        at TEXT NOT NULL,
        incident_id TEXT,
        kind TEXT NOT NULL,
        record TEXT NOT NULL
    )""",
)


@dataclass(frozen=True)
class PendingIncident:
    incident: Incident
    version: int  # bumped on every spooled write: drop it after flushing only if unchanged


@dataclass(frozen=True)
class PendingAudit:
    id: str
    at: datetime
    incident_id: str | None
    kind: str
    record: dict[str, Any]


class LocalSpool:
    def __init__(self, path: Path, *, dedup_ttl: float, lease_seconds: float) -> None:
        self.path = path
        self.db = SqliteDB(path)
        self.inbox = SqliteInbox(self.db, dedup_ttl=dedup_ttl, lease_seconds=lease_seconds)

    async def open(self) -> None:
        self.db.lock_exclusive()
        try:
            await self.db.open()

            def create(conn: sqlite3.Connection) -> None:
                for statement in SPOOL_TABLES:
                    conn.execute(statement)

            await self.db.write(create)
            await self.inbox.recover()  # leases of a previous run of this process are void
        except BaseException:
            await self.db.close()
            raise

    async def close(self) -> None:
        await self.db.close()

    # ------------------------------------------------------------------ dedup keys to forward

    async def dedup_keys(self, limit: int) -> list[tuple[str, float]]:
        """Episode keys accepted here (with their expiry, epoch seconds), oldest first."""
        rows = await self.db.read(
            lambda c: c.execute(
                "SELECT key, expires_at FROM dedup ORDER BY expires_at LIMIT ?", (limit,)
            ).fetchall()
        )
        return [(str(r[0]), float(r[1])) for r in rows]

    async def drop_dedup_keys(self, keys: list[str]) -> None:
        await self.db.write(lambda c: c.executemany("DELETE FROM dedup WHERE key = ?", [(k,) for k in keys]))

    # ------------------------------------------------------------------ incident bundles

    async def put_incident(self, incident: Incident) -> None:
        values = (
            incident.id,
            incident.key,
            incident.status,
            incident.updated_at.isoformat(),
            incident.model_dump_json(),
        )
        await self.db.write(
            lambda c: c.execute(
                "INSERT INTO spool_incidents(id, key, status, updated_at, version, doc) "
                "VALUES (?, ?, ?, ?, 1, ?) ON CONFLICT(id) DO UPDATE SET key=excluded.key, "
                "status=excluded.status, updated_at=excluded.updated_at, "
                "version=spool_incidents.version + 1, doc=excluded.doc",
                values,
            )
        )

    async def get_incident(self, incident_id: str) -> Incident | None:
        row = await self.db.read(
            lambda c: c.execute("SELECT doc FROM spool_incidents WHERE id = ?", (incident_id,)).fetchone()
        )
        return Incident.model_validate_json(row[0]) if row else None

    async def find_open(self, key: str) -> Incident | None:
        row = await self.db.read(
            lambda c: c.execute(
                "SELECT doc FROM spool_incidents WHERE key = ? AND status = 'open' "
                "ORDER BY updated_at DESC LIMIT 1",
                (key,),
            ).fetchone()
        )
        return Incident.model_validate_json(row[0]) if row else None

    async def pending_incidents(self, limit: int) -> list[PendingIncident]:
        rows = await self.db.read(
            lambda c: c.execute(
                "SELECT doc, version FROM spool_incidents ORDER BY updated_at LIMIT ?", (limit,)
            ).fetchall()
        )
        return [PendingIncident(Incident.model_validate_json(r[0]), int(r[1])) for r in rows]

    async def drop_incident(self, incident_id: str, version: int) -> bool:
        cur = await self.db.write(
            lambda c: c.execute(
                "DELETE FROM spool_incidents WHERE id = ? AND version = ?", (incident_id, version)
            )
        )
        return int(cur.rowcount) == 1

    # ------------------------------------------------------------------ audit records

    async def put_audit(self, entry: PendingAudit) -> None:
        values = (
            entry.id,
            entry.at.isoformat(),
            entry.incident_id,
            entry.kind,
            json.dumps(entry.record, default=str),
        )
        await self.db.write(
            lambda c: c.execute("INSERT OR IGNORE INTO spool_audit VALUES (?, ?, ?, ?, ?)", values)
        )

    async def pending_audit(self, limit: int, incident_id: str | None = None) -> list[PendingAudit]:
        def run(conn: sqlite3.Connection) -> list[tuple[Any, ...]]:
            if incident_id is None:
                return conn.execute(
                    "SELECT id, at, incident_id, kind, record FROM spool_audit ORDER BY at LIMIT ?", (limit,)
                ).fetchall()
            return conn.execute(
                "SELECT id, at, incident_id, kind, record FROM spool_audit WHERE incident_id = ? "
                "ORDER BY at LIMIT ?",
                (incident_id, limit),
            ).fetchall()

        rows = await self.db.read(run)
        return [PendingAudit(r[0], datetime.fromisoformat(r[1]), r[2], r[3], json.loads(r[4])) for r in rows]

    async def drop_audit(self, ids: list[str]) -> None:
        await self.db.write(
            lambda c: c.executemany("DELETE FROM spool_audit WHERE id = ?", [(i,) for i in ids])
        )

    # ------------------------------------------------------------------ sizes

    async def counts(self) -> dict[str, int]:
        def run(conn: sqlite3.Connection) -> dict[str, int]:
            one = conn.execute
            return {
                "deliveries": int(one("SELECT COUNT(*) FROM inbox WHERE dead = 0").fetchone()[0]),
                "dedup_keys": int(one("SELECT COUNT(*) FROM dedup").fetchone()[0]),
                "bundles": int(one("SELECT COUNT(*) FROM spool_incidents").fetchone()[0]),
                "audit": int(one("SELECT COUNT(*) FROM spool_audit").fetchone()[0]),
            }

        return await self.db.read(run)
