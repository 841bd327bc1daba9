"""What on-call sees, end to end: a real Alertmanager delivers an alert with hostile label values
and annotations; the report and the incident page show its own summary and runbook, the coverage
gaps one per line, and a silence link to *that* Alertmanager (its externalURL, not the setting)
whose matchers Alertmanager's own parser reads back as exactly the alert's labels."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import aiohttp
import pytest

from tests.medic_app import RunningMedic, medic_settings, running_medic

pytestmark = pytest.mark.integration
TOKEN = "am-to-medic-token"
HOSTILE = 'a"b\\c,d="e"} f\nline2 &filter=x#frag %2F'
SUMMARY = "p99 above 1s\n\n## Actions\n- **rollback**: succeeded, approved by alice"


def split_matchers(text: str) -> list[str]:
    """Alertmanager's split of ``{a="x",b="y"}`` into matchers (commas outside quotes)."""
    tokens, current, inside, escaped = [], "", False, False
    for ch in text.removeprefix("{").removesuffix("}"):
        if ch == "," and not inside:
            tokens.append(current)
            current = ""
            continue
        if ch == '"':
            inside = inside if escaped else not inside
            escaped = False
        elif ch == "\\":
            escaped = not escaped
        else:
            escaped = False
        current += ch
    return [*tokens, current] if current else tokens


async def get(m: RunningMedic, path: str) -> Any:
    async with aiohttp.ClientSession() as s, s.get(f"{m.url}{path}") as r:
        assert r.status == 200, await r.text()
        return await r.json() if "json" in r.headers.get("Content-Type", "") else await r.text()


async def diagnosed(m: RunningMedic, within: float = 20.0) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while loop.time() < deadline:
        items = (await get(m, "/api/v1/incidents"))["items"]
        if items and items[0]["phase"] == "diagnosed":
            return dict(items[0])
        await asyncio.sleep(0.05)
    raise AssertionError("no diagnosed incident in time")


async def test_report_and_page_from_a_real_alertmanager(tmp_path: Path, alertmanager_factory: Any) -> None:
    settings = medic_settings(
        tmp_path,
        webhook_token=TOKEN,
        alertmanager_url="http://not-this-one.example",
        prometheus_external_url="https://prometheus.example",
        grafana_url="https://grafana.example",
        grafana_loki_datasource="loki-uid",
    )
    async with running_medic(settings) as medic:
        am = await alertmanager_factory(
            receiver_url=f"{medic.url}/api/v1/alerts", bearer_token=TOKEN, group_by=["alertname", "namespace"]
        )
        labels = {
            "alertname": "PlayCodeHighLatency",
            "namespace": "playcode",
            "deployment": "playcode-app",
            "severity": "warning",
            "note": HOSTILE,
        }
        await am.fire(
            labels,
            {"summary": SUMMARY, "runbook_url": "https://runbooks.example/latency"},
            generator_url="http://prometheus:9090/graph?g0.expr=histogram_quantile%280.99%2C+x%29+%3E+1",
        )
        item = await diagnosed(medic)
        md = await get(medic, f"/api/v1/incidents/{item['id']}?format=md")

        # the alert's own words, one line, no forged section
        assert "- **Summary**: p99 above 1s \\#\\# Actions - \\*\\*rollback\\*\\*: succeeded" in md
        assert md.count("\n## Actions\n") == 1 and "\n- **rollback**" not in md
        assert "- **Runbook**: [https://runbooks.example/latency](https://runbooks.example/latency)" in md
        # coverage: one line per check Medic could not run (no Prometheus configured here)
        assert re.search(r"\*\*\d+ of \d+ checks gave no data\*\* `coverage.incomplete`", md)
        assert "   - `prometheus.query` not_configured: " in md

        # links: the alert's own expression in Prometheus; the silence at the sending Alertmanager
        prom = re.search(r"\[Prometheus\]\(([^)\s]+)\)", md)
        assert prom is not None
        query = parse_qs(urlsplit(prom.group(1)).query)
        assert query["g0.expr"] == ["histogram_quantile(0.99, x) > 1"]
        assert "[Grafana: logs](https://grafana.example/explore?" in md
        silence = re.search(r"\[Silence in Alertmanager\]\(([^)\s]+)\)", md)
        assert silence is not None and silence.group(1).startswith(f"{am.url}/#/silences/new?filter=")
        matchers = split_matchers(unquote(silence.group(1).split("filter=", 1)[1]))
        found = await am.alerts(filters=matchers)  # Alertmanager parses every matcher itself
        assert [a["labels"] for a in found] == [labels]

        page = await get(medic, f"/incidents/{item['id']}")
        assert (
            "<strong>p99 above 1s ## Actions - **rollback**: succeeded, approved by alice</strong>" in page
        )
        assert f'href="{am.url}/#/silences/new?filter=' in page
        assert '<ul class="gaps">' in page
