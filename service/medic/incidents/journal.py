"""Read-modify-write of a stored incident under the pipeline's lock for its key.

The pipeline saves whole incident documents; anyone else who changes an incident (delivery
outcomes on the timeline, an approval) must hold the same per-key lock, or one of the two
saves would silently drop the other's change.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import TypeVar

from medic.domain.incident import Incident
from medic.incidents.base import IncidentStore

T = TypeVar("T")
LockFor = Callable[[str], AbstractAsyncContextManager[object]]  # Pipeline.lock_for


class _OwnLocks:
    def __init__(self) -> None:
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    def __call__(self, key: str) -> asyncio.Lock:
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
        return lock


class IncidentJournal:
    def __init__(self, store: IncidentStore, lock_for: LockFor | None = None) -> None:
        self.store = store
        self.lock_for: LockFor = lock_for or _OwnLocks()

    async def update(
        self, incident_id: str, change: Callable[[Incident], Awaitable[T]]
    ) -> tuple[Incident, T] | None:
        """Load the incident under its key's lock, apply ``change``, save; None if unknown."""
        first = await self.store.get(incident_id)
        if first is None:
            return None
        async with self.lock_for(first.key):
            incident = await self.store.get(incident_id)
            if incident is None:
                return None
            result = await change(incident)
            await self.store.save(incident)
            return incident, result
