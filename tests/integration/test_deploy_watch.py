"""The Deployment watch (the deploy-verification trigger) against the fake kube-apiserver: one
report per new revision, none for Medic's own rollback, none lost or doubled across a dropped
connection or a compacted history, nothing outside the allowed namespaces.

Every test ends with a deploy of a ``marker`` Deployment: changes are reported in order per
namespace, so once the marker's is in, a duplicate of an earlier one would be too (no sleeps)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
import structlog

from medic.clients.kube import watch as watch_module
from medic.clients.kube.client import STRATEGIC_PATCH, KubeClient, RetryPolicy, ns_path
from medic.clients.kube.watch import DeploymentWatch, WatchPolicy
from medic.domain.deploy_changes import RevisionChange
from medic.domain.incident import Incident, Target, new_incident_id
from medic.playbooks.action import ActionContext
from medic.remediation.actions.k8s import RollbackDeployment, RollbackParams
from medic.rules.model import Budget, Remediation, Rule
from tests.fakes.kube_apiserver import FakeKubeApiserver

pytestmark = pytest.mark.integration

NS, APP, MARKER = "playcode", "playcode-app", "marker"
DEPLOYMENTS = f"/apis/apps/v1/namespaces/{NS}/deployments"
POLICY = WatchPolicy(timeout_seconds=30, backoff=RetryPolicy(base_delay=0.01, max_delay=0.05))
GUARD = 10.0  # seconds: a hang guard, not a speed goal


@dataclass
class Reports:
    """What the watch reported, and a way to wait for the next report."""

    changes: list[RevisionChange] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    fail_first: int = 0

    async def __call__(self, change: RevisionChange) -> None:
        self.changes.append(change)
        self.arrived.set()
        if self.fail_first > 0:
            self.fail_first -= 1
            raise RuntimeError("the callback failed")

    async def until(self, deployment: str, revision: int) -> None:
        async with asyncio.timeout(GUARD):
            while not any(c.deployment == deployment and c.revision == revision for c in self.changes):
                self.arrived.clear()
                await self.arrived.wait()

    def keys(self) -> list[str]:
        return [c.key for c in self.changes]


@dataclass
class Watching:
    fake: FakeKubeApiserver
    kube: KubeClient
    watch: DeploymentWatch
    reports: Reports

    async def settled_by_marker(self, namespace: str = NS) -> None:
        """Deploy the marker and wait for its report: every earlier change was handled."""
        marker = self.fake.get_object("Deployment", namespace, MARKER)
        revision = int(marker["metadata"]["annotations"]["deployment.kubernetes.io/revision"]) + 1
        self.fake.set_image(namespace, MARKER, f"marker:v{revision}")
        await self.reports.until(MARKER, revision)
        self.reports.changes = [c for c in self.reports.changes if c.deployment != MARKER]

    def lists(self) -> int:
        return len(self.fake.requests_matching("GET", DEPLOYMENTS + "$")) - len(self.watches())

    def watches(self) -> list[dict[str, str]]:
        requests = self.fake.requests_matching("GET", DEPLOYMENTS + "$")
        return [r.query for r in requests if "watch" in r.query]


async def start(fake: FakeKubeApiserver, kube: KubeClient, namespaces: list[str]) -> Watching:
    reports = Reports()
    watch = DeploymentWatch(kube, namespaces, reports, policy=POLICY)
    return Watching(fake, kube, watch, reports)


@pytest.fixture
async def w(fake: FakeKubeApiserver, kube: KubeClient) -> AsyncIterator[Watching]:
    fake.add_deployment(NS, APP, "app:v1", replicas=2)
    fake.set_image(NS, APP, "app:v2")  # revision 2 exists before the watch starts
    fake.add_deployment(NS, MARKER, "marker:v1", replicas=1)
    watching = await start(fake, kube, [NS])
    task = asyncio.create_task(watching.watch.run())
    async with asyncio.timeout(GUARD):
        await watching.watch.wait_synced()
        await fake.watching(1)
    yield watching
    watching.watch.stop()
    async with asyncio.timeout(GUARD):
        await task
    await fake.no_watches(timeout=GUARD)


async def patch_image(kube: KubeClient, image: str, *, cause: str | None = None) -> None:
    container = {"name": APP, "image": image}
    body: dict[str, object] = {"spec": {"template": {"spec": {"containers": [container]}}}}
    if cause:
        body["metadata"] = {"annotations": {"kubernetes.io/change-cause": cause}}
    await kube.patch(ns_path("apps/v1", NS, "deployments", APP), body, STRATEGIC_PATCH)


async def test_a_template_patch_is_reported_once_and_what_existed_at_start_never(w: Watching) -> None:
    await w.settled_by_marker()
    assert w.reports.changes == []  # revision 2 was current before the watch started
    await patch_image(w.kube, "app:v3", cause="deploy v3")
    await w.reports.until(APP, 3)
    await w.settled_by_marker()
    [change] = w.reports.changes
    assert (change.namespace, change.deployment, change.revision, change.previous_revision) == (NS, APP, 3, 2)
    assert change.change_cause == "deploy v3"
    w.fake.scale(NS, APP, 5)  # scale only: no new revision
    await w.settled_by_marker()
    assert w.reports.keys() == [f"{NS}/{APP}@3"]


async def test_medics_own_rollback_is_not_reported(w: Watching) -> None:
    await patch_image(w.kube, "app:v3")
    await w.reports.until(APP, 3)
    target = Target(kind="deployment", namespace=NS, name=APP)
    now = datetime.now(UTC)
    rule = Rule(
        name="crashloop-rollback",
        matchers=['alertname="KubePodCrashLooping"'],
        playbook="crashloop",
        remediation=Remediation(
            action="rollback",
            mode="auto",
            cooldown=timedelta(0),
            budget=Budget(count=9, per=timedelta(hours=1)),
        ),
    )
    incident = Incident(id=new_incident_id(now), key=f"crashloop|{target.key}", rule=rule.name, target=target)
    ctx = ActionContext(kube=w.kube, target=target, incident=incident, rule=rule, now=now)
    action = RollbackDeployment()
    plan = await action.plan(ctx, RollbackParams())
    assert (await action.apply(ctx, plan)).applied is True
    rolled = w.fake.get_object("Deployment", NS, APP)
    assert rolled["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "4"
    await w.settled_by_marker()
    assert w.reports.keys() == [f"{NS}/{APP}@3"]  # revision 4 is Medic's rollback
    # a deploy afterwards is reported (v3 again: the controller reuses revision 3's ReplicaSet)
    await patch_image(w.kube, "app:v3")
    await w.reports.until(APP, 5)
    await w.settled_by_marker()
    assert w.reports.keys() == [f"{NS}/{APP}@3", f"{NS}/{APP}@5"]


async def test_a_change_while_the_connection_is_down_is_reported_once_by_resuming(w: Watching) -> None:
    await patch_image(w.kube, "app:v3")
    await w.reports.until(APP, 3)
    assert w.fake.drop_watches() == 1  # cut mid-stream: the client reads a broken chunked body
    w.fake.set_image(NS, APP, "app:v4")  # never sent on the dropped connection
    await w.reports.until(APP, 4)
    await w.settled_by_marker()
    assert w.reports.keys() == [f"{NS}/{APP}@3", f"{NS}/{APP}@4"]
    assert w.lists() == 1, "resumed from its resourceVersion, not re-listed"
    first, resumed = w.watches()[0], w.watches()[1]
    assert int(resumed["resourceVersion"]) > int(first["resourceVersion"])
    assert resumed["allowWatchBookmarks"].lower() == "true" and resumed["timeoutSeconds"] == "30"


async def test_a_change_during_a_compacted_gap_is_found_by_relisting_and_reported_once(w: Watching) -> None:
    await patch_image(w.kube, "app:v3")
    await w.reports.until(APP, 3)
    w.fake.drop_watches()
    w.fake.set_image(NS, APP, "app:v4")
    w.fake.add_deployment(NS, "newcomer", "new:v1", replicas=1)
    w.fake.compact_history()  # the resume point is gone: 410 Expired
    await w.reports.until(APP, 4)
    await w.settled_by_marker()
    assert sorted(w.reports.keys()) == sorted([f"{NS}/{APP}@3", f"{NS}/{APP}@4", f"{NS}/newcomer@1"])
    assert w.lists() == 2, "re-listed once after 410"
    newcomer = next(c for c in w.reports.changes if c.deployment == "newcomer")
    assert newcomer.previous_revision is None


async def test_a_deployment_deleted_during_a_gap_is_forgotten(w: Watching) -> None:
    w.fake.drop_watches()
    w.fake.delete_object("Deployment", NS, APP)
    w.fake.add_deployment(NS, APP, "app:v9", replicas=1)  # recreated: revision 1 of a new object
    w.fake.compact_history()
    await w.reports.until(APP, 1)
    await w.settled_by_marker()
    assert w.reports.keys() == [f"{NS}/{APP}@1"]


async def test_only_the_allowed_namespaces_are_watched(fake: FakeKubeApiserver, kube: KubeClient) -> None:
    for ns in (NS, "playcode-staging", "other"):
        fake.add_deployment(ns, APP, "app:v1", replicas=1)
        fake.add_deployment(ns, MARKER, "marker:v1", replicas=1)
    watching = await start(fake, kube, [NS, "playcode-staging"])
    task = asyncio.create_task(watching.watch.run())
    try:
        async with asyncio.timeout(GUARD):
            await watching.watch.wait_synced()
        for ns in (NS, "playcode-staging", "other"):
            fake.set_image(ns, APP, "app:v2")
        await watching.reports.until(APP, 2)
        await watching.settled_by_marker(NS)
        await watching.settled_by_marker("playcode-staging")
        assert sorted(c.namespace for c in watching.reports.changes) == [NS, "playcode-staging"]
        paths = {r.path for r in fake.requests if "deployments" in r.path}
        assert paths == {f"/apis/apps/v1/namespaces/{ns}/deployments" for ns in (NS, "playcode-staging")}
    finally:
        watching.watch.stop()
        async with asyncio.timeout(GUARD):
            await task


async def test_it_outlives_a_forbidden_watch_and_a_failing_callback(
    fake: FakeKubeApiserver, kube: KubeClient
) -> None:
    fake.add_deployment(NS, APP, "app:v1", replicas=1)
    fake.add_deployment(NS, MARKER, "marker:v1", replicas=1)
    fake.deny("watch", "deployments", namespace=NS)
    watching = await start(fake, kube, [NS])
    watching.reports.fail_first = 1
    task = asyncio.create_task(watching.watch.run())
    try:
        async with asyncio.timeout(GUARD):
            await watching.watch.wait_synced()
            while len([r for r in fake.requests if r.status == 403]) < 3:  # noqa: ASYNC110 - the fake's log
                await asyncio.sleep(0.01)  # it backs off and retries
        assert not task.done()
        fake.clear_denials()
        fake.set_image(NS, APP, "app:v2")  # while forbidden: the resume replays it
        await watching.reports.until(APP, 2)  # reported, and the callback raised
        fake.set_image(NS, APP, "app:v3")
        await watching.reports.until(APP, 3)  # the watch went on
        await watching.settled_by_marker()
        assert watching.reports.keys() == [f"{NS}/{APP}@2", f"{NS}/{APP}@3"]
    finally:
        watching.watch.stop()
        async with asyncio.timeout(GUARD):
            await task
    assert task.result() is None


async def test_cancelling_run_cancels_its_loops(fake: FakeKubeApiserver, kube: KubeClient) -> None:
    fake.add_deployment(NS, APP, "app:v1", replicas=1)
    watching = await start(fake, kube, [NS])
    task = asyncio.create_task(watching.watch.run())
    async with asyncio.timeout(GUARD):
        await fake.watching(1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert [t for t in asyncio.all_tasks() if t.get_name().startswith("deploy-watch:")] == []


async def test_backoff_grows_on_failures_in_a_row_and_starts_over_after_a_healthy_stream(
    fake: FakeKubeApiserver, kube: KubeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake.add_deployment(NS, APP, "app:v1", replicas=1)
    policy = WatchPolicy(
        timeout_seconds=30, min_quiet_seconds=0.5, backoff=RetryPolicy(base_delay=0.01, max_delay=0.05)
    )
    reports = Reports()
    watch = DeploymentWatch(kube, [NS], reports, policy=policy)
    with structlog.testing.capture_logs() as logs:
        # a logger made now: the module's may be cached already (medic's logging caches a logger
        # on its first use, and an earlier test of the session may have configured it)
        monkeypatch.setattr(watch_module, "log", structlog.get_logger("medic.clients.kube.watch"))
        task = asyncio.create_task(watch.run())
        try:
            async with asyncio.timeout(GUARD * 3):  # a busy CI machine: several streams, each up a while
                for _ in range(3):  # cut streams that had been up a while: each is a first failure
                    await fake.watching(1)
                    await asyncio.sleep(1.0)  # the stream stays up well past min_quiet_seconds
                    # at least the live one (under load, the one cut before may not be gone yet)
                    assert fake.drop_watches() >= 1
                await fake.watching(1)
                fake.deny("watch", "deployments")
                fake.drop_watches()  # cut young, then every resume fails at once: failures in a row
                while len([e for e in logs if e["event"] == "deploy_watch.error"]) < 6:  # noqa: ASYNC110
                    await asyncio.sleep(0.01)
        finally:
            watch.stop()
            await task
    failures = [e["failures"] for e in logs if e["event"] == "deploy_watch.error"]
    assert failures[:3] == [1, 1, 1]
    assert failures[3:6] == [2, 3, 4]
