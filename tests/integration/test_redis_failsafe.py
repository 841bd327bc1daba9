"""Medic on the production backends (real Redis with AOF, the MongoDB fake) when its Redis dies
mid-storm: intake keeps answering 2xx (local spool), diagnosis goes on, no automatic action is
taken without coordination, and when Redis is back the spool drains and every accepted alert
ends up in an incident."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from medic.incidents.base import IncidentQuery
from tests.fakes.mongo_server import FakeMongoServer
from tests.integration.crashloop_world import TOKEN, World, crashloop_world
from tests.payloads import alert, payload
from tests.servers.redis_server import RedisServer

pytestmark = pytest.mark.integration

HEADERS = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}


@contextlib.asynccontextmanager
async def production_world(tmp_path: Path, redis: RedisServer) -> AsyncIterator[World]:
    async with (
        FakeMongoServer() as mongo,
        crashloop_world(
            tmp_path,
            redis_url=redis.url,
            mongo_url=mongo.url,
            lease_seconds=2.0,
            global_budget_count=100,
        ) as world,
    ):
        yield world


def latency_request(i: int, targets: int) -> dict[str, Any]:
    return payload(
        [
            alert(
                "PlayCodeHighLatency",
                namespace="playcode",
                deployment=f"app-{(i * 10 + j) % targets}",
                instance=f"10.0.{i}.{j}:3000",
            )
            for j in range(10)
        ]
    )


async def post_all(session: aiohttp.ClientSession, url: str, bodies: list[dict[str, Any]]) -> list[int]:
    async def one(body: dict[str, Any]) -> int:
        async with session.post(f"{url}/api/v1/alerts", data=json.dumps(body), headers=HEADERS) as r:
            await r.read()
            return r.status

    return list(await asyncio.gather(*(one(b) for b in bodies)))


async def wait_until(check: Any, within: float = 30.0) -> Any:
    loop = asyncio.get_running_loop()
    end = loop.time() + within
    while not (result := await check()):
        if loop.time() > end:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)
    return result


async def test_redis_restart_mid_storm(tmp_path: Path, redis_server: RedisServer) -> None:
    targets = 20
    bodies = [latency_request(i, targets) for i in range(40)]
    sent = {a["fingerprint"] for b in bodies for a in b["alerts"]}
    async with production_world(tmp_path, redis_server) as w, aiohttp.ClientSession() as http:
        runtime = w.medic.runtime
        backend: Any = runtime.backend
        assert backend.kind == "redis+mongo"

        # a storm starts; Redis dies (SIGKILL) in the middle of it
        statuses = await post_all(http, w.medic.url, bodies[:10])
        during = asyncio.create_task(post_all(http, w.medic.url, bodies[10:20]))
        await asyncio.sleep(0.01)
        await redis_server.kill()
        statuses += await during
        statuses += await post_all(http, w.medic.url, bodies[20:30])
        crash = w.crash_alerts()
        sent |= {a["fingerprint"] for a in crash}
        statuses += await post_all(http, w.medic.url, [payload(crash)])
        assert statuses == [200] * 31, "intake answers 2xx while Medic's Redis is down"
        assert not backend.redis_up.up
        async with http.get(f"{w.medic.url}/readyz") as r:
            ready = await r.json()
        assert r.status == 200 and ready["status"] == "degraded", ready
        assert ready["checks"]["redis"].startswith("unreachable") and ready["checks"]["mongo"] == "ok"

        # diagnosis goes on from the spool, but nothing is acted on without coordination
        async def crashloop_decided() -> dict[str, Any] | None:
            for inc in await w.incidents(rule="crashloop-rollback"):
                if inc["actions"]:
                    return await w.incident(inc["id"])
            return None

        inc = await wait_until(crashloop_decided)
        (act,) = inc["actions"]
        assert act["status"] == "refused" and act["reason"].startswith("coordination"), act
        assert w.patches() == 0

        # Redis comes back (same data, AOF): the spool drains, the storm finishes
        await redis_server.start()
        statuses = await post_all(http, w.medic.url, bodies[30:])
        assert statuses == [200] * 10

        async def drained() -> bool:
            counts = await backend.spool.counts()
            return (
                backend.redis_up.up
                and counts["deliveries"] == 0
                and counts["dedup_keys"] == 0
                and await runtime.inbox.depth() == 0
            )

        await wait_until(drained)
        await w.medic.drain()
        incidents, total = await runtime.store.query(IncidentQuery(limit=500))
        assert total == targets + 1
        assert len({i.key for i in incidents}) == total, "one incident per key"
        in_incidents = [
            a.identity for i in incidents for a in (await runtime.store.alerts(i.id, limit=1000))[0]
        ]
        assert sum(i.alerts_total for i in incidents) == len(in_incidents)
        assert set(in_incidents) == sent, "every accepted alert ends up in an incident"
        assert len(in_incidents) == len(sent), "and in one only"
        assert w.patches() == 0, "no automatic action was taken while Redis was down, nor after"
        # what was processed from the spool stays deduplicated now that Redis is back
        async with http.post(
            f"{w.medic.url}/api/v1/alerts", data=json.dumps(payload(crash)), headers=HEADERS
        ) as r:
            assert (await r.json())["duplicates"] == len(crash)
        async with http.get(f"{w.medic.url}/readyz") as r:
            assert (await r.json())["status"] == "ready"
