"""A PlayCode cluster (fake kube-apiserver) with a fresh revision of playcode-app, a real
Prometheus backfilled with the old and the new revision's traffic, and Medic running in-process:
the world of the deploy verification tests (issue 13)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp

from medic.app.settings import Settings
from tests.fakes.kube_apiserver import FakeKubeApiserver
from tests.medic_app import REPO, RunningMedic, medic_settings, running_medic
from tests.servers.fixtures import PrometheusFactory
from tests.servers.openmetrics import Series
from tests.servers.playcode_series import Timeline, http_requests, latency_histogram

NS = "playcode"
APP = "playcode-app"
OLD = "registry.example/playcode-app:v1"
NEW = "registry.example/playcode-app:v2"
TOKEN = "webhook-token"


@dataclass(frozen=True)
class Traffic:
    """A revision's traffic per pod: requests per second, 5xx ratio, p99 in seconds."""

    rps: float = 20.0
    error_ratio: float = 0.002
    p99: float = 0.08


def revision_series(pods: list[str], traffic: Traffic, timeline: Timeline) -> list[Series]:
    out: list[Series] = []
    for pod in pods:
        labels = {"pod": pod}
        out += http_requests(timeline, rps=traffic.rps, error_ratio=traffic.error_ratio, labels=labels)
        out += latency_histogram(timeline, p99=traffic.p99, rps=traffic.rps, labels=labels)
    return out


def verify_config(
    tmp_path: Path, *, window: str = "7s", interval: str = "5s", mode: str = "approve"
) -> tuple[Path, Path]:
    """The shipped rules and playbooks, with a short window and the rule's mode set."""
    rules, playbooks = tmp_path / "rules", tmp_path / "playbooks"
    shutil.copytree(REPO / "rules", rules, ignore=shutil.ignore_patterns("tests"))
    shutil.copytree(REPO / "playbooks", playbooks)
    pb = playbooks / "deploy-verify.yaml"
    pb.write_text(
        pb.read_text()
        .replace("window: 10m", f"window: {window}")
        .replace("interval: 1m", f"interval: {interval}")
    )
    rule = rules / "deploy-verify.yaml"
    rule.write_text(rule.read_text().replace("mode: approve", f"mode: {mode}"))
    return rules, playbooks


@dataclass
class VerifyWorld:
    kube: FakeKubeApiserver
    medic: RunningMedic
    settings: Settings

    def replicasets(self) -> dict[int, str]:
        """Revision -> ReplicaSet name."""
        out = {}
        for rs in self.kube.list_objects("ReplicaSet", NS):
            rev = int(rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"])
            out[rev] = rs["metadata"]["name"]
        return out

    async def request(self, status: int = 202, token: str = TOKEN, **body: Any) -> dict[str, Any]:
        async with (
            aiohttp.ClientSession() as s,
            s.post(
                f"{self.medic.url}/api/v1/verifications",
                data=json.dumps({"namespace": NS, "deployment": APP} | body),
                headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
            ) as r,
        ):
            got: dict[str, Any] = await r.json(content_type=None)
            assert r.status == status, got
            return got

    async def incident(self, incident_id: str) -> dict[str, Any]:
        async with (
            aiohttp.ClientSession() as s,
            s.get(f"{self.medic.url}/api/v1/incidents/{incident_id}") as r,
        ):
            body: dict[str, Any] = await r.json()
            return body

    async def finished(self, incident_id: str, within: float = 40.0) -> dict[str, Any]:
        deadline = time.monotonic() + within
        while True:
            inc = await self.incident(incident_id)
            if (inc.get("verification") or {}).get("state") not in (None, "verifying"):
                return inc
            assert time.monotonic() < deadline, inc.get("verification")
            await asyncio.sleep(0.2)

    def rollback_patches(self) -> int:
        return self.kube.count("PATCH", rf"/deployments/{APP}$")


def pods_by_revision(kube: FakeKubeApiserver) -> dict[str, list[str]]:
    """Image -> pod names."""
    out: dict[str, list[str]] = {}
    for p in kube.pods_of(NS, APP):
        out.setdefault(p["spec"]["containers"][0]["image"], []).append(p["metadata"]["name"])
    return out


@contextlib.asynccontextmanager
async def verify_world(
    tmp_path: Path,
    prometheus_factory: PrometheusFactory,
    *,
    old: Traffic = Traffic(),
    new: Traffic = Traffic(),
    mode: str = "dry-run",
    rule_mode: str = "approve",
    window: str = "7s",
    surge: bool = False,
    **settings: Any,
) -> AsyncIterator[VerifyWorld]:
    """Revision 1 (OLD) served the last hour; revision 2 (NEW) was just rolled out (its series
    reach 10 minutes into the future, so queries at "now" see it during the test)."""
    async with FakeKubeApiserver(token="medic-sa-token") as kube:
        kube.clock.shift_to(datetime.now(UTC) - timedelta(hours=2))  # revision 1 is two hours old
        kube.add_deployment(NS, APP, OLD, replicas=2, container_name=APP)
        await kube.settle()
        kube.clock.reset()
        old_pods = pods_by_revision(kube)[OLD]
        kube.set_image(NS, APP, NEW, change_cause="deploy v2")
        await kube.settle()
        new_pods = pods_by_revision(kube)[NEW]
        now = time.time()
        series = revision_series(old_pods, old, Timeline(start=now - 75 * 60, end=now - 60, step=15))
        series += revision_series(new_pods, new, Timeline(start=now - 60, end=now + 600, step=15))
        prometheus = await prometheus_factory(series)
        rules, playbooks = verify_config(tmp_path, window=window, mode=rule_mode)
        config = medic_settings(
            tmp_path,
            mode=mode,
            kube_mode="kubeconfig",
            kubeconfig=str(kube.write_kubeconfig(tmp_path / "kubeconfig")),
            webhook_token=TOKEN,
            prometheus_url=prometheus.url,
            rules_dir=rules,
            playbooks_dir=playbooks,
            **settings,
        )
        async with running_medic(config) as medic:
            yield VerifyWorld(kube, medic, config)
