"""A PlayCode cluster (fake kube-apiserver) where a new revision of playcode-app crash-loops,
and Medic running in-process against it: the scenario of issue 3's tests."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from tests.fakes.kube_apiserver import FakeKubeApiserver
from tests.medic_app import RunningMedic, medic_settings, running_medic
from tests.payloads import alert, payload

NS = "playcode"
APP = "playcode-app"
GOOD = "registry.example/playcode-app:v1"
BAD = "registry.example/playcode-app:v2"
TOKEN = "webhook-token"
CRASH_LOG = (
    "Server starting\n"
    "TypeError: Cannot read properties of undefined (reading 'port')\n"
    "    at main (/app/server.js:12:20)\n"
)
# 3 new pods next to 3 old ones: the old revision keeps serving while the new one crash-loops
SURGE = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 3, "maxUnavailable": 0}}


@dataclass
class World:
    kube: FakeKubeApiserver
    medic: RunningMedic

    def crashing_pods(self) -> list[str]:
        return sorted(
            p["metadata"]["name"]
            for p in self.kube.pods_of(NS, APP)
            if p["spec"]["containers"][0]["image"] == BAD
        )

    def crash_alerts(self, pods: list[str] | None = None, status: str = "firing") -> list[dict[str, Any]]:
        return [
            alert(
                "KubePodCrashLooping",
                namespace=NS,
                pod=p,
                container=APP,
                job="kube-state-metrics",
                severity="warning",
                status=status,
                startsAt="2026-11-26T08:00:00Z",
                endsAt="2026-11-26T08:30:00Z" if status == "resolved" else "0001-01-01T00:00:00Z",
            )
            for p in (pods if pods is not None else self.crashing_pods())
        ]

    async def post(self, alerts: list[dict[str, Any]]) -> dict[str, Any]:
        async with (
            aiohttp.ClientSession() as s,
            s.post(
                f"{self.medic.url}/api/v1/alerts",
                data=json.dumps(payload(alerts)),
                headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
            ) as r,
        ):
            assert r.status == 200, await r.text()
            body: dict[str, Any] = await r.json()
            return body

    async def incidents(self, **params: str) -> list[dict[str, Any]]:
        async with (
            aiohttp.ClientSession() as s,
            s.get(f"{self.medic.url}/api/v1/incidents", params=params) as r,
        ):
            return list((await r.json())["items"])

    async def incident(self, incident_id: str) -> dict[str, Any]:
        async with (
            aiohttp.ClientSession() as s,
            s.get(f"{self.medic.url}/api/v1/incidents/{incident_id}") as r,
        ):
            body: dict[str, Any] = await r.json()
            return body

    async def resolved(self, incident_id: str, within: float = 10.0) -> None:
        """Resolve the incident's alerts (as they do once a rollback worked) and wait until the
        incident holds them resolved."""
        firing = [a for a in (await self.incident(incident_id))["alerts"] if a["status"] == "firing"]
        await self.post(self.crash_alerts([a["labels"]["pod"] for a in firing], status="resolved"))
        deadline = asyncio.get_running_loop().time() + within
        while any(a["status"] == "firing" for a in (await self.incident(incident_id))["alerts"]):
            assert asyncio.get_running_loop().time() < deadline, "the resolved alerts never arrived"
            await asyncio.sleep(0.05)

    async def diagnosed(self, within: float = 30.0) -> dict[str, Any]:
        """Wait for the (single) incident to be diagnosed; return its full bundle."""
        await self.medic.drain(within)
        items = [i for i in await self.incidents() if i["phase"] == "diagnosed"]
        assert len(items) == 1, items
        return await self.incident(items[0]["id"])

    def patches(self) -> int:
        return self.kube.count("PATCH", rf"/deployments/{APP}$")

    def image(self) -> str:
        dep = self.kube.get_object("Deployment", NS, APP)
        return str(dep["spec"]["template"]["spec"]["containers"][0]["image"])


@contextlib.asynccontextmanager
async def crashloop_world(
    tmp_path: Path,
    *,
    mode: str = "enforce",
    strategy: dict[str, Any] | None = None,
    bad_log: str = CRASH_LOG,
    before_rollout: Callable[[FakeKubeApiserver], None] | None = None,
    after_rollout: Callable[[FakeKubeApiserver], None] | None = None,
    replicas: int = 3,
    **settings: Any,
) -> AsyncIterator[World]:
    async with FakeKubeApiserver(token="medic-sa-token") as kube:
        kube.add_deployment(
            NS,
            APP,
            GOOD,
            replicas=replicas,
            strategy=strategy or SURGE,
            container_name=APP,
            env={"PORT": "3000", "MONGO_PASSWORD": "hunter2-secret"},
        )
        if before_rollout:
            before_rollout(kube)
        kube.bad_images.add(BAD)
        kube.set_image_log(BAD, bad_log, previous=True)
        kube.set_image_log(BAD, "Server starting\n")
        kube.set_image(NS, APP, BAD, change_cause="deploy v2")
        if after_rollout:
            after_rollout(kube)
        kubeconfig = kube.write_kubeconfig(tmp_path / "kubeconfig")
        config = medic_settings(
            tmp_path,
            mode=mode,
            kube_mode="kubeconfig",
            kubeconfig=str(kubeconfig),
            webhook_token=TOKEN,
            **settings,
        )
        async with running_medic(config) as medic:
            yield World(kube, medic)


async def settle(world: World) -> None:
    await asyncio.sleep(0)
    await world.kube.settle()


def medic_on(
    kube: FakeKubeApiserver, tmp_path: Path, mode: str = "enforce"
) -> contextlib.AbstractAsyncContextManager[RunningMedic]:
    """Another Medic (its own data dir: an empty ledger) on the same cluster."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    kubeconfig = kube.write_kubeconfig(tmp_path / "kubeconfig")
    config = medic_settings(
        tmp_path, mode=mode, kube_mode="kubeconfig", kubeconfig=str(kubeconfig), webhook_token=TOKEN
    )
    return running_medic(config)


async def all_diagnosed(world: World, count: int, within: float = 30.0) -> list[dict[str, Any]]:
    """Wait for ``count`` diagnosed incidents; return their bundles."""
    await world.medic.drain(within)
    items = [i for i in await world.incidents() if i["phase"] == "diagnosed"]
    assert len(items) == count, items
    return [await world.incident(i["id"]) for i in items]
