"""Issue 3 end to end: a bad rollout crash-loops; Medic diagnoses it and rolls back once — or,
when the evidence or a guard says no, explains why and leaves the Deployment alone."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from medic.domain.actions import ActionMark
from medic.domain.incident import utcnow
from tests.fakes.kube_apiserver import FakeKubeApiserver
from tests.integration.crashloop_world import (
    APP,
    BAD,
    GOOD,
    NS,
    SURGE,
    TOKEN,
    World,
    all_diagnosed,
    crashloop_world,
    medic_on,
)
from tests.payloads import alert

pytestmark = pytest.mark.integration
TARGET = f"deployment/{NS}/{APP}"
V2 = "registry.example/playcode-app:v2-healthy"


def action(inc: dict[str, Any]) -> dict[str, Any]:
    assert len(inc["actions"]) == 1, inc["actions"]
    return dict(inc["actions"][0])


def refused_by(inc: dict[str, Any]) -> str:
    act = action(inc)
    assert act["status"] == "refused", act
    return str(act["reason"])


async def test_rollback_end_to_end_with_a_real_alertmanager(
    tmp_path: Path, alertmanager_factory: Any
) -> None:
    async with crashloop_world(tmp_path) as w:
        assert len(w.crashing_pods()) == 3
        am = await alertmanager_factory(
            receiver_url=f"{w.medic.url}/api/v1/alerts",
            bearer_token=TOKEN,
            group_by=["alertname", "namespace"],
        )
        pods = w.crashing_pods()
        for pod in pods:
            await am.fire(
                {
                    "alertname": "KubePodCrashLooping",
                    "namespace": NS,
                    "pod": pod,
                    "container": APP,
                    "severity": "warning",
                }
            )

        async def done() -> list[dict[str, Any]]:
            items = await w.incidents()
            return [i for i in items if i["actions"] and i["actions"][0]["status"] != "running"]

        for _ in range(300):
            if (items := await done()) and (items[0]["firing"] == 3):
                break
            await asyncio.sleep(0.05)
        items = await w.incidents()
        assert len(items) == 1, "three crash-looping pods of one Deployment are one incident"
        inc = await w.incident(items[0]["id"])
        assert inc["target"] == {"kind": "deployment", "namespace": NS, "name": APP, "inferred": False}
        top = inc["findings"][0]
        assert top["code"] == "crashloop.regression", inc["findings"]
        assert "TypeError" in " ".join(top["details"]["log_sample"])
        act = action(inc)
        assert act["status"] == "succeeded", act
        assert act["result"]["facts"]["from_revision"] == 2 and act["result"]["facts"]["to_revision"] == 1
        assert all(g["allowed"] for g in act["guards"])
        assert w.patches() == 1
        assert w.image() == GOOD
        assert w.kube.rollout_complete(NS, APP)
        assert "hunter2-secret" not in str(inc)
        # the pods are healthy now: Alertmanager resolves, the incident closes
        for pod in pods:
            await am.resolve(
                {
                    "alertname": "KubePodCrashLooping",
                    "namespace": NS,
                    "pod": pod,
                    "container": APP,
                    "severity": "warning",
                }
            )
        for _ in range(300):
            if await w.incidents(status="resolved"):
                break
            await asyncio.sleep(0.05)
        assert [i["id"] for i in await w.incidents(status="resolved")] == [inc["id"]]
        assert w.patches() == 1
        async with (
            __import__("aiohttp").ClientSession() as s,
            s.get(f"{w.medic.url}/api/v1/incidents/{inc['id']}?format=md") as r,
        ):
            md = await r.text()
        assert "crashloop.regression" in md and "succeeded" in md


async def test_dry_run_records_the_plan_and_patches_nothing(tmp_path: Path) -> None:
    async with crashloop_world(tmp_path, mode="dry-run") as w:
        await w.post(w.crash_alerts())
        inc = await w.diagnosed()
        act = action(inc)
        assert act["status"] == "planned"
        assert "would roll back deployment playcode/playcode-app from revision 2" in act["reason"]
        assert w.patches() == 0 and w.image() == BAD
        audit = await w.medic.runtime.store.audit(inc["id"])
        assert audit[0]["record"]["status"] == "planned"


async def test_crash_that_predates_the_rollout_is_not_rolled_back(tmp_path: Path) -> None:
    def old_also_crashes(kube: FakeKubeApiserver) -> None:
        kube.bad_images.add(GOOD)

    async with crashloop_world(tmp_path, before_rollout=old_also_crashes) as w:
        pods = [p["metadata"]["name"] for p in w.kube.pods_of(NS, APP)]
        await w.post(w.crash_alerts(pods))
        inc = await w.diagnosed()
        codes = [f["code"] for f in inc["findings"]]
        assert "crashloop.predates_rollout" in codes and "crashloop.regression" not in codes
        assert inc["actions"] == [] and w.patches() == 0
        (audit,) = await w.medic.runtime.store.audit(inc["id"])
        assert audit["kind"] == "decision" and "no rollback" in audit["record"]["reason"]


async def test_dependency_down_is_explained_not_rolled_back(tmp_path: Path) -> None:
    log = "MongoServerSelectionError: connect ECONNREFUSED 10.0.3.4:27017\n"
    async with crashloop_world(tmp_path, bad_log=log) as w:
        await w.post(w.crash_alerts())
        inc = await w.diagnosed()
        finding = next(f for f in inc["findings"] if f["code"] == "crashloop.dependency_down")
        assert finding["details"]["dependency"] == "mongodb"
        assert inc["actions"] == [] and w.patches() == 0


def _annotate(key: str, value: str) -> Any:
    def patch(kube: FakeKubeApiserver) -> None:
        kube.patch_object(
            "Deployment", NS, APP, {"metadata": {"annotations": {key: value}}}, patch_type="merge"
        )

    return patch


def _label(key: str, value: str) -> Any:
    def patch(kube: FakeKubeApiserver) -> None:
        kube.patch_object("Deployment", NS, APP, {"metadata": {"labels": {key: value}}}, patch_type="merge")

    return patch


@pytest.mark.parametrize(
    ("after", "words"),
    [
        (_annotate("medic.playcode.gg/remediate", "false"), "opt_out"),
        (_label("argocd.argoproj.io/instance", "playcode"), "gitops"),
        (
            _annotate("argocd.argoproj.io/tracking-id", "playcode:apps/Deployment:playcode/playcode-app"),
            "gitops",
        ),
    ],
)
async def test_opted_out_or_gitops_targets_are_left_alone(tmp_path: Path, after: Any, words: str) -> None:
    async with crashloop_world(tmp_path, after_rollout=after) as w:
        await w.post(w.crash_alerts())
        inc = await w.diagnosed()
        assert refused_by(inc).startswith(words)
        assert w.patches() == 0


async def test_kill_switch(tmp_path: Path) -> None:
    async with crashloop_world(tmp_path) as w:
        await w.medic.runtime.state.set_kill_switch(True, "alice", "deploy freeze")
        await w.post(w.crash_alerts())
        inc = await w.diagnosed()
        assert "kill switch is on by alice: deploy freeze" in refused_by(inc)
        assert w.patches() == 0


@pytest.mark.parametrize(
    ("minutes_ago", "guard"),
    [(5, "cooldown"), (40, "budget")],
)
async def test_cooldown_and_budget(tmp_path: Path, minutes_ago: int, guard: str) -> None:
    async with crashloop_world(tmp_path) as w:
        await w.medic.runtime.state.begin_action(
            ActionMark(
                "earlier",
                TARGET,
                "rollback",
                "inc-earlier",
                utcnow() - timedelta(minutes=minutes_ago),
                "succeeded",
                {"to_hash": "elsewhere"},
            )
        )
        await w.post(w.crash_alerts())
        inc = await w.diagnosed()
        assert refused_by(inc).startswith(guard)
        assert w.patches() == 0


async def test_previous_revision_never_healthy(tmp_path: Path) -> None:
    # Recreate: the old pods are gone, and revision 1 served for seconds, not minutes.
    async with crashloop_world(tmp_path, strategy={"type": "Recreate"}) as w:
        await w.post(w.crash_alerts())
        inc = await w.diagnosed()
        assert refused_by(inc).startswith("precondition:previous_revision_healthy")
        assert w.patches() == 0


async def test_someone_else_changed_the_deployment_409(tmp_path: Path) -> None:
    async with crashloop_world(tmp_path) as w:
        w.kube.inject_fault("PATCH", rf"/deployments/{APP}$", 409, times=None)
        await w.post(w.crash_alerts())
        inc = await w.diagnosed()
        assert refused_by(inc).startswith("conflict")
        assert w.patches() == 1 and w.image() == BAD


async def test_api_faults_complete_with_bounded_retries_and_one_rollback(tmp_path: Path) -> None:
    async with crashloop_world(tmp_path) as w:
        w.kube.inject_fault("GET", r"/apis/apps/v1/", 500, times=None, ratio=0.3)
        w.kube.inject_fault("GET", r"/pods", 429, times=3)
        w.kube.inject_fault("PATCH", rf"/deployments/{APP}$", 500, times=1, after=True)  # lost answer
        before = len(w.kube.requests)
        await w.post(w.crash_alerts())
        inc = await w.diagnosed()
        act = action(inc)
        assert act["status"] == "succeeded", act
        assert w.image() == GOOD
        dep = w.kube.get_object("Deployment", NS, APP)
        assert dep["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "3"  # one rollback only
        assert len(w.kube.replicasets_of(NS, APP)) == 2
        assert len(w.kube.requests) - before < 120  # retries are bounded


async def test_duplicate_and_concurrent_deliveries_roll_back_once(tmp_path: Path) -> None:
    async with crashloop_world(tmp_path) as w:
        alerts = w.crash_alerts()
        results = await asyncio.gather(*(w.post(alerts) for _ in range(6)))
        assert sum(r["new"] for r in results) == 3
        # a second HA Alertmanager grouping differently: one pod per notification
        await asyncio.gather(*(w.post([a]) for a in alerts))
        inc = await w.diagnosed()
        assert len(await w.incidents()) == 1
        assert action(inc)["status"] == "succeeded"
        assert w.patches() == 1


async def test_a_rollback_that_did_not_help_is_not_repeated(tmp_path: Path) -> None:
    async with crashloop_world(tmp_path) as w:
        await w.medic.runtime.state.begin_action(
            ActionMark(
                "earlier", TARGET, "rollback", "inc-earlier", utcnow() - timedelta(minutes=45), "failed", {}
            )
        )
        await w.medic.runtime.state.finish_action("earlier", "failed", {})
        await w.post(w.crash_alerts())
        inc = await w.diagnosed()
        # the budget (1 per hour) would also say no; the flap guard gives the reason to escalate
        act = action(inc)
        assert any(g["guard"] == "flap" and not g["allowed"] for g in act["guards"])


# ---------------------------------------------------------------------- the rollout timeline (issue 12)


async def test_a_fresh_medic_knows_its_own_earlier_rollback_from_the_cluster(tmp_path: Path) -> None:
    """Medic rolled back 2 -> 1 (revision 3 now, the reused ReplicaSet); the crash continues (it was
    not the rollout); a freshly installed Medic (empty ledger) must not call revision 2 "healthy
    before", must name the earlier rollback and must not roll back again."""
    (tmp_path / "first").mkdir()
    async with crashloop_world(tmp_path / "first") as w:
        await w.post(w.crash_alerts())
        inc = await w.diagnosed()
        assert action(inc)["status"] == "succeeded" and w.image() == GOOD
        writers = w.kube.get_object("Deployment", NS, APP)["metadata"]["managedFields"]
        assert "medic" in {f["manager"] for f in writers}  # its write is recorded under its name
        w.kube.set_image_fault(GOOD, "CrashLoopBackOff")
        await w.kube.settle()
        async with medic_on(w.kube, tmp_path / "second") as fresh:
            again = World(w.kube, fresh)
            pods = [p["metadata"]["name"] for p in w.kube.pods_of(NS, APP)]
            await again.post([dict(a, startsAt="2026-11-26T09:00:00Z") for a in again.crash_alerts(pods)])
            inc2 = await again.diagnosed()
            (audit,) = await fresh.runtime.store.audit(inc2["id"])
        codes = [f["code"] for f in inc2["findings"]]
        assert "crashloop.regression" not in codes, inc2["findings"]
        predates = next(f for f in inc2["findings"] if f["code"] == "crashloop.predates_rollout")
        assert "Medic rolled back from revision 2 to 1 at " in predates["summary"]
        assert f"(incident {inc['id']})" in predates["summary"]
        rows = {r["revision"]: r for r in predates["details"]["timeline"]}
        assert rows[3]["source"] == "Medic's rollback annotation" and rows[3]["reused_from"] == [1]
        assert "Medic rolled back from it" in rows[2]["note"]
        assert inc2["actions"] == [] and w.patches() == 1
        assert "no rollback: Medic rolled back from revision 2 to 1" in audit["record"]["reason"]


@contextlib.asynccontextmanager
async def _history_world(tmp_path: Path, past: timedelta) -> Any:
    """A Deployment whose first revisions were rolled out ``past`` ago (the fake clock shifted
    back), with Medic running now."""
    async with FakeKubeApiserver(token="medic-sa-token") as kube:
        real = kube.clock.now()
        kube.clock.shift_to(real - past)
        kube.add_deployment(NS, APP, GOOD, replicas=3, strategy=SURGE, container_name=APP)
        kube.set_image(NS, APP, V2, change_cause="deploy v2")
        await kube.settle()
        kube.clock.shift_to(kube.clock.now() + past)
        async with medic_on(kube, tmp_path) as medic:
            yield World(kube, medic)


async def test_a_redeploy_of_an_old_template_that_crashes_is_a_recent_rollout(tmp_path: Path) -> None:
    """Revision 1's template, rolled out 3 days ago and replaced by v2, is deployed again now and
    crashes: its ReplicaSet is reused (created 3 days ago), yet the rollout is recent (the
    controller's ScalingReplicaSet event) and v2 ran healthy: rolled back to v2."""
    async with _history_world(tmp_path, timedelta(days=3)) as w:
        w.kube.set_image_fault(GOOD, "CrashLoopBackOff")
        w.kube.set_image(NS, APP, GOOD, change_cause="re-deploy v1")
        await w.kube.settle()
        crashing = [p["metadata"]["name"] for p in w.kube.pods_of(NS, APP) if not _ready(p)]
        await w.post(w.crash_alerts(crashing))
        inc = await w.diagnosed()
        top = next(f for f in inc["findings"] if f["code"] == "crashloop.regression")
        assert "(ScalingReplicaSet event)" in top["summary"], top["summary"]
        assert "playcode-app:v2" in top["summary"] and "registry.example/" not in top["summary"]
        rows = {r["revision"]: r for r in top["details"]["timeline"]}
        assert rows[3]["reused_from"] == [1]
        act = action(inc)
        assert act["status"] == "succeeded", (act["reason"], act["guards"])
        assert w.image() == V2 and w.patches() == 1
        # the report and the page carry the timeline: revision, became current at, source
        async with aiohttp.ClientSession() as s:
            async with s.get(f"{w.medic.url}/api/v1/incidents/{inc['id']}?format=md") as r:
                md = await r.text()
            async with s.get(f"{w.medic.url}/incidents/{inc['id']}") as r:
                assert r.status == 200
                page = await r.text()
        assert "## Rollout timeline" in md
        assert "| 3 (current) | playcode-app:v1 |" in md and "ScalingReplicaSet event" in md
        assert "re-deploy of revision 1" in md
        assert "<h2>Rollout timeline</h2>" in page and "ScalingReplicaSet event" in page


async def test_a_revision_current_for_days_that_starts_crashing_is_not_rolled_back(tmp_path: Path) -> None:
    async with _history_world(tmp_path, timedelta(days=3)) as w:
        w.kube.set_image_fault(V2, "CrashLoopBackOff")
        await w.kube.settle()
        pods = [p["metadata"]["name"] for p in w.kube.pods_of(NS, APP)]
        await w.post(w.crash_alerts(pods))
        inc = await w.diagnosed()
        codes = [f["code"] for f in inc["findings"]]
        assert "crashloop.regression" not in codes
        predates = next(f for f in inc["findings"] if f["code"] == "crashloop.predates_rollout")
        assert "revision 2 became current 3 days ago" in predates["summary"]
        assert inc["actions"] == [] and w.patches() == 0
        (audit,) = await w.medic.runtime.store.audit(inc["id"])
        assert "no rollback: revision 2 is not a recent rollout" in audit["record"]["reason"]


@pytest.mark.parametrize(
    ("fault", "message", "words"),
    [
        ("ImagePullBackOff", None, "cannot be pulled (ImagePullBackOff)"),
        (
            "CreateContainerConfigError",
            "couldn't find key DB_URL in Secret playcode/app-secrets",
            "couldn't find key DB_URL",
        ),
    ],
)
async def test_a_new_revision_that_cannot_start_reads_the_same_whichever_alert_arrived(
    tmp_path: Path, fault: Any, message: str | None, words: str
) -> None:
    """Unpushed image / missing Secret key on the new revision while the old ReplicaSet serves:
    KubePodNotReady, KubeDeploymentRolloutStuck and KubePodCrashLooping give the same findings and
    the same proposal (approve, even under the auto crashloop rule), saying users are still served."""

    def cannot_start(kube: FakeKubeApiserver) -> None:
        kube.set_image_fault(BAD, fault, message=message)

    async with crashloop_world(tmp_path, before_rollout=cannot_start) as w:
        pods = w.crashing_pods()
        first = pods[0]
        await w.post(
            [
                alert("KubePodNotReady", namespace=NS, pod=first, severity="warning"),
                alert("KubeDeploymentRolloutStuck", namespace=NS, deployment=APP, severity="warning"),
                alert("KubePodCrashLooping", namespace=NS, pod=first, container=APP, severity="warning"),
            ]
        )
        incidents = await all_diagnosed(w, 3)
        crash_codes = [
            sorted(f["code"] for f in inc["findings"] if f["code"].startswith("crashloop."))
            for inc in incidents
        ]
        assert all(codes == crash_codes[0] for codes in crash_codes), crash_codes
        assert "crashloop.regression" in crash_codes[0]
        for inc in incidents:
            regression = next(f for f in inc["findings"] if f["code"] == "crashloop.regression")
            assert words in regression["summary"]
            assert "users are still served by its 3 ready pod(s)" in regression["summary"]
            act = action(inc)
            assert act["mode"] == "approve" and act["status"] == "awaiting_approval", act
        assert w.patches() == 0 and w.image() == BAD


def _ready(pod: dict[str, Any]) -> bool:
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in (pod.get("status") or {}).get("conditions") or []
    )


async def test_an_old_oom_killed_redis_is_not_blamed_on_its_last_rollout(tmp_path: Path) -> None:
    """Redis upgraded 9 days ago starts being OOMKilled now: OOMKilled, predating the rollout,
    never "only the new revision", never rolled back."""
    async with FakeKubeApiserver(token="medic-sa-token") as kube:
        real = kube.clock.now()
        kube.clock.shift_to(real - timedelta(days=9))
        kube.add_deployment(
            NS,
            "redis",
            "redis:7.0",
            replicas=1,
            container_name="redis",
            resources={"limits": {"memory": "256Mi"}},
        )
        kube.set_image(NS, "redis", "redis:7.2")
        await kube.settle()
        kube.clock.shift_to(kube.clock.now() + timedelta(days=9))
        kube.set_image_fault("redis:7.2", "OOMKilled")
        await kube.settle()
        async with medic_on(kube, tmp_path) as medic:
            w = World(kube, medic)
            (pod,) = [p["metadata"]["name"] for p in kube.pods_of(NS, "redis")]
            await w.post(
                [alert("KubePodCrashLooping", namespace=NS, pod=pod, container="redis", severity="warning")]
            )
            inc = await w.diagnosed()
        codes = [f["code"] for f in inc["findings"]]
        assert "crashloop.oom_killed" in codes and "crashloop.regression" not in codes, codes
        oom = next(f for f in inc["findings"] if f["code"] == "crashloop.oom_killed")
        assert "limit 256Mi" in oom["summary"] and "only the new revision" not in oom["summary"]
        predates = next(f for f in inc["findings"] if f["code"] == "crashloop.predates_rollout")
        assert "revision 2 became current 9 days ago" in predates["summary"]
        assert inc["actions"] == [] and kube.count("PATCH", r"/deployments/redis$") == 0


async def test_a_fresh_medic_keeps_the_cooldown_of_its_rollback_known_from_the_cluster(
    tmp_path: Path,
) -> None:
    """Medic rolled back 2 -> 1; minutes later a human deploys v3, which crashes too. A freshly
    installed Medic (empty ledger) sees a regression but its cooldown still holds: the rollback
    it made is read from the Deployment's annotation."""
    v3 = "registry.example/playcode-app:v3"
    (tmp_path / "first").mkdir()
    async with crashloop_world(tmp_path / "first") as w:
        await w.post(w.crash_alerts())
        inc = await w.diagnosed()
        assert action(inc)["status"] == "succeeded" and w.image() == GOOD
        w.kube.bad_images.add(v3)
        w.kube.set_image(NS, APP, v3, change_cause="deploy v3")
        await w.kube.settle()
        async with medic_on(w.kube, tmp_path / "second") as fresh:
            again = World(w.kube, fresh)
            crashing = [p["metadata"]["name"] for p in w.kube.pods_of(NS, APP) if not _ready(p)]
            await again.post([dict(a, startsAt="2026-11-26T09:00:00Z") for a in again.crash_alerts(crashing)])
            inc2 = await again.diagnosed()
        assert any(f["code"] == "crashloop.regression" for f in inc2["findings"])
        reason = refused_by(inc2)
        assert reason.startswith("cooldown: rollback ran on this target at "), reason
        assert w.patches() == 1 and w.image() == v3
