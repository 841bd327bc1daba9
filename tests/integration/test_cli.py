"""The CLI: replay (in-process, never acts), incidents list/show, errors that name the file and line."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from medic.cli import main
from tests.integration.crashloop_world import crashloop_world
from tests.medic_app import medic_settings, running_medic
from tests.payloads import alert, payload
from tests.servers.playcode_series import latency_histogram


def write_payload(tmp_path: Path, body: Any) -> Path:
    path = tmp_path / "payload.json"
    path.write_text(json.dumps(body, indent=2) if not isinstance(body, str) else body)
    return path


async def test_replay_prints_the_report_with_real_prometheus(
    tmp_path: Path,
    prometheus_factory: Any,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    prom = await prometheus_factory(latency_histogram(p99=0.08, spike_p99=4.0, spike_minutes=10))
    monkeypatch.setenv("MEDIC_KUBE_MODE", "off")
    path = write_payload(
        tmp_path, payload([alert("PlayCodeHighLatency", namespace="playcode", deployment="playcode-app")])
    )
    # the CLI runs its own event loop: run it in a thread from this async test
    code = await asyncio.to_thread(main, ["replay", str(path), "--prometheus-url", prom.url])
    out = capsys.readouterr().out
    assert code == 0
    assert "PlayCodeHighLatency on deployment/playcode/playcode-app" in out
    assert "p99 request latency is 4.00 s, above the critical threshold" in out


def test_replay_bad_files_name_file_and_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_payload(tmp_path, '{\n  "version": "4",\n  "alerts": [\n')
    assert main(["replay", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}:4:1: invalid JSON" in err
    path = write_payload(tmp_path, {**payload([alert("A")]), "version": "3"})
    assert main(["replay", str(path)]) == 1
    assert "version" in capsys.readouterr().err
    assert main(["replay", str(tmp_path / "missing.json")]) == 2
    assert "No such file" in capsys.readouterr().err


async def test_replay_never_acts_even_with_enforce(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "world").mkdir()
    async with crashloop_world(tmp_path / "world") as w:
        kubeconfig = tmp_path / "world" / "kubeconfig"
        monkeypatch.setenv("MEDIC_MODE", "enforce")
        monkeypatch.setenv("MEDIC_KUBE_MODE", "kubeconfig")
        monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
        path = write_payload(tmp_path, payload(w.crash_alerts()))
        code = await asyncio.to_thread(main, ["replay", str(path), "--format", "json"])
        assert code == 0
        inc = json.loads(capsys.readouterr().out)
        assert inc["findings"][0]["code"] == "crashloop.regression"
        assert inc["actions"][0]["status"] == "planned"
        assert w.patches() == 0


async def test_incidents_list_and_show(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = medic_settings(tmp_path)
    async with running_medic(settings) as m:
        async with (
            aiohttp.ClientSession() as s,
            s.post(
                f"{m.url}/api/v1/alerts",
                json=payload([alert("PlayCodeHighLatency", namespace="playcode", deployment="playcode-app")]),
            ) as r,
        ):
            assert r.status == 200
        await m.drain()
        assert await asyncio.to_thread(main, ["incidents", "--url", m.url]) == 0
        out = capsys.readouterr().out
        assert "PlayCodeHighLatency on deployment/playcode/playcode-app" in out and "(1 of 1)" in out
        incident_id = out.splitlines()[1].split()[0]
        assert (
            await asyncio.to_thread(
                main, ["incidents", "show", incident_id, "--url", m.url, "--format", "md"]
            )
            == 0
        )
        assert f"`{incident_id}`" in capsys.readouterr().out
        assert await asyncio.to_thread(main, ["incidents", "show", "nope", "--url", m.url]) == 2
        assert "404" in capsys.readouterr().err
        # the local store, read while the server runs (WAL)
        monkeypatch.setenv("MEDIC_DATA_DIR", str(settings.data_dir))
        assert await asyncio.to_thread(main, ["incidents", "--format", "json"]) == 0
        assert json.loads(capsys.readouterr().out)["total"] == 1
