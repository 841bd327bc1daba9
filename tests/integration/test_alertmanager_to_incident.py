"""A real Alertmanager delivers to Medic (bearer auth); a real Prometheus answers the collector."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.medic_app import RunningMedic, medic_settings, running_medic
from tests.servers.playcode_series import http_requests, latency_histogram

pytestmark = pytest.mark.integration
TOKEN = "am-to-medic-token"


async def incidents(m: RunningMedic, **params: str) -> list[dict[str, Any]]:
    async with aiohttp.ClientSession() as s, s.get(f"{m.url}/api/v1/incidents", params=params) as r:
        return list((await r.json())["items"])


async def wait_for(predicate: Any, within: float = 15.0) -> Any:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        result = await predicate()
        if result:
            return result
        if loop.time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


async def test_alertmanager_fires_and_resolves(
    tmp_path: Path, alertmanager_factory: Any, prometheus_factory: Any
) -> None:
    prom = await prometheus_factory(
        latency_histogram(p99=0.08, spike_p99=2.5, spike_minutes=10)
        + http_requests(rps=20, error_ratio=0.001, spike_error_ratio=0.08, spike_minutes=10)
    )
    settings = medic_settings(tmp_path, webhook_token=TOKEN, prometheus_url=prom.url)
    async with running_medic(settings) as medic:
        am = await alertmanager_factory(
            receiver_url=f"{medic.url}/api/v1/alerts", bearer_token=TOKEN, group_by=["alertname", "namespace"]
        )
        labels = {
            "alertname": "PlayCodeHighLatency",
            "namespace": "playcode",
            "deployment": "playcode-app",
            "severity": "critical",
        }
        await am.fire(labels, {"summary": "p99 above 1s"})

        async def diagnosed() -> list[dict[str, Any]]:
            items = await incidents(medic)
            return [i for i in items if i["phase"] == "diagnosed"]

        (item,) = await wait_for(diagnosed)
        assert item["rule"] == "high-latency" and item["status"] == "open"
        assert item["severity"] == "critical"
        async with aiohttp.ClientSession() as s, s.get(f"{medic.url}/api/v1/incidents/{item['id']}") as r:
            inc = await r.json()
        (ev,) = [e for e in inc["evidence"] if e["collector"] == "prometheus.query"]
        assert ev["status"] == "ok", ev
        values = {q["name"]: q["value"] for q in ev["data"]["queries"]}
        assert 2.0 <= values["latency_p99"] <= 3.0
        assert 0.05 <= values["error_ratio_5xx"] <= 0.1
        assert values["request_rate"] == pytest.approx(20, rel=0.1)
        assert ev["data"]["queries"][0]["range"][0]["points"], "a 30m range for the sparkline"
        codes = {f["code"]: f["severity"] for f in inc["findings"]}
        assert codes["metric.latency_p99"] == "warning"  # 2.5 s: above warn 1 s, below crit 3 s
        assert codes["metric.error_ratio_5xx"] == "critical"  # 8% > 5%
        assert inc["alerts"][0]["labels"]["deployment"] == "playcode-app"

        await am.resolve(labels)

        async def closed() -> list[dict[str, Any]]:
            return await incidents(medic, status="resolved")

        (done,) = await wait_for(closed)
        assert done["id"] == item["id"]
        assert await incidents(medic, status="open") == []


async def test_ha_pair_sends_everything_twice_but_one_incident(
    tmp_path: Path, alertmanager_factory: Any
) -> None:
    settings = medic_settings(tmp_path, webhook_token=TOKEN)
    async with running_medic(settings) as medic:
        url = f"{medic.url}/api/v1/alerts"
        am1 = await alertmanager_factory(receiver_url=url, bearer_token=TOKEN)
        am2 = await alertmanager_factory(receiver_url=url, bearer_token=TOKEN)
        labels = {"alertname": "PlayCodeHighLatency", "namespace": "playcode", "deployment": "playcode-app"}
        starts = "2026-11-26T07:59:00Z"
        await asyncio.gather(
            am1.push_alerts([{"labels": labels, "startsAt": starts}]),
            am2.push_alerts([{"labels": labels, "startsAt": starts}]),
        )

        async def both_delivered() -> bool:
            text = await _metrics(medic)
            return "medic_alerts_received_total 2.0" in text

        await wait_for(both_delivered)
        await medic.drain()
        items = await incidents(medic)
        assert len(items) == 1
        assert "medic_alerts_deduplicated_total 1.0" in await _metrics(medic)


async def _metrics(m: RunningMedic) -> str:
    async with aiohttp.ClientSession() as s, s.get(f"{m.url}/metrics") as r:
        return await r.text()
