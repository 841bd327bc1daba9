"""Regenerate docs/img/incident-page.png: the README's picture of an incident page.

Runs the test suite's crash-loop scenario (fake kube-apiserver, a new revision of playcode-app
crash-looping, the shipped crashloop rule in mode approve under MEDIC_MODE=enforce), sends the
alerts as kube-prometheus-stack words them, lets Medic diagnose, and photographs the incident
page in Debian's headless Chromium.

    .venv/bin/python docs/img/screenshot.py
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tests.e2e.pages_browser import chromium  # noqa: E402
from tests.e2e.pages_world import approval_world  # noqa: E402

OUT = Path(__file__).with_name("incident-page.png")
RUNBOOK = "https://runbooks.prometheus-operator.dev/runbooks/kubernetes/kubepodcrashlooping"
LINKS = {
    "public_url": "https://medic.example",
    "grafana_url": "https://grafana.example",
    "grafana_prometheus_datasource": "prometheus",
    "grafana_loki_datasource": "loki",
    "prometheus_external_url": "https://prometheus.example",
}


async def main() -> None:
    with tempfile.TemporaryDirectory(prefix="medic-screenshot-") as tmp:
        async with approval_world(Path(tmp), **LINKS) as w:
            alerts = w.crash_alerts()
            for a in alerts:
                pod = a["labels"]["pod"]
                a["annotations"] = {
                    "summary": "Pod is crash looping.",
                    "description": f"Pod playcode/{pod} (playcode-app) is in waiting state "
                    '(reason: "CrashLoopBackOff").',
                    "runbook_url": RUNBOOK,
                }
            await w.post(alerts)
            inc = await w.diagnosed()
            async with chromium() as browser:
                context = await browser.new_context(viewport={"width": 960, "height": 1300})
                page = await context.new_page()
                await page.goto(f"{w.medic.url}/incidents/{inc['id']}")
                # smaller type: the header, the alert, the proposal, the finding and the guards
                await page.evaluate("document.body.style.zoom = '0.8'")
                await page.screenshot(path=str(OUT), full_page=False)
                await context.close()
    print(f"{OUT.relative_to(REPO)}: {OUT.stat().st_size} bytes")


if __name__ == "__main__":
    asyncio.run(main())
