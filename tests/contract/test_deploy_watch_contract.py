"""The Deployment watch (the deploy-verification trigger) needs only what a default install of
the chart grants: the Role in each allowed namespace, with ``list`` and ``watch`` on
Deployments; nothing cluster-wide, no write."""

from __future__ import annotations

import asyncio

from medic.clients.kube.client import KubeClient, RetryPolicy
from medic.clients.kube.watch import DeploymentWatch, WatchPolicy
from medic.domain.deploy_changes import RevisionChange
from tests.contract.test_action_contract import permission_of
from tests.fakes.kube_apiserver import FakeKubeApiserver
from tests.integration.helm_chart import permissions, render
from tests.integration.kube_support import FAST

NS, OTHER, APP = "playcode", "playcode-staging", "playcode-app"
GUARD = 10.0  # a hang guard, not a speed goal


def namespace_of(path: str) -> str | None:
    return path.split("/namespaces/", 1)[1].split("/")[0] if "/namespaces/" in path else None


async def test_the_deployment_watch_needs_only_what_the_default_chart_grants() -> None:
    chart = render({"namespaces": [NS, OTHER]})
    roles = {role["metadata"]["namespace"]: permissions(role) for role in chart.of_kind("Role")}
    reported: asyncio.Queue[RevisionChange] = asyncio.Queue()
    async with FakeKubeApiserver(token="t0k3n") as fake:
        for ns in (NS, OTHER):
            fake.add_deployment(ns, APP, "app:v1", replicas=1)
        kube = await KubeClient.from_configuration(fake.client_configuration(), retry=FAST)
        policy = WatchPolicy(timeout_seconds=30, backoff=RetryPolicy(base_delay=0.01, max_delay=0.05))
        watch = DeploymentWatch(kube, [NS, OTHER], reported.put, policy=policy)
        task = asyncio.create_task(watch.run())
        try:
            async with asyncio.timeout(GUARD):
                await watch.wait_synced()
                await fake.watching(2)
                fake.drop_watches()  # resume
                fake.set_image(NS, APP, "app:v2")
                fake.compact_history()  # 410: re-list
                assert (await reported.get()).revision == 2
        finally:
            watch.stop()
            await task
            await kube.close()
        used = {(namespace_of(r.path), perm) for r in fake.requests if (perm := permission_of(r)) is not None}
    assert {perm[2] for _, perm in used} == {"list", "watch"}
    assert {ns for ns, _ in used} == {NS, OTHER}, "namespaced requests only: no cluster-wide list or watch"
    for ns, perm in used:
        assert perm in roles[ns], (ns, perm)
