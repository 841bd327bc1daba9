"""Redis implementation of the state interfaces (Medic's own Redis, several replicas).

Inbox: a stream with one consumer group. ``accept`` is one Lua script (dedup keys ``SET PX`` +
``XADD``, all or nothing, refused when the backlog reaches ``MEDIC_QUEUE_MAX``); workers
``claim`` with ``XREADGROUP``, and take over with ``XAUTOCLAIM`` what another replica claimed and
has not touched for a lease (it died, or hangs); a replica renews the lease of what it holds
(:meth:`RedisInbox.renew`), hands it back on shutdown, and ``ack`` removes an entry for good
(``XACK`` + ``XDEL``, so the stream's length is the backlog and nothing unfinished is ever
trimmed). An entry delivered more than :data:`MAX_DELIVERIES` times goes to a capped
dead-letter stream.

Remediation state: kill switch, locks with a fencing token and an expiry (released only by
their owner), and the action ledger (idempotency key ``SET NX`` semantics, sorted sets by time
per target and overall for cooldowns and budgets), each operation one atomic script.

Connection failures raise :class:`~medic.domain.errors.BackendUnavailable` (and mark the shared
:class:`~medic.clients.availability.Availability` down); other Redis errors raise StoreError.
Needs Redis >= 6.2 (XAUTOCLAIM) as one primary (not Redis Cluster), with AOF persistence.
"""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime
from typing import Any

import redis.exceptions as rex
import structlog
from redis.asyncio import Redis

from medic.clients.availability import Availability
from medic.coordination import redis_scripts as lua
from medic.coordination.redis import _RedisCalls
from medic.coordination.redis_keys import GROUP, RedisKeys
from medic.domain.errors import StoreError
from medic.domain.redact import redact_text
from medic.inbox.base import AcceptResult, DeadLetter, InboxItem, Payload, kept_delivery, payload_json

log = structlog.get_logger("medic.inbox.redis")
Arg = str | int | float
MAX_DELIVERIES = 5  # as the embedded inbox's MAX_ATTEMPTS
DEAD_LETTER_CAP = 10_000
RETRY_DELAY = 5.0  # a failed item is handed out again after this many seconds
IDLE_CONSUMER_SECONDS = 3600.0  # consumers without pending entries are removed after this


def _fields(flat: list[str]) -> dict[str, str]:
    return dict(zip(flat[::2], flat[1::2], strict=True))


_STREAM_ID = re.compile(r"[0-9]{1,19}-[0-9]{1,19}")


def _dead_letter_record(entry_id: str, fields: dict[str, str]) -> DeadLetter:
    """A dead-letter stream entry as the interface's record (tolerant: it is kept for humans)."""

    def loads(name: str, default: Any) -> Any:
        try:
            return json.loads(fields[name])
        except (KeyError, ValueError):
            return default

    received = fields.get("received_at", "")
    dead_at = fields.get("dead_at")
    try:
        received_at = datetime.fromisoformat(received)
    except ValueError:
        received_at = datetime.fromtimestamp(int(entry_id.split("-")[0]) / 1000, UTC)
    try:
        dead_time = datetime.fromtimestamp(float(dead_at), UTC) if dead_at else None
    except ValueError:
        dead_time = None
    payload = loads("payload", {})
    return DeadLetter(
        id=entry_id,
        payload=payload if isinstance(payload, dict) else {},
        episodes=list(loads("episodes", [])),
        received_at=received_at,
        dead_at=dead_time,
        attempts=int(fields.get("deliveries", "0") or 0),
        error=fields.get("error", ""),
    )


class RedisInbox(_RedisCalls):
    def __init__(
        self,
        client: Redis,
        keys: RedisKeys,
        *,
        dedup_ttl: float,
        lease_seconds: float,
        queue_max: int,
        availability: Availability | None = None,
        max_deliveries: int = MAX_DELIVERIES,
        retry_delay: float = RETRY_DELAY,
    ) -> None:
        super().__init__(client, keys, availability)
        self.dedup_ttl_ms = int(dedup_ttl * 1000)
        self.lease_ms = max(1, int(lease_seconds * 1000))
        self.queue_max = queue_max
        self.max_deliveries = max_deliveries
        self.retry_delay_ms = int(retry_delay * 1000)
        self.autoclaim_every = min(lease_seconds / 2, 1.0)
        self._accept = client.register_script(lua.ACCEPT)
        self._claim = client.register_script(lua.CLAIM)
        self._ack = client.register_script(lua.ACK)
        self._release = client.register_script(lua.RELEASE)
        self._renew = client.register_script(lua.RENEW)
        self._dead_letter_script = client.register_script(lua.DEAD_LETTER)
        self._retry_dead = client.register_script(lua.RETRY_DEAD)
        self._cursor = "0-0"
        self._next_autoclaim = 0.0
        self._held: dict[str, str] = {}  # entry id -> consumer: renewed, handed back on shutdown
        self._deliveries: dict[str, int] = {}  # entry id -> times delivered, for what is held
        self._payloads: dict[str, str] = {}  # entry id -> its delivery, kept if it is dead-lettered

    async def setup(self) -> None:
        """Create the stream and its consumer group (idempotent)."""

        async def create() -> None:
            try:
                await self.client.xgroup_create(self.keys.inbox, GROUP, id="0", mkstream=True)
            except rex.ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

        await self._call(create)

    @property
    def held(self) -> int:
        return len(self._held)

    async def accept(self, payload: Payload, episodes: list[str], received_at: datetime) -> AcceptResult:
        unique = list(dict.fromkeys(episodes))
        if not unique:
            return AcceptResult(item_id=None, new_episodes=[], duplicates=0)
        keys = [self.keys.inbox, *(self.keys.dedup(e) for e in unique)]
        args: list[Arg] = [
            self.dedup_ttl_ms,
            self.queue_max,
            payload_json(payload),
            received_at.isoformat(),
            *unique,
        ]
        try:
            entry_id, new = await self._call(lambda: self._accept(keys=keys, args=args))
        except StoreError as exc:
            if "FULL" in str(exc):
                raise StoreError(f"the inbox is full ({self.queue_max} unfinished deliveries)") from exc
            raise
        new = list(new)
        return AcceptResult(item_id=entry_id or None, new_episodes=new, duplicates=len(episodes) - len(new))

    async def claim(self, consumer: str, limit: int) -> list[InboxItem]:
        now = time.monotonic()
        cursor = self._cursor if now >= self._next_autoclaim else ""
        keys = [self.keys.inbox, self.keys.dead, self.keys.errors]
        args: list[Arg] = [
            GROUP,
            consumer,
            self.lease_ms,
            limit,
            self.max_deliveries,
            DEAD_LETTER_CAP,
            cursor,
            self.keys.dedup_prefix,
        ]

        async def run() -> Any:
            try:
                return await self._claim(keys=keys, args=args)
            except rex.ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                log.warning("the inbox consumer group is gone (Redis lost its data?): re-created")
                try:
                    await self.client.xgroup_create(self.keys.inbox, GROUP, id="0", mkstream=True)
                except rex.ResponseError as again:
                    if "BUSYGROUP" not in str(again):
                        raise
                return await self._claim(keys=keys, args=args)

        next_cursor, entries, over = await self._call(run)
        for entry_id, flat, deliveries, error in over:  # its consumer kept dying with it
            payload = _fields(flat).get("payload", "")
            await self._dead_letter(entry_id, payload, error, deliveries=int(deliveries))
        if cursor:
            self._cursor = next_cursor or "0-0"
            more = self._cursor != "0-0"
            self._next_autoclaim = now if more else now + self.autoclaim_every
        items: list[InboxItem] = []
        for entry_id, flat, deliveries in entries:
            fields = _fields(flat)
            try:
                item = InboxItem(
                    id=entry_id,
                    payload=json.loads(fields["payload"]),
                    new_episodes=json.loads(fields["episodes"]),
                    received_at=datetime.fromisoformat(fields["received_at"]),
                    attempts=int(deliveries),
                )
            except (KeyError, ValueError) as exc:
                await self._dead_letter(entry_id, fields.get("payload", ""), f"unreadable entry: {exc}")
                continue
            if int(deliveries) > 1:
                log.info("took over a delivery", item=entry_id, deliveries=int(deliveries))
            self._held[entry_id] = consumer
            self._deliveries[entry_id] = int(deliveries)
            self._payloads[entry_id] = fields["payload"]
            items.append(item)
        return items

    async def _dead_letter(
        self,
        entry_id: str,
        payload: str,
        error: str,
        *,
        episodes: list[str] | None = None,
        deliveries: int = 0,
    ) -> None:
        """Move an entry to the dead letters (one script): the delivery and the error redacted (a
        backup of Medic's Redis is no secret dump), the dedup keys of ``episodes`` (default: all
        of the entry's) released."""
        args: list[Arg] = [
            GROUP,
            entry_id,
            redact_text(error[:2000]),
            DEAD_LETTER_CAP,
            self.keys.dedup_prefix,
            json.dumps(episodes) if episodes is not None else "",
            kept_delivery(payload) if payload else "",
        ]
        keys = [self.keys.inbox, self.keys.dead, self.keys.errors]
        if await self._call(lambda: self._dead_letter_script(keys=keys, args=args)):
            log.error("delivery dead-lettered", item=entry_id, deliveries=deliveries, error=error[:2000])

    async def ack_many(self, item_ids: list[str]) -> None:
        keys = [self.keys.inbox, self.keys.errors]
        for start in range(0, len(item_ids), 256):
            chunk = item_ids[start : start + 256]
            await self._call(lambda c=chunk: self._ack(keys=keys, args=[GROUP, *c]))  # type: ignore[misc]
            for item_id in chunk:
                self._forget(item_id)

    async def release(
        self, item_id: str, error: str, *, episodes: list[str] | None = None, dead: bool = False
    ) -> None:
        """A stream entry cannot be narrowed in place: until it is dead-lettered every retry
        processes all of its alerts again (done ones are merged idempotently)."""
        try:
            if dead or self._deliveries.get(item_id, 0) >= self.max_deliveries:
                payload = self._payloads.get(item_id, "")
                await self._dead_letter(item_id, payload, error, episodes=episodes)
            else:
                idle = max(0, self.lease_ms - self.retry_delay_ms)
                args: list[Arg] = [GROUP, item_id, idle, redact_text(error[:2000])]
                await self._call(lambda: self._release(keys=[self.keys.inbox, self.keys.errors], args=args))
        finally:  # handed back or not, this process holds it no more: its lease runs out
            self._forget(item_id)

    def _forget(self, item_id: str) -> None:
        self._held.pop(item_id, None)
        self._deliveries.pop(item_id, None)
        self._payloads.pop(item_id, None)

    async def list_dead_letters(self, limit: int = 100, offset: int = 0) -> tuple[list[DeadLetter], int]:
        async def run() -> tuple[list[Any], int]:
            total = int(await self.client.xlen(self.keys.dead))
            if offset >= total:
                return [], total
            entries: list[Any] = await self.client.xrevrange(self.keys.dead, count=offset + limit) or []
            return entries[offset:], total

        entries, total = await self._call(run)
        return [_dead_letter_record(entry_id, fields) for entry_id, fields in entries], total

    async def retry_dead_letter(self, item_id: str) -> bool:
        if not _STREAM_ID.fullmatch(item_id):
            return False
        new_id = await self._call(
            lambda: self._retry_dead(keys=[self.keys.dead, self.keys.inbox], args=[item_id])
        )
        return bool(new_id)

    async def drop_dead_letter(self, item_id: str) -> bool:
        if not _STREAM_ID.fullmatch(item_id):
            return False
        return bool(await self._call(lambda: self.client.xdel(self.keys.dead, item_id)))

    async def hand_back(self) -> int:
        """Shutdown: make every entry this process holds immediately claimable by another
        replica, without counting a delivery. Returns how many."""
        held, self._held = self._held, {}
        self._deliveries, self._payloads = {}, {}
        for item_id in held:
            await self._call(
                lambda i=item_id: self._release(  # type: ignore[misc]
                    keys=[self.keys.inbox, self.keys.errors], args=[GROUP, i, self.lease_ms, ""]
                )
            )
        return len(held)

    async def renew(self) -> int:
        """Extend the lease of every entry this process holds; forget those another replica took
        over meanwhile. Returns how many are held."""
        if not self._held:
            return 0
        pairs = list(self._held.items())
        args: list[str] = [GROUP]
        for item_id, consumer in pairs:
            args += [item_id, consumer]
        lost = await self._call(lambda: self._renew(keys=[self.keys.inbox], args=args))
        for item_id in lost:
            if item_id in self._held:
                self._forget(item_id)
                log.warning("a held delivery was taken over by another replica", item=item_id)
        return len(self._held)

    async def forget_idle_consumers(self, idle_seconds: float = IDLE_CONSUMER_SECONDS) -> int:
        """Remove consumers (of dead processes) that hold nothing and have been idle for long."""

        async def run() -> int:
            removed = 0
            for info in await self.client.xinfo_consumers(self.keys.inbox, GROUP):
                if int(info["pending"]) == 0 and int(info["idle"]) > idle_seconds * 1000:
                    await self.client.xgroup_delconsumer(self.keys.inbox, GROUP, info["name"])
                    removed += 1
            return removed

        return await self._call(run)

    async def depth(self) -> int:
        return int(await self._call(lambda: self.client.xlen(self.keys.inbox)))

    async def dead_letters(self) -> int:
        return int(await self._call(lambda: self.client.xlen(self.keys.dead)))

    # ---- retention (medic.app.retention): a dead-letter stream entry's id is its time (ms)
    async def purge_dead_letters(self, before: datetime) -> int:
        min_id = f"{int(before.timestamp() * 1000)}-0"
        trim = self.client.xtrim
        return int(await self._call(lambda: trim(self.keys.dead, minid=min_id, approximate=False)))
