"""Render helm/playcode-medic with the real Helm engine and pick objects out of the result.

The engine is Helm v4's Go SDK bundled in the ``helm-python-sdk`` wheel (``import helm_python``,
a ctypes binding to ``libhelm_c``): no helm binary, no cluster, no network. ``Chart.render``
returns ``{template path: rendered text}``; NOTES.txt is one of those paths.
"""

from __future__ import annotations

import base64
import functools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import helm_python
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART_DIR = REPO / "helm" / "playcode-medic"
RELEASE = "medic"
NAMESPACE = "medic"
FULLNAME = "medic-playcode-medic"

# Custom resources (Prometheus Operator, Gateway API): kubernetes-validate ships no schema for them.
CRD_KINDS = {
    "ServiceMonitor": "monitoring.coreos.com/v1",
    "PrometheusRule": "monitoring.coreos.com/v1",
    "HTTPRoute": "gateway.networking.k8s.io/v1",
}
CLUSTER_SCOPED = {"ClusterRole", "ClusterRoleBinding"}


@functools.cache
def chart() -> helm_python.Chart:
    return helm_python.Chart.load(CHART_DIR)


def deep_merge(base: dict[str, Any], *overrides: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for override in overrides:
        for key, value in override.items():
            if isinstance(value, dict) and isinstance(out.get(key), dict):
                out[key] = deep_merge(out[key], value)
            else:
                out[key] = value
    return out


@dataclass
class Rendered:
    manifests: dict[str, str]
    objects: list[dict[str, Any]]
    notes: str

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [o for o in self.objects if o["kind"] == kind]

    def one(self, kind: str, name: str | None = None) -> dict[str, Any]:
        found = [o for o in self.of_kind(kind) if name is None or o["metadata"]["name"] == name]
        assert len(found) == 1, f"expected one {kind} {name or ''}, got {len(found)}"
        return found[0]

    @property
    def deployment(self) -> dict[str, Any]:
        return self.one("Deployment")

    @property
    def pod_spec(self) -> dict[str, Any]:
        spec: dict[str, Any] = self.deployment["spec"]["template"]["spec"]
        return spec

    @property
    def container(self) -> dict[str, Any]:
        containers = self.pod_spec["containers"]
        assert len(containers) == 1
        c: dict[str, Any] = containers[0]
        return c

    @property
    def env(self) -> dict[str, dict[str, Any]]:
        """Container env by name (duplicates would be a bug: asserted)."""
        entries = self.container.get("env", [])
        names = [e["name"] for e in entries]
        assert len(names) == len(set(names)), f"duplicate env vars: {names}"
        return {e["name"]: e for e in entries}

    @property
    def plain_env(self) -> dict[str, str]:
        return {name: e["value"] for name, e in self.env.items() if "value" in e}

    def volume(self, name: str) -> dict[str, Any]:
        (vol,) = [v for v in self.pod_spec["volumes"] if v["name"] == name]
        assert isinstance(vol, dict)
        return vol

    def mount(self, name: str) -> dict[str, Any]:
        (m,) = [m for m in self.container["volumeMounts"] if m["name"] == name]
        assert isinstance(m, dict)
        return m

    def config_files(self, kind: str) -> dict[str, str]:
        cm = self.one("ConfigMap", f"{FULLNAME}-{kind}")
        data: dict[str, str] = cm.get("data") or {}
        return data

    def secret_data(self) -> dict[str, str]:
        secret = self.one("Secret")
        return {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}

    def rbac_roles(self) -> list[dict[str, Any]]:
        return self.of_kind("Role") + self.of_kind("ClusterRole")


def render(
    values: dict[str, Any] | None = None, *, name: str = RELEASE, namespace: str = NAMESPACE
) -> Rendered:
    manifests = chart().render(values=values, name=name, namespace=namespace)
    objects: list[dict[str, Any]] = []
    notes = ""
    for path, text in sorted(manifests.items()):
        if path.endswith("NOTES.txt"):
            notes = text
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                assert isinstance(doc, dict) and "kind" in doc, f"{path}: not a Kubernetes object"
                objects.append(doc)
    return Rendered(manifests, objects, notes)


def permissions(role: dict[str, Any]) -> set[tuple[str, str, str]]:
    """A Role's rules flattened to (apiGroup, resource, verb)."""
    out: set[tuple[str, str, str]] = set()
    for rule in role.get("rules") or []:
        assert "nonResourceURLs" not in rule
        assert "resourceNames" not in rule
        for group in rule.get("apiGroups", []):
            for resource in rule.get("resources", []):
                for verb in rule.get("verbs", []):
                    out.add((group, resource, verb))
    return out


def walk_strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield str(k)
            yield from walk_strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from walk_strings(v)


def notes_snippet(notes: str) -> dict[str, Any]:
    """The Alertmanager YAML the release NOTES print (from `route:` to the first blank line)."""
    lines = notes.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == "route:")
    end = next((i for i in range(start, len(lines)) if not lines[i].strip()), len(lines))
    indent = len(lines[start]) - len(lines[start].lstrip())
    parsed: dict[str, Any] = yaml.safe_load("\n".join(line[indent:] for line in lines[start:end]))
    return parsed
