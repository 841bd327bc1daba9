"""Time from a new revision becoming current (the deployment controller's write of the revision
annotation) to DeploymentWatch's callback, against the fake kube-apiserver (real
kubernetes_asyncio client and Watch, fake and watch in one process), with the production
WatchPolicy:

- live: the watch is connected; one deploy at a time over NAMESPACES x DEPLOYMENTS;
- resume: the connection is cut, then a deploy (the loop backs off, resumes from its
  resourceVersion and gets the replayed event);
- relist: the connection is cut, a deploy, the history compacted (410 Gone, re-list and diff);

plus the API requests per deploy while connected (expected 0: events come on the open stream)
and the memory the watch keeps per Deployment (tracemalloc of its remembered state).

    .venv/bin/python bench/bench_deploy_watch.py [--namespaces 3] [--deployments 100] [--rounds 30]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import statistics
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

import structlog

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.fakes.kube_apiserver import FakeKubeApiserver

from medic.clients.kube.client import KubeClient
from medic.clients.kube.watch import DeploymentWatch
from medic.domain.deploy_changes import REVISION, RevisionChange


class Clock:
    """Callback that records when each (namespace, deployment, revision) was reported."""

    def __init__(self) -> None:
        self.seen: dict[str, float] = {}
        self.arrived = asyncio.Event()

    async def __call__(self, change: RevisionChange) -> None:
        self.seen[change.key] = time.perf_counter()
        self.arrived.set()

    async def wait(self, key: str) -> float:
        async with asyncio.timeout(60):
            while key not in self.seen:
                self.arrived.clear()
                await self.arrived.wait()
        return self.seen[key]


def deploy(fake: FakeKubeApiserver, ns: str, name: str, image: str) -> tuple[str, float]:
    """``kubectl set image``; returns the key of the new revision and when it became current
    (the fake's controller writes the revision annotation within this call)."""
    fake.set_image(ns, name, image)
    t = time.perf_counter()
    revision = fake.get_object("Deployment", ns, name)["metadata"]["annotations"][REVISION]
    return f"{ns}/{name}@{revision}", t


def ms(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "median_ms": round(statistics.median(ordered) * 1000, 2),
        "p95_ms": round(ordered[max(0, int(len(ordered) * 0.95) - 1)] * 1000, 2),
        "max_ms": round(ordered[-1] * 1000, 2),
    }


async def run(namespaces: int, deployments: int, rounds: int) -> dict[str, Any]:
    names = [f"ns-{i}" for i in range(namespaces)]
    async with FakeKubeApiserver() as fake:
        fake.auto_settle = True
        for ns in names:
            for d in range(deployments):
                fake.add_deployment(ns, f"app-{d}", "app:v1", replicas=1)
        kube = await KubeClient.from_configuration(fake.client_configuration())
        clock = Clock()
        tracemalloc.start()
        watch = DeploymentWatch(kube, names, clock)
        task = asyncio.create_task(watch.run())
        await asyncio.wait_for(watch.wait_synced(), 60)
        await fake.watching(namespaces)
        kept = tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(True, "*deploy_changes.py")])
        tracemalloc.stop()
        per_deployment = sum(s.size for s in kept.statistics("filename")) / (namespaces * deployments)
        try:
            live, resume, relist = [], [], []
            requests_before = len(fake.requests)
            for r in range(rounds):
                key, t = deploy(fake, names[r % namespaces], f"app-{r % deployments}", f"app:live{r}")
                live.append(await clock.wait(key) - t)
            live_requests = len(fake.requests) - requests_before
            only = f"/namespaces/{names[0]}/"
            for r in range(rounds):
                await fake.watching(namespaces)
                fake.drop_watches(only)
                key, t = deploy(fake, names[0], f"app-{r % deployments}", f"app:resume{r}")
                resume.append(await clock.wait(key) - t)
            for r in range(max(1, rounds // 3)):
                await fake.watching(namespaces)
                fake.drop_watches(only)
                key, t = deploy(fake, names[0], f"app-{r % deployments}", f"app:relist{r}")
                fake.compact_history()
                relist.append(await clock.wait(key) - t)
        finally:
            watch.stop()
            await task
            await kube.close()
    return {
        "namespaces": namespaces,
        "deployments_per_namespace": deployments,
        "live": ms(live),
        "resume_after_drop": ms(resume),
        "relist_after_410": ms(relist),
        "api_requests_for_live_deploys": live_requests,
        "kept_bytes_per_deployment": round(per_deployment),
    }


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--namespaces", type=int, default=3)
    ap.add_argument("--deployments", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=30)
    args = ap.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    out = await run(args.namespaces, args.deployments, args.rounds)
    print(
        f"{out['namespaces']} namespaces x {out['deployments_per_namespace']} Deployments: "
        "new revision -> callback "
        f"live {out['live']}, after a dropped connection {out['resume_after_drop']}, "
        f"after 410 (re-list) {out['relist_after_410']}; API requests for {args.rounds} live deploys: "
        f"{out['api_requests_for_live_deploys']}; kept per Deployment: {out['kept_bytes_per_deployment']} B"
    )
    print(json.dumps(out))


if __name__ == "__main__":
    asyncio.run(main())
