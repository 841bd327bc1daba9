"""The production incident store: MongoDB, with the local spool for what MongoDB did not take.

* ``save`` and ``append_audit`` never fail because MongoDB is unreachable: the bundle (or the
  audit record) is kept in the local spool and written by :meth:`FailSafeIncidentStore.flush`
  once MongoDB answers again. While an incident has a spooled version, its later saves go to the
  spool too, so that they reach MongoDB in order.
* Reads look at the spool first (it holds the newest version of what it holds).
* ``create_or_get_open`` needs MongoDB (its unique index is what keeps replicas from opening
  two incidents for one key), and so does ``merge_alerts`` (an incident's alerts are kept
  beside its bundle): while MongoDB is down they raise
  :class:`~medic.domain.errors.BackendUnavailable`, and the worker keeps the delivery and retries.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import structlog
from bson import ObjectId

from medic.domain.errors import BackendUnavailable, StoreError
from medic.domain.incident import AlertMerge, Incident, IncidentAlert
from medic.domain.redact import redact
from medic.inbox.spool import LocalSpool, PendingAudit
from medic.incidents.base import IncidentQuery, stored_form
from medic.incidents.mongo import MongoIncidentStore, StaleWrite

log = structlog.get_logger("medic.incidents.failsafe")

FLUSH_BATCH = 100


class FailSafeIncidentStore:
    def __init__(self, mongo: MongoIncidentStore, spool: LocalSpool) -> None:
        self.mongo = mongo
        self.spool = spool

    async def get(self, incident_id: str) -> Incident | None:
        pending = await self.spool.get_incident(incident_id)
        return pending if pending is not None else await self.mongo.get(incident_id)

    async def find_open(self, key: str) -> Incident | None:
        pending = await self.spool.find_open(key)
        if pending is not None:
            return pending
        found = await self.mongo.find_open(key)
        if found is not None and (newer := await self.spool.get_incident(found.id)) is not None:
            return newer if newer.status == "open" else None
        return found

    async def create_or_get_open(self, incident: Incident) -> tuple[Incident, bool]:
        pending = await self.spool.find_open(incident.key)
        if pending is not None:
            return pending, False
        return await self.mongo.create_or_get_open(incident)

    async def save(self, incident: Incident) -> None:
        if await self.spool.get_incident(incident.id) is None:
            try:
                await self.mongo.save(incident)
                return
            except BackendUnavailable as exc:
                log.warning("MongoDB unreachable: bundle kept in the local spool", error=str(exc))
        await self.spool.put_incident(stored_form(incident))

    async def merge_alerts(self, incident_id: str, alerts: Sequence[IncidentAlert]) -> AlertMerge:
        """Needs MongoDB (it raises BackendUnavailable while MongoDB is down): the deliveries
        then wait in the inbox, as new incidents do, and are merged once it answers."""
        return await self.mongo.merge_alerts(incident_id, alerts)

    async def discard_if_empty(self, incident_id: str) -> bool:
        """Alerts are only ever merged in MongoDB, so only MongoDB can hold the half-made one."""
        return await self.mongo.discard_if_empty(incident_id)

    async def alerts(
        self, incident_id: str, *, status: str | None = None, limit: int = 100, offset: int = 0
    ) -> tuple[list[IncidentAlert], int]:
        return await self.mongo.alerts(incident_id, status=status, limit=limit, offset=offset)

    async def query(self, q: IncidentQuery) -> tuple[list[Incident], int]:
        return await self.mongo.query(q)

    async def append_audit(self, incident_id: str | None, kind: str, record: dict[str, Any]) -> None:
        entry = PendingAudit(str(ObjectId()), datetime.now(UTC), incident_id, kind, redact(record))
        try:
            await self.mongo.append_audit(incident_id, kind, record, audit_id=entry.id, at=entry.at)
        except BackendUnavailable as exc:
            log.warning("MongoDB unreachable: audit record kept in the local spool", error=str(exc))
            await self.spool.put_audit(entry)

    async def audit(self, incident_id: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        pending = [
            {
                "seq": p.id,
                "at": p.at.isoformat(),
                "incident_id": p.incident_id,
                "kind": p.kind,
                "record": p.record,
                "spooled": True,
            }
            for p in await self.spool.pending_audit(limit, incident_id)
        ]
        stored = await self.mongo.audit(incident_id, limit)
        return sorted([*pending, *stored], key=lambda e: str(e["at"]), reverse=True)[:limit]

    async def ping(self) -> None:
        await self.mongo.ping()

    async def flush(self) -> int:
        """Write spooled bundles and audit records to MongoDB; returns how many were written."""
        written = 0
        for entry in await self.spool.pending_audit(FLUSH_BATCH):
            await self.mongo.append_audit(
                entry.incident_id, entry.kind, entry.record, audit_id=entry.id, at=entry.at
            )
            await self.spool.drop_audit([entry.id])
            written += 1
        for pending in await self.spool.pending_incidents(FLUSH_BATCH):
            incident = pending.incident
            try:
                await self.mongo.save(incident, only_if_newer=True)
            except StaleWrite:
                log.warning(
                    "a spooled bundle is older than MongoDB's version of the incident: not written",
                    incident_id=incident.id,
                )
            except BackendUnavailable:
                raise
            except StoreError as exc:  # kept in the spool; the others go on
                log.error("a spooled bundle cannot be written", incident_id=incident.id, error=str(exc))
                continue
            await self.spool.drop_incident(incident.id, pending.version)
            written += 1
        if written:
            log.info("spooled bundles and audit records written to MongoDB", count=written)
        return written
