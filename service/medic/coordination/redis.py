"""Redis coordination (Medic's own Redis, several replicas): locks, ledger, marks."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

import redis.exceptions as rex
from redis.asyncio import Redis

from medic.clients.availability import Availability
from medic.coordination import redis_scripts as lua
from medic.coordination.redis_keys import RedisKeys
from medic.domain.actions import ActionLimit, ActionMark, BudgetExhausted, KillSwitch
from medic.domain.errors import BackendUnavailable, StoreError

T = TypeVar("T")
Arg = str | int | float
LEDGER_TTL = 30 * 24 * 3600.0  # action ledger entries (cooldowns, budgets, idempotency keys)


class _RedisCalls:
    def __init__(self, client: Redis, keys: RedisKeys, availability: Availability | None) -> None:
        self.client = client
        self.keys = keys
        self.availability = availability

    async def _call(self, fn: Callable[[], Awaitable[T]]) -> T:
        if self.availability is not None:
            self.availability.check()
        try:
            return await fn()
        except (rex.ConnectionError, rex.TimeoutError, OSError) as exc:
            if self.availability is not None:
                self.availability.mark_down(exc)
            raise BackendUnavailable(f"Medic's Redis is unreachable: {exc}") from exc
        except rex.RedisError as exc:
            raise StoreError(f"redis: {exc}") from exc

    async def ping(self) -> None:
        await self._call(self.client.ping)


def _mark(key: str, fields: dict[str, str]) -> ActionMark:
    return ActionMark(
        idempotency_key=key,
        target=fields["target"],
        action=fields["action"],
        incident_id=fields["incident_id"],
        at=datetime.fromtimestamp(float(fields["at"]), UTC),
        status=fields["status"],
        detail=json.loads(fields.get("detail") or "{}"),
    )


class RedisRemediationState(_RedisCalls):
    def __init__(self, client: Redis, keys: RedisKeys, *, availability: Availability | None = None) -> None:
        super().__init__(client, keys, availability)
        self._lock_acquire = client.register_script(lua.LOCK_ACQUIRE)
        self._lock_renew = client.register_script(lua.LOCK_RENEW)
        self._lock_release = client.register_script(lua.LOCK_RELEASE)
        self._begin = client.register_script(lua.ACTION_BEGIN)
        self._finish = client.register_script(lua.ACTION_FINISH)

    # ------------------------------------------------------------------ kill switch

    async def kill_switch(self) -> KillSwitch:
        raw = await self._call(lambda: self.client.get(self.keys.kill_switch))
        if raw is None:
            return KillSwitch(enabled=False)
        data = json.loads(raw)
        return KillSwitch(
            enabled=bool(data["enabled"]),
            by=data.get("by", ""),
            reason=data.get("reason", ""),
            at=datetime.fromisoformat(data["at"]) if data.get("at") else None,
        )

    async def set_kill_switch(self, enabled: bool, by: str, reason: str) -> KillSwitch:
        now = datetime.now(UTC)
        value = json.dumps({"enabled": enabled, "by": by, "reason": reason, "at": now.isoformat()})
        await self._call(lambda: self.client.set(self.keys.kill_switch, value))
        return KillSwitch(enabled=enabled, by=by, reason=reason, at=now)

    # ------------------------------------------------------------------ locks

    async def acquire_fenced(self, key: str, owner: str, ttl: float) -> int | None:
        """Take (or extend, for its owner) the lock; its fencing token, or None when another
        owner holds it. Tokens only grow, across every lock."""
        token = await self._call(
            lambda: self._lock_acquire(
                keys=[self.keys.lock(key), self.keys.lock_seq], args=[owner, int(ttl * 1000)]
            )
        )
        return int(token) or None

    async def acquire_lock(self, key: str, owner: str, ttl: float) -> bool:
        return await self.acquire_fenced(key, owner, ttl) is not None

    async def renew_lock(self, key: str, owner: str, ttl: float) -> bool:
        done = await self._call(
            lambda: self._lock_renew(keys=[self.keys.lock(key)], args=[owner, int(ttl * 1000)])
        )
        return bool(done)

    async def release_lock(self, key: str, owner: str) -> None:
        await self._call(lambda: self._lock_release(keys=[self.keys.lock(key)], args=[owner]))

    # ------------------------------------------------------------------ action ledger

    async def begin_action(self, mark: ActionMark, limits: Sequence[ActionLimit] = ()) -> bool:
        keys = [
            self.keys.action(mark.idempotency_key),
            self.keys.actions,
            self.keys.target_actions(mark.target),
        ]
        args: list[Arg] = [
            mark.target,
            mark.action,
            mark.incident_id,
            f"{mark.at.timestamp():.6f}",
            mark.status,
            json.dumps(mark.detail, default=str),
            mark.idempotency_key,
            int(LEDGER_TTL * 1000),
        ]
        for limit in limits:
            args += ["target" if limit.per_target else "all", limit.count, limit.window.total_seconds()]
        code, which, used = await self._call(lambda: self._begin(keys=keys, args=args))
        if int(code) == 2:
            raise BudgetExhausted(limits[int(which) - 1], int(used))
        return bool(int(code))

    async def finish_action(self, idempotency_key: str, status: str, detail: dict[str, Any]) -> None:
        key = self.keys.action(idempotency_key)
        target = await self._call(lambda: self.client.hget(key, "target"))
        if target is None:
            return
        keys = [key, self.keys.actions, self.keys.target_actions(str(target))]
        args: list[Arg] = [status, json.dumps(detail, default=str), idempotency_key]
        await self._call(lambda: self._finish(keys=keys, args=args))

    async def last_action(self, target: str) -> ActionMark | None:
        async def run() -> ActionMark | None:
            for key in await self.client.zrevrange(self.keys.target_actions(target), 0, 4):
                fields = await self.client.hgetall(self.keys.action(str(key)))
                if fields:
                    return _mark(str(key), {str(k): str(v) for k, v in fields.items()})
            return None

        return await self._call(run)

    async def count_actions(self, since: datetime, target: str | None = None) -> int:
        zset = self.keys.actions if target is None else self.keys.target_actions(target)
        return int(await self._call(lambda: self.client.zcount(zset, f"{since.timestamp():.6f}", "+inf")))

    async def actions_since(self, since: datetime) -> list[ActionMark]:
        async def run() -> list[ActionMark]:
            keys = await self.client.zrangebyscore(self.keys.actions, f"{since.timestamp():.6f}", "+inf")
            async with self.client.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.hgetall(self.keys.action(str(key)))
                found = await pipe.execute()
            return [
                _mark(str(key), {str(k): str(v) for k, v in fields.items()})
                for key, fields in zip(keys, found, strict=True)
                if fields
            ]

        return await self._call(run)


class RedisMarks(_RedisCalls):
    """Durable marks (:class:`medic.coordination.marks.Marks`) shared by every replica."""

    def __init__(
        self,
        client: Redis,
        keys: RedisKeys,
        prefix: str = "",
        *,
        availability: Availability | None = None,
    ) -> None:
        super().__init__(client, keys, availability)
        self.prefix = prefix
        self._claim = client.register_script(lua.MARK_CLAIM)

    async def claim(self, key: str, value: str) -> str | None:
        before = await self._call(lambda: self._claim(keys=[self.keys.mark(self.prefix + key)], args=[value]))
        return None if before is None else str(before)

    async def get(self, key: str) -> str | None:
        value = await self._call(lambda: self.client.get(self.keys.mark(self.prefix + key)))
        return None if value is None else str(value)

    async def put(self, key: str, value: str) -> None:
        await self._call(lambda: self.client.set(self.keys.mark(self.prefix + key), value))

    # ---- retention (medic.app.retention): the marks kept per incident, "<incident id>|..."
    async def by_incident(self) -> dict[str, list[str]]:
        """This prefix's marks of incidents (keys), by incident id."""
        head = self.keys.mark(self.prefix)

        async def run() -> dict[str, list[str]]:
            found: dict[str, list[str]] = {}
            async for key in self.client.scan_iter(match=head + "inc-*", count=1000):
                incident_id = str(key)[len(head) :].split("|", 1)[0]
                found.setdefault(incident_id, []).append(str(key))
            return found

        return await self._call(run)

    async def forget(self, keys: list[str]) -> int:
        gone = 0
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            gone += int(await self._call(lambda c=chunk: self.client.delete(*c)))  # type: ignore[misc]
        return gone
