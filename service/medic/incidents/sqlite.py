"""Embedded (SQLite) incident store: one row per incident (the bundle as JSON), and one row per
alert of an incident in ``incident_alerts``."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import structlog

from medic.clients.sqlite import SqliteDB
from medic.domain.incident import (
    AlertMerge,
    Incident,
    IncidentAlert,
    fold_alerts,
    incident_from_json,
    upgrade_bundle,
)
from medic.domain.redact import redact
from medic.incidents.base import IncidentQuery, stored_form

log = structlog.get_logger("medic.incidents.sqlite")

SQL_VARIABLES = 500  # identities per IN (...): well under SQLite's limit on bound variables
PURGE_BATCH = 500  # incidents or audit records deleted per transaction


def _row(incident: Incident) -> tuple[str, str, str, str | None, str, str, str, str]:
    return (
        incident.id,
        incident.key,
        incident.status,
        incident.rule,
        incident.namespace,
        incident.created_at.isoformat(),
        incident.updated_at.isoformat(),
        stored_form(incident).model_dump_json(),
    )


def _upsert_alerts(
    conn: sqlite3.Connection, incident_id: str, alerts: Iterable[tuple[int, IncidentAlert]]
) -> None:
    """Insert or update ``(seq, alert)`` pairs; an update keeps first_seen and seq."""
    conn.executemany(
        "INSERT INTO incident_alerts VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(incident_id, identity) "
        "DO UPDATE SET status = excluded.status, doc = excluded.doc",
        [
            (incident_id, a.identity, a.status, a.first_seen.isoformat(), seq, a.model_dump_json())
            for seq, a in alerts
        ],
    )


class SqliteIncidentStore:
    def __init__(self, db: SqliteDB) -> None:
        self.db = db

    async def get(self, incident_id: str) -> Incident | None:
        row = await self.db.read(
            lambda c: c.execute("SELECT doc FROM incidents WHERE id = ?", (incident_id,)).fetchone()
        )
        return incident_from_json(row[0]) if row else None

    async def find_open(self, key: str) -> Incident | None:
        row = await self.db.read(
            lambda c: c.execute(
                "SELECT doc FROM incidents WHERE key = ? AND status = 'open'", (key,)
            ).fetchone()
        )
        return incident_from_json(row[0]) if row else None

    async def create_or_get_open(self, incident: Incident) -> tuple[Incident, bool]:
        def tx(conn: sqlite3.Connection) -> tuple[Incident, bool]:
            row = conn.execute(
                "SELECT doc FROM incidents WHERE key = ? AND status = 'open'", (incident.key,)
            ).fetchone()
            if row:
                return incident_from_json(row[0]), False
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

    async def discard_if_empty(self, incident_id: str) -> bool:
        cur = await self.db.write(
            lambda c: c.execute(
                "DELETE FROM incidents WHERE id = ? AND NOT EXISTS "
                "(SELECT 1 FROM incident_alerts WHERE incident_id = ?)",
                (incident_id, incident_id),
            )
        )
        return bool(cur.rowcount)

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
        return [incident_from_json(d) for d in docs], total

    async def merge_alerts(self, incident_id: str, alerts: Sequence[IncidentAlert]) -> AlertMerge:
        def tx(conn: sqlite3.Connection) -> AlertMerge:
            wanted = list(dict.fromkeys(a.identity for a in alerts))
            known: dict[str, IncidentAlert] = {}
            for i in range(0, len(wanted), SQL_VARIABLES):
                chunk = wanted[i : i + SQL_VARIABLES]
                rows = conn.execute(
                    "SELECT doc FROM incident_alerts WHERE incident_id = ? AND identity IN "
                    f"({','.join('?' * len(chunk))})",
                    [incident_id, *chunk],
                ).fetchall()
                for (doc,) in rows:
                    stored = IncidentAlert.model_validate_json(doc)
                    known[stored.identity] = stored
            # a stored alert keeps its place: the upsert does not update seq
            changed, joined, resolved = fold_alerts(known, {}, alerts)
            _upsert_alerts(conn, incident_id, changed.values())
            total, firing = conn.execute(
                "SELECT COUNT(*), COALESCE(SUM(status = 'firing'), 0) FROM incident_alerts "
                "WHERE incident_id = ?",
                (incident_id,),
            ).fetchone()
            return AlertMerge(joined=joined, resolved=resolved, total=int(total), firing=int(firing))

        return await self.db.write(tx)

    async def alerts(
        self, incident_id: str, *, status: str | None = None, limit: int = 100, offset: int = 0
    ) -> tuple[list[IncidentAlert], int]:
        where = "incident_id = ?" + (" AND status = ?" if status else "")
        args: list[object] = [incident_id, *([status] if status else [])]

        def run(conn: sqlite3.Connection) -> tuple[list[str], int]:
            total = conn.execute(f"SELECT COUNT(*) FROM incident_alerts WHERE {where}", args).fetchone()[0]
            rows = conn.execute(
                f"SELECT doc FROM incident_alerts WHERE {where} "
                "ORDER BY first_seen, seq, identity LIMIT ? OFFSET ?",
                [*args, limit, offset],
            ).fetchall()
            return [r[0] for r in rows], int(total)

        docs, total = await self.db.read(run)
        return [IncidentAlert.model_validate_json(d) for d in docs], total

    async def upgrade(self) -> int:
        """Move the alerts out of bundles an earlier Medic wrote (schema 1); returns how many
        incidents were upgraded. Idempotent, and one transaction per incident."""
        rows = await self.db.read(
            lambda c: c.execute(
                "SELECT id FROM incidents WHERE COALESCE(json_extract(doc, '$.schema_version'), 1) < 2"
            ).fetchall()
        )
        for (incident_id,) in rows:

            def tx(conn: sqlite3.Connection, incident_id: str = incident_id) -> None:
                (doc,) = conn.execute("SELECT doc FROM incidents WHERE id = ?", (incident_id,)).fetchone()
                upgraded, alerts = upgrade_bundle(json.loads(doc))
                _upsert_alerts(conn, incident_id, enumerate(alerts))
                conn.execute(
                    "UPDATE incidents SET doc = ? WHERE id = ?",
                    (Incident.model_validate(upgraded).model_dump_json(), incident_id),
                )

            await self.db.write(tx)
        if rows:
            log.info("incident bundles upgraded: alerts kept beside them", count=len(rows))
        return len(rows)

    async def append_audit(self, incident_id: str | None, kind: str, record: dict[str, Any]) -> None:
        at = datetime.now(UTC).isoformat()
        body = json.dumps(redact(record), default=str)
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

    # ------------------------------------------------------------------ retention (medic.app.retention)

    async def purge_resolved(
        self, before: datetime, *, mark_prefixes: Sequence[str] = (), batch: int = PURGE_BATCH
    ) -> int:
        """Delete resolved incidents last changed before ``before``, with their alerts and the
        marks kept under ``<prefix><incident id>|``; one transaction per ``batch`` incidents
        (intake waits for one batch at most). Returns how many incidents."""
        cutoff = before.astimezone(UTC).isoformat()

        def tx(conn: sqlite3.Connection) -> int:
            ids = [
                r[0]
                for r in conn.execute(
                    "SELECT id FROM incidents WHERE status = 'resolved' AND updated_at < ? LIMIT ?",
                    (cutoff, batch),
                )
            ]
            marks = ",".join("?" * len(ids))
            conn.execute(f"DELETE FROM incident_alerts WHERE incident_id IN ({marks})", ids)
            conn.execute(f"DELETE FROM incidents WHERE id IN ({marks})", ids)
            conn.executemany(  # '}' follows '|': the range is every key under the prefix
                "DELETE FROM kv WHERE key >= ? AND key < ?",
                [(f"{p}{i}|", f"{p}{i}}}") for i in ids for p in mark_prefixes],
            )
            return len(ids)

        return await _in_batches(self.db, tx, batch)

    async def purge_audit(self, before: datetime, *, batch: int = PURGE_BATCH) -> int:
        """Delete audit records written before ``before``; returns how many."""
        cutoff = before.astimezone(UTC).isoformat()

        def tx(conn: sqlite3.Connection) -> int:
            cur = conn.execute(
                "DELETE FROM audit WHERE seq IN (SELECT seq FROM audit WHERE at < ? ORDER BY at LIMIT ?)",
                (cutoff, batch),
            )
            return int(cur.rowcount)

        return await _in_batches(self.db, tx, batch)



async def _in_batches(db: SqliteDB, tx: Callable[[sqlite3.Connection], int], batch: int) -> int:
    total = 0
    while True:
        done = await db.write(tx)
        total += done
        if done < batch:
            return total
