"""A deploy verification's incident as a ``medic test`` fixture and under ``medic replay --since``
(issue 14): its window (the verifier's record of the revision and its baseline) travels with the
evidence, and the decision is aimed at the verified baseline as the verifier aims it, so the
export passes as it is and a revision without a baseline is never rolled back."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from medic.analysis.verification import WINDOW_STEP
from tests.integration.cli_inprocess import export_as_test, medic_cli
from tests.integration.verify_world import Traffic, verify_world
from tests.servers.fixtures import PrometheusFactory

pytestmark = pytest.mark.integration


def edit(path: Path, change: Any) -> None:
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    change(doc)
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")


async def test_a_failed_verification_exports_as_a_passing_test_and_replays_unchanged(
    tmp_path: Path, prometheus_factory: PrometheusFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    async with verify_world(
        tmp_path,
        prometheus_factory,
        new=Traffic(error_ratio=0.4),
        mode="enforce",
        rule_mode="auto",
        window="60s",
    ) as w:
        started = await w.request()
        inc = await w.finished(started["incident_id"], within=20)
        assert inc["verification"]["state"] == "failed"
        assert inc["actions"][0]["status"] == "succeeded" and inc["actions"][0]["params"]["to"] == 1
        exported = tmp_path / "verify.yaml"
        await export_as_test(capsys, inc["id"], w.medic.url, exported)
        code, out, err = await medic_cli(
            capsys,
            "replay",
            "--since",
            "1d",
            "--url",
            w.medic.url,
            "--rules",
            str(w.settings.rules_dir),
            "--playbooks",
            str(w.settings.playbooks_dir),
            "-o",
            "json",
        )
    assert code == 0, err
    rows = {r["incident"]: r for r in json.loads(out)["incidents"]}
    assert rows[inc["id"]]["change"] == "unchanged", rows[inc["id"]]
    assert rows[inc["id"]]["after"]["action"] == "rollback would_act"

    def against_the_worlds_config(doc: dict[str, Any]) -> None:
        doc["rules_dir"], doc["playbooks_dir"] = str(w.settings.rules_dir), str(w.settings.playbooks_dir)

    edit(exported, against_the_worlds_config)
    case = yaml.safe_load(exported.read_text(encoding="utf-8"))["tests"][0]
    assert case["evidence"][WINDOW_STEP]["data"]["verification"]["baseline_revision"] == 1
    assert case["expect"]["action"] == {"name": "rollback", "status": "would_act"}
    code, out, _ = await medic_cli(capsys, "test", str(exported))
    assert code == 0 and "1 passed, 0 failed" in out, out

    # the same failed revision, had it no verified baseline: not rolled back (as the verifier decides)
    def no_baseline(doc: dict[str, Any]) -> None:
        doc["tests"][0]["evidence"][WINDOW_STEP]["data"]["verification"]["baseline_revision"] = None

    edit(exported, no_baseline)
    code, out, _ = await medic_cli(capsys, "test", str(exported))
    assert code == 1
    assert "- expected: would_act\n      + got:      none (no rollback: revision 2" in out, out
    assert "has no verified baseline" in out
