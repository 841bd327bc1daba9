"""Per-key mutual exclusion for the pipeline: one incident key is worked on by one task at a time.

:class:`LocalKeyLocker` serialises the tasks of one process (the embedded, single-replica
backend). :class:`RedisKeyLocker` adds a lock in Medic's Redis so that the replicas serialise
too, renewed while held, with a fencing token: while the lock is held, :data:`fence_token` is
set in the task's context, and the MongoDB incident store refuses a write that carries an older
token than the incident's last write (a replica that lost its lock during a pause cannot
overwrite the work of the replica that took over).

When Medic's Redis cannot be reached the Redis locker falls back to the local lock (diagnosis
continues; no automatic action runs without coordination, see the executor's guard).
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from contextvars import ContextVar
from typing import Protocol

import structlog

from medic.domain.errors import BackendUnavailable, StoreError

log = structlog.get_logger("medic.coordination.keylock")

fence_token: ContextVar[int | None] = ContextVar("medic_fence_token", default=None)


class KeyLocker(Protocol):
    def hold(self, key: str) -> AbstractAsyncContextManager[None]:
        """Hold the lock of ``key`` for the ``async with`` block."""
        ...


class LocalKeyLocker:
    def __init__(self) -> None:
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    def lock(self, key: str) -> asyncio.Lock:
        lock = self._locks.get(key)
        if lock is None:
            lock = asyncio.Lock()
            self._locks[key] = lock
        return lock

    @contextlib.asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        async with self.lock(key):
            yield


class FencedLocks(Protocol):
    """What :class:`RedisKeyLocker` needs from the coordination store."""

    async def acquire_fenced(self, key: str, owner: str, ttl: float) -> int | None: ...

    async def renew_lock(self, key: str, owner: str, ttl: float) -> bool: ...

    async def release_lock(self, key: str, owner: str) -> None: ...


class RedisKeyLocker:
    def __init__(
        self,
        locks: FencedLocks,
        owner: str,
        *,
        ttl: float,
        max_wait: float = 600.0,
    ) -> None:
        self.locks = locks
        self.owner = owner
        self.ttl = ttl
        self.max_wait = max_wait
        self.local = LocalKeyLocker()

    @contextlib.asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        async with self.local.hold(key):  # one task per process asks Redis, the others queue here
            name = f"incident:{key}"
            token = await self._acquire(name)
            if token is None:
                yield
                return
            reset = fence_token.set(token)
            # stopped by an event, not by cancelling: redis-py may swallow a cancellation that
            # lands inside a command (redis/redis-py#2028), and the renewer would run on
            stop = asyncio.Event()
            renewer = asyncio.create_task(self._renew(name, stop), name=f"medic-lock-renew:{key}")
            try:
                yield
            finally:
                stop.set()
                await asyncio.gather(renewer, return_exceptions=True)
                fence_token.reset(reset)
                try:
                    await self.locks.release_lock(name, self.owner)
                except Exception as exc:  # it expires on its own
                    log.warning("lock release failed", lock=name, error=str(exc))

    async def _acquire(self, name: str) -> int | None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_wait
        pause = 0.02
        while True:
            try:
                token = await self.locks.acquire_fenced(name, self.owner, self.ttl)
            except BackendUnavailable as exc:
                log.debug("coordination store unavailable: local lock only", lock=name, error=str(exc))
                return None
            if token is not None:
                return token
            if loop.time() >= deadline:
                raise StoreError(f"lock {name} still held by another replica after {self.max_wait:.0f}s")
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.25)

    async def _renew(self, name: str, stop: asyncio.Event) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.ttl / 3)
            if stop.is_set():
                return
            try:
                if not await self.locks.renew_lock(name, self.owner, self.ttl):
                    log.error("lock lost while held: later writes are fenced off", lock=name)
                    return
            except Exception as exc:  # keep trying while the lock has not expired
                log.warning("lock renewal failed", lock=name, error=str(exc))
