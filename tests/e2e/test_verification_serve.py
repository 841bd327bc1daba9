"""Deploy verification in ``medic serve`` (embedded backend, two processes): the API answers in the
intake process, the verifier and the Deployment watch run in the diagnosis process, woken through
the intake's pipe; a new revision rolled out while Medic runs is verified by the watch."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from medic.app.verification import POLL
from tests.e2e.medic_process import MedicProcess
from tests.fakes.kube_apiserver import FakeKubeApiserver
from tests.integration.verify_world import (
    APP,
    NS,
    OLD,
    TOKEN,
    Traffic,
    pods_by_revision,
    revision_series,
    verify_config,
)
from tests.servers.fixtures import PrometheusFactory
from tests.servers.playcode_series import Timeline

pytestmark = pytest.mark.e2e


async def incident(medic: MedicProcess, incident_id: str) -> dict[str, Any]:
    async with aiohttp.ClientSession() as s, s.get(f"{medic.url}/api/v1/incidents/{incident_id}") as r:
        body: dict[str, Any] = await r.json()
        return body


async def verdict(medic: MedicProcess, incident_id: str, within: float = 40.0) -> dict[str, Any]:
    deadline = time.monotonic() + within
    while True:
        v = (await incident(medic, incident_id)).get("verification") or {}
        if v.get("state") not in (None, "verifying"):
            return v
        assert time.monotonic() < deadline, v
        await asyncio.sleep(0.2)


async def test_verification_in_medic_serve(tmp_path: Path, prometheus_factory: PrometheusFactory) -> None:
    async with FakeKubeApiserver(token="medic-sa-token") as kube:
        kube.clock.shift_to(datetime.now(UTC) - timedelta(hours=2))  # revision 1 is two hours old
        kube.add_deployment(NS, APP, OLD, replicas=2, container_name=APP)
        await kube.settle()
        kube.clock.reset()
        old_pods = pods_by_revision(kube)[OLD]
        kube.set_image(NS, APP, "registry.example/playcode-app:v2")
        await kube.settle()
        new_pods = pods_by_revision(kube)["registry.example/playcode-app:v2"]
        now = time.time()
        series = revision_series(old_pods, Traffic(), Timeline(start=now - 75 * 60, end=now - 60, step=15))
        series += revision_series(new_pods, Traffic(), Timeline(start=now - 60, end=now + 600, step=15))
        prometheus = await prometheus_factory(series)
        rules, playbooks = verify_config(tmp_path, window="7s")
        medic = MedicProcess(
            tmp_path,
            {
                "MEDIC_KUBE_MODE": "kubeconfig",
                "MEDIC_KUBECONFIG": str(kube.write_kubeconfig(tmp_path / "kubeconfig")),
                "MEDIC_PROMETHEUS_URL": prometheus.url,
                "MEDIC_WEBHOOK_TOKEN": TOKEN,
                "MEDIC_RULES_DIR": str(rules),
                "MEDIC_PLAYBOOKS_DIR": str(playbooks),
            },
        )
        await medic.start()
        try:
            body = {"namespace": NS, "deployment": APP}
            headers = {"Authorization": f"Bearer {TOKEN}"}
            async with (
                aiohttp.ClientSession() as s,
                s.post(f"{medic.url}/api/v1/verifications", json=body, headers=headers) as r,
            ):
                started = await r.json()
                assert r.status == 202, started
            v = await verdict(medic, started["incident_id"])
            assert v["state"] == "passed", v["reason"]
            # woken through the pipe: a sample taken after the verifier's poll would come POLL s in
            assert v["samples"][0]["elapsed_s"] < POLL

            await kube.watching()  # the diagnosis process watches the namespace
            kube.set_image(NS, APP, "registry.example/playcode-app:v3")
            await kube.settle()
            deadline = time.monotonic() + 20
            while True:
                async with (
                    aiohttp.ClientSession() as s,
                    s.get(f"{medic.url}/api/v1/incidents", params={"rule": "deploy-verify"}) as r,
                ):
                    items = (await r.json())["items"]
                if len(items) == 2:
                    break
                assert time.monotonic() < deadline, items
                await asyncio.sleep(0.2)
            newest = await incident(medic, items[0]["id"])
            assert newest["verification"]["revision"] == 3 and newest["verification"]["trigger"] == "watch"
        finally:
            await medic.stop()
