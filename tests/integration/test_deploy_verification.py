"""Deploy verification end to end (issue 13): the fake kube-apiserver's controllers, a real
Prometheus backfilled with a clean or a failing rollout, Medic in-process, the API trigger."""

from __future__ import annotations

from pathlib import Path

from tests.integration.verify_world import APP, NS, Traffic, verify_world
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
