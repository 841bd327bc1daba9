"""SIGKILL after accepting and before processing finished: on restart the incident is built once."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.e2e.medic_process import MedicProcess
from tests.payloads import alert, payload

pytestmark = pytest.mark.e2e


@contextlib.asynccontextmanager
async def black_hole() -> AsyncIterator[str]:
    """A 'Prometheus' that accepts connections and never answers: the collector hangs in flight."""
    held: list[asyncio.StreamWriter] = []

    async def handle(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        for w in held:
            w.close()
        server.close()


async def api(url: str, path: str) -> Any:
    async with aiohttp.ClientSession() as s, s.get(f"{url}{path}") as r:
        return await r.json()


async def wait_for(fn: Any, within: float = 20.0) -> Any:
    loop = asyncio.get_running_loop()
    end = loop.time() + within
    while not (result := await fn()):
        if loop.time() > end:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)
    return result


async def test_sigkill_mid_processing_then_restart(tmp_path: Path) -> None:
    body = payload(
        [
            alert("PlayCodeHighLatency", namespace="playcode", deployment="playcode-app", pod=f"p{i}")
            for i in range(3)
        ]
    )
    async with black_hole() as prom:
        first = MedicProcess(
            tmp_path, {"MEDIC_PROMETHEUS_URL": prom, "MEDIC_COLLECTOR_TIMEOUT_SECONDS": "60"}
        )
        await first.start()
        try:
            async with aiohttp.ClientSession() as s, s.post(f"{first.url}/api/v1/alerts", json=body) as r:
                assert r.status == 200, await r.text()

            async def diagnosing() -> bool:
                items = (await api(first.url, "/api/v1/incidents"))["items"]
                return bool(items) and items[0]["phase"] == "diagnosing"

            await wait_for(diagnosing)
        finally:
            await first.kill()
        assert first.proc.returncode == -signal.SIGKILL

    second = MedicProcess(tmp_path, {}, port=first.port)  # Prometheus now unset: not_configured
    await second.start()
    try:

        async def diagnosed() -> Any:
            items = (await api(second.url, "/api/v1/incidents"))["items"]
            return items if items and items[0]["phase"] == "diagnosed" else None

        items = await wait_for(diagnosed)
        assert len(items) == 1, "the incident is built exactly once"
        inc = await api(second.url, f"/api/v1/incidents/{items[0]['id']}")
        assert len(inc["alerts"]) == 3
        assert [t["message"] for t in inc["timeline"]].count("3 firing alert(s) joined") == 1
        assert inc["evidence"][0]["status"] == "not_configured"
        # a redelivery by Alertmanager after the restart changes nothing
        async with aiohttp.ClientSession() as s, s.post(f"{second.url}/api/v1/alerts", json=body) as r:
            assert (await r.json())["duplicates"] == 3
        async with aiohttp.ClientSession() as s, s.get(f"{second.url}/metrics") as r:
            text = await r.text()
        assert "medic_queue_depth 0.0" in text
        logs = [json.loads(line) for line in second.log().splitlines() if line.startswith("{")]
        assert any(rec.get("event", "").startswith("re-queued") for rec in logs)
        assert all("incident_id" in rec for rec in logs if rec.get("event") == "step finished")
    finally:
        await second.stop()
