"""SIGKILL a Medic replica while it holds work, round after round: another replica takes the work
over once the lease runs out, finishes it once, and no action is ever taken twice.

Three replicas share Redis and MongoDB; every round has its own crash-looping Deployment. The
fake kube-apiserver stalls the holder at a chosen moment, and the test kills the process that
Redis says holds the delivery:

* even rounds: while it diagnoses (reading pod logs) — the survivor diagnoses and rolls back;
* odd rounds: after its rollback PATCH landed, before the answer — the survivor finds the
  action in the ledger and does not roll back again.
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.ha_cluster import (
    GOOD,
    NS,
    Cluster,
    bad_replicaset,
    consumer_pid,
    crash_alert,
    crashlooping_deployments,
    image_of,
    medic_cluster,
    patches_of,
    post,
    wait_for,
)
from tests.fakes.kube_apiserver import FakeKubeApiserver
from tests.payloads import payload
from tests.servers.redis_server import RedisServer

pytestmark = pytest.mark.e2e

ROUNDS = 10


async def holder_of_the_delivery(cluster: Cluster) -> int:
    async def one_pending() -> list[dict[str, Any]]:
        return await cluster.pending()

    (entry,) = await wait_for(one_pending, within=10, what="the delivery is claimed")
    return consumer_pid(str(entry["consumer"]))


async def test_sigkill_replicas_holding_work(tmp_path: Path, redis_server: RedisServer) -> None:
    names = [f"svc-{i}" for i in range(ROUNDS)]
    async with FakeKubeApiserver(token="medic-sa-token") as kube:
        crashlooping_deployments(kube, names, replicas=1)
        async with medic_cluster(
            tmp_path,
            redis_server,
            kube=kube,
            MEDIC_MODE="enforce",
            MEDIC_LEASE_SECONDS="1",
            MEDIC_WORKERS="2",
            MEDIC_GLOBAL_BUDGET_COUNT="100",
        ) as cluster:
            restarts: list[asyncio.Task[Any]] = []
            try:
                await _rounds(cluster, kube, names, restarts)
            finally:
                for task in restarts:
                    task.cancel()
                await asyncio.gather(*restarts, return_exceptions=True)


async def _rounds(
    cluster: Cluster, kube: FakeKubeApiserver, names: list[str], restarts: list[asyncio.Task[Any]]
) -> None:
    killed_while = {"diagnosing": 0, "acting": 0}
    for n, name in enumerate(names):
        acting = n % 2 == 1
        if acting:  # the PATCH is applied, then its answer stalls
            stall = kube.inject_delay("PATCH", rf"/deployments/{name}$", 60, times=1, after=True)
        else:  # the holder hangs reading the crashed container's logs
            stall = kube.inject_delay("GET", rf"/pods/{bad_replicaset(kube, name)}-\w+/log", 60, times=1)
        pod = kube.pods_of(NS, name)
        bad = [
            p["metadata"]["name"] for p in pod if p["metadata"]["name"].startswith(bad_replicaset(kube, name))
        ]
        await post(cluster.live()[0].url, payload([crash_alert(name, p) for p in bad]))
        holder = cluster.by_pid(await holder_of_the_delivery(cluster))
        await wait_for(lambda s=stall: _hit(s), within=15, what=f"round {n}: the holder reached the stall")
        await holder.kill()
        assert holder.proc.returncode == -signal.SIGKILL
        killed_while["acting" if acting else "diagnosing"] += 1
        kube.clear_faults()
        restarts.append(asyncio.create_task(cluster.add_replica()))  # the Deployment replaces the pod

        async def finished(name: str = name) -> dict[str, Any] | None:
            if await cluster.backlog():  # first: the incident read after an empty backlog is final
                return None
            items = [i for i in await cluster.incidents() if i["target"] and i["target"]["name"] == name]
            if len(items) == 1 and items[0]["phase"] == "diagnosed":
                return await cluster.incident(items[0]["id"])
            return None

        inc = await wait_for(finished, within=20, what=f"round {n}: the work is taken over and finished")
        assert patches_of(kube, name) == 1, f"round {n}: exactly one rollback"
        assert image_of(kube, name) == GOOD
        assert len(inc["alerts"]) == len(bad)
        joined = [t for t in inc["timeline"] if t["kind"] == "alerts"]
        assert len(joined) == 1, f"round {n}: the alerts were merged once: {joined}"
        if acting:
            # the survivor sees the Deployment rolled back already (no regression left to
            # act on), or the ledger's first attempt (cooldown): never a second rollback
            # (the killed replica's own attempt may be on the incident too, taken from the
            # ledger at the next start: "reconciled", once)
            reconciled = [a for a in inc["actions"] if a["reason"].startswith("reconciled")]
            fresh = [a for a in inc["actions"] if a not in reconciled]
            assert len(reconciled) <= 1, inc["actions"]
            assert all(a["status"] == "refused" for a in fresh), inc["actions"]
        else:
            assert [a["status"] for a in inc["actions"]] == ["succeeded"], inc["actions"]
        if len(cluster.live()) < 2:
            await restarts.pop(0)
    await asyncio.gather(*restarts)
    assert killed_while == {"diagnosing": ROUNDS // 2, "acting": ROUNDS - ROUNDS // 2}
    incidents = await cluster.incidents(limit="100")
    assert len(incidents) == ROUNDS and len({i["id"] for i in incidents}) == ROUNDS
    assert sum(patches_of(kube, name) for name in names) == ROUNDS
    assert await cluster.pending() == [] and await cluster.backlog() == 0


async def _hit(rule: Any) -> bool:
    return bool(rule.hits)


async def test_graceful_shutdown_hands_work_back(tmp_path: Path, redis_server: RedisServer) -> None:
    """SIGTERM (a rolling update): the replica stops taking deliveries, lets in-flight work run for
    MEDIC_SHUTDOWN_GRACE_SECONDS, then hands what is unfinished back at once; another replica
    finishes it long before the (here 30 s) lease would have run out."""
    async with FakeKubeApiserver(token="medic-sa-token") as kube:
        crashlooping_deployments(kube, ["svc"], replicas=1)
        async with medic_cluster(
            tmp_path,
            redis_server,
            kube=kube,
            replicas=2,
            MEDIC_MODE="enforce",
            MEDIC_LEASE_SECONDS="30",
            MEDIC_SHUTDOWN_GRACE_SECONDS="0.5",
        ) as cluster:
            stall = kube.inject_delay("GET", rf"/pods/{bad_replicaset(kube, 'svc')}-\w+/log", 60, times=1)
            bad = [p["metadata"]["name"] for p in kube.pods_of(NS, "svc") if "-" in p["metadata"]["name"]]
            bad = [p for p in bad if p.startswith(bad_replicaset(kube, "svc"))]
            await post(cluster.url, payload([crash_alert("svc", p) for p in bad]))
            holder = cluster.by_pid(await holder_of_the_delivery(cluster))
            await wait_for(lambda: _hit(stall), within=15, what="the holder reached the stall")
            kube.clear_faults()
            loop = asyncio.get_running_loop()
            stopped_at = loop.time()
            assert await holder.proc.stop() == 0, holder.log()[-3000:]
            assert "unfinished deliveries handed back" in holder.log()

            async def finished() -> dict[str, Any] | None:
                if await cluster.backlog():
                    return None
                items = await cluster.incidents()
                return items[0] if items and items[0]["phase"] == "diagnosed" else None

            inc = await wait_for(finished, within=15, what="another replica finished the work")
            assert loop.time() - stopped_at < 10, "handed back, not left to the 30 s lease"
            assert [a["status"] for a in inc["actions"]] == ["succeeded"]
            assert patches_of(kube, "svc") == 1
