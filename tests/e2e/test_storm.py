"""An alert storm: 5,000 KubePodCrashLooping alerts over 50 crash-looping Deployments, sent in a
few seconds to three Medic replicas. It coalesces per target: 50 incidents, one diagnosis and
at most one rollback each, a bounded number of Kubernetes API calls per target (not growing with
the number of alerts) and bounded memory per replica."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.e2e.ha_cluster import (
    GOOD,
    bad_replicaset,
    crash_alert,
    crashlooping_deployments,
    image_of,
    medic_cluster,
    patches_of,
    peak_rss_kib,
    pod_names,
    post,
    wait_for,
)
from tests.fakes.kube_apiserver import FakeKubeApiserver
from tests.payloads import payload
from tests.servers.redis_server import RedisServer

pytestmark = pytest.mark.e2e

TARGETS = 50
ALERTS_PER_TARGET = 100
ALERTS_PER_REQUEST = 20
MAX_API_CALLS_PER_TARGET = 40  # resolving + one diagnosis + one rollback and its verification
MAX_PEAK_RSS_MIB = 300


def storm_requests(kube: FakeKubeApiserver, names: list[str]) -> list[dict[str, Any]]:
    """Alerts of every target interleaved, 20 to a notification (as Alertmanager groups them)."""
    per_target = {name: pod_names(bad_replicaset(kube, name), ALERTS_PER_TARGET) for name in names}
    alerts = [crash_alert(name, per_target[name][i]) for i in range(ALERTS_PER_TARGET) for name in names]
    return [payload(alerts[i : i + ALERTS_PER_REQUEST]) for i in range(0, len(alerts), ALERTS_PER_REQUEST)]


def api_calls(kube: FakeKubeApiserver, name: str, replicaset: str) -> int:
    def about(r: Any) -> bool:
        text = " ".join([r.path, *map(str, r.query.values())])
        return name in text.replace(replicaset, name)

    return sum(1 for r in kube.requests if about(r))


async def test_storm_of_5000_alerts_over_50_targets(tmp_path: Path, redis_server: RedisServer) -> None:
    names = [f"svc-{i:02d}" for i in range(TARGETS)]
    async with FakeKubeApiserver(token="medic-sa-token") as kube:
        crashlooping_deployments(kube, names, replicas=1)
        requests = storm_requests(kube, names)
        replicasets = {name: bad_replicaset(kube, name) for name in names}
        kube.clear_requests()
        async with medic_cluster(
            tmp_path,
            redis_server,
            kube=kube,
            MEDIC_MODE="enforce",
            MEDIC_GLOBAL_BUDGET_COUNT="1000",
        ) as cluster:
            started = time.monotonic()
            connector = aiohttp.TCPConnector(limit=32)
            async with aiohttp.ClientSession(connector=connector) as session:
                results = await asyncio.gather(*(post(cluster.url, body, session) for body in requests))
            sent_seconds = time.monotonic() - started
            assert sum(r["new"] for r in results) == TARGETS * ALERTS_PER_TARGET

            async def drained() -> list[dict[str, Any]] | None:
                if await cluster.backlog():  # first: an empty backlog stays empty, the incidents
                    return None  # read after it hold every delivery's work
                items = await cluster.incidents(limit="100")
                done = [i for i in items if i["phase"] == "diagnosed" and i["actions"]]
                return items if len(done) == TARGETS else None

            items = await wait_for(drained, within=25, what="the storm is drained")
            drain_seconds = time.monotonic() - started
            print(f"\nstorm: sent in {sent_seconds:.1f}s, drained in {drain_seconds:.1f}s")

            assert len(items) == TARGETS, "one incident per target"
            assert sorted(i["target"]["name"] for i in items) == names
            counts = {i["target"]["name"]: i["alerts"] for i in items}
            assert set(counts.values()) == {ALERTS_PER_TARGET}, counts
            assert all([a["status"] for a in i["actions"]] == ["succeeded"] for i in items), [
                i["actions"] for i in items if [a["status"] for a in i["actions"]] != ["succeeded"]
            ]
            assert all(patches_of(kube, name) == 1 for name in names), "one rollback per target"
            assert all(image_of(kube, name) == GOOD for name in names)
            calls = {name: api_calls(kube, name, replicasets[name]) for name in names}
            print(f"storm: Kubernetes API calls per target: {min(calls.values())}..{max(calls.values())}")
            assert max(calls.values()) <= MAX_API_CALLS_PER_TARGET, calls
            diagnoses = [
                sum(1 for t in (await cluster.incident(i["id"]))["timeline"] if t["kind"] == "diagnosis")
                for i in items[:5]
            ]
            assert diagnoses == [1] * 5, "one playbook run per target"
            peaks = [peak_rss_kib(r.proc.pid) // 1024 for r in cluster.live() if r.proc.pid]
            print(f"storm: peak RSS per replica (MiB): {peaks}")
            assert len(peaks) == 3 and max(peaks) < MAX_PEAK_RSS_MIB
