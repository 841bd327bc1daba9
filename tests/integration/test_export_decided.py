"""A stored incident is exported and replayed as its decision was made (issue 14), whatever came
after: a proposal later approved or rejected was, when decided, awaiting approval; a refusal by
the kill switch (state, not configuration) stays a refusal; a candidate ``require:`` is decided
again from the rollout timeline the evidence holds, not answered by the recorded precondition."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from tests.e2e.pages_world import ADMIN_TOKEN, approval_world, proposal
from tests.integration.cli_inprocess import export_as_test, medic_cli
from tests.integration.crashloop_world import APP, NS, World, crashloop_world, medic_on
from tests.medic_app import REPO

pytestmark = pytest.mark.integration


async def decide(w: World, verb: str, incident_id: str) -> None:
    async with (
        aiohttp.ClientSession(headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as s,
        s.post(f"{w.medic.url}/api/v1/incidents/{incident_id}/{verb}", json={"by": "dana"}) as r,
    ):
        assert r.status == 200, await r.text()


async def export_and_replay(
    capsys: pytest.CaptureFixture[str], w: World, incident_id: str, tmp_path: Path, rules: Path
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The exported case (run by medic test against ``rules``) and the incident's replay row."""
    exported = await export_as_test(capsys, incident_id, w.medic.url, tmp_path / f"{incident_id}.yaml")
    doc = yaml.safe_load(exported.read_text(encoding="utf-8"))
    doc["rules_dir"], doc["playbooks_dir"] = str(rules), str(REPO / "playbooks")
    exported.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    code, out, _ = await medic_cli(capsys, "test", str(exported))
    assert code == 0 and "1 passed, 0 failed" in out, out
    code, out, err = await medic_cli(
        capsys, "replay", "--since", "1d", "--url", w.medic.url, "--rules", str(rules), "-o", "json"
    )
    assert code == 0, err
    (row,) = [r for r in json.loads(out)["incidents"] if r["incident"] == incident_id]
    return doc["tests"][0], row


@pytest.mark.parametrize("verb", ["approve", "reject"])
async def test_a_decided_proposal_is_exported_and_replayed_as_the_proposal_it_was(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], verb: str
) -> None:
    async with approval_world(tmp_path) as w:
        inc = await proposal(w)
        await decide(w, verb, inc["id"])
        after = (await w.incident(inc["id"]))["actions"][0]["status"]
        assert after == ("succeeded" if verb == "approve" else "refused")
        case, row = await export_and_replay(capsys, w, inc["id"], tmp_path, tmp_path / "rules")
    assert case["expect"]["action"] == {"name": "rollback", "status": "awaiting_approval"}
    assert case["expect"]["refused_by"] == []
    assert row["change"] == "unchanged", row
    assert row["before"]["action"] == "rollback awaiting_approval"


async def test_a_kill_switch_refusal_stays_a_refusal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with crashloop_world(tmp_path, admin_token=ADMIN_TOKEN) as w:
        await w.medic.runtime.state.set_kill_switch(True, by="test", reason="freeze")
        await w.post(w.crash_alerts())
        inc = await w.diagnosed()
        assert inc["actions"][0]["status"] == "refused"
        case, row = await export_and_replay(capsys, w, inc["id"], tmp_path, REPO / "rules")
    assert case["kill_switch"] is True
    assert case["expect"]["refused_by"] == ["kill_switch"]
    assert row["change"] == "unchanged", row


async def test_a_candidate_require_is_decided_again_from_the_rollout_timeline(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    strict = tmp_path / "strict"
    shutil.copytree(REPO / "rules", strict, ignore=shutil.ignore_patterns("tests"))
    path = strict / "kubernetes.yaml"
    text = path.read_text(encoding="utf-8")
    assert "recent_rollout: 30m" in text
    path.write_text(text.replace("recent_rollout: 30m", "recent_rollout: 1s", 1), encoding="utf-8")
    async with crashloop_world(tmp_path) as w:
        await asyncio.sleep(2.5)  # the bad revision is older than the candidate's 1s when decided
        await w.post(w.crash_alerts())
        inc = await w.diagnosed()
        assert inc["actions"][0]["status"] == "succeeded"
        case, row = await export_and_replay(capsys, w, inc["id"], tmp_path, REPO / "rules")
        assert row["change"] == "unchanged", row
        # the recorded precondition is not carried: the evidence's timeline answers it
        assert "recent_rollout" not in case.get("cluster", {}).get("preconditions", {})
        assert "k8s.rollout_history" in case["evidence"]
        code, out, _ = await medic_cli(
            capsys, "replay", "--since", "1d", "--url", w.medic.url, "--rules", str(strict), "-o", "json"
        )
    assert code == 0
    (row,) = [r for r in json.loads(out)["incidents"] if r["incident"] == inc["id"]]
    assert row["change"] == "changed", row
    assert row["after"]["action"] == "rollback refused (recent_rollout)", row


async def test_a_cooldown_known_from_the_cluster_survives_export_and_replay(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Medic rolled back; a human deploys a crashing v3; a fresh Medic (empty ledger) refuses by
    the cooldown it reads from the Deployment's rollback annotation. The exported case and the
    replay read that annotation from the evidence as the executor read it from the cluster."""
    v3 = "registry.example/playcode-app:v3"
    (tmp_path / "first").mkdir()
    async with crashloop_world(tmp_path / "first") as w:
        await w.post(w.crash_alerts())
        assert (await w.diagnosed())["actions"][0]["status"] == "succeeded"
        w.kube.bad_images.add(v3)
        w.kube.set_image(NS, APP, v3, change_cause="deploy v3")
        await w.kube.settle()
        async with medic_on(w.kube, tmp_path / "second") as fresh:
            again = World(w.kube, fresh)
            crashing = [p["metadata"]["name"] for p in w.kube.pods_of(NS, APP) if "v3" in str(p["spec"])]
            await again.post(again.crash_alerts(crashing))
            inc = await again.diagnosed()
            assert [g["guard"] for g in inc["actions"][0]["guards"] if not g["allowed"]] == ["cooldown"]
            case, row = await export_and_replay(capsys, again, inc["id"], tmp_path, REPO / "rules")
    assert case["history"] == []  # the fresh Medic's store knows no earlier action
    assert case["expect"]["refused_by"] == ["cooldown"]
    assert row["change"] == "unchanged", row
