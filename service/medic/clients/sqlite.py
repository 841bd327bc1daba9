"""One SQLite file, one connection, one thread: the embedded backend's storage engine.

All statements run on a dedicated thread (SQLite objects are not thread-safe and calls block).
Writes go through :meth:`SqliteDB.write`, which batches the writes that arrive while a commit is
in flight into one transaction (group commit): every caller is answered only after the COMMIT
that holds its write has returned, with ``synchronous=FULL`` so an acknowledged write survives a
crash of the process or of the machine.

Files are private: the data dir is created ``0700`` and the database (SQLite gives its ``-wal``
and ``-shm`` files the database file's mode) and lock file ``0600``. Space is reusable: the file
uses ``auto_vacuum=INCREMENTAL`` (an older file is converted once, by a VACUUM at open), and
:meth:`SqliteDB.reclaim` hands the pages freed by a purge back to the file system; the WAL is
truncated to :data:`WAL_SIZE_LIMIT` after a checkpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import structlog

from medic.domain.errors import BackendUnavailable, ConfigError, MedicError, StoreError

log = structlog.get_logger("medic.sqlite")

T = TypeVar("T")

LOCK_HELD_BY_PARENT = "MEDIC_INTERNAL_LOCK_HELD_BY"  # env: the pid whose data-dir lock covers us
DIR_MODE = 0o700
FILE_MODE = 0o600
WAL_SIZE_LIMIT = 16 * 1024 * 1024  # bytes the WAL file keeps after a checkpoint
RECLAIM_STEP_PAGES = 256  # free pages given back per step of SqliteDB.reclaim (~1 MiB, tens of ms)
STORAGE_ERRORS = {sqlite3.SQLITE_FULL, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_READONLY, sqlite3.SQLITE_CANTOPEN}
PROBE_KEY = "medic:write-probe"
PROBE_BYTES = 8192  # more than a page: the probe needs pages a delivery would need

SCHEMA = """
CREATE TABLE IF NOT EXISTS inbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    payload TEXT NOT NULL,
    new_episodes TEXT NOT NULL,
    received_at TEXT NOT NULL,
    claimed_by TEXT,
    lease_until REAL,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    dead INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS inbox_ready ON inbox(dead, lease_until, id);
CREATE TABLE IF NOT EXISTS dedup (
    key TEXT PRIMARY KEY,
    expires_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS dedup_expiry ON dedup(expires_at);
CREATE TABLE IF NOT EXISTS incidents (
    id TEXT PRIMARY KEY,
    key TEXT NOT NULL,
    status TEXT NOT NULL,
    rule TEXT,
    namespace TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    doc TEXT NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS incidents_one_open ON incidents(key) WHERE status = 'open';
CREATE INDEX IF NOT EXISTS incidents_status_time ON incidents(status, created_at);
CREATE INDEX IF NOT EXISTS incidents_status_updated ON incidents(status, updated_at);
CREATE TABLE IF NOT EXISTS incident_alerts (
    incident_id TEXT NOT NULL,
    identity TEXT NOT NULL,
    status TEXT NOT NULL,
    first_seen TEXT NOT NULL,
    seq INTEGER NOT NULL,  -- its place in the batch it arrived in: first_seen + seq = arrival order
    doc TEXT NOT NULL,
    PRIMARY KEY (incident_id, identity)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS incident_alerts_status ON incident_alerts(incident_id, status);
CREATE INDEX IF NOT EXISTS incident_alerts_order ON incident_alerts(incident_id, first_seen, seq);
CREATE TABLE IF NOT EXISTS actions (
    idempotency_key TEXT PRIMARY KEY,
    target TEXT NOT NULL,
    action TEXT NOT NULL,
    incident_id TEXT NOT NULL,
    at REAL NOT NULL,
    status TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS actions_target_time ON actions(target, at);
CREATE TABLE IF NOT EXISTS locks (
    key TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    expires_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    at TEXT NOT NULL,
    incident_id TEXT,
    kind TEXT NOT NULL,
    record TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_at ON audit(at);
CREATE TABLE IF NOT EXISTS kv (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    expires_at REAL
);
"""


# Columns added after a table was first shipped: (table, column, declaration). SQLite's
# CREATE TABLE IF NOT EXISTS leaves an older file's table as it was, so they are added here.
ADDED_COLUMNS = (("inbox", "dead_at", "REAL"),)


def _add_missing_columns(conn: sqlite3.Connection) -> None:
    for table, column, decl in ADDED_COLUMNS:
        have = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
        if column not in have:
            conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {decl}")


class SqliteDB:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="medic-sqlite")
        self._conn: sqlite3.Connection | None = None
        self._pending: list[tuple[Callable[[sqlite3.Connection], Any], asyncio.Future[Any]]] = []
        self._writer: asyncio.Task[None] | None = None
        self._lock_file: Any = None
        # the last write the storage refused (disk full, I/O error), until probe_write commits
        self.write_failure: str | None = None
        self.last_write_ok = time.monotonic()

    async def open(self) -> None:
        await self._call(self._open_sync)

    def lock_exclusive(self) -> None:
        """One process per data dir: the embedded backend is single-replica by design. (The
        replica's diagnosis process, started by the lock holder, is let in: its parent's lock
        covers it, see :mod:`medic.app.worker_process`.)"""
        if os.environ.get(LOCK_HELD_BY_PARENT) == str(os.getppid()):
            return
        make_private_dir(self.path.parent)
        lock_path = self.path.with_suffix(".lock")
        self._lock_file = open(private_file(lock_path), "a+")  # noqa: SIM115 - held for life
        try:
            fcntl.flock(self._lock_file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            self._lock_file.close()
            raise ConfigError(
                "another Medic process uses this data dir; the embedded backend runs one replica "
                "(use MEDIC_REDIS_URL and MEDIC_MONGO_URL for several)",
                file=str(self.path.parent),
            ) from exc

    def _open_sync(self) -> None:
        make_private_dir(self.path.parent)
        for suffix in ("", "-wal", "-shm"):  # files of an earlier Medic may be world-readable
            private_file(Path(f"{self.path}{suffix}"), create=not suffix)
        conn = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
        _require_json(conn, self.path)
        if conn.execute("PRAGMA auto_vacuum").fetchone()[0] != 2:
            # takes effect before the first table exists; an older file needs one VACUUM
            conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
            if conn.execute("SELECT COUNT(*) FROM sqlite_schema").fetchone()[0]:
                try:
                    conn.execute("VACUUM")
                except sqlite3.OperationalError as exc:  # e.g. no room for the copy: next start
                    log.warning("could not convert the file to incremental vacuum", error=str(exc))
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA busy_timeout=5000")
        # deleted rows (an acknowledged raw delivery) are overwritten, not left in free space: many
        # SQLite builds default to off, and a backup of the file must hold no secret (docs/security.md)
        conn.execute("PRAGMA secure_delete=ON")
        conn.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT}")
        conn.executescript(SCHEMA)
        _add_missing_columns(conn)
        self._conn = conn

    async def reclaim(self) -> int:
        """Give the file's free pages back to the file system (after a purge), a few thousand
        pages per step so that write batches run in between; returns the bytes freed."""

        def free_pages() -> int:
            return int(self.conn.execute("PRAGMA freelist_count").fetchone()[0])

        def step() -> int:
            # executescript steps the pragma to its end (execute would free a single page)
            self.conn.executescript(f"PRAGMA incremental_vacuum({RECLAIM_STEP_PAGES})")
            return free_pages()

        try:
            page_size = int(await self._call(lambda: self.conn.execute("PRAGMA page_size").fetchone()[0]))
            free = left = await self._call(free_pages)
            while left:
                before, left = left, await self._call(step)
                if left >= before:  # not an auto_vacuum file: the pages stay for reuse
                    break
            if free:  # the file shrinks when the WAL is checkpointed
                await self._call(lambda: self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall())
            return (free - left) * page_size
        except sqlite3.Error as exc:
            raise StoreError(f"sqlite reclaim failed: {exc}") from exc

    async def move_tables_to(self, other: SqliteDB, tables: tuple[str, ...]) -> int:
        """Move the rows of ``tables`` (same schema in both files) into ``other``'s file: for a
        file written by a version that kept them here. Idempotent (rows already there are kept),
        so a crash between the copy and the delete only repeats it; returns the rows moved."""

        def move(conn: sqlite3.Connection) -> int:
            if not any(conn.execute(f"SELECT 1 FROM {t} LIMIT 1").fetchone() for t in tables):
                return 0
            moved = 0
            conn.execute("ATTACH DATABASE ? AS other", (str(other.path),))
            try:
                for table in tables:  # autocommit: each statement commits on its own
                    copy = f"INSERT OR IGNORE INTO other.{table} SELECT * FROM main.{table}"
                    moved += conn.execute(copy).rowcount
                for table in tables:
                    conn.execute(f"DELETE FROM main.{table}")
            finally:
                conn.execute("DETACH DATABASE other")
            return moved

        moved = await self._call(lambda: move(self.conn))
        if moved:
            log.info("moved rows to their own file", tables=list(tables), rows=moved, file=str(other.path))
        return moved

    async def close(self) -> None:
        if self._writer is not None:
            await asyncio.shield(self._writer)
        if self._conn is not None:
            await self._call(self._conn.close)
            self._conn = None
        self._executor.shutdown(wait=True)
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None

    async def _call(self, fn: Callable[[], T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, fn)

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError("the SQLite store is not open")
        return self._conn

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        try:
            return await self._call(lambda: fn(self.conn))
        except sqlite3.Error as exc:
            raise StoreError(f"sqlite read failed: {exc}") from exc

    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` inside a transaction, batched with concurrent writes (group commit)."""
        fut: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._pending.append((fn, fut))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._drain())
        return await fut

    async def _drain(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                results = await self._call(lambda b=batch: self._commit_batch(b))  # type: ignore[misc]
            except Exception as exc:  # BEGIN or COMMIT failed: nothing of the batch is stored
                error = StoreError(f"sqlite commit failed: {exc}")
                error.__cause__ = exc
                results = [(False, error)] * len(batch)
            self._note_storage([value for ok, value in results if not ok])
            results = [(ok, value if ok else self._refused(value)) for ok, value in results]
            for (_, fut), (ok, value) in zip(batch, results, strict=True):
                if fut.done():
                    continue
                if ok:
                    fut.set_result(value)
                else:
                    fut.set_exception(value)

    def _note_storage(self, failures: list[BaseException]) -> None:
        refused = next((f for f in failures if storage_failure(f)), None)
        if refused is not None:
            if self.write_failure is None:
                log.error("the storage refuses writes", file=str(self.path), error=str(refused))
            self.write_failure = str(refused)
        elif not failures:  # (a small write may fit where a delivery does not: only the probe clears)
            self.last_write_ok = time.monotonic()

    def _refused(self, error: BaseException) -> BaseException:
        """A write the storage refused is not the data's fault: BackendUnavailable, so that the
        intake answers 503 and a worker keeps its batch and tries again (nothing is dead-lettered
        or left leased because the disk was full for a while)."""
        if isinstance(error, BackendUnavailable) or not storage_failure(error):
            return error
        unavailable = BackendUnavailable(f"Medic's SQLite file {self.path} refuses writes: {error}")
        unavailable.__cause__ = error
        return unavailable

    async def probe_write(self) -> None:
        """Commit a write that needs a fresh page, as an accepted delivery does (and so fails
        while the disk or the database is full); raises StoreError when it cannot."""

        def probe(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT OR REPLACE INTO kv(key, value, expires_at) VALUES (?, ?, 0)",
                (PROBE_KEY, "x" * PROBE_BYTES),
            )
            conn.execute("DELETE FROM kv WHERE key = ?", (PROBE_KEY,))

        await self.write(probe)
        if self.write_failure is not None:
            log.info("the storage takes writes again", file=str(self.path))
            self.write_failure = None

    def _commit_batch(
        self, batch: list[tuple[Callable[[sqlite3.Connection], Any], Any]]
    ) -> list[tuple[bool, Any]]:
        """Run the writes in one transaction, each in a savepoint of its own so that one that
        fails is undone alone; a write alone in its batch needs none (its failure is the
        transaction's). Every statement is a handover of the GIL: none is spent needlessly."""
        conn = self.conn
        out: list[tuple[bool, Any]] = []
        alone = len(batch) == 1
        conn.execute("BEGIN IMMEDIATE")
        try:
            for fn, _ in batch:
                if not alone:
                    conn.execute("SAVEPOINT w")
                try:
                    out.append((True, fn(conn)))
                    if not alone:
                        conn.execute("RELEASE w")
                except Exception as exc:  # this write fails alone; the others commit
                    if not conn.in_transaction:  # SQLite rolled all of it back (disk full, I/O error)
                        raise
                    conn.execute("ROLLBACK" if alone else "ROLLBACK TO w")
                    if alone:
                        return [(False, _write_error(exc))]
                    conn.execute("RELEASE w")
                    out.append((False, _write_error(exc)))
            conn.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):  # the error that stopped the batch is the news
                conn.execute("ROLLBACK")
            raise
        return out


def _write_error(exc: Exception) -> Exception:
    return exc if isinstance(exc, MedicError) else _store_error(exc)


def _require_json(conn: sqlite3.Connection, path: Path) -> None:
    """The inbox has SQLite answer a group's live keys and a claim's items as one JSON array each,
    and hands it the claimed ids as one (a statement for all of them, not one per item): SQLite's
    JSON functions are built in since 3.38, and in most builds before."""
    try:
        conn.execute("SELECT value FROM json_each('[1]')").fetchall()
    except sqlite3.OperationalError as exc:
        conn.close()
        raise ConfigError(
            f"Python's SQLite library ({sqlite3.sqlite_version}) has no JSON functions, which the "
            "embedded backend needs: use a Python built with SQLite 3.38 or newer",
            file=str(path),
        ) from exc


def storage_failure(exc: BaseException | None) -> bool:
    """Whether a failed write was refused by the storage (full, I/O error, read-only), not
    for its data: judged by the SQLite error in its causes."""
    while exc is not None:
        if isinstance(exc, sqlite3.Error):
            return (getattr(exc, "sqlite_errorcode", 0) & 0xFF) in STORAGE_ERRORS
        exc = exc.__cause__
    return False


def _store_error(exc: Exception) -> StoreError:
    """A failed write as a StoreError that keeps its cause (the worker tells a write that fails
    on its data, and will fail again, from a store that failed for now)."""
    error = StoreError(str(exc))
    error.__cause__ = exc
    return error


def make_private_dir(path: Path) -> None:
    """Create ``path`` (and missing parents) readable by its owner only; an existing dir is
    left as it is (it may be a volume whose mode the platform sets)."""
    if not path.is_dir():
        path.mkdir(parents=True, exist_ok=True)
        os.chmod(path, DIR_MODE)


def private_file(path: Path, *, create: bool = True) -> Path:
    """Make ``path`` a file only its owner can read and write (created empty if missing and
    ``create``); returns it."""
    if create and not path.exists():
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, FILE_MODE))
    if path.exists() and path.stat().st_mode & 0o777 != FILE_MODE:
        os.chmod(path, FILE_MODE)
    return path
