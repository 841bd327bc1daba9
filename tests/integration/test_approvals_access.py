"""Who may read incidents and approve: with a read token or an auth proxy configured, no incident
data (page or API) without it; ``?token=`` once sets a cookie; the proxy's user is the approver."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from tests.e2e.pages_world import ADMIN_TOKEN, READ_TOKEN, approval_world, proposal
from tests.integration.crashloop_world import GOOD

pytestmark = pytest.mark.integration


async def test_read_token_guards_pages_and_api(tmp_path: Path) -> None:
    async with approval_world(tmp_path, read_token=READ_TOKEN) as w:
        inc = await proposal(w, {"Authorization": f"Bearer {READ_TOKEN}"})
        base = w.medic.url
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:  # 127.0.0.1
            for path in (
                "/incidents",
                f"/incidents/{inc['id']}",
                f"/incidents/{inc['id']}/approve?approval=x",
            ):
                async with s.get(base + path) as r:
                    text = await r.text()
                    assert r.status == 401 and "Sign in" in text and inc["title"] not in text, path
            for path in ("/api/v1/incidents", f"/api/v1/incidents/{inc['id']}?format=md"):
                async with s.get(base + path) as r:
                    assert r.status == 401 and r.content_type == "application/problem+json", path
            async with s.post(
                f"{base}/incidents/{inc['id']}/approve", data={"approval": "x", "by": "m"}
            ) as r:
                assert r.status == 401
            async with s.get(f"{base}/incidents?token=wrong") as r:
                assert r.status == 401
            async with s.get(base + "/healthz") as r:
                assert r.status == 200
            async with s.get(f"{base}/incidents?status=open&token={READ_TOKEN}", allow_redirects=False) as r:
                assert r.status == 303 and r.headers["Location"] == "/incidents?status=open"
                cookie = r.headers["Set-Cookie"]
                assert "medic_read=" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie
                assert READ_TOKEN not in cookie
            async with s.get(base + "/incidents?status=open") as r:  # the cookie jar has it now
                assert r.status == 200 and inc["id"] in await r.text()
        for token in (READ_TOKEN, ADMIN_TOKEN):
            async with (
                aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as s,
                s.get(f"{base}/api/v1/incidents/{inc['id']}") as r,
            ):
                assert r.status == 200
        assert w.patches() == 0


async def test_auth_proxy_user_is_the_approver(tmp_path: Path) -> None:
    async with approval_world(tmp_path, auth_proxy_header="X-Forwarded-User") as w:
        alice = {"X-Forwarded-User": "alice@playcode.gg"}
        inc = await proposal(w, alice)
        async with aiohttp.ClientSession(headers=alice) as s:
            async with s.get(f"{w.medic.url}/incidents/{inc['id']}") as r:
                html = await r.text()
            link = html.split('href="/incidents/' + inc["id"] + "/approve?approval=")[1].split('"')[0]
            async with s.get(f"{w.medic.url}/incidents/{inc['id']}/approve?approval={link}") as r:
                page = await r.text()
                assert "Approving as <strong>alice@playcode.gg</strong>" in page and 'name="by"' not in page
            form = {"approval": link, "by": "mallory"}  # a forged name in the form is ignored
            async with s.post(f"{w.medic.url}/incidents/{inc['id']}/approve", data=form) as r:
                assert r.status == 200
            async with s.get(f"{w.medic.url}/api/v1/incidents/{inc['id']}") as r:
                [act] = (await r.json())["actions"]
        assert act["approved_by"] == "alice@playcode.gg" and act["status"] == "succeeded"
        assert act["result"]["approval"]["via"] == "web (auth proxy)"
        assert w.image() == GOOD and w.patches() == 1


async def test_without_access_control_the_page_offers_no_approve_button(tmp_path: Path) -> None:
    async with approval_world(tmp_path) as w:
        inc = await proposal(w)
        async with aiohttp.ClientSession() as s, s.get(f"{w.medic.url}/incidents/{inc['id']}") as r:
            html = await r.text()
        assert r.status == 200 and "approve?approval=" not in html
        assert f"medic approve {inc['id']} --action rollback" in html
