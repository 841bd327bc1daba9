"""An HA pair of real Alertmanagers (no gossip: each sends every notification) in front of three
Medic replicas (separate ``medic serve`` processes sharing Redis and MongoDB): each alert episode
gives one incident and at most one remediation."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.ha_cluster import (
    GOOD,
    NS,
    TOKEN,
    bad_replicaset,
    crashlooping_deployments,
    image_of,
    medic_cluster,
    patches_of,
    wait_for,
)
from tests.fakes.kube_apiserver import FakeKubeApiserver
from tests.servers.redis_server import RedisServer

pytestmark = pytest.mark.e2e


async def test_two_alertmanagers_three_replicas_one_incident_one_rollback(
    tmp_path: Path, redis_server: RedisServer, alertmanager_factory: Any
) -> None:
    async with FakeKubeApiserver(token="medic-sa-token") as kube:
        crashlooping_deployments(kube, ["web"], replicas=3)
        crash_pods = [
            p["metadata"]["name"]
            for p in kube.pods_of(NS, "web")
            if p["metadata"]["name"].startswith(bad_replicaset(kube, "web"))
        ]
        assert len(crash_pods) == 3
        async with medic_cluster(
            tmp_path, redis_server, kube=kube, MEDIC_MODE="enforce", MEDIC_WORKERS="2"
        ) as cluster:
            ams = [
                await alertmanager_factory(
                    receiver_url=f"{cluster.url}/api/v1/alerts",
                    bearer_token=TOKEN,
                    group_by=["alertname", "namespace"],
                    repeat_interval="1s",
                )
                for _ in range(2)
            ]
            started = datetime.now(UTC)  # Prometheus gives both the same startsAt
            crash = [
                {"alertname": "KubePodCrashLooping", "namespace": NS, "pod": pod, "container": "web"}
                for pod in crash_pods
            ]
            latency = [{"alertname": "PlayCodeHighLatency", "namespace": NS, "deployment": "api"}]
            for am in ams:
                for labels in crash + latency:
                    await am.fire(labels, starts_at=started)

            async def decided() -> list[dict[str, Any]] | None:
                items = await cluster.incidents()
                rollbacks = [i for i in items if i["rule"] == "crashloop-rollback"]
                if len(items) >= 2 and rollbacks and rollbacks[0]["actions"] and rollbacks[0]["firing"] == 3:
                    return items
                return None

            items = await wait_for(decided, within=40, what="the crash loop incident is decided")
            # both Alertmanagers keep re-sending (repeat_interval 1s): let several rounds arrive
            await wait_for(
                lambda: _at_least(cluster.metric("medic_alerts_deduplicated_total"), 3 * len(crash)),
                within=20,
                what="redeliveries from both Alertmanagers",
            )
            items = await cluster.incidents()
            assert sorted(i["rule"] for i in items) == ["crashloop-rollback", "high-latency"], items
            rollback = await cluster.incident(
                next(i["id"] for i in items if i["rule"] == "crashloop-rollback")
            )
            assert [(a["action"], a["status"]) for a in rollback["actions"]] == [("rollback", "succeeded")]
            assert len(rollback["alerts"]) == 3
            assert patches_of(kube, "web") == 1, "one rollback, whichever replica and delivery won"
            assert image_of(kube, "web") == GOOD
            latency_incident = await cluster.incident(
                next(i["id"] for i in items if i["rule"] == "high-latency")
            )
            assert latency_incident["actions"] == [] and latency_incident["phase"] == "diagnosed"
            assert cluster.balancer is not None
            assert len(cluster.balancer.forwarded) == 3, "every replica took deliveries"
            assert await cluster.metric("medic_incidents_total") == 2

            for am in ams:
                for labels in crash + latency:
                    await am.resolve(labels)

            async def resolved() -> bool:
                now = await cluster.incidents()
                return len(now) == 2 and all(i["status"] == "resolved" for i in now)

            await wait_for(resolved, within=30, what="both incidents resolved")
            assert patches_of(kube, "web") == 1


async def _at_least(value: Any, floor: float) -> bool:
    return bool(await value >= floor)
