"""Embedded (SQLite) incident store: one row per incident, the bundle as JSON."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime
from typing import Any

from medic.incident import Incident
from medic.sqlitedb import SqliteDB
from medic.store.base import IncidentQuery


def _row(incident: Incident) -> tuple[str, str, str, str | None, str, str, str, str]:
    return (
        incident.id,
        incident.key,
        incident.status,
        incident.rule,
        incident.namespace,
        incident.created_at.isoformat(),
        incident.updated_at.isoformat(),
        incident.model_dump_json(),
    )


class SqliteIncidentStore:
    def __init__(self, db: SqliteDB) -> None:
        self.db = db

    async def get(self, incident_id: str) -> Incident | None:
        row = await self.db.read(
            lambda c: c.execute("SELECT doc FROM incidents WHERE id = ?", (incident_id,)).fetchone()
        )
        return Incident.model_validate_json(row[0]) if row else None

    async def find_open(self, key: str) -> Incident | None:
        row = await self.db.read(
            lambda c: c.execute(
                "SELECT doc FROM incidents WHERE key = ? AND status = 'open'", (key,)
            ).fetchone()
        )
        return Incident.model_validate_json(row[0]) if row else None

    async def create_or_get_open(self, incident: Incident) -> tuple[Incident, bool]:
        def tx(conn: sqlite3.Connection) -> tuple[Incident, bool]:
            row = conn.execute(
                "SELECT doc FROM incidents WHERE key = ? AND status = 'open'", (incident.key,)
            ).fetchone()
            if row:
                return Incident.model_validate_json(row[0]), False
            conn.execute("INSERT INTO incidents VALUES (?, ?, ?, ?, ?, ?, ?, ?)", _row(incident))
            return incident, True

        return await self.db.write(tx)

    async def save(self, incident: Incident) -> None:
        values = _row(incident)
        await self.db.write(
            lambda c: c.execute(
                "INSERT INTO incidents VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET "
                "key=excluded.key, status=excluded.status, rule=excluded.rule, "
                "namespace=excluded.namespace, updated_at=excluded.updated_at, doc=excluded.doc",
                values,
            )
        )

    async def query(self, q: IncidentQuery) -> tuple[list[Incident], int]:
        where: list[str] = []
        args: list[object] = []
        for column, value in (("status", q.status), ("rule", q.rule), ("namespace", q.namespace)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        clause = f"WHERE {' AND '.join(where)}" if where else ""

        def run(conn: sqlite3.Connection) -> tuple[list[str], int]:
            total = conn.execute(f"SELECT COUNT(*) FROM incidents {clause}", args).fetchone()[0]
            docs = conn.execute(
                f"SELECT doc FROM incidents {clause} ORDER BY created_at DESC, id DESC LIMIT ? OFFSET ?",
                [*args, q.limit, q.offset],
            ).fetchall()
            return [d[0] for d in docs], int(total)

        docs, total = await self.db.read(run)
        return [Incident.model_validate_json(d) for d in docs], total

    async def append_audit(self, incident_id: str | None, kind: str, record: dict[str, Any]) -> None:
        at = datetime.now(UTC).isoformat()
        body = json.dumps(record, default=str)
        await self.db.write(
            lambda c: c.execute(
                "INSERT INTO audit(at, incident_id, kind, record) VALUES (?, ?, ?, ?)",
                (at, incident_id, kind, body),
            )
        )

    async def audit(self, incident_id: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        def run(conn: sqlite3.Connection) -> list[tuple[Any, ...]]:
            if incident_id is None:
                return conn.execute(
                    "SELECT seq, at, incident_id, kind, record FROM audit ORDER BY seq DESC LIMIT ?", (limit,)
                ).fetchall()
            return conn.execute(
                "SELECT seq, at, incident_id, kind, record FROM audit WHERE incident_id = ? "
                "ORDER BY seq DESC LIMIT ?",
                (incident_id, limit),
            ).fetchall()

        rows = await self.db.read(run)
        return [
            {"seq": r[0], "at": r[1], "incident_id": r[2], "kind": r[3], "record": json.loads(r[4])}
            for r in rows
        ]

    async def ping(self) -> None:
        await self.db.read(lambda c: c.execute("SELECT 1").fetchone())
