"""Retention of Medic's own data: what is deleted, and when (docs/backends.md "Retention").

=========================  ==================================  ================================
what                       kept for                            how
=========================  ==================================  ================================
resolved incidents, their  ``MEDIC_RETENTION_INCIDENTS``       SQLite: periodic purge (also the
alerts and marks           after their last change (30d)       incident's notification and
                                                               approval marks); MongoDB: TTL
                                                               index on ``expire_at``
audit records              ``MEDIC_RETENTION_AUDIT`` (90d)     SQLite: periodic purge; MongoDB:
                                                               TTL index on ``at``
dead letters               ``MEDIC_RETENTION_DEAD_LETTERS``    periodic purge (SQLite, spool,
                           after dead-lettering (14d)          Redis ``XTRIM MINID``)
dedup keys                 ``MEDIC_DEDUP_TTL_SECONDS``         SQLite/spool: periodic purge;
                                                               Redis: ``PX`` expiry
action ledger              :data:`LEDGER_RETENTION` (30d)      SQLite: periodic purge; Redis:
                                                               ``PX`` expiry and trimmed sets
=========================  ==================================  ================================

A retention of 0 keeps that data forever. Open incidents are never deleted. The purge runs every
``MEDIC_PURGE_INTERVAL`` (and once at start), in batches, so intake never waits for long; SQLite
then gives the freed pages back to the file system (:meth:`medic.clients.sqlite.SqliteDB.reclaim`).

Everything here is pure but :func:`run_purges`, the loop that calls a backend's ``purge``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

import structlog

from medic.domain.incident import utcnow

log = structlog.get_logger("medic.app.retention")

LEDGER_RETENTION = timedelta(days=30)  # action ledger: far beyond any cooldown, budget or flap window
# Marks kept per incident under "<prefix><incident id>|...": notifications sent, approvals used.
INCIDENT_MARK_PREFIXES = ("notify:", "approval:")


class RetentionSettings(Protocol):
    @property
    def retention_incidents(self) -> timedelta: ...

    @property
    def retention_audit(self) -> timedelta: ...

    @property
    def retention_dead_letters(self) -> timedelta: ...

    @property
    def purge_interval(self) -> timedelta: ...


@dataclass(frozen=True)
class Cutoffs:
    """Delete what is older than these instants; None keeps that kind of data."""

    now: datetime
    incidents: datetime | None
    audit: datetime | None
    dead_letters: datetime | None
    ledger: datetime


@dataclass(frozen=True)
class RetentionPolicy:
    incidents: timedelta | None
    audit: timedelta | None
    dead_letters: timedelta | None
    interval: timedelta = timedelta(minutes=10)

    @classmethod
    def from_settings(cls, settings: RetentionSettings) -> RetentionPolicy:
        return cls(
            incidents=_kept(settings.retention_incidents),
            audit=_kept(settings.retention_audit),
            dead_letters=_kept(settings.retention_dead_letters),
            interval=settings.purge_interval,
        )

    def cutoffs(self, now: datetime) -> Cutoffs:
        def before(keep: timedelta | None) -> datetime | None:
            return None if keep is None else now - keep

        return Cutoffs(
            now=now,
            incidents=before(self.incidents),
            audit=before(self.audit),
            dead_letters=before(self.dead_letters),
            ledger=now - LEDGER_RETENTION,
        )


def _kept(value: timedelta) -> timedelta | None:
    return value if value > timedelta(0) else None


def incident_created(incident_id: str) -> datetime | None:
    """When an incident was opened, from its id (``inc-20261126-080216-3f9a1c2b``)."""
    try:
        return datetime.strptime(incident_id[4:19], "%Y%m%d-%H%M%S").replace(tzinfo=UTC)
    except ValueError:
        return None


def forgotten_incidents(marked: Iterable[str], kept: Iterable[str], before: datetime) -> list[str]:
    """Incidents whose marks may go: opened before ``before`` (a resolved incident is deleted
    ``before`` its resolution at the earliest) and no longer stored (``kept`` are)."""
    keep = set(kept)
    return [
        i
        for i in marked
        if i not in keep and (created := incident_created(i)) is not None and created < before
    ]


Purge = Callable[[Cutoffs], Awaitable[Mapping[str, int]]]


async def purge_once(purge: Purge, policy: RetentionPolicy, now: datetime) -> Mapping[str, int]:
    """One purge; a failure is logged (the next round tries again), never raised."""
    try:
        counts = await purge(policy.cutoffs(now))
    except Exception as exc:
        log.warning("purge failed; retried at the next interval", error=str(exc))
        return {}
    if any(counts.values()):
        log.info("old data purged", **{k: v for k, v in counts.items() if v})
    return counts


async def run_purges(
    purge: Purge,
    policy: RetentionPolicy,
    stop: asyncio.Event,
    clock: Callable[[], datetime] = utcnow,
) -> None:
    """Purge at once, then every ``policy.interval`` until ``stop`` is set."""
    while not stop.is_set():
        await purge_once(purge, policy, clock())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), policy.interval.total_seconds())
