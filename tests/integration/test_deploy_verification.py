"""Deploy verification end to end (issue 13): the fake kube-apiserver's controllers, a real
Prometheus backfilled with a clean or a failing rollout, Medic in-process, the API trigger."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from medic.app.cli.main import main
from medic.incidents.base import IncidentQuery
from tests.integration.verify_world import APP, NS, TOKEN, Traffic, VerifyWorld, verify_world
from tests.medic_app import running_medic
from tests.servers.fixtures import PrometheusFactory


async def test_a_good_rollout_passes_with_no_write(
    tmp_path: Path, prometheus_factory: PrometheusFactory
) -> None:
    async with verify_world(tmp_path, prometheus_factory, mode="enforce", rule_mode="auto") as w:
        started = await w.request()
        assert started["created"] is True and started["revision"] == 2 and started["baseline_revision"] == 1
        assert started["state"] == "verifying"
        inc = await w.finished(started["incident_id"])
        v = inc["verification"]
        assert v["state"] == "passed", v["reason"]
        assert len(v["samples"]) >= 2  # sampled every interval over the window
        last = v["samples"][-1]
        assert last["requests"]["new"] >= 100 and last["requests"]["baseline"] > 1000
        assert last["error_ratio_5xx"]["new"] < 0.01
        assert w.rollback_patches() == 0
        assert inc["status"] == "resolved" and inc["actions"] == []
        assert inc["severity"] == "info"  # a channel with min_severity warning does not hear of it
        assert [f["code"] for f in inc["findings"]][:1] == ["verify.passed"]


async def test_a_5xx_jump_fails_at_once_and_rolls_back_once_in_enforce(
    tmp_path: Path, prometheus_factory: PrometheusFactory
) -> None:
    bad = Traffic(error_ratio=0.4)
    async with verify_world(
        tmp_path, prometheus_factory, new=bad, mode="enforce", rule_mode="auto", window="60s"
    ) as w:
        started = await w.request()
        inc = await w.finished(started["incident_id"], within=20)
        v = inc["verification"]
        assert v["state"] == "failed" and "5xx ratio" in v["reason"]
        assert inc["severity"] == "critical"
        assert len(v["samples"]) == 1  # an early failure ends the window at once
        (action,) = inc["actions"]
        assert action["status"] == "succeeded", action
        assert action["params"]["to"] == 1  # the verified baseline
        assert w.rollback_patches() == 1
        dep = w.kube.get_object("Deployment", NS, APP)
        assert dep["spec"]["template"]["spec"]["containers"][0]["image"].endswith(":v1")
        again = await w.request(status=409, revision=2)  # the Deployment left revision 2
        assert "not current" in again["detail"]


async def test_a_failing_rollout_only_plans_in_dry_run(
    tmp_path: Path, prometheus_factory: PrometheusFactory
) -> None:
    async with verify_world(
        tmp_path, prometheus_factory, new=Traffic(error_ratio=0.4), mode="dry-run", rule_mode="auto"
    ) as w:
        started = await w.request()
        inc = await w.finished(started["incident_id"], within=20)
        assert inc["verification"]["state"] == "failed"
        (action,) = inc["actions"]
        assert action["status"] == "planned" and action["params"]["to"] == 1
        assert w.rollback_patches() == 0
        assert inc["status"] == "open"  # a failed verification stays open while the revision runs


async def test_a_quiet_service_is_inconclusive(tmp_path: Path, prometheus_factory: PrometheusFactory) -> None:
    quiet = Traffic(rps=0.2, error_ratio=0.5)  # a 50 % 5xx ratio over a dozen requests proves nothing
    async with verify_world(tmp_path, prometheus_factory, new=quiet, mode="enforce", rule_mode="auto") as w:
        started = await w.request()
        inc = await w.finished(started["incident_id"])
        v = inc["verification"]
        assert v["state"] == "inconclusive" and "requests in the window" in v["reason"], v["reason"]
        assert w.rollback_patches() == 0 and inc["status"] == "resolved"


async def test_a_restart_during_the_window_resumes_the_verification(
    tmp_path: Path, prometheus_factory: PrometheusFactory
) -> None:
    async with verify_world(tmp_path, prometheus_factory, window="9s") as w:
        other = w.settings.model_copy(update={"data_dir": tmp_path / "other" / "data"})
        async with running_medic(other) as first:
            started = await VerifyWorld(w.kube, first, other).request()
            await asyncio.sleep(1.5)  # the first sample is taken, then this Medic stops
        async with running_medic(other) as second:
            again = VerifyWorld(w.kube, second, other)
            inc = await again.finished(started["incident_id"])
            v = inc["verification"]
            assert v["state"] == "passed", v["reason"]
            first_sample, last_sample = v["samples"][0], v["samples"][-1]
            assert first_sample["elapsed_s"] < 1.5 and last_sample["elapsed_s"] >= 9  # before and after
            same_window = datetime.fromisoformat(v["started_at"]) == datetime.fromisoformat(
                started["started_at"]
            )
            assert same_window  # the window goes on, it does not start again


async def test_a_newer_revision_supersedes_the_running_verification(
    tmp_path: Path, prometheus_factory: PrometheusFactory
) -> None:
    async with verify_world(tmp_path, prometheus_factory, window="60s", verify_deploys="off") as w:
        first = await w.request()
        same = await w.request(status=200, window="5m")  # the revision under verification: that incident
        assert same["incident_id"] == first["incident_id"] and same["created"] is False
        assert "not applied" in same["note"]
        w.kube.set_image(NS, APP, "registry.example/playcode-app:v3")
        await w.kube.settle()
        second = await w.request()
        assert second["revision"] == 3 and second["baseline_revision"] == 2
        old = await w.incident(first["incident_id"])
        assert old["status"] == "resolved"
        assert old["verification"]["state"] == "inconclusive"
        # superseded: by the request for revision 3, or by its own sample that saw revision 3 first
        assert "superseded" in old["verification"]["reason"] and "revision 3" in old["verification"]["reason"]


async def test_bad_requests_are_problems_naming_the_field(
    tmp_path: Path, prometheus_factory: PrometheusFactory
) -> None:
    async with verify_world(tmp_path, prometheus_factory) as w:
        assert (await w.request(status=401, token="wrong"))["status"] == 401
        bad = await w.request(status=400, namespace="Not_A_Name")
        assert bad["field"] == "namespace" and "Kubernetes object name" in bad["detail"]
        assert (await w.request(status=400, revision=0))["field"] == "revision"
        assert (await w.request(status=400, revision="2"))["field"] == "revision"  # a number, not a string
        assert (await w.request(status=400, revision=True))["field"] == "revision"
        assert (await w.request(status=400, window="soon"))["field"] == "window"
        assert (await w.request(status=400, extra=1))["field"] == "extra"
        assert (await w.request(status=404, deployment="nope"))["field"] == "deployment"
        assert (await w.request(status=403, namespace="kube-system"))["field"] == "namespace"
        assert (await w.request(status=409, revision=1))["field"] == "revision"  # not current
        assert (await w.request(status=422, window="30s"))["field"] == "window"  # too short
        assert await w.medic.runtime.store.query(IncidentQuery()) == ([], 0)  # none opened


def printed_json(out: str) -> dict[str, Any]:
    """The JSON document a command printed (the in-process Medic's log lines go to stdout too)."""
    lines = out.splitlines()
    start = lines.index("{")
    doc: dict[str, Any] = json.loads("\n".join(lines[start : lines.index("}", start) + 1]))
    return doc


def _clean_env(monkeypatch: pytest.MonkeyPatch, **env: str) -> None:
    for name in list(os.environ):
        if name.startswith("MEDIC_") or name == "KUBECONFIG":
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)


async def test_medic_verify_url_wait_exits_1_on_a_failed_verdict(
    tmp_path: Path,
    prometheus_factory: PrometheusFactory,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    async with verify_world(tmp_path, prometheus_factory, new=Traffic(error_ratio=0.4)) as w:
        _clean_env(monkeypatch, MEDIC_WEBHOOK_TOKEN=TOKEN)
        args = ["verify", f"deployment/{APP}", "-n", NS, "--url", w.medic.url, "--wait", "-o", "json"]
        code = await asyncio.to_thread(main, args)
        out = printed_json(capsys.readouterr().out)
        assert (
            code == 1 and out["state"] == "failed" and out["revision"] == 2 and out["baseline_revision"] == 1
        )
        _clean_env(monkeypatch)  # no credentials: the server refuses, exit 1 with its reason
        code = await asyncio.to_thread(main, ["verify", APP, "-n", NS, "--url", w.medic.url])
        assert code == 1 and "401" in capsys.readouterr().err


async def test_medic_verify_without_url_runs_it_here(
    tmp_path: Path,
    prometheus_factory: PrometheusFactory,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    async with verify_world(tmp_path, prometheus_factory) as w:
        s = w.settings
        _clean_env(
            monkeypatch,
            MEDIC_DATA_DIR=str(tmp_path / "cli-data"),
            MEDIC_KUBE_MODE="kubeconfig",
            MEDIC_KUBECONFIG=str(s.kubeconfig),
            MEDIC_PROMETHEUS_URL=str(s.prometheus_url),
            MEDIC_RULES_DIR=str(s.rules_dir),
            MEDIC_PLAYBOOKS_DIR=str(s.playbooks_dir),
        )
        code = await asyncio.to_thread(main, ["verify", f"deployment/{APP}", "-n", NS])
        out = capsys.readouterr().out
        assert code == 0, out
        assert f"deployment/{NS}/{APP} revision 2 against revision 1: passed" in out
        assert await asyncio.to_thread(main, ["verify", "statefulset/x", "-n", NS]) == 2  # usage


async def verifications(w: VerifyWorld) -> list[dict[str, Any]]:
    page, _ = await w.medic.runtime.store.query(IncidentQuery(rule="deploy-verify", limit=100))
    return [i.model_dump(mode="json") for i in page]


async def until(check: Callable[[], Awaitable[bool]], within: float = 20.0) -> None:
    deadline = time.monotonic() + within
    while not await check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.1)


async def test_the_watch_verifies_each_new_revision(
    tmp_path: Path, prometheus_factory: PrometheusFactory
) -> None:
    async with verify_world(tmp_path, prometheus_factory) as w:
        await w.kube.watching()  # listed and watching: what exists (revision 2) is no deploy
        assert await verifications(w) == []
        w.kube.set_image(NS, APP, "registry.example/playcode-app:v3", change_cause="deploy v3")
        await w.kube.settle()

        async def started() -> bool:
            return len(await verifications(w)) == 1

        await until(started)
        (inc,) = await verifications(w)
        v = inc["verification"]
        assert (v["revision"], v["baseline_revision"], v["trigger"]) == (3, 2, "watch")
        w.kube.scale(NS, APP, 4)  # a scale is no deploy
        await w.kube.settle()
        await asyncio.sleep(1.0)
        assert len(await verifications(w)) == 1


async def test_medics_own_rollback_starts_no_verification_of_itself(
    tmp_path: Path, prometheus_factory: PrometheusFactory
) -> None:
    bad = Traffic(error_ratio=0.4)
    async with verify_world(
        tmp_path, prometheus_factory, new=bad, mode="enforce", rule_mode="auto", window="60s"
    ) as w:
        await w.kube.watching()
        started = await w.request()
        inc = await w.finished(started["incident_id"], within=20)
        assert inc["verification"]["state"] == "failed" and w.rollback_patches() == 1
        assert inc["status"] == "resolved"  # the rollback succeeded: the failed revision no longer runs
        dep = w.kube.get_object("Deployment", NS, APP)
        assert dep["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "3"  # the rollback's
        await asyncio.sleep(2.0)  # the watch has seen revision 3: Medic's own, not verified
        assert [i["id"] for i in await verifications(w)] == [started["incident_id"]]
