"""Embedded (SQLite) implementation of the state interfaces."""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from medic.redact import redact_text
from medic.sqlitedb import SqliteDB
from medic.state.base import (
    AcceptResult,
    ActionLimit,
    ActionMark,
    BudgetExhausted,
    DeadLetter,
    InboxItem,
    KillSwitch,
    Payload,
    kept_delivery,
    payload_json,
)

MAX_ATTEMPTS = 5
RETRY_DELAY = 5.0  # a failed item is handed out again after this many seconds


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
    return False


# A new episode key, or one whose expiry passed, is (re)set and returned; a live one is not.
_CLAIM_EPISODE = (
    "INSERT INTO dedup(key, expires_at) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET "
    "expires_at = excluded.expires_at WHERE dedup.expires_at <= ? RETURNING key"
)


def _row_id(item_id: str) -> int | None:
    """An inbox row id from an id given by a user (API, CLI): None if it cannot be one."""
    return int(item_id) if item_id.isascii() and item_id.isdigit() and len(item_id) < 19 else None


def _dead_letter(row: tuple[Any, ...]) -> DeadLetter:
    return DeadLetter(
        id=str(row[0]),
        payload=json.loads(row[1]),
        episodes=json.loads(row[2]),
        received_at=datetime.fromisoformat(row[3]),
        dead_at=datetime.fromtimestamp(row[4], UTC) if row[4] is not None else None,
        attempts=int(row[5]),
        error=row[6] or "",
    )


class SqliteInbox:
    """Inbox rows are deleted on ack; a claimed row whose lease ran out is claimed again."""

    def __init__(self, db: SqliteDB, *, dedup_ttl: float, lease_seconds: float = 300.0) -> None:
        self.db = db
        self.dedup_ttl = dedup_ttl
        self.lease_seconds = lease_seconds

    async def accept(self, payload: Payload, episodes: list[str], received_at: datetime) -> AcceptResult:
        now = time.time()
        expires = now + self.dedup_ttl
        body = payload_json(payload)

        def tx(conn: sqlite3.Connection) -> AcceptResult:
            new: list[str] = []
            for key in dict.fromkeys(episodes):
                # one statement: a new key, or one whose expiry passed, is (re)set and returned
                if conn.execute(_CLAIM_EPISODE, (key, expires, now)).fetchone() is not None:
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
        return [
            InboxItem(
                id=str(r[0]),
                payload=json.loads(r[1]),
                new_episodes=json.loads(r[2]),
                received_at=datetime.fromisoformat(r[3]),
                attempts=r[4],
            )
            for r in await self.claim_rows(consumer, limit)
        ]

    async def claim_rows(self, consumer: str, limit: int) -> list[tuple[int, str, str, str, int]]:
        """:meth:`claim` as stored: (id, payload JSON, episodes JSON, received_at, attempts),
        in order; what the intake hands the diagnosis process without parsing it."""
        now = time.time()
        lease_until = now + self.lease_seconds

        def tx(conn: sqlite3.Connection) -> list[tuple[int, str, str, str, int]]:
            rows = conn.execute(
                "UPDATE inbox SET claimed_by = ?, lease_until = ?, attempts = attempts + 1 "
                "WHERE id IN (SELECT id FROM inbox WHERE dead = 0 AND "
                "(lease_until IS NULL OR lease_until < ?) ORDER BY id LIMIT ?) "
                "RETURNING id, payload, new_episodes, received_at, attempts",
                (consumer, lease_until, now, limit),
            ).fetchall()
            return sorted(rows, key=lambda r: int(r[0]))

        return await self.db.write(tx)

    async def ack_many(self, item_ids: list[str]) -> None:
        ids = [(int(i),) for i in item_ids]
        await self.db.write(lambda c: c.executemany("DELETE FROM inbox WHERE id = ?", ids))

    async def release(
        self, item_id: str, error: str, *, episodes: list[str] | None = None, dead: bool = False
    ) -> None:
        now = time.time()

        def tx(conn: sqlite3.Connection) -> None:
            row = conn.execute(
                "SELECT attempts, new_episodes FROM inbox WHERE id = ?", (int(item_id),)
            ).fetchone()
            if row is None:
                return
            left = json.dumps(episodes) if episodes is not None else row[1]
            if not (dead or row[0] >= MAX_ATTEMPTS):
                conn.execute(
                    "UPDATE inbox SET lease_until = ?, last_error = ?, new_episodes = ? WHERE id = ?",
                    (now + RETRY_DELAY, error[:2000], left, int(item_id)),
                )
                return
            (body,) = conn.execute("SELECT payload FROM inbox WHERE id = ?", (int(item_id),)).fetchone()
            conn.execute(
                "UPDATE inbox SET dead = 1, dead_at = ?, lease_until = NULL, claimed_by = NULL, "
                "last_error = ?, new_episodes = ?, payload = ? WHERE id = ?",
                (now, redact_text(error[:2000]), left, kept_delivery(body), int(item_id)),
            )
            released = [(key,) for key in json.loads(left)]
            conn.executemany("DELETE FROM dedup WHERE key = ?", released)

        await self.db.write(tx)

    async def list_dead_letters(self, limit: int = 100, offset: int = 0) -> tuple[list[DeadLetter], int]:
        def run(conn: sqlite3.Connection) -> tuple[list[DeadLetter], int]:
            total = conn.execute("SELECT COUNT(*) FROM inbox WHERE dead = 1").fetchone()[0]
            rows = conn.execute(
                "SELECT id, payload, new_episodes, received_at, dead_at, attempts, last_error "
                "FROM inbox WHERE dead = 1 ORDER BY id DESC LIMIT ? OFFSET ?",
                (limit, offset),
            ).fetchall()
            return [_dead_letter(r) for r in rows], int(total)

        return await self.db.read(run)

    async def retry_dead_letter(self, item_id: str) -> bool:
        key = _row_id(item_id)
        if key is None:
            return False
        cur = await self.db.write(
            lambda c: c.execute(
                "UPDATE inbox SET dead = 0, dead_at = NULL, attempts = 0, lease_until = NULL, "
                "claimed_by = NULL WHERE id = ? AND dead = 1",
                (key,),
            )
        )
        return bool(cur.rowcount)

    async def drop_dead_letter(self, item_id: str) -> bool:
        key = _row_id(item_id)
        if key is None:
            return False
        cur = await self.db.write(lambda c: c.execute("DELETE FROM inbox WHERE id = ? AND dead = 1", (key,)))
        return bool(cur.rowcount)

    async def depth(self) -> int:
        row = await self.db.read(lambda c: c.execute("SELECT COUNT(*) FROM inbox WHERE dead = 0").fetchone())
        return int(row[0])

    async def dead_letters(self) -> int:
        row = await self.db.read(lambda c: c.execute("SELECT COUNT(*) FROM inbox WHERE dead = 1").fetchone())
        return int(row[0])

    async def purge_expired(self, at: datetime | None = None) -> int:
        """Delete the dedup keys that expired (by ``at``, default now); returns how many."""
        now = at.timestamp() if at is not None else time.time()
        cur = await self.db.write(lambda c: c.execute("DELETE FROM dedup WHERE expires_at < ?", (now,)))
        return int(cur.rowcount)

    # ---- retention (medic.retention): dead letters older than the retention are deleted
    async def purge_dead_letters(self, before: datetime) -> int:
        cutoff = before.timestamp()
        cur = await self.db.write(
            lambda c: c.execute(
                "DELETE FROM inbox WHERE dead = 1 AND COALESCE(dead_at, lease_until, 0) < ?", (cutoff,)
            )
        )
        return int(cur.rowcount)

    async def recover(self) -> int:
        """At start-up of the single embedded replica every lease is a dead process's: free them."""
        cur = await self.db.write(
            lambda c: c.execute(
                "UPDATE inbox SET lease_until = NULL, claimed_by = NULL WHERE dead = 0 "
                "AND lease_until IS NOT NULL"
            )
        )
        return int(cur.rowcount)

    async def ping(self) -> None:
        await self.db.read(lambda c: c.execute("SELECT 1").fetchone())


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

    # ---- retention (medic.retention): ledger entries past every window, expired locks
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
