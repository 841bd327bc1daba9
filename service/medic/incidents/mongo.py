"""MongoDB incident store (Medic's own MongoDB, PyMongo's ``AsyncMongoClient``).

``incidents``: one document per incident, ``_id`` = the incident id, ``schema_version``, the
fields that are queried (status, key, rule, namespace, target, phase, severity, times) and the
whole bundle as JSON text in ``bundle`` (evidence may hold keys MongoDB would not take as field
names, such as ``$db`` in a ``currentOp`` sample). Indexes:

* ``status_created`` (status, created_at desc): the API's listing, newest first;
* ``key`` and ``target``: lookups by coalescing key and by target;
* ``one_open_per_key``: unique on ``key`` where ``status = "open"``, so two replicas can never
  open two incidents for one key (the loser of the race reads the winner's);
* ``retention``: TTL on ``expire_at``, set when an incident is resolved to resolved time +
  ``MEDIC_RETENTION_INCIDENTS`` (0: never; open incidents never expire).

Writes are idempotent replacements keyed by the incident id. A write made under a pipeline lock
carries its fencing token (:data:`medic.coordination.keylock.fence_token`): a document last written with
a newer token is not overwritten by an older one (:class:`StaleWrite`).

``incident_alerts``: one document per alert of an incident, ``_id`` = ``<incident id>/<alert
identity>``, with ``incident_id``, ``status``, ``first_seen``, ``seq`` (its place in the batch it
arrived in) and the alert as JSON text in ``alert``; indexes (incident_id, status) for the counts
and (incident_id, first_seen, seq) for paging in arrival order;
the same TTL on ``expire_at`` (set on every alert of an incident when it is resolved). A merge is
one ``$in`` read of the arriving identities, one unordered bulk of upserts and two counts.
Bundles of schema 1 (alerts inside) are moved out once by :meth:`MongoIncidentStore.setup`.

``audit``: append-only (insert, never update; deleted only by age), ``_id`` chosen by the writer
so a retried append stores it once; indexes (incident_id, at), (at) and ``retention``: TTL on
``at`` after ``MEDIC_RETENTION_AUDIT`` (re-created by :meth:`MongoIncidentStore.setup` when the
setting changed; dropped when it is 0).

Unreachable server → :class:`~medic.domain.errors.BackendUnavailable`; other failures → StoreError.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import structlog
from bson import ObjectId
from pymongo import ASCENDING, DESCENDING, AsyncMongoClient, IndexModel, ReplaceOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import ConnectionFailure, DuplicateKeyError, PyMongoError

from medic.clients.availability import Availability
from medic.coordination.keylock import fence_token
from medic.domain.errors import BackendUnavailable, StoreError
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

log = structlog.get_logger("medic.incidents.mongo")

T = TypeVar("T")
Doc = dict[str, Any]

SCHEMA_VERSION = 2
DEFAULT_DATABASE = "medic"
RETENTION_INDEX = "retention"


class StaleWrite(StoreError):
    """The incident was written meanwhile by the holder of a newer lock (or a newer version)."""


def connect(url: str, *, timeout: float = 3.0) -> AsyncMongoClient[Doc]:
    ms = int(timeout * 1000)
    return AsyncMongoClient(
        url,
        appname="medic",
        tz_aware=True,
        serverSelectionTimeoutMS=ms,
        connectTimeoutMS=ms,
        socketTimeoutMS=ms * 4,
    )


def _ts(value: datetime | None) -> datetime | None:
    return value.astimezone(UTC) if value is not None else None


class MongoIncidentStore:
    def __init__(
        self,
        client: AsyncMongoClient[Doc],
        *,
        database: str | None = None,
        retention: timedelta | None = timedelta(days=30),
        audit_retention: timedelta | None = timedelta(days=90),
        availability: Availability | None = None,
    ) -> None:
        self.client = client
        self.db = client[database] if database else client.get_default_database(DEFAULT_DATABASE)
        self.incidents: AsyncCollection[Doc] = self.db["incidents"]
        self.audit_log: AsyncCollection[Doc] = self.db["audit"]
        self.alert_docs: AsyncCollection[Doc] = self.db["incident_alerts"]
        self.retention = retention if retention else None
        self.audit_retention = audit_retention if audit_retention else None
        self.availability = availability
        self.indexed = False

    async def _call(self, fn: Callable[[], Awaitable[T]], *, fail_fast: bool = True) -> T:
        if fail_fast and self.availability is not None:
            self.availability.check()
        try:
            result = await fn()
        except DuplicateKeyError:
            raise
        except ConnectionFailure as exc:  # AutoReconnect, NetworkTimeout, ServerSelectionTimeoutError
            if self.availability is not None:
                self.availability.mark_down(exc)
            raise BackendUnavailable(f"Medic's MongoDB is unreachable: {exc}") from exc
        except PyMongoError as exc:
            raise StoreError(f"mongodb: {exc}") from exc
        if self.availability is not None:
            self.availability.mark_up()
        return result

    async def setup(self) -> None:
        """Create the indexes (idempotent). Until this has succeeded no incident is created:
        the one-open-incident-per-key guarantee rests on the unique index."""
        incident_indexes = [
            IndexModel([("status", ASCENDING), ("created_at", DESCENDING)], name="status_created"),
            IndexModel([("key", ASCENDING)], name="key"),
            IndexModel([("target", ASCENDING)], name="target"),
            IndexModel(
                [("key", ASCENDING)],
                name="one_open_per_key",
                unique=True,
                partialFilterExpression={"status": "open"},
            ),
            IndexModel([("expire_at", ASCENDING)], name="retention", expireAfterSeconds=0),
        ]
        audit_indexes = [
            IndexModel([("incident_id", ASCENDING), ("at", DESCENDING)], name="incident_at"),
            IndexModel([("at", DESCENDING)], name="at"),
        ]
        await self._call(lambda: self.incidents.create_indexes(incident_indexes), fail_fast=False)
        alert_indexes = [
            IndexModel([("incident_id", ASCENDING), ("status", ASCENDING)], name="incident_status"),
            IndexModel(
                [("incident_id", ASCENDING), ("first_seen", ASCENDING), ("seq", ASCENDING)],
                name="incident_arrival",
            ),
            IndexModel([("expire_at", ASCENDING)], name="retention", expireAfterSeconds=0),
        ]
        await self._call(lambda: self.audit_log.create_indexes(audit_indexes), fail_fast=False)
        await self._ensure_ttl(self.audit_log, "at", self.audit_retention)
        await self._call(lambda: self.alert_docs.create_indexes(alert_indexes), fail_fast=False)
        await self.upgrade()
        self.indexed = True

    async def _ensure_ttl(self, coll: AsyncCollection[Doc], field: str, keep: timedelta | None) -> None:
        """The TTL index ``retention`` on ``field`` deletes documents ``keep`` after it (none when
        ``keep`` is None); one left by an earlier setting is replaced."""

        async def indexes() -> dict[str, Doc]:
            return {i["name"]: dict(i) async for i in await coll.list_indexes()}

        have = await self._call(indexes, fail_fast=False)
        old = have.get(RETENTION_INDEX)
        seconds = int(keep.total_seconds()) if keep is not None else None
        if old is not None and (seconds is None or old.get("expireAfterSeconds") != seconds):
            await self._call(lambda: coll.drop_index(RETENTION_INDEX), fail_fast=False)
            old = None
        if old is None and seconds is not None:
            ttl = IndexModel([(field, ASCENDING)], name=RETENTION_INDEX, expireAfterSeconds=seconds)
            await self._call(lambda: coll.create_indexes([ttl]), fail_fast=False)

    async def upgrade(self) -> int:
        """Move the alerts out of bundles an earlier Medic wrote (schema 1): alerts first, then
        the bundle, so a crash in between only repeats the (idempotent) move."""
        old = {"$or": [{"schema_version": {"$lt": 2}}, {"schema_version": {"$exists": False}}]}
        docs = await self._call(lambda: self.incidents.find(old).to_list(None), fail_fast=False)
        for doc in docs:
            bundle, alerts = upgrade_bundle(json.loads(doc["bundle"]))
            incident = Incident.model_validate(bundle)
            await self._upsert_alerts(incident.id, enumerate(alerts), expire_at=doc.get("expire_at"))
            fresh = self.to_doc(incident) | {k: doc[k] for k in ("fence",) if k in doc}
            await self._replace(fresh)
        if docs:
            log.info("incident bundles upgraded: alerts kept beside them", count=len(docs))
        return len(docs)

    async def ping(self) -> None:
        """Ask the server (also while it is known to be down: this is the probe)."""
        await self._call(lambda: self.db.command("ping"), fail_fast=False)

    # ------------------------------------------------------------------ documents

    def to_doc(self, incident: Incident) -> Doc:
        resolved_at = _ts(incident.resolved_at)
        expire_at = None
        if incident.status == "resolved" and self.retention is not None:
            expire_at = (resolved_at or _ts(incident.updated_at) or datetime.now(UTC)) + self.retention
        return {
            "_id": incident.id,
            "schema_version": SCHEMA_VERSION,
            "key": incident.key,
            "status": incident.status,
            "phase": incident.phase.value,
            "severity": incident.severity,
            "rule": incident.rule,
            "namespace": incident.namespace,
            "target": incident.target.key if incident.target else None,
            "title": incident.title,
            "created_at": _ts(incident.created_at),
            "updated_at": _ts(incident.updated_at),
            "resolved_at": resolved_at,
            "expire_at": expire_at,
            "bundle": stored_form(incident).model_dump_json(),
        }

    @staticmethod
    def from_doc(doc: Doc) -> Incident:
        version = int(doc.get("schema_version", 0))
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"incident {doc.get('_id')} has schema_version {version}: written by a newer Medic "
                f"(this one reads up to {SCHEMA_VERSION})"
            )
        return incident_from_json(doc["bundle"])

    # ------------------------------------------------------------------ IncidentStore

    async def get(self, incident_id: str) -> Incident | None:
        doc = await self._call(lambda: self.incidents.find_one({"_id": incident_id}))
        return self.from_doc(doc) if doc else None

    async def find_open(self, key: str) -> Incident | None:
        doc = await self._call(lambda: self.incidents.find_one({"key": key, "status": "open"}))
        return self.from_doc(doc) if doc else None

    async def create_or_get_open(self, incident: Incident) -> tuple[Incident, bool]:
        if not self.indexed:
            try:
                await self.setup()
            except StoreError as exc:
                raise BackendUnavailable(f"the incident indexes are not in place yet: {exc}") from exc
        doc = self.to_doc(incident)
        token = fence_token.get()
        if token is not None:
            doc["fence"] = token
        for _ in range(5):
            try:
                await self._call(lambda: self.incidents.insert_one(doc))
                return incident, True
            except DuplicateKeyError:
                existing = await self.find_open(incident.key)
                if existing is not None:
                    return existing, False
                if await self.get(incident.id) is not None:  # our own insert, answered late
                    return incident, True
        raise StoreError(f"could not open an incident for {incident.key}: it keeps changing")

    async def discard_if_empty(self, incident_id: str) -> bool:
        if await self._call(lambda: self.alert_docs.find_one({"incident_id": incident_id})) is not None:
            return False
        result = await self._call(lambda: self.incidents.delete_one({"_id": incident_id}))
        return bool(result.deleted_count)

    async def save(self, incident: Incident, *, only_if_newer: bool = False) -> None:
        """Insert or replace the incident. Under a pipeline lock the write is fenced; with
        ``only_if_newer`` (spooled bundles written late) a newer stored version wins."""
        doc = self.to_doc(incident)
        query: Doc = {"_id": incident.id}
        token = fence_token.get()
        if token is not None:
            doc["fence"] = token
            query["$or"] = [{"fence": {"$lte": token}}, {"fence": {"$exists": False}}]
        if only_if_newer:
            query["updated_at"] = {"$lte": doc["updated_at"]}
        try:
            await self._call(lambda: self.incidents.replace_one(query, doc, upsert=True))
        except DuplicateKeyError as exc:
            pattern = (exc.details or {}).get("keyPattern") or {}
            if "_id" in pattern or not pattern:
                raise StaleWrite(
                    f"incident {incident.id} was written meanwhile by a newer lock holder or version"
                ) from exc
            raise StoreError(f"incident {incident.id}: another open incident has key {incident.key}") from exc
        if doc["expire_at"] is not None:  # its alerts go with it
            await self._call(
                lambda: self.alert_docs.update_many(
                    {"incident_id": incident.id}, {"$set": {"expire_at": doc["expire_at"]}}
                )
            )

    async def _replace(self, doc: Doc) -> None:
        await self._call(lambda: self.incidents.replace_one({"_id": doc["_id"]}, doc), fail_fast=False)

    # ------------------------------------------------------------------ alerts

    @staticmethod
    def _alert_id(incident_id: str, identity: str) -> str:
        return f"{incident_id}/{identity}"

    async def _upsert_alerts(
        self,
        incident_id: str,
        alerts: Iterable[tuple[int, IncidentAlert]],
        *,
        expire_at: datetime | None = None,
    ) -> None:
        ops = [
            ReplaceOne(
                {"_id": self._alert_id(incident_id, a.identity)},
                {
                    "incident_id": incident_id,
                    "identity": a.identity,
                    "status": a.status,
                    "first_seen": _ts(a.first_seen),
                    "seq": seq,
                    "expire_at": expire_at,
                    "alert": a.model_dump_json(),
                },
                upsert=True,
            )
            for seq, a in alerts
        ]
        if ops:
            await self._call(lambda: self.alert_docs.bulk_write(ops, ordered=False))

    async def merge_alerts(self, incident_id: str, alerts: Sequence[IncidentAlert]) -> AlertMerge:
        ids = list(dict.fromkeys(self._alert_id(incident_id, a.identity) for a in alerts))
        stored = await self._call(lambda: self.alert_docs.find({"_id": {"$in": ids}}).to_list(None))
        known: dict[str, IncidentAlert] = {}
        places: dict[str, int] = {}
        for doc in stored:
            known[doc["identity"]] = IncidentAlert.model_validate_json(doc["alert"])
            places[doc["identity"]] = int(doc.get("seq", 0))
        changed, joined, resolved = fold_alerts(known, places, alerts)
        await self._upsert_alerts(incident_id, changed.values())
        by_status_pipeline: list[Doc] = [
            {"$match": {"incident_id": incident_id}},
            {"$group": {"_id": "$status", "n": {"$sum": 1}}},
        ]

        async def count() -> list[Doc]:
            return await (await self.alert_docs.aggregate(by_status_pipeline)).to_list(None)

        counts = await self._call(count)
        by_status = {c["_id"]: int(c["n"]) for c in counts}
        return AlertMerge(
            joined=joined, resolved=resolved, total=sum(by_status.values()), firing=by_status.get("firing", 0)
        )

    async def alerts(
        self, incident_id: str, *, status: str | None = None, limit: int = 100, offset: int = 0
    ) -> tuple[list[IncidentAlert], int]:
        flt: Doc = {"incident_id": incident_id} | ({"status": status} if status else {})
        total = await self._call(lambda: self.alert_docs.count_documents(flt))

        async def page() -> list[Doc]:
            cursor = (
                self.alert_docs.find(flt)
                .sort([("first_seen", ASCENDING), ("seq", ASCENDING), ("_id", ASCENDING)])
                .skip(offset)
                .limit(limit)
            )
            return await cursor.to_list(None)

        docs = await self._call(page)
        return [IncidentAlert.model_validate_json(d["alert"]) for d in docs], int(total)

    async def query(self, q: IncidentQuery) -> tuple[list[Incident], int]:
        flt: Doc = {}
        for field, value in (("status", q.status), ("rule", q.rule), ("namespace", q.namespace)):
            if value is not None:
                flt[field] = value
        total = await self._call(lambda: self.incidents.count_documents(flt))

        async def page() -> list[Doc]:
            cursor = (
                self.incidents.find(flt)
                .sort([("created_at", DESCENDING), ("_id", DESCENDING)])
                .skip(q.offset)
                .limit(q.limit)
            )
            return await cursor.to_list(None)

        docs = await self._call(page)
        return [self.from_doc(d) for d in docs], int(total)

    async def append_audit(
        self,
        incident_id: str | None,
        kind: str,
        record: dict[str, Any],
        *,
        audit_id: str | None = None,
        at: datetime | None = None,
    ) -> None:
        doc = {
            "_id": audit_id or str(ObjectId()),
            "schema_version": SCHEMA_VERSION,
            "at": at or datetime.now(UTC),
            # BSON dates keep milliseconds: an ObjectId (time + counter) orders appends within one
            "order": ObjectId(),
            "incident_id": incident_id,
            "kind": kind,
            "status": record.get("status"),
            "record": redact(json.loads(json.dumps(record, default=str))),
        }
        try:
            await self._call(lambda: self.audit_log.insert_one(doc))
        except DuplicateKeyError:  # a retried append: already stored, once
            log.debug("audit record already stored", audit_id=doc["_id"])

    async def audit(self, incident_id: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        flt: Doc = {} if incident_id is None else {"incident_id": incident_id}

        async def run() -> list[Doc]:
            cursor = self.audit_log.find(flt).sort([("at", DESCENDING), ("order", DESCENDING)]).limit(limit)
            return await cursor.to_list(None)

        return [audit_entry(d) for d in await self._call(run)]

    async def existing(self, incident_ids: Sequence[str]) -> set[str]:
        """Which of these incidents are stored."""
        found: set[str] = set()
        for start in range(0, len(incident_ids), 500):
            chunk = list(incident_ids[start : start + 500])
            docs = await self._call(
                lambda c=chunk: self.incidents.find({"_id": {"$in": c}}, {"_id": 1}).to_list(None)  # type: ignore[misc]
            )
            found.update(str(d["_id"]) for d in docs)
        return found

    async def close(self) -> None:
        await self.client.close()


def audit_entry(doc: Doc) -> dict[str, Any]:
    """An audit document as the API shows it (the embedded store's shape; ``seq`` is the id)."""
    at = doc["at"]
    return {
        "seq": str(doc["_id"]),
        "at": at.isoformat() if isinstance(at, datetime) else str(at),
        "incident_id": doc.get("incident_id"),
        "kind": doc["kind"],
        "record": doc["record"],
    }
