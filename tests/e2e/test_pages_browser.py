"""The incident pages in a real headless Chromium: list → detail → approve (the rollback happens
exactly once), a screenshot of the detail page (test-artifacts/), and hostile alert content that
must show as text and never run."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.async_api import Dialog, Page, expect

from medic.domain.incident import ActionStatus
from tests.e2e.pages_browser import artifact, chromium
from tests.e2e.pages_incidents import IMG_ANNOTATION, LOG_SCRIPT, PLANTED, SCRIPT_LABEL, store_hostile
from tests.e2e.pages_world import READ_TOKEN, approval_world, proposal
from tests.integration.crashloop_world import BAD, GOOD

pytestmark = pytest.mark.e2e


def no_dialogs(page: Page, seen: list[str]) -> None:
    async def on_dialog(dialog: Dialog) -> None:
        seen.append(dialog.message)
        await dialog.dismiss()

    page.on("dialog", on_dialog)


async def test_list_detail_approve_in_a_browser(tmp_path: Path) -> None:
    async with approval_world(tmp_path, read_token=READ_TOKEN) as w, chromium() as browser:
        inc = await proposal(w, {"Authorization": f"Bearer {READ_TOKEN}"})
        context = await browser.new_context(viewport={"width": 1280, "height": 900})
        page = await context.new_page()

        # no access without the token; ?token= once, then the cookie
        resp = await page.goto(f"{w.medic.url}/incidents")
        assert resp is not None and resp.status == 401
        await page.goto(f"{w.medic.url}/incidents?token={READ_TOKEN}")
        assert page.url == f"{w.medic.url}/incidents"
        await expect(page.locator("table tbody tr")).to_have_count(1)

        # filter (a plain GET form), then open the incident
        await page.select_option("select[name=status]", "resolved")
        await page.click("form.filters button[type=submit]")
        await expect(page.get_by_text("No incident matches.")).to_be_visible()
        await page.select_option("select[name=status]", "open")
        await page.click("form.filters button[type=submit]")
        await page.click(f"a[href='/incidents/{inc['id']}']")
        await expect(page.locator("h1")).to_contain_text("KubePodCrashLooping")
        await expect(page.locator(".finding").first).to_contain_text("crashloop.regression")
        await expect(page.locator(".card.proposal")).to_contain_text("awaiting approval")
        guards = page.locator("table.guards tr")
        assert await guards.count() > 5  # every guard decision, with its reason
        await page.screenshot(path=str(artifact("incident-detail.png")), full_page=True)

        # approve: a confirmation page (GET never acts), then the POST
        await page.click("text=Review and approve or reject")
        await expect(page.locator("h1")).to_contain_text(
            "Approve rollback on deployment/playcode/playcode-app?"
        )
        confirm_url = page.url
        assert w.patches() == 0
        await page.fill("input[name=by]", "alice")
        await page.click("button:has-text('Approve and rollback now')")
        await expect(page.locator("h1")).to_have_text("Approved: rollback done")
        assert w.patches() == 1 and w.image() == GOOD

        # the same link again (back button, a second tab, a replay): refused, nothing more
        resp = await page.goto(confirm_url)
        assert resp is not None and resp.status == 409
        await expect(page.locator("h1")).to_have_text("Already decided")
        await expect(page.locator(".notice")).to_contain_text("already approved by alice")
        await page.goto(f"{w.medic.url}/incidents/{inc['id']}")
        await expect(page.locator(".card.action").first).to_contain_text("Approved by alice")
        assert w.patches() == 1 and w.image() != BAD
        await context.close()


async def test_hostile_content_is_shown_as_text_and_never_runs(tmp_path: Path) -> None:
    links = {"alertmanager_url": "https://alertmanager.example", "prometheus_external_url": "https://prom.example"}
    async with approval_world(tmp_path, **links) as w, chromium() as browser:
        hostile = await store_hostile(w.medic.runtime.store, ActionStatus.AWAITING_APPROVAL)
        context = await browser.new_context(viewport={"width": 390, "height": 844})  # a phone
        await context.grant_permissions(["clipboard-read", "clipboard-write"], origin=w.medic.url)
        page = await context.new_page()
        dialogs: list[str] = []
        no_dialogs(page, dialogs)
        errors: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)

        for path in ("/incidents", f"/incidents/{hostile.id}"):
            await page.goto(w.medic.url + path)
            assert await page.evaluate("window.__pwned") is None, path
        await page.click("text=Alerts")  # nothing to do with the click: give handlers a chance to fire
        assert await page.evaluate("window.__pwned") is None
        assert dialogs == []
        assert await page.locator("script").count() == 1  # ours only
        assert await page.locator("a[href^='javascript:']").count() == 0
        assert await page.locator("img").count() == 0
        body = await page.locator("body").inner_text()
        assert SCRIPT_LABEL in body and IMG_ANNOTATION in body  # shown, as text
        html = await page.content()
        assert not [s for s in PLANTED if s in html]

        # collapsible evidence with status and duration; the Prometheus range as a sparkline
        evidence = page.locator("details.evidence")
        assert await evidence.count() == 3
        logs = page.locator("details#ev-k8s-pod-logs")
        await expect(logs.locator(":scope > summary")).to_contain_text("ok")
        await logs.locator(":scope > summary").click()
        await expect(logs.locator("pre.log").first).to_contain_text(LOG_SCRIPT)
        prom = page.locator("details#ev-prometheus-query")
        await prom.locator(":scope > summary").click()
        await expect(prom.locator("svg.spark")).to_be_visible()
        assert await prom.locator("svg.spark polyline").count() == 2  # the gap splits the line
        await expect(page.locator("details#ev-loki-query > summary")).to_contain_text("timeout")

        # the links on-call follows (a long silence filter among them) and the alert's own summary
        names = await page.locator("p.links a").all_inner_texts()
        assert names == ["Prometheus", "Silence in Alertmanager"], names
        assert await page.locator(".said strong").first.inner_text() == IMG_ANNOTATION

        # readable on a phone: nothing wider than the screen
        width = await page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, width
        await page.screenshot(path=str(artifact("incident-detail-phone.png")), full_page=True)

        # copy buttons (a JS enhancement) copy the runbook command with its real names
        copy = page.locator("button[data-copy^='kubectl rollout undo']")
        await copy.click()
        await expect(copy).to_have_text("Copied")
        copied = await page.evaluate("navigator.clipboard.readText()")
        assert copied == "kubectl rollout undo deployment/playcode-app -n playcode"
        assert errors == []

        # without JavaScript the page still works: details open natively, copy buttons hide
        nojs = await browser.new_context(java_script_enabled=False)
        plain = await nojs.new_page()
        await plain.goto(f"{w.medic.url}/incidents/{hostile.id}")
        await expect(plain.locator("button.copy").first).to_be_hidden()
        await plain.locator("details#ev-k8s-pod-logs > summary").click()
        await expect(plain.locator("details#ev-k8s-pod-logs pre.log").first).to_be_visible()
        await nojs.close()
        await context.close()
