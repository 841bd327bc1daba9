"""Medic's own state, built from settings: where deliveries, coordination and incidents live.

=======================  ==========================================  ============================
settings                 backend                                     replicas
=======================  ==========================================  ============================
neither URL (default)    embedded SQLite in ``MEDIC_DATA_DIR``        one (a lock file says so)
``MEDIC_REDIS_URL`` and  Redis (inbox stream, dedup, locks, ledger,  any number, sharing both;
``MEDIC_MONGO_URL``      kill switch) + MongoDB (incidents, audit)   each has a local spool in
                         + the local spool (:mod:`medic.inbox.spool`)  ``MEDIC_DATA_DIR``
only one of them         refused at start-up (:class:`ConfigError`)
=======================  ==========================================  ============================

A half configuration is refused rather than guessed at: Redis without MongoDB would keep each
replica's incidents apart, MongoDB without Redis would leave replicas uncoordinated.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import AsyncIterator, Awaitable
from datetime import datetime
from pathlib import Path
from typing import Protocol

import structlog
from pymongo.errors import ConfigurationError as MongoConfigurationError

from medic.app.retention import (
    INCIDENT_MARK_PREFIXES,
    Cutoffs,
    RetentionPolicy,
    forgotten_incidents,
    run_purges,
)
from medic.app.settings import Settings
from medic.clients.availability import Availability
from medic.clients.redis import connect as connect_redis
from medic.clients.sqlite import SqliteDB
from medic.coordination.base import RemediationState
from medic.coordination.keylock import KeyLocker, LocalKeyLocker, RedisKeyLocker
from medic.coordination.marks import Marks, SqliteMarks
from medic.coordination.redis import RedisMarks, RedisRemediationState
from medic.coordination.redis_keys import RedisKeys
from medic.coordination.sqlite import SqliteRemediationState
from medic.domain.errors import BackendUnavailable, ConfigError
from medic.inbox.base import Inbox
from medic.inbox.failsafe import FailSafeInbox
from medic.inbox.redis import RedisInbox
from medic.inbox.rpc import RemoteInbox
from medic.inbox.spool import LocalSpool
from medic.inbox.sqlite import SqliteInbox
from medic.incidents.base import IncidentStore
from medic.incidents.failsafe import FailSafeIncidentStore
from medic.incidents.mongo import MongoIncidentStore
from medic.incidents.mongo import connect as connect_mongo
from medic.incidents.sqlite import SqliteIncidentStore

log = structlog.get_logger("medic.backend")

PROBE_TIMEOUT = 0.5  # /readyz must answer within the kubelet's probe timeout
WRITE_PROBE_IDLE = 30.0  # /readyz probes a real write when none committed for this long
CONSUMER_REAP_EVERY = 600.0


class StateBackend(Protocol):
    @property
    def kind(self) -> str: ...

    @property
    def inbox(self) -> Inbox: ...

    @property
    def store(self) -> IncidentStore: ...

    @property
    def state(self) -> RemediationState: ...

    @property
    def locker(self) -> KeyLocker: ...

    def marks(self, prefix: str) -> Marks:
        """Durable marks under ``prefix`` (notifications sent, approvals used, ...)."""
        ...

    @property
    def poll_seconds(self) -> float:
        """How often an idle worker looks for work another replica accepted."""
        ...

    def start(self) -> None:
        """Start background upkeep (lease renewal, recovery, the purge); after the workers started."""
        ...

    async def purge(self, cut: Cutoffs) -> dict[str, int]:
        """Delete what the retention settings no longer keep (:mod:`medic.app.retention`); counts."""
        ...

    async def readiness(self) -> tuple[str, dict[str, str]]:
        """("ready" | "degraded" | "not ready", a status per backend). Degraded still accepts."""
        ...

    async def close(self) -> None:
        """After the workers stopped: hand back unfinished work, close every client."""
        ...


def owner_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


async def open_backend(
    settings: Settings, *, shared: bool = False, inbox_socket: Path | None = None
) -> StateBackend:
    """Medic's own state as configured. ``shared``: this process shares the embedded store with
    the other process of its replica (intake and diagnosis, see :mod:`medic.app.worker_process`)."""
    redis_url = settings.tokens.redis_url or ""
    mongo_url = settings.tokens.mongo_url or ""
    if not redis_url and not mongo_url:
        return await EmbeddedBackend.open(settings, shared=shared, inbox_socket=inbox_socket)
    if not (redis_url and mongo_url):
        given, missing = (
            ("MEDIC_REDIS_URL", "MEDIC_MONGO_URL") if redis_url else ("MEDIC_MONGO_URL", "MEDIC_REDIS_URL")
        )
        raise ConfigError(
            f"{given} is set but {missing} is not: the production backends go together "
            "(Redis coordinates the replicas, MongoDB keeps their incidents); set both, or neither "
            "for the embedded single-replica SQLite store",
            file="environment",
            field=missing.removeprefix("MEDIC_").lower(),
        )
    if not redis_url.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError(
            "must be a redis://, rediss:// or unix:// URL", file="environment", field="redis_url"
        )
    if not mongo_url.startswith(("mongodb://", "mongodb+srv://")):
        raise ConfigError("must be a mongodb:// or mongodb+srv:// URL", file="environment", field="mongo_url")
    return await ProductionBackend.open(settings, redis_url, mongo_url)


@contextlib.asynccontextmanager
async def open_incident_reader(settings: Settings) -> AsyncIterator[IncidentStore]:
    """The incidents as the configured backend keeps them, to read beside a running Medic (the
    CLI): MongoDB when ``MEDIC_MONGO_URL`` is set, else the embedded SQLite file (which must
    exist; read without taking the running replica's lock)."""
    mongo_url = settings.tokens.mongo_url or ""
    if mongo_url:
        try:
            client = connect_mongo(mongo_url)
        except MongoConfigurationError as exc:
            raise ConfigError(f"invalid MongoDB URL: {exc}", file="environment", field="mongo_url") from exc
        try:
            yield MongoIncidentStore(client)
        finally:
            await client.close()
        return
    if not settings.inbox.db_path.exists():
        raise ConfigError(
            f"no local store at {settings.inbox.db_path} (set MEDIC_DATA_DIR, MEDIC_MONGO_URL, or use --url)"
        )
    db = SqliteDB(settings.inbox.db_path)
    await db.open()
    try:
        yield SqliteIncidentStore(db)
    finally:
        await db.close()


INBOX_TABLES = ("inbox", "dedup")  # kept in MEDIC_DATA_DIR/inbox.sqlite3 (Settings.inbox_path)
SHARED_LOCK_TTL = 30.0  # seconds an incident lock of a shared embedded store lives unrenewed


class EmbeddedBackend:
    kind = "sqlite"
    poll_seconds = 1.0

    def __init__(
        self,
        db: SqliteDB,
        inbox_db: SqliteDB | None,
        *,
        dedup_ttl: float,
        policy: RetentionPolicy,
        remote_inbox: RemoteInbox | None = None,
    ) -> None:
        self.db = db
        self.inbox_db = inbox_db  # None in the diagnosis process: the intake owns the inbox
        self.local_inbox = SqliteInbox(inbox_db, dedup_ttl=dedup_ttl) if inbox_db is not None else None
        self.remote_inbox = remote_inbox
        self.inbox: Inbox
        if self.local_inbox is not None:
            self.inbox = self.local_inbox
        elif remote_inbox is not None:
            self.inbox = remote_inbox
        else:
            raise ValueError("an embedded backend needs its inbox: the file or the intake's socket")
        self.store = SqliteIncidentStore(db)
        self.state = SqliteRemediationState(db)
        self.locker: KeyLocker = LocalKeyLocker()
        self.policy = policy
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    @classmethod
    async def open(
        cls, settings: Settings, *, shared: bool = False, inbox_socket: Path | None = None
    ) -> EmbeddedBackend:
        """``inbox_socket``: the diagnosis process reaches the inbox through the intake that owns
        it (:mod:`medic.inbox.rpc`) and does not open ``inbox.sqlite3`` itself."""
        db = SqliteDB(settings.inbox.db_path)
        inbox_db = SqliteDB(settings.inbox.inbox_path) if inbox_socket is None else None
        remote = RemoteInbox(inbox_socket) if inbox_socket is not None else None
        db.lock_exclusive()
        try:
            await db.open()
            if inbox_db is not None:
                await inbox_db.open()
                await db.move_tables_to(inbox_db, INBOX_TABLES)  # a file of an older version
            policy = RetentionPolicy.from_settings(settings.retention)
            backend = cls(
                db, inbox_db, dedup_ttl=settings.inbox.dedup_ttl_seconds, policy=policy, remote_inbox=remote
            )
            if shared:  # the processes of the replica serialise on the lock table, not in memory
                backend.locker = RedisKeyLocker(
                    backend.state, f"{socket.gethostname()}-{os.getpid()}", ttl=SHARED_LOCK_TTL
                )
            await backend.store.upgrade()
            await backend.recover()
        except BaseException:
            if inbox_db is not None:
                await inbox_db.close()
            await db.close()
            raise
        return backend

    async def recover(self) -> None:
        """What a process that died left held: its deliveries' leases (only the replica's one
        claiming process holds any: they are all freed; the inbox's owner does it) and its
        incident locks."""
        recovered = await self.local_inbox.recover() if self.local_inbox is not None else 0
        if recovered:
            log.warning("re-queued deliveries left unfinished by a previous run", count=recovered)
        freed = await self.state.free_locks_of_dead_owners(socket.gethostname())
        if freed:
            log.warning("freed incident locks of processes that are gone", count=freed)

    def marks(self, prefix: str) -> SqliteMarks:
        return SqliteMarks(self.db, prefix)

    def start(self) -> None:
        if not self._tasks:
            purges = run_purges(self.purge, self.policy, self._stop)
            self._tasks = [asyncio.create_task(purges, name="medic-purge")]

    async def purge(self, cut: Cutoffs) -> dict[str, int]:
        counts: dict[str, int] = {}
        if cut.incidents is not None:
            counts["incidents"] = await self.store.purge_resolved(
                cut.incidents, mark_prefixes=INCIDENT_MARK_PREFIXES
            )
        if cut.audit is not None:
            counts["audit"] = await self.store.purge_audit(cut.audit)
        if self.local_inbox is not None and self.inbox_db is not None:
            if cut.dead_letters is not None:
                counts["dead_letters"] = await self.local_inbox.purge_dead_letters(cut.dead_letters)
            counts["dedup_keys"] = await self.local_inbox.purge_expired(cut.now)
        counts["ledger"] = await self.state.purge(cut.ledger, cut.now)
        counts["bytes_reclaimed"] = await self.db.reclaim()
        if self.inbox_db is not None:
            counts["bytes_reclaimed"] += await self.inbox_db.reclaim()
        return counts

    async def readiness(self) -> tuple[str, dict[str, str]]:
        checks: dict[str, str] = {}
        for name, component in (("inbox", self.inbox), ("incident_store", self.store)):
            try:
                await component.ping()
                checks[name] = "ok"
            except Exception as exc:
                checks[name] = f"error: {exc}"
        checks["writes"] = await write_check(self.inbox_db or self.db)  # what intake needs to accept
        return ("ready" if all(v == "ok" for v in checks.values()) else "not ready"), checks

    async def close(self) -> None:
        await _stop_tasks(self._stop, self._tasks)
        self._tasks = []
        if self.inbox_db is not None:
            await self.inbox_db.close()
        if self.remote_inbox is not None:
            await self.remote_inbox.close()
        await self.db.close()


async def write_check(db: SqliteDB) -> str:
    """ "ok" while the file takes writes. A refused write (disk full, I/O error) makes it
    probe with a real write, as does a long idle time (nothing else would notice); the probe
    that commits clears the failure."""
    if db.write_failure is None and time.monotonic() - db.last_write_ok < WRITE_PROBE_IDLE:
        return "ok"
    try:
        await asyncio.wait_for(db.probe_write(), PROBE_TIMEOUT)
    except Exception as exc:
        return f"error: intake cannot store: {db.write_failure or exc}"
    return "ok"


async def _stop_tasks(stop: asyncio.Event, tasks: list[asyncio.Task[None]]) -> None:
    """Stop background tasks by an event (not a cancellation, see RedisKeyLocker)."""
    if tasks:
        stop.set()
        _, pending = await asyncio.wait(tasks, timeout=10)
        for task in pending:
            task.cancel()


class ProductionBackend:
    kind = "redis+mongo"
    poll_seconds = 0.25

    def __init__(
        self,
        settings: Settings,
        spool: LocalSpool,
        redis_inbox: RedisInbox,
        inbox: FailSafeInbox,
        state: RedisRemediationState,
        mongo: MongoIncidentStore,
        store: FailSafeIncidentStore,
        redis_up: Availability,
        mongo_up: Availability,
    ) -> None:
        self.settings = settings
        self.spool = spool
        self.redis_inbox = redis_inbox
        self.inbox = inbox
        self.state = state
        self.mongo = mongo
        self.store = store
        self.redis_up = redis_up
        self.mongo_up = mongo_up
        self.owner = owner_name()
        self.locker = RedisKeyLocker(state, self.owner, ttl=max(settings.inbox.lease_seconds, 1.0))
        self._tasks: list[asyncio.Task[None]] = []
        self._stop = asyncio.Event()

    @classmethod
    async def open(cls, settings: Settings, redis_url: str, mongo_url: str) -> ProductionBackend:
        spool = LocalSpool(
            settings.inbox.data_dir / "spool.sqlite3",
            dedup_ttl=settings.inbox.dedup_ttl_seconds,
            lease_seconds=600.0,  # one process per spool (a lock file); a restart frees every lease
        )
        await spool.open()
        redis_up = Availability("Medic's Redis")
        mongo_up = Availability("Medic's MongoDB")
        try:
            rclient = connect_redis(redis_url)
        except ValueError as exc:
            await spool.close()
            raise ConfigError(f"invalid Redis URL: {exc}", file="environment", field="redis_url") from exc
        try:
            mclient = connect_mongo(mongo_url)
        except MongoConfigurationError as exc:
            await rclient.aclose()
            await spool.close()
            raise ConfigError(f"invalid MongoDB URL: {exc}", file="environment", field="mongo_url") from exc
        keys = RedisKeys()
        redis_inbox = RedisInbox(
            rclient,
            keys,
            dedup_ttl=settings.inbox.dedup_ttl_seconds,
            lease_seconds=settings.inbox.lease_seconds,
            queue_max=settings.inbox.queue_max,
            availability=redis_up,
        )
        inbox = FailSafeInbox(redis_inbox, spool, redis_up, spool_max=settings.inbox.queue_max)
        policy = RetentionPolicy.from_settings(settings.retention)
        mongo = MongoIncidentStore(
            mclient, retention=policy.incidents, audit_retention=policy.audit, availability=mongo_up
        )
        backend = cls(
            settings,
            spool,
            redis_inbox,
            inbox,
            RedisRemediationState(rclient, keys, availability=redis_up),
            mongo,
            FailSafeIncidentStore(mongo, spool),
            redis_up,
            mongo_up,
        )
        try:
            await backend._first_contact()
        except BaseException:
            await backend._close_clients()
            raise
        return backend

    async def _first_contact(self) -> None:
        """Open the inbox and set up Redis and MongoDB; one that does not answer yet is caught
        up later (the spool accepts meanwhile), never a reason not to start."""
        await self.inbox.open()
        try:
            await self.redis_inbox.setup()
        except BackendUnavailable as exc:
            log.warning(
                "Medic's Redis is unreachable at start: accepting into the local spool", error=str(exc)
            )
        try:
            await self.mongo.setup()
        except BackendUnavailable as exc:
            log.warning("Medic's MongoDB is unreachable at start: incidents wait", error=str(exc))

    def marks(self, prefix: str) -> RedisMarks:
        return RedisMarks(self.redis_inbox.client, self.redis_inbox.keys, prefix, availability=self.redis_up)

    def start(self) -> None:
        if not self._tasks:
            self._tasks = [
                asyncio.create_task(self._run_heartbeat(), name="medic-lease-heartbeat"),
                asyncio.create_task(self._run_upkeep(), name="medic-backend-upkeep"),
                asyncio.create_task(
                    run_purges(
                        self.purge, RetentionPolicy.from_settings(self.settings.retention), self._stop
                    ),
                    name="medic-purge",
                ),
            ]

    async def purge(self, cut: Cutoffs) -> dict[str, int]:
        """MongoDB deletes incidents and audit records itself (TTL indexes); Redis expires dedup
        keys and the ledger. Left here: dead letters (Redis and the spool), the spool's expired
        dedup keys, and its free pages."""
        counts: dict[str, int] = {}
        if cut.dead_letters is not None:
            counts["dead_letters"] = await self.spool.inbox.purge_dead_letters(cut.dead_letters)
            with contextlib.suppress(BackendUnavailable):
                counts["dead_letters"] += await self.redis_inbox.purge_dead_letters(cut.dead_letters)
        counts["dedup_keys"] = await self.spool.inbox.purge_expired(cut.now)
        counts["bytes_reclaimed"] = await self.spool.db.reclaim()
        if cut.incidents is not None:
            with contextlib.suppress(BackendUnavailable):  # the next round
                counts["incident_marks"] = await self._purge_incident_marks(cut.incidents)
        return counts

    async def _purge_incident_marks(self, before: datetime) -> int:
        """Marks of incidents MongoDB no longer holds (its TTL index deleted them)."""
        gone = 0
        for prefix in INCIDENT_MARK_PREFIXES:
            marks = self.marks(prefix)
            by_incident = await marks.by_incident()
            candidates = forgotten_incidents(by_incident, (), before)
            absent = forgotten_incidents(candidates, await self.mongo.existing(candidates), before)
            spooled = {i for i in absent if await self.spool.get_incident(i) is not None}
            forgotten = forgotten_incidents(absent, spooled, before)
            gone += await marks.forget([key for i in forgotten for key in by_incident[i]])
        return gone

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), seconds)

    async def _run_heartbeat(self) -> None:
        """Renew the lease of every delivery this replica holds, on its own (a long catch-up
        must not let leases run out and hand work to another replica)."""
        while not self._stop.is_set():
            try:
                if self.redis_up.up:
                    await self.redis_inbox.renew()
            except BackendUnavailable:
                pass
            except Exception:
                log.exception("lease renewal failed")
            await self._pause(self.settings.inbox.lease_seconds / 3)

    async def _run_upkeep(self) -> None:
        """Catch up with Redis and MongoDB after an outage, forget dead consumers."""
        tick = min(0.5, self.settings.inbox.lease_seconds / 4)
        next_reap = 0.0
        while not self._stop.is_set():
            now = time.monotonic()
            try:
                await self.inbox.recover()
                if not self.mongo_up.up:
                    await self.mongo.ping()
                if self.mongo_up.up:
                    if not self.mongo.indexed:
                        await self.mongo.setup()
                    await self.store.flush()
                if now >= next_reap and self.redis_up.up:
                    next_reap = now + CONSUMER_REAP_EVERY
                    await self.redis_inbox.forget_idle_consumers()
            except BackendUnavailable:
                pass
            except Exception:
                log.exception("backend upkeep failed")
            await self._pause(tick)

    async def readiness(self) -> tuple[str, dict[str, str]]:
        checks: dict[str, str] = {}

        async def probe(name: str, ping: Awaitable[object], down_note: str) -> None:
            try:
                await asyncio.wait_for(ping, PROBE_TIMEOUT)
                checks[name] = "ok"
            except Exception as exc:
                checks[name] = f"unreachable ({type(exc).__name__}: {exc}): {down_note}"

        await probe(
            "redis", self.redis_inbox.client.ping(), "deliveries are spooled locally, no automatic action"
        )
        await probe("mongo", self.mongo.db.command("ping"), "bundles are kept locally, new incidents wait")
        try:
            counts = await self.spool.counts()
            writes = await write_check(self.spool.db)
            checks["spool"] = (
                f"ok ({counts['deliveries']} deliveries, {counts['bundles']} bundles, "
                f"{counts['audit']} audit records waiting)"
                if writes == "ok"
                else writes
            )
        except Exception as exc:
            checks["spool"] = f"error: {exc}"
        intake_ok = checks["redis"] == "ok" or checks["spool"].startswith("ok")
        all_ok = checks["redis"] == "ok" and checks["mongo"] == "ok" and checks["spool"].startswith("ok")
        return ("ready" if all_ok else "degraded" if intake_ok else "not ready"), checks

    async def close(self) -> None:
        await _stop_tasks(self._stop, self._tasks)  # stopped by an event, not a cancellation
        self._tasks = []
        with contextlib.suppress(BackendUnavailable):
            handed = await self.redis_inbox.hand_back()
            if handed:
                log.info("unfinished deliveries handed back to the other replicas", count=handed)
        with contextlib.suppress(Exception):
            await self.inbox.recover()
        if self.mongo_up.up:
            with contextlib.suppress(Exception):
                await self.store.flush()
        await self._close_clients()

    async def _close_clients(self) -> None:
        with contextlib.suppress(Exception):
            await self.redis_inbox.client.aclose()
        with contextlib.suppress(Exception):
            await self.mongo.close()
        await self.spool.close()
