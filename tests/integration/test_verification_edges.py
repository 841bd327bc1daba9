"""Deploy verification at its edges (found by review): an approval that comes after a fix was
deployed, a rule renamed while a verification is open, a human's rollout undo, a baseline that
ran for only part of its hour."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp

from tests.integration.verify_world import APP, NS, Traffic, verify_world
from tests.servers.fixtures import PrometheusFactory

ADMIN = "admin-token-0123456789"


async def test_approving_after_a_newer_deploy_does_not_restore_the_failed_revision(
    tmp_path: Path, prometheus_factory: PrometheusFactory
) -> None:
    async with verify_world(
        tmp_path,
        prometheus_factory,
        new=Traffic(error_ratio=0.4),
        mode="enforce",
        rule_mode="approve",
        window="60s",
        verify_deploys="off",
        admin_token=ADMIN,
    ) as w:
        started = await w.request()
        inc = await w.finished(started["incident_id"], within=20)
        assert inc["verification"]["state"] == "failed"
        (proposal,) = inc["actions"]
        assert proposal["status"] == "awaiting_approval" and proposal["params"]["to"] == 1
        # the team ships a fix (revision 3) before anyone approves; the follow-up runs once a minute
        w.kube.set_image(NS, APP, "registry.example/playcode-app:v3-fix")
        await w.kube.settle()
        async with (
            aiohttp.ClientSession(headers={"Authorization": f"Bearer {ADMIN}"}) as s,
            s.post(f"{w.medic.url}/api/v1/incidents/{inc['id']}/approve", json={"by": "alice"}) as r,
        ):
            body: Any = await r.json(content_type=None)
        image = w.kube.get_object("Deployment", NS, APP)["spec"]["template"]["spec"]["containers"][0]["image"]
        act = body.get("action") or body.get("record") or {}
        # what was approved is "roll back from revision 2 to revision 1": the fix (revision 3) stays
        assert image.endswith(":v3-fix"), (image, body)
        assert act.get("status") == "skipped" and "no longer at revision 2" in act.get("reason", ""), body
        assert act.get("params") == {"to": 1, "only_from": 2}
        assert w.rollback_patches() == 0


async def test_a_verification_whose_rule_was_renamed_still_ends(
    tmp_path: Path, prometheus_factory: PrometheusFactory
) -> None:
    """A rule renamed (or its playbook's verify: dropped) while a verification is open, then a
    restart: due() only lists the *current* verify rules, so the incident stays `verifying`."""
    import asyncio
    import time

    from tests.integration.verify_world import VerifyWorld
    from tests.medic_app import running_medic

    async with verify_world(tmp_path, prometheus_factory, window="7s", verify_deploys="off") as w:
        other = w.settings.model_copy(update={"data_dir": tmp_path / "other" / "data"})
        async with running_medic(other) as first:
            started = await VerifyWorld(w.kube, first, other).request()
        rules = Path(other.rules_dir)
        rule = rules / "deploy-verify.yaml"
        rule.write_text(rule.read_text().replace("- name: deploy-verify\n", "- name: deploy-verify-v2\n"))
        async with running_medic(other) as second:
            again = VerifyWorld(w.kube, second, other)
            deadline = time.monotonic() + 25
            while time.monotonic() < deadline:
                inc = await again.incident(started["incident_id"])
                if inc["verification"]["state"] != "verifying":
                    break
                await asyncio.sleep(1)
            assert inc["verification"]["state"] != "verifying", (
                f"stuck: {inc['status']} {inc['phase']} ends_at={inc['verification']['ends_at']}"
            )


async def test_a_humans_rollout_undo_is_not_compared_with_the_revision_it_fled(
    tmp_path: Path, prometheus_factory: PrometheusFactory
) -> None:
    """Revision 2 (v2) is bad; a human runs `kubectl rollout undo` (v1's ReplicaSet becomes
    revision 3). The watch verifies revision 3 against baseline revision 2 -- the bad one -- and a
    failed verdict would roll back to it."""
    import asyncio
    import time

    from medic.incidents.base import IncidentQuery
    from tests.integration.verify_world import OLD

    async with verify_world(tmp_path, prometheus_factory, new=Traffic(error_ratio=0.4)) as w:
        await w.kube.watching()
        w.kube.set_image(NS, APP, OLD)  # kubectl rollout undo: the old template, the old ReplicaSet
        await w.kube.settle()
        deadline = time.monotonic() + 20
        while True:
            page, _ = await w.medic.runtime.store.query(IncidentQuery(rule="deploy-verify", limit=10))
            if page and page[0].verification is not None:
                break
            assert time.monotonic() < deadline
            await asyncio.sleep(0.2)
        v = page[0].verification
        assert v.revision == 3
        assert v.restored and v.baseline_revision is None  # not compared with the revision it fled
