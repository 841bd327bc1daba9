"""A deploy verification on the pages, in the API and in the report, through the real app
(issue 13): verification incidents are stored in Medic's own store and read over HTTP."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from medic.domain.incident import Incident, Phase, Target
from tests.e2e.pages_incidents import PLANTED, SCRIPT_LABEL, T0
from tests.medic_app import medic_settings, running_medic
from tests.unit.test_markdown_escape import MD
from tests.unit.test_verification_render import hostile, verification

pytestmark = pytest.mark.integration


def verification_incident(incident_id: str, state: str) -> Incident:
    v = verification(hostile, state)
    return Incident(
        id=incident_id,
        key=f"deploy-verify|deployment/playcode/{incident_id}",
        rule="deploy-verify",
        playbook="deploy-verify",
        status="open" if state in ("verifying", "failed") else "resolved",
        phase=Phase.VERIFYING if state == "verifying" else Phase.DIAGNOSED,
        title=f"MedicDeployVerification on deployment/playcode/{v.deployment}",
        target=Target(kind="deployment", namespace="playcode", name=v.deployment),
        verification=v,
        created_at=T0,
        updated_at=T0,
        resolved_at=None if state in ("verifying", "failed") else T0,
    )


async def fetch(session: aiohttp.ClientSession, url: str) -> tuple[str, dict[str, str], Any]:
    async with session.get(url) as r:
        assert r.status == 200, await r.text()
        body = await r.json() if r.content_type == "application/json" else await r.text()
        return r.content_type, dict(r.headers), body


async def test_verification_page_list_api_and_report(tmp_path: Path) -> None:
    async with running_medic(medic_settings(tmp_path), workers=False) as medic:
        store = medic.runtime.store
        for incident_id, state in (("inc-verify-running", "verifying"), ("inc-verify-failed", "failed")):
            _, created = await store.create_or_get_open(verification_incident(incident_id, state))
            assert created
        async with aiohttp.ClientSession() as s:
            kind, headers, page = await fetch(s, f"{medic.url}/incidents/inc-verify-failed")
            assert kind == "text/html" and "default-src 'none'" in headers["Content-Security-Policy"]
            assert '<h2 id="verification">Deploy verification</h2>' in page
            assert '<span class="st st-failed">failed</span>' in page
            assert page.count('<svg class="spark"') == 3 and page.count("<script") == 1
            assert len(re.findall(r"<tr><td>\+", page)) == 3  # a row per sample
            assert SCRIPT_LABEL not in page and "&lt;script&gt;" in page
            assert not [p for p in PLANTED if p in page]

            _, _, running = await fetch(s, f"{medic.url}/incidents/inc-verify-running")
            assert '<span class="st st-verifying">verifying</span>' in running

            _, _, listing = await fetch(s, f"{medic.url}/incidents")
            rows = {
                m.group(1): m.group(0)
                for m in re.finditer(r'<a href="/incidents/([^"]+)">.*?</tr>', listing, re.S)
            }
            assert set(rows) == {"inc-verify-running", "inc-verify-failed"}
            assert '<span class="muted">verifying</span>' in rows["inc-verify-running"]
            assert "verification failed</span>" in rows["inc-verify-failed"]

            _, _, doc = await fetch(s, f"{medic.url}/api/v1/incidents/inc-verify-failed")
            v = doc["verification"]
            assert (v["state"], v["revision"], v["baseline_revision"]) == ("failed", 5, 4)
            assert [x["error_ratio_5xx"]["new"] for x in v["samples"]] == [None, 0.02, 0.31]
            assert not [p for p in PLANTED if p in str(doc)]

            _, _, summaries = await fetch(s, f"{medic.url}/api/v1/incidents")
            assert {i["phase"] for i in summaries["items"]} == {"verifying", "diagnosed"}

            _, _, md = await fetch(s, f"{medic.url}/api/v1/incidents/inc-verify-failed?format=md")
            assert "\n## Deploy verification\n" in md
            assert (
                "| +2m (08:02:00) | 3/3 | 2 | 400 | 31.0 % vs 0.5 % | 1.50 s vs 200 ms | 6.0 vs 1.0 | — |"
                in md
            )
            assert "<script" not in MD.render(md)  # code spans show it verbatim, as text
