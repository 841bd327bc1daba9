"""The production inbox: Medic's Redis stream, with the local spool when Redis is unreachable.

* ``accept``: into the stream; when Redis cannot be reached (or is known to be down), into the
  local spool instead, durably, and Alertmanager still gets its 2xx. A full stream is
  back-pressure, not an outage: that answer stays a 503.
* ``claim``: from the stream; while Redis is down, from the spool, so diagnosis continues (the
  executor takes no automatic action meanwhile: its coordination guard says no).
* :meth:`FailSafeInbox.recover` (run periodically): probe Redis while it is down; once it
  answers, re-create the consumer group if needed, send the acknowledgements that could not be
  sent, forward the spooled deliveries nobody has started into the stream (the stream's dedup
  drops what another replica already took), and register the spooled episodes' dedup keys, so
  that redeliveries of what was processed locally stay duplicates.

Items claimed from the spool carry ids ``spool:<n>``.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import replace
from datetime import datetime

import structlog

from medic.clients.availability import Availability
from medic.domain.errors import BackendUnavailable, StoreError
from medic.inbox.base import AcceptResult, DeadLetter, InboxItem, Payload
from medic.inbox.redis import RedisInbox
from medic.inbox.spool import LocalSpool

log = structlog.get_logger("medic.inbox.failsafe")

SPOOL = "spool:"
FORWARD_BATCH = 200


class FailSafeInbox:
    def __init__(
        self,
        redis: RedisInbox,
        spool: LocalSpool,
        availability: Availability,
        *,
        spool_max: int,
    ) -> None:
        self.redis = redis
        self.spool = spool
        self.availability = availability
        self.spool_max = spool_max
        self._spooled = 0  # deliveries in the spool, as last counted (bounds the spool)
        self._unsent_acks: set[str] = set()
        self._catch_up = True  # the spool may hold deliveries or dedup keys to forward

    async def open(self) -> None:
        self._spooled = await self.spool.inbox.depth()

    # ------------------------------------------------------------------ Inbox

    async def accept(self, payload: Payload, episodes: list[str], received_at: datetime) -> AcceptResult:
        if self.availability.up:
            try:
                return await self.redis.accept(payload, episodes, received_at)
            except BackendUnavailable as exc:
                log.debug("Medic's Redis is unreachable: spooling the delivery locally", error=str(exc))
        if self._spooled >= self.spool_max:
            raise StoreError(f"the local spool is full ({self.spool_max} deliveries)")
        result = await self.spool.inbox.accept(payload, episodes, received_at)
        self._catch_up = True
        if result.item_id is None:
            return result
        self._spooled += 1
        return replace(result, item_id=SPOOL + result.item_id)

    async def claim(self, consumer: str, limit: int) -> list[InboxItem]:
        if self.availability.up:
            try:
                return await self.redis.claim(consumer, limit)
            except BackendUnavailable:
                pass
        items = await self.spool.inbox.claim(consumer, limit)
        return [replace(item, id=SPOOL + item.id) for item in items]

    async def ack_many(self, item_ids: list[str]) -> None:
        spooled = [i.removeprefix(SPOOL) for i in item_ids if i.startswith(SPOOL)]
        streamed = [i for i in item_ids if not i.startswith(SPOOL)]
        if spooled:
            await self.spool.inbox.ack_many(spooled)
            self._spooled = max(0, self._spooled - len(spooled))
        if streamed:
            try:
                await self.redis.ack_many(streamed)
            except BackendUnavailable:
                # processed and stored: the acknowledgement follows when Redis is back (should this
                # process die first, another replica takes the entries over and finds them done)
                self._unsent_acks.update(streamed)

    async def release(
        self, item_id: str, error: str, *, episodes: list[str] | None = None, dead: bool = False
    ) -> None:
        if item_id.startswith(SPOOL):
            await self.spool.inbox.release(item_id.removeprefix(SPOOL), error, episodes=episodes, dead=dead)
            return
        with contextlib.suppress(BackendUnavailable):  # else its lease runs out all the same
            await self.redis.release(item_id, error, episodes=episodes, dead=dead)

    async def list_dead_letters(self, limit: int = 100, offset: int = 0) -> tuple[list[DeadLetter], int]:
        """The spool's dead letters (ids prefixed like its deliveries) first, then Redis's."""
        local, local_total = await self.spool.inbox.list_dead_letters(limit, offset)
        spooled = [replace(d, id=SPOOL + d.id) for d in local]
        remote: list[DeadLetter] = []
        try:
            if len(spooled) < limit:
                remote, remote_total = await self.redis.list_dead_letters(
                    limit - len(spooled), max(0, offset - local_total)
                )
            else:
                remote_total = await self.redis.dead_letters()
        except BackendUnavailable:
            remote_total = 0
        return [*spooled, *remote], local_total + remote_total

    async def retry_dead_letter(self, item_id: str) -> bool:
        if item_id.startswith(SPOOL):
            return await self.spool.inbox.retry_dead_letter(item_id.removeprefix(SPOOL))
        return await self.redis.retry_dead_letter(item_id)

    async def drop_dead_letter(self, item_id: str) -> bool:
        if item_id.startswith(SPOOL):
            return await self.spool.inbox.drop_dead_letter(item_id.removeprefix(SPOOL))
        return await self.redis.drop_dead_letter(item_id)

    async def depth(self) -> int:
        spooled = await self.spool.inbox.depth()
        try:
            return spooled + await self.redis.depth()
        except BackendUnavailable:
            return spooled

    async def dead_letters(self) -> int:
        local = await self.spool.inbox.dead_letters()
        try:
            return local + await self.redis.dead_letters()
        except BackendUnavailable:
            return local

    async def ping(self) -> None:
        """Intake works while either Redis or the spool does."""
        try:
            await self.redis.ping()
        except StoreError:
            await self.spool.inbox.ping()

    # ------------------------------------------------------------------ recovery

    async def recover(self) -> bool:
        """One round of probing and catching up; True when Redis is up and nothing is left to
        forward."""
        if not self.availability.up:
            try:
                await self.redis.client.ping()
            except Exception:
                return False
            self.availability.mark_up()
            self._catch_up = True
        try:
            if self._unsent_acks:
                acks = sorted(self._unsent_acks)
                await self.redis.ack_many(acks)
                self._unsent_acks.difference_update(acks)
            if self._catch_up:
                await self.redis.setup()
                self._catch_up = False
                await self._forward()
                await self._forward_dedup_keys()
        except BackendUnavailable:
            self._catch_up = True
            return False
        return True

    async def _forward(self) -> None:
        started = time.monotonic()
        forwarded = 0
        while items := await self.spool.inbox.claim("forward-to-redis", FORWARD_BATCH):
            for item in items:
                try:
                    await self.redis.accept(item.payload, item.new_episodes, item.received_at)
                except BackendUnavailable:
                    await self.spool.inbox.release(item.id, "Redis went away while forwarding")
                    raise
                await self.spool.inbox.ack_many([item.id])
                forwarded += 1
        self._spooled = await self.spool.inbox.depth()
        if forwarded:
            log.info(
                "spooled deliveries forwarded to Medic's Redis",
                count=forwarded,
                seconds=round(time.monotonic() - started, 2),
            )

    async def _forward_dedup_keys(self) -> None:
        while keys := await self.spool.dedup_keys(1000):
            now = time.time()
            async with self.redis.client.pipeline(transaction=False) as pipe:
                for key, expires_at in keys:
                    ttl_ms = int((expires_at - now) * 1000)
                    if ttl_ms > 0:
                        pipe.set(self.redis.keys.dedup(key), "spool", px=ttl_ms, nx=True)
                try:
                    await pipe.execute()
                except Exception as exc:
                    self.availability.mark_down(exc)
                    raise BackendUnavailable(f"Medic's Redis is unreachable: {exc}") from exc
            await self.spool.drop_dedup_keys([k for k, _ in keys])
