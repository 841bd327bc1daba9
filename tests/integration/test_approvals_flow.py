"""Approvals end to end against the fake cluster: a proposal, then approve/reject through the web
(signed single-use tokens), the admin API and the CLI. Every refusal leaves the Deployment alone;
an approval re-checks every guard, so a cooldown set meanwhile by another replica stops it."""

from __future__ import annotations

import asyncio
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from medic.app.approvals import Claims, sign_token
from medic.clients.sqlite import SqliteDB
from medic.coordination.sqlite import SqliteRemediationState
from medic.domain.actions import ActionMark
from medic.domain.incident import utcnow
from tests.e2e.pages_receivers import receiver
from tests.e2e.pages_world import ADMIN_TOKEN, READ_TOKEN, approval_world, proposal
from tests.integration.crashloop_world import APP, BAD, GOOD, NS, World

pytestmark = pytest.mark.integration
TARGET = f"deployment/{NS}/{APP}"


def token_for(w: World, inc_id: str, **changes: Any) -> str:
    claims = {
        "incident_id": inc_id,
        "action": "rollback",
        "target": TARGET,
        "expires": int(time.time()) + 600,
        "nonce": "n1",
    }
    return sign_token(w.medic.runtime.approvals.secret, Claims(**{**claims, **changes}))


async def page(w: World, path: str, **kw: Any) -> tuple[int, str]:
    async with aiohttp.ClientSession() as s, s.get(w.medic.url + path, allow_redirects=False, **kw) as r:
        return r.status, await r.text()


async def post(w: World, path: str, data: dict[str, str], **kw: Any) -> tuple[int, str]:
    async with aiohttp.ClientSession() as s, s.post(w.medic.url + path, data=data, **kw) as r:
        return r.status, await r.text()


async def cli(*args: str, **env: str) -> tuple[int, str, str]:
    """``medic ARGS`` as a process (the CLI configures logging globally: keep it out of pytest's)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "medic.app.cli.main",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **env},
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def api(w: World, verb: str, inc_id: str, body: dict[str, Any], token: str = ADMIN_TOKEN) -> Any:
    async with (
        aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as s,
        s.post(f"{w.medic.url}/api/v1/incidents/{inc_id}/{verb}", json=body) as r,
    ):
        return r.status, await r.json(content_type=None)


def approve_link(html: str) -> str:
    found = re.search(r'href="(/incidents/[^"]+/approve\?approval=[^"]+)"', html)
    assert found, "no approval link on the page"
    return found.group(1).replace("&amp;", "&")


async def test_web_approval_acts_once_and_refuses_replays_and_double_clicks(tmp_path: Path) -> None:
    async with approval_world(tmp_path, read_token=READ_TOKEN) as w:
        auth = {"Authorization": f"Bearer {READ_TOKEN}"}
        inc = await proposal(w, auth)
        status, html = await page(w, f"/incidents/{inc['id']}", headers=auth)
        assert status == 200
        link = approve_link(html)
        for _ in range(2):  # GET shows a confirmation page and never acts
            status, confirm = await page(w, link, headers=auth)
            assert status == 200 and 'method="post"' in confirm and w.patches() == 0
        token = link.split("approval=")[1]
        form = {"approval": token, "by": "alice"}
        results = await asyncio.gather(
            *(post(w, f"/incidents/{inc['id']}/approve", form, headers=auth) for _ in range(3))
        )  # a triple click
        statuses = sorted(s for s, _ in results)
        assert statuses == [200, 409, 409], results
        done = next(text for s, text in results if s == 200)
        assert "Approved: rollback done" in done
        refused = next(text for s, text in results if s == 409)
        assert "already approved by alice" in refused
        assert w.patches() == 1 and w.image() == GOOD
        # a replay later, and a rejection after the fact: refused, nothing more happens
        assert (await post(w, f"/incidents/{inc['id']}/approve", form, headers=auth))[0] == 409
        assert (await post(w, f"/incidents/{inc['id']}/reject", form, headers=auth))[0] == 409
        status, _ = await page(w, link, headers=auth)
        assert status == 409
        assert w.patches() == 1

        async with (  # the read API needs the read token too
            aiohttp.ClientSession(headers=auth) as s,
            s.get(f"{w.medic.url}/api/v1/incidents/{inc['id']}") as r,
        ):
            final = await r.json()
        [act] = final["actions"]
        assert act["status"] == "succeeded" and act["approved_by"] == "alice"
        assert act["result"]["approval"]["via"] == "web" and act["result"]["proposal"]["reason"]
        assert any(t["kind"] == "approval" and "approved by alice" in t["message"] for t in final["timeline"])
        audit = await w.medic.runtime.store.audit(inc["id"])
        kinds = [(a["kind"], a["record"].get("by") or a["record"].get("approved_by")) for a in audit]
        assert ("approval", "alice") in kinds and ("action", "alice") in kinds


async def test_expired_tampered_and_foreign_tokens_are_refused(tmp_path: Path) -> None:
    async with approval_world(tmp_path) as w:
        inc = await proposal(w)
        path = f"/incidents/{inc['id']}/approve"
        good = token_for(w, inc["id"])
        body, mac = good.split(".")
        cases = {
            "expired": (token_for(w, inc["id"], expires=int(time.time()) - 1), 410, "expired"),
            "tampered signature": (f"{body}.{mac[:-2]}AA", 403, "signature does not match"),
            "tampered payload": (
                token_for(w, inc["id"], target="deployment/playcode/other").split(".")[0] + "." + mac,
                403,
                "signature does not match",
            ),
            "another incident": (token_for(w, "inc-20990101-000000-00000000"), 403, "another incident"),
            "another Medic": (
                sign_token(b"x" * 32, Claims(inc["id"], "rollback", TARGET, 2**40, "n")),
                403,
                "",
            ),
            "malformed": ("not-a-token", 400, "malformed"),
        }
        for name, (token, code, words) in cases.items():
            for status, text in (
                await page(w, f"{path}?approval={token}"),
                await post(w, path, {"approval": token, "by": "mallory"}),
            ):
                assert status == code, (name, status, text[:300])
                assert words in text, name
        assert w.patches() == 0
        # none of them used up the proposal: the genuine token still works
        status, text = await post(w, path, {"approval": good, "by": "alice"})
        assert status == 200 and w.patches() == 1


async def test_reject_closes_the_proposal(tmp_path: Path) -> None:
    async with approval_world(tmp_path) as w:
        inc = await proposal(w)
        token = token_for(w, inc["id"])
        status, text = await post(
            w, f"/incidents/{inc['id']}/reject", {"approval": token, "by": "bob", "reason": "known issue"}
        )
        assert status == 200 and "The proposal is closed" in text
        [act] = (await w.incident(inc["id"]))["actions"]
        assert act["status"] == "refused" and act["reason"] == "rejected by bob: known issue"
        assert (await api(w, "approve", inc["id"], {"by": "carol"}))[0] == 409
        assert w.patches() == 0 and w.image() == BAD


async def test_approval_racing_a_cooldown_set_by_another_replica(tmp_path: Path) -> None:
    async with approval_world(tmp_path) as w:
        inc = await proposal(w)
        # another replica rolls the same target back meanwhile: its ledger entry is in the shared store
        other = SqliteDB(w.medic.runtime.settings.db_path)
        await other.open()
        try:
            await SqliteRemediationState(other).begin_action(
                ActionMark("replica-b", TARGET, "rollback", "inc-on-replica-b", utcnow(), "succeeded", {})
            )
        finally:
            await other.close()
        status, body = await api(w, "approve", inc["id"], {"by": "alice"})
        assert status == 200, body
        act = body["action"]
        assert act["status"] == "refused" and act["reason"].startswith("cooldown"), act
        assert act["approved_by"] == "alice"
        assert w.patches() == 0 and w.image() == BAD
        # decided once: the refusal is final, a second try is refused too
        assert (await api(w, "approve", inc["id"], {"by": "alice"}))[0] == 409


async def test_admin_api_and_cli(tmp_path: Path) -> None:
    async with (
        receiver() as slack,
        approval_world(
            tmp_path,
            public_url="https://medic.example",
            notifiers={"oncall": {"type": "slack", "url": slack.url + "/hook"}},
        ) as w,
    ):
        inc = await proposal(w)
        await w.medic.runtime.dispatcher.drain()
        [first] = slack.json()
        assert f"https://medic.example/incidents/{inc['id']}/approve?approval=" in str(first["blocks"])
        assert (await api(w, "approve", inc["id"], {"by": "eve"}, token="wrong"))[0] == 401
        assert (await api(w, "approve", inc["id"], {"by": ""}))[0] == 400
        assert (await api(w, "approve", inc["id"], {"by": "eve", "action": "restart"}))[0] == 409
        assert (await api(w, "approve", "inc-unknown", {"by": "eve"}))[0] == 404

        admin = {"MEDIC_ADMIN_TOKEN": ADMIN_TOKEN}
        code, out, err = await cli("approve", inc["id"], "--url", w.medic.url, "--by", "dana", **admin)
        assert code == 0 and out.startswith("approved by dana: rollback succeeded"), (out, err)
        assert w.patches() == 1
        code, out, err = await cli("reject", inc["id"], "--url", w.medic.url, **admin)
        assert code == 1 and "Already decided" in err  # a refusal is a failure (exit 1), not usage
        code, report, _ = await cli("report", inc["id"], "--url", w.medic.url, **admin)
        assert code == 0 and report.startswith("# ") and "succeeded" in report and "dana" in report
        # the approval's update reached Slack: first message, then one update
        await w.medic.runtime.dispatcher.drain()
        assert len(slack.requests) == 2 and "approved by dana" in slack.json()[1]["text"]


async def test_cli_against_the_local_store(tmp_path: Path) -> None:
    async with approval_world(tmp_path) as w:
        inc = await proposal(w)
        settings = w.medic.runtime.settings
        env = {
            "MEDIC_DATA_DIR": str(settings.data_dir),
            "MEDIC_RULES_DIR": str(settings.rules_dir),
            "MEDIC_KUBE_MODE": "off",
        }
        # while Medic runs, the local store is its own: the CLI says so and changes nothing
        code, _, err = await cli("approve", inc["id"], **env)
        assert code == 2 and "use --url" in err
        code, out, _ = await cli("report", inc["id"], **env)
        assert code == 0 and "awaiting_approval" in out
    # Medic stopped: the CLI decides on the local store itself
    code, out, err = await cli("reject", inc["id"], "--by", "oncall", "--reason", "not now", **env)
    assert code == 0 and out.startswith("rejected by oncall: rollback refused"), (out, err)
