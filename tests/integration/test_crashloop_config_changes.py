"""Issue 12.2 end to end, on the fake kube-apiserver: a revision current for days starts crashing
after someone edited the ConfigMap its pods read and the pods restarted. Medic (its real
collectors, its real analyzer) does not call it a regression; the finding names the ConfigMap
edit first, with who made it and how long before the first crash, and says why it cannot tell
for the Secret. Without the right to read ConfigMaps it says the time is unknown."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from medic.analysis.crashloop.config_changes import SECRET_WHY
from tests.fakes.kube_apiserver import FakeKubeApiserver
from tests.integration.crashloop_world import APP, GOOD, NS, SURGE, World, medic_on

pytestmark = pytest.mark.integration
V2 = "registry.example/playcode-app:v2"
CONFIG = "app-config"
PLANTED = "Pl4ntedConfigValue"


def _container(image: str) -> dict[str, Any]:
    return {
        "name": APP,
        "image": image,
        "envFrom": [{"configMapRef": {"name": CONFIG}}],
        "env": [{"name": "DB_URL", "valueFrom": {"secretKeyRef": {"name": "app-secrets", "key": "url"}}}],
    }


@contextlib.asynccontextmanager
async def edited_config_world(tmp_path: Path, *, deny_configmaps: bool = False) -> AsyncIterator[World]:
    """v2 rolled out 3 days ago; 15 min ago ``kubectl edit`` changed its ConfigMap; 5 min ago the
    pods restarted (a node drain) and crash since."""
    async with FakeKubeApiserver(token="medic-sa-token") as kube:
        real = kube.clock.now()
        kube.clock.shift_to(real - timedelta(days=3))
        kube.add_configmap(NS, CONFIG, {"FEATURE_X": "off"})
        kube.add_deployment(NS, APP, replicas=2, strategy=SURGE, containers=[_container(GOOD)])
        kube.set_image(NS, APP, V2, change_cause="deploy v2")
        await kube.settle()
        kube.clock.shift_to(real - timedelta(minutes=15))
        kube.set_configmap_data(NS, CONFIG, {"FEATURE_X": PLANTED}, manager="kubectl-edit")
        kube.clock.shift_to(real - timedelta(minutes=5))
        kube.set_image_fault(V2, "CrashLoopBackOff")
        for pod in kube.pods_of(NS, APP):
            kube.delete_object("Pod", NS, pod["metadata"]["name"])
        await kube.settle()
        kube.clock.shift_to(real)
        if deny_configmaps:
            kube.deny("get", "configmaps")
        async with medic_on(kube, tmp_path) as medic:
            yield World(kube, medic)


async def _predates(w: World) -> dict[str, Any]:
    pods = [p["metadata"]["name"] for p in w.kube.pods_of(NS, APP)]
    await w.post(w.crash_alerts(pods))
    inc = await w.diagnosed()
    codes = [f["code"] for f in inc["findings"]]
    assert "crashloop.regression" not in codes, codes
    assert inc["actions"] == [] and w.patches() == 0
    return dict(next(f for f in inc["findings"] if f["code"] == "crashloop.predates_rollout"))


async def test_a_configmap_edited_before_the_crash_is_named_first(tmp_path: Path) -> None:
    async with edited_config_world(tmp_path) as w:
        f = await _predates(w)
    assert "revision 2 became current 3 days ago" in f["summary"]
    assert (
        "; what else changed: ConfigMap app-config changed 10 min before the first crash "
        "(by kubectl-edit, Update)"
    ) in f["summary"], f["summary"]
    assert f"last change of Secret app-secrets unknown ({SECRET_WHY})" in f["summary"]
    rows = {r["name"]: r for r in f["details"]["config"]}
    assert rows[CONFIG]["state"] == "suspect" and rows[CONFIG]["manager"] == "kubectl-edit"
    assert rows["app-secrets"]["state"] == "unknown"
    assert [s.split(" -o ")[0] for s in f["next_steps"] if s.startswith("kubectl get ")] == [
        "kubectl get secret app-secrets -n playcode"
    ]
    assert PLANTED not in str(f) and "FEATURE_X" not in str(f)


async def test_without_the_right_to_read_configmaps_the_time_is_unknown_not_unchanged(tmp_path: Path) -> None:
    async with edited_config_world(tmp_path, deny_configmaps=True) as w:
        f = await _predates(w)
    assert "last change of ConfigMap app-config unknown (403 forbidden" in f["summary"], f["summary"]
    assert "ConfigMap app-config changed" not in f["summary"]
    assert "unchanged" not in f["summary"]
    assert "kubectl get configmap app-config -n playcode" in " ".join(f["next_steps"])
