"""Embedded (SQLite) coordination: kill switch, locks, the action ledger."""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from medic.clients.sqlite import SqliteDB
from medic.domain.actions import ActionLimit, ActionMark, BudgetExhausted, KillSwitch


def _owner_is_dead(owner: str, host: str) -> bool:
    """Whether a lock owner ``<host>-<pid>`` of this host is a process that no longer runs."""
    prefix, _, pid = owner.rpartition("-")
    if prefix != host or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # it runs, as another user
        return False
    return _zombie(int(pid))


def _zombie(pid: int) -> bool:
    """A process that has ended but was not reaped yet (kill(pid, 0) still finds it)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except (OSError, IndexError):
        return False


KILL_SWITCH_KEY = "kill_switch"
LOCK_SEQ_KEY = "lock_seq"  # the fencing-token counter of acquire_fenced


def _mark(row: tuple[Any, ...]) -> ActionMark:
    return ActionMark(
        idempotency_key=row[0],
        target=row[1],
        action=row[2],
        incident_id=row[3],
        at=datetime.fromtimestamp(row[4], UTC),
        status=row[5],
        detail=json.loads(row[6]),
    )


def _used(conn: sqlite3.Connection, mark: ActionMark, limit: ActionLimit) -> int:
    since = (mark.at - limit.window).timestamp()
    sql = "SELECT COUNT(*) FROM actions WHERE at >= ? AND status != 'skipped'"
    args: tuple[Any, ...] = (since,)
    if limit.per_target:
        sql, args = sql + " AND target = ?", (since, mark.target)
    return int(conn.execute(sql, args).fetchone()[0])


class SqliteRemediationState:
    """Embedded coordination state. Survives restarts; one process per data dir (see SqliteDB)."""

    def __init__(self, db: SqliteDB) -> None:
        self.db = db

    async def kill_switch(self) -> KillSwitch:
        row = await self.db.read(
            lambda c: c.execute("SELECT value FROM kv WHERE key = ?", (KILL_SWITCH_KEY,)).fetchone()
        )
        if row is None:
            return KillSwitch(enabled=False)
        data = json.loads(row[0])
        return KillSwitch(
            enabled=data["enabled"],
            by=data.get("by", ""),
            reason=data.get("reason", ""),
            at=datetime.fromisoformat(data["at"]) if data.get("at") else None,
        )

    async def set_kill_switch(self, enabled: bool, by: str, reason: str) -> KillSwitch:
        now = datetime.now(UTC)
        value = json.dumps({"enabled": enabled, "by": by, "reason": reason, "at": now.isoformat()})
        await self.db.write(
            lambda c: c.execute(
                "INSERT OR REPLACE INTO kv(key, value, expires_at) VALUES (?, ?, NULL)",
                (KILL_SWITCH_KEY, value),
            )
        )
        return KillSwitch(enabled=enabled, by=by, reason=reason, at=now)

    async def acquire_lock(self, key: str, owner: str, ttl: float) -> bool:
        now = time.time()

        def tx(conn: sqlite3.Connection) -> bool:
            row = conn.execute("SELECT owner, expires_at FROM locks WHERE key = ?", (key,)).fetchone()
            if row is not None and row[0] != owner and row[1] > now:
                return False
            conn.execute(
                "INSERT OR REPLACE INTO locks(key, owner, expires_at) VALUES (?, ?, ?)",
                (key, owner, now + ttl),
            )
            return True

        return await self.db.write(tx)

    async def release_lock(self, key: str, owner: str) -> None:
        await self.db.write(
            lambda c: c.execute("DELETE FROM locks WHERE key = ? AND owner = ?", (key, owner))
        )

    async def acquire_fenced(self, key: str, owner: str, ttl: float) -> int | None:
        """The lock with a fencing token (increasing), or None while another owner holds it:
        the processes of one replica (intake and diagnosis) serialise on the same file."""
        now = time.time()

        def tx(conn: sqlite3.Connection) -> int | None:
            row = conn.execute("SELECT owner, expires_at FROM locks WHERE key = ?", (key,)).fetchone()
            if row is not None and row[0] != owner and row[1] > now:
                return None
            seq = conn.execute(
                "INSERT INTO kv(key, value, expires_at) VALUES (?, '1', NULL) ON CONFLICT(key) "
                "DO UPDATE SET value = CAST(value AS INTEGER) + 1 RETURNING value",
                (LOCK_SEQ_KEY,),
            ).fetchone()
            conn.execute(
                "INSERT OR REPLACE INTO locks(key, owner, expires_at) VALUES (?, ?, ?)",
                (key, owner, now + ttl),
            )
            return int(seq[0])

        return await self.db.write(tx)

    async def free_locks_of_dead_owners(self, host: str) -> int:
        """Free the locks held by processes of ``host`` that no longer run (an owner is
        ``<host>-<pid>``): a crashed process's locks must not wait for their expiry."""
        rows = await self.db.read(lambda c: c.execute("SELECT key, owner FROM locks").fetchall())
        dead = [(key, owner) for key, owner in rows if _owner_is_dead(owner, host)]
        if dead:
            await self.db.write(
                lambda c: c.executemany("DELETE FROM locks WHERE key = ? AND owner = ?", dead)
            )
        return len(dead)

    async def renew_lock(self, key: str, owner: str, ttl: float) -> bool:
        cur = await self.db.write(
            lambda c: c.execute(
                "UPDATE locks SET expires_at = ? WHERE key = ? AND owner = ?", (time.time() + ttl, key, owner)
            )
        )
        return bool(cur.rowcount)

    async def begin_action(self, mark: ActionMark, limits: Sequence[ActionLimit] = ()) -> bool:
        def tx(conn: sqlite3.Connection) -> bool:
            known = conn.execute(
                "SELECT 1 FROM actions WHERE idempotency_key = ?", (mark.idempotency_key,)
            ).fetchone()
            if known is not None:
                return False
            if mark.status != "skipped":
                for limit in limits:
                    used = _used(conn, mark, limit)
                    if used >= limit.count:
                        raise BudgetExhausted(limit, used)
            cur = conn.execute(
                "INSERT OR IGNORE INTO actions VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    mark.idempotency_key,
                    mark.target,
                    mark.action,
                    mark.incident_id,
                    mark.at.timestamp(),
                    mark.status,
                    json.dumps(mark.detail),
                ),
            )
            return cur.rowcount == 1

        return await self.db.write(tx)

    async def finish_action(self, idempotency_key: str, status: str, detail: dict[str, Any]) -> None:
        await self.db.write(
            lambda c: c.execute(
                "UPDATE actions SET status = ?, detail = ? WHERE idempotency_key = ?",
                (status, json.dumps(detail, default=str), idempotency_key),
            )
        )

    async def last_action(self, target: str) -> ActionMark | None:
        row = await self.db.read(
            lambda c: c.execute(
                "SELECT * FROM actions WHERE target = ? AND status != 'skipped' ORDER BY at DESC LIMIT 1",
                (target,),
            ).fetchone()
        )
        return _mark(row) if row else None

    async def count_actions(self, since: datetime, target: str | None = None) -> int:
        ts = since.timestamp()
        if target is None:
            sql, args = "SELECT COUNT(*) FROM actions WHERE at >= ? AND status != 'skipped'", (ts,)
        else:
            sql = "SELECT COUNT(*) FROM actions WHERE at >= ? AND status != 'skipped' AND target = ?"
            args = (ts, target)  # type: ignore[assignment]
        row = await self.db.read(lambda c: c.execute(sql, args).fetchone())
        return int(row[0])

    async def actions_since(self, since: datetime) -> list[ActionMark]:
        rows = await self.db.read(
            lambda c: c.execute(
                "SELECT * FROM actions WHERE at >= ? AND status != 'skipped' ORDER BY at",
                (since.timestamp(),),
            ).fetchall()
        )
        return [_mark(r) for r in rows]

    # ---- retention (medic.app.retention): ledger entries past every window, expired locks
    async def purge(self, ledger_before: datetime, at: datetime) -> int:
        now = at.timestamp()

        def tx(conn: sqlite3.Connection) -> int:
            gone = conn.execute("DELETE FROM actions WHERE at < ?", (ledger_before.timestamp(),)).rowcount
            gone += conn.execute("DELETE FROM locks WHERE expires_at < ?", (now,)).rowcount
            gone += conn.execute(
                "DELETE FROM kv WHERE expires_at IS NOT NULL AND expires_at < ?", (now,)
            ).rowcount
            return int(gone)

        return await self.db.write(tx)
