"""The admin API: kill switch and audit, behind the admin token."""

from __future__ import annotations

from pathlib import Path

import aiohttp

from tests.medic_app import medic_settings, running_medic

ADMIN = "admin-token-0123456789"


async def test_kill_switch_api(tmp_path: Path) -> None:
    async with running_medic(medic_settings(tmp_path, admin_token=ADMIN)) as m:
        url = f"{m.url}/api/v1/admin/kill-switch"
        auth = {"Authorization": f"Bearer {ADMIN}"}
        async with aiohttp.ClientSession() as s:
            async with s.get(url) as r:
                assert r.status == 401 and r.content_type == "application/problem+json"
            async with s.put(url, json={"enabled": True}, headers={"Authorization": "Bearer wrong"}) as r:
                assert r.status == 401
            async with s.put(url, json={"enabled": "yes"}, headers=auth) as r:
                assert r.status == 400 and (await r.json())["field"] == "enabled"
            async with s.put(url, data=b"{nope", headers=auth) as r:
                assert r.status == 400
            async with s.put(url, json={"enabled": True, "reason": "freeze", "by": "bob"}, headers=auth) as r:
                assert r.status == 200 and (await r.json())["enabled"] is True
            assert (await m.runtime.state.kill_switch()).reason == "freeze"  # the guards read this
            async with s.get(url, headers=auth) as r:
                body = await r.json()
                assert body["enabled"] is True and body["by"] == "bob"
            async with s.get(f"{m.url}/api/v1/admin/audit?limit=x", headers=auth) as r:
                assert r.status == 400
            async with s.get(f"{m.url}/api/v1/admin/audit", headers=auth) as r:
                assert r.status == 200 and (await r.json())["items"] == []


async def test_admin_api_disabled_without_a_token(tmp_path: Path) -> None:
    async with (
        running_medic(medic_settings(tmp_path)) as m,
        aiohttp.ClientSession() as s,
        s.get(f"{m.url}/api/v1/admin/kill-switch") as r,
    ):
        assert r.status == 403
        assert "MEDIC_ADMIN_TOKEN" in (await r.json())["detail"]
