"""``/metrics`` as Prometheus scrapes it from the running app: build info, mode, kill switch,
whether Medic's own backends answer, the fail-safe spool, process metrics, no ``*_created``
series; rejected deliveries counted. Embedded (SQLite) and production (real Redis, MongoDB fake)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import platform
import subprocess
import sys
from pathlib import Path

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from medic import __version__
from medic.telemetry.build import build_revision
from medic.telemetry.metrics import backends_up
from tests.fakes.mongo_server import FakeMongoServer
from tests.medic_app import medic_settings, running_medic
from tests.payloads import alert, payload
from tests.servers.process import free_port
from tests.servers.redis_server import RedisServer

ADMIN = "admin-token-0123456789"
TOKEN = "webhook-token"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(url: str) -> tuple[str, Samples]:
    async with aiohttp.ClientSession() as s, s.get(f"{url}/metrics") as r:
        assert r.status == 200
        text = await r.text()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return text, samples


BUILD = {"version": __version__, "revision": build_revision(), "python": platform.python_version()}


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


async def test_metrics_of_an_embedded_medic(tmp_path: Path) -> None:
    settings = medic_settings(tmp_path, admin_token=ADMIN, webhook_token=TOKEN)
    async with running_medic(settings) as m:
        text, samples = await scrape(m.url)
        assert "_created" not in text
        build = value(samples, "medic_build_info", **BUILD)
        assert build == 1
        assert (value(samples, "process_resident_memory_bytes") or 0) > 0
        assert (value(samples, "process_open_fds") or 0) > 0
        assert value(samples, "process_cpu_seconds_total") is not None
        modes = {mode: value(samples, "medic_mode_info", mode=mode) for mode in ("off", "dry-run", "enforce")}
        assert modes == {"off": 0, "dry-run": 1, "enforce": 0}
        assert value(samples, "medic_kill_switch_enabled") == 0
        for backend in ("inbox", "state", "store"):
            assert value(samples, "medic_backend_up", backend=backend) == 1, backend
        assert not [k for k in samples if k[0] == "medic_spool_items"], "no spool in embedded mode"

        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {ADMIN}"}) as s:
            body = {"enabled": True, "reason": "test", "by": "me"}
            async with s.put(f"{m.url}/api/v1/admin/kill-switch", json=body) as r:
                assert r.status == 200
            async with s.post(f"{m.url}/api/v1/alerts", json=payload([alert("A")])) as r:
                assert r.status == 401  # the admin token is not the webhook's
        _, samples = await scrape(m.url)
        assert value(samples, "medic_kill_switch_enabled") == 1
        assert value(samples, "medic_webhooks_rejected_total", reason="auth") == 1


async def test_the_mode_gauge_follows_the_setting(tmp_path: Path) -> None:
    async with running_medic(medic_settings(tmp_path, mode="enforce")) as m:
        _, samples = await scrape(m.url)
    assert value(samples, "medic_mode_info", mode="enforce") == 1
    assert value(samples, "medic_mode_info", mode="dry-run") == 0


async def wait_for(url: str, check: object, within: float = 30.0) -> Samples:
    loop = asyncio.get_running_loop()
    end = loop.time() + within
    while True:
        _, samples = await scrape(url)
        if check(samples):  # type: ignore[operator]
            return samples
        if loop.time() > end:
            raise AssertionError(f"not met in {within}s: {sorted(k for k in samples if 'medic_' in k[0])}")
        await asyncio.sleep(0.1)


async def test_backend_up_and_spool_items_follow_medics_redis(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    async with FakeMongoServer() as mongo:
        settings = medic_settings(
            tmp_path, redis_url=redis_server.url, mongo_url=mongo.url, webhook_token=TOKEN, lease_seconds=2.0
        )
        # no workers: what is spooled stays there until Redis is back
        async with running_medic(settings, workers=False) as m:
            _, samples = await scrape(m.url)
            assert [value(samples, "medic_backend_up", backend=b) for b in ("inbox", "state", "store")] == [
                1,
                1,
                1,
            ]
            assert value(samples, "medic_spool_items", kind="deliveries") == 0

            await redis_server.stop()
            headers = {"Authorization": f"Bearer {TOKEN}"}
            async with (
                aiohttp.ClientSession(headers=headers) as s,
                s.post(f"{m.url}/api/v1/alerts", json=payload([alert("A")])) as r,
            ):
                assert r.status == 200, "accepted into the local spool"
            samples = await wait_for(m.url, lambda s: value(s, "medic_backend_up", backend="inbox") == 0)
            assert value(samples, "medic_backend_up", backend="state") == 0
            assert value(samples, "medic_backend_up", backend="store") == 1
            assert value(samples, "medic_spool_items", kind="deliveries") == 1

            await redis_server.start()
            samples = await wait_for(
                m.url,
                lambda s: (
                    value(s, "medic_backend_up", backend="inbox") == 1
                    and value(s, "medic_spool_items", kind="deliveries") == 0
                ),
            )
            assert value(samples, "medic_backend_up", backend="state") == 1


def test_backend_up_from_each_backends_readiness_checks() -> None:
    embedded = {"inbox": "ok", "incident_store": "ok", "writes": "ok"}
    assert backends_up(embedded) == {"inbox": True, "state": True, "store": True}
    disk_full = embedded | {"writes": "error: database or disk is full"}
    assert backends_up(disk_full) == {"inbox": False, "state": False, "store": False}
    production = {"redis": "unreachable (ConnectionError): ...", "mongo": "ok", "spool": "ok (0 deliveries)"}
    assert backends_up(production) == {"inbox": False, "state": False, "store": True}


async def test_metrics_of_medic_serve_with_its_diagnosis_process(tmp_path: Path) -> None:
    """``medic serve`` as deployed (intake and diagnosis in two processes, one merged /metrics)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEDIC_") and k != "KUBECONFIG"}
    env |= {
        "MEDIC_KUBE_MODE": "off",
        "MEDIC_DATA_DIR": str(tmp_path / "data"),
        "MEDIC_HOST": "127.0.0.1",
        "MEDIC_PORT": str(port),
        "MEDIC_LOG_LEVEL": "warning",
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "medic", "serve", cwd=tmp_path, env=env, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            with contextlib.suppress(aiohttp.ClientError, AssertionError):
                text, samples = await scrape(url)
                if value(samples, "medic_backend_up", backend="store") == 1:
                    break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("medic serve did not serve /metrics")
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 60)
    assert "_created" not in text
    assert value(samples, "medic_build_info", **BUILD) == 1
    assert value(samples, "medic_mode_info", mode="dry-run") == 1
    assert value(samples, "medic_kill_switch_enabled") == 0
    assert (value(samples, "process_resident_memory_bytes") or 0) > 0
