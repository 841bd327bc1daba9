"""A full disk (issue 11.8), simulated with SQLite's ``PRAGMA max_page_count`` (the database
cannot grow: SQLITE_FULL, as on a full disk): intake answers 503 and /readyz says not ready
while writes are refused; the deliveries workers held meanwhile are neither dead-lettered nor
left leased for the lease's 300 s: once space returns they are processed at once."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from medic.app.backend_select import ProductionBackend, open_backend
from medic.app.worker import Worker
from medic.clients.sqlite import SqliteDB
from medic.domain.errors import BackendUnavailable
from medic.incidents.base import IncidentQuery
from tests.fakes.mongo_server import FakeMongoServer
from tests.medic_app import RunningMedic, medic_settings, running_medic
from tests.payloads import alert, payload
from tests.servers.redis_server import RedisServer

pytestmark = pytest.mark.integration

LEASE = 300.0  # the embedded inbox's lease: what a stuck delivery would wait for
BOUND = 60.0  # processed well within this once space returns (never a lease)


def crash(i: int) -> dict[str, Any]:
    return alert(
        "KubePodCrashLooping",
        namespace="playcode",
        pod=f"playcode-app-5d8f7c9b4d-{'bcdfghjklm'[i // 10]}{'bcdfghjklm'[i % 10]}xyz",
        container="app",
        blob="x" * 600,  # deliveries of a realistic size: they need fresh pages
    )


def deliveries(first: int, count: int, per: int = 10) -> list[dict[str, Any]]:
    return [payload([crash(i) for i in range(n, n + per)]) for n in range(first, first + count, per)]


async def post(m: RunningMedic, body: dict[str, Any]) -> int:
    async with aiohttp.ClientSession() as s, s.post(f"{m.url}/api/v1/alerts", json=body) as resp:
        return resp.status


async def readyz(m: RunningMedic) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as s, s.get(f"{m.url}/readyz") as resp:
        return resp.status, await resp.json()


def fill(conn: sqlite3.Connection) -> None:
    """Make the database full: it may not grow, and the room left in its pages is taken."""
    conn.execute("CREATE TABLE IF NOT EXISTS filler (x BLOB)")
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.execute(f"PRAGMA max_page_count = {pages}")
    for size in (4096, 1024, 256, 64, 16, 1):
        while True:
            try:
                conn.execute("INSERT INTO filler VALUES (zeroblob(?))", (size,))
            except sqlite3.OperationalError as exc:
                assert exc.sqlite_errorcode == sqlite3.SQLITE_FULL, exc
                break


def make_room(conn: sqlite3.Connection) -> None:
    conn.execute("PRAGMA max_page_count = 1073741823")
    conn.execute("DROP TABLE filler")


async def wait_until(check: Any, timeout: float, what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await check():
        assert loop.time() < deadline, f"not within {timeout:g}s: {what}"
        await asyncio.sleep(0.1)


async def alerts_stored(m: RunningMedic) -> int:
    items, _ = await m.runtime.store.query(IncidentQuery())
    return sum(i.alerts_total for i in items)


async def test_a_full_disk_delays_nothing_once_space_returns(tmp_path: Path) -> None:
    settings = medic_settings(tmp_path, workers=2)
    async with running_medic(settings, workers=False) as medic:
        db: SqliteDB = medic.runtime.backend.db  # type: ignore[attr-defined]
        inbox_db: SqliteDB = medic.runtime.backend.inbox_db  # type: ignore[attr-defined]
        for body in deliveries(0, 40):
            assert await post(medic, body) == 200  # accepted before the disk filled up
        assert (await readyz(medic))[0] == 200

        # a worker held the deliveries when the disk filled up: it cannot store anything of them,
        # nor hand them back (a write too)
        held = await medic.runtime.inbox.claim("worker-0", 32)
        assert len(held) == 4
        await db.read(fill)  # the disk is full: both files (store and inbox) are on it
        await inbox_db.read(fill)
        handling = asyncio.create_task(medic.runtime.worker.handle(held))
        medic.runtime.worker.start()

        await wait_until(lambda: _true(db.write_failure is not None), 20, "a refused write is seen")
        assert await post(medic, deliveries(40, 10)[0]) == 503  # not stored: Alertmanager retries
        status, body = await readyz(medic)  # and not ready while intake cannot store
        assert status == 503 and body["status"] == "not ready", body
        assert "intake cannot store" in body["checks"]["writes"]
        await asyncio.sleep(3)  # a few rounds of retries while the disk stays full
        assert await alerts_stored(medic) == 0
        assert await medic.runtime.inbox.dead_letters() == 0  # a full disk is not the data's fault

        await db.read(make_room)
        await inbox_db.read(make_room)
        started = asyncio.get_running_loop().time()
        await wait_until(lambda: _eq(alerts_stored(medic), 40), BOUND, "the 40 alerts processed")
        waited = asyncio.get_running_loop().time() - started
        assert waited < LEASE / 5, waited
        await medic.drain(timeout=BOUND)
        await asyncio.wait_for(handling, BOUND)
        assert await medic.runtime.inbox.dead_letters() == 0
        status, body = await readyz(medic)
        assert status == 200, body
        assert await post(medic, deliveries(40, 10)[0]) == 200  # the retried delivery is taken now
        await medic.drain(timeout=BOUND)
        assert await alerts_stored(medic) == 50


async def test_readyz_probes_a_real_write_and_recovers(tmp_path: Path) -> None:
    """Nothing was written for a while (no delivery came): /readyz itself finds out."""
    async with running_medic(medic_settings(tmp_path), workers=False) as medic:
        db: SqliteDB = medic.runtime.backend.inbox_db  # type: ignore[attr-defined]  # what intake writes
        # the purge's first round (at start) writes: wait until nothing has been written for a while
        await wait_until(lambda: _true(time.monotonic() - db.last_write_ok > 0.5), 20, "start-up writes done")
        await db.read(fill)
        db.last_write_ok -= 3600  # idle for an hour
        status, body = await readyz(medic)
        assert status == 503 and "intake cannot store" in body["checks"]["writes"], body
        await db.read(make_room)
        status, body = await readyz(medic)
        assert status == 200 and body["checks"]["writes"] == "ok", body


async def _true(value: bool) -> bool:
    return value


async def _eq(value: Any, expected: int) -> bool:
    return bool(await value == expected)


class RefusingAcks:
    """The embedded inbox, whose storage refuses the first ``times`` acknowledgements (as when
    the disk fills up right after a delivery was processed): a seam, not a stand-in."""

    def __init__(self, inbox: Any, times: int) -> None:
        self.inbox = inbox
        self.times = times

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inbox, name)

    async def ack_many(self, item_ids: list[str]) -> None:
        if self.times > 0:
            self.times -= 1
            raise BackendUnavailable("the disk is full")
        await self.inbox.ack_many(item_ids)


async def test_a_refused_acknowledgement_is_retried_not_left_to_the_lease(tmp_path: Path) -> None:
    async with running_medic(medic_settings(tmp_path), workers=False) as medic:
        runtime = medic.runtime
        inbox = RefusingAcks(runtime.inbox, times=2)
        worker = Worker(
            inbox, runtime.pipeline, runtime.metrics, concurrency=1, wake=asyncio.Event(), poll_seconds=0.1
        )
        assert await post(medic, deliveries(0, 10)[0]) == 200
        worker.start()
        try:
            await wait_until(lambda: _eq(runtime.inbox.depth(), 0), BOUND, "the delivery acknowledged")
        finally:
            await worker.stop()
        assert inbox.times == 0 and await alerts_stored(medic) == 10


async def test_production_readiness_counts_a_full_spool(tmp_path: Path, redis_server: RedisServer) -> None:
    """With Redis up a full spool only degrades (intake goes to Redis); with Redis down as well,
    intake cannot store anything: not ready."""
    async with FakeMongoServer() as mongo:
        backend = await open_backend(
            medic_settings(tmp_path, redis_url=redis_server.url, mongo_url=mongo.url)
        )
        assert isinstance(backend, ProductionBackend)
        assert (await backend.readiness())[0] == "ready"
        await backend.spool.db.read(fill)
        backend.spool.db.last_write_ok -= 3600  # idle: the probe finds out
        status, checks = await backend.readiness()
        assert status == "degraded" and "intake cannot store" in checks["spool"], checks
        await redis_server.stop()
        status, checks = await backend.readiness()
        assert status == "not ready", checks
        await backend.spool.db.read(make_room)
        status, checks = await backend.readiness()
        assert status == "degraded" and checks["spool"].startswith("ok"), checks
        await backend.close()
