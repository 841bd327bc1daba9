"""Regenerate docs/img/incident-page.png: the README's picture of an incident page.

Runs the test suite's crash-loop scenario (fake kube-apiserver, a new revision of playcode-app
crash-looping, the shipped crashloop rule in mode approve under MEDIC_MODE=enforce), lets Medic
diagnose it, and photographs the incident page in Debian's headless Chromium.

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
from tests.e2e.pages_world import approval_world, proposal  # noqa: E402

OUT = Path(__file__).with_name("incident-page.png")


async def main() -> None:
    with tempfile.TemporaryDirectory(prefix="medic-screenshot-") as tmp:
        async with approval_world(Path(tmp), public_url="https://medic.example") as w:
            inc = await proposal(w)
            async with chromium() as browser:
                context = await browser.new_context(viewport={"width": 960, "height": 1300})
                page = await context.new_page()
                await page.goto(f"{w.medic.url}/incidents/{inc['id']}")
                # smaller type: the header, the proposal, the finding and the guards in one picture
                await page.evaluate("document.body.style.zoom = '0.8'")
                await page.screenshot(path=str(OUT), full_page=False)
                await context.close()
    print(f"{OUT.relative_to(REPO)}: {OUT.stat().st_size} bytes")


if __name__ == "__main__":
    asyncio.run(main())
