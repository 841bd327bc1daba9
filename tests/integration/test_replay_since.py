"""``medic replay --since`` (issue 14.3): stored incidents re-decided under a candidate
configuration, from their stored alerts and evidence (no collector runs): a changed rule mode or
``when:`` changes the decision, a removed rule leaves the incident unmatched."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from medic.app.cli.main import main
from tests.integration.cli_inprocess import medic_cli
from tests.integration.crashloop_world import crashloop_world

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


async def replay(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    return await medic_cli(capsys, "replay", "--since", "7d", *argv)


def candidate(tmp_path: Path, name: str, old: str, new: str) -> Path:
    """A copy of the shipped rules with one edit of rules/kubernetes.yaml."""
    rules = tmp_path / name
    shutil.copytree(REPO / "rules", rules, ignore=shutil.ignore_patterns("tests"))
    path = rules / "kubernetes.yaml"
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    return rules


def row(doc: dict[str, Any]) -> dict[str, Any]:
    assert len(doc["incidents"]) == 1, doc
    return dict(doc["incidents"][0])


async def test_replay_shows_changed_decisions(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    async with crashloop_world(tmp_path) as w:
        await w.post(w.crash_alerts())
        inc = await w.diagnosed()
        assert inc["actions"][0]["status"] == "succeeded"
        await w.resolved(inc["id"])  # the rollback worked: a replay decides as it was then
        steps_before = w.kube.count("GET", r".*")

        code, out, err = await replay(capsys, "--url", w.medic.url, "-o", "json")
        assert code == 0, err
        doc = json.loads(out)
        r = row(doc)
        assert r["incident"] == inc["id"] and r["change"] == "unchanged"
        assert (
            r["before"]
            == r["after"]
            == {
                "rule": "crashloop-rollback",
                "top_finding": "crashloop.regression",
                "action": "rollback would_act",
            }
        )

        approve = candidate(tmp_path, "approve", "mode: auto", "mode: approve")
        code, out, _ = await replay(capsys, "--url", w.medic.url, "--rules", str(approve))
        assert code == 0
        assert "rollback would_act → rollback awaiting_approval" in out, out
        assert "1 changed, 0 unchanged, 0 no longer matched" in out

        when = candidate(tmp_path, "when", "when: [crashloop.regression]", "when: [crashloop.oom_killed]")
        code, out, _ = await replay(
            capsys, "--data-dir", str(tmp_path / "data"), "--rules", str(when), "-o", "json"
        )
        r = row(json.loads(out))
        assert code == 0 and r["change"] == "changed"
        assert (r["before"]["action"], r["after"]["action"]) == ("rollback would_act", "none")

        gone = candidate(tmp_path, "gone", 'alertname="KubePodCrashLooping"', 'alertname="SomethingElse"')
        code, out, _ = await replay(capsys, "--url", w.medic.url, "--rules", str(gone), "-o", "json")
        r = row(json.loads(out))
        assert r["change"] == "no longer matched" and r["after"]["rule"] is None
        assert json.loads(out)["summary"] == {"changed": 0, "unchanged": 0, "no longer matched": 1}

        # a replay runs no collector: the cluster saw no request from it
        assert w.kube.count("GET", r".*") == steps_before


async def test_replay_under_another_global_mode(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--mode: the same incident decided under the default dry-run is only planned."""
    async with crashloop_world(tmp_path) as w:
        await w.post(w.crash_alerts())
        first = await w.diagnosed()
        assert first["actions"][0]["status"] == "succeeded"
        code, out, _ = await replay(capsys, "--url", w.medic.url, "--mode", "dry-run")
        assert code == 0
        assert "rollback would_act → rollback planned" in out, out


async def test_replay_usage(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = await asyncio.to_thread(main, ["replay"])
    _, err = capsys.readouterr()
    assert code == 2 and "--since" in err
    code, _, err = await replay(capsys, "--data-dir", str(tmp_path / "nothing"))
    assert code == 2 and "no local store" in err
    code = await asyncio.to_thread(main, ["replay", "payload.json", "--rules", "r/"])
    _, err = capsys.readouterr()
    assert code == 2 and "--rules: only with --since" in err
    code = await asyncio.to_thread(main, ["replay", "payload.json", "--since", "7d"])
    _, err = capsys.readouterr()
    assert code == 2 and "not both" in err
    code, _, err = await replay(capsys, "--since", "soon")
    assert code == 2 and "--since" in err
