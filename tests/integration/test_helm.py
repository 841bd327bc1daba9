"""The Helm chart and the container image, checked with real tools and no cluster.

* The real Helm v4 engine (``helm-python-sdk``) renders and lints ``helm/playcode-medic`` for
  the default values and several value sets; ``kubernetes-validate`` checks every rendered
  object against the Kubernetes OpenAPI schemas in strict mode (unknown fields are errors).
* RBAC is least privilege: exactly the read access the collectors need, plus the write verb of
  each enabled action, nothing else (no secrets, no exec, no wildcard).
* The rendered rule/playbook ConfigMaps are the repo's files and pass ``medic check``.
* The env the chart sets loads with Medic's own settings model.
* The PrometheusRule passes ``promtool check rules`` and its alerts fire as documented under
  ``promtool test rules`` (Debian package prometheus; missing, the tests fail). Every alert links
  its section of docs/operations.md. The NOTES route is checked with ``amtool`` in
  test_alertmanager_example.py.
* The chart refuses what Medic would refuse at start-up (one backend alone, half basic auth...).
* The README's values table is what helm/values_table.py generates from values.yaml.
* The Dockerfile agrees with the chart on paths, port and uid (its structure: test_dockerfile.py).
"""

from __future__ import annotations

import copy
import functools
import importlib.util
import itertools
import json
import os
import re
import subprocess
import sys
import textwrap
import types
from pathlib import Path
from typing import Any

import helm_python
import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml

from medic.app.cli.main import main as medic_main
from medic.app.settings import Settings, load_settings
from medic.telemetry.metrics import Metrics
from tests.integration.helm_chart import (
    CHART_DIR,
    CLUSTER_SCOPED,
    CRD_KINDS,
    FULLNAME,
    NAMESPACE,
    REPO,
    Rendered,
    chart,
    deep_merge,
    notes_snippet,
    permissions,
    render,
    walk_strings,
)
from tests.integration.helm_image import dockerignore_excludes, parse_dockerfile
from tests.servers.process import require_binary

KUBE_VERSIONS = ["1.29", "1.31"]

BACKENDS = {"backends": {"redis": {"enabled": True}, "mongo": {"enabled": True}}}
SECRET = {"secrets": {"existingSecret": "medic-secrets"}}
ALL_ACTIONS = {
    "actions": {
        "rollback": True,
        "restart": True,
        "setImage": True,
        "deletePod": True,
        "createJobFromCronjob": True,
        "renewCertificate": True,
    }
}

PRODUCTION = deep_merge(BACKENDS, SECRET, {"actions": {"rollback": True}})

VALUE_SETS: dict[str, dict[str, Any] | None] = {
    "default": None,
    "production": PRODUCTION,
    "enforce-all-actions": deep_merge(
        ALL_ACTIONS, SECRET, {"mode": "enforce", "namespaces": ["playcode", "playcode-staging"]}
    ),
    "meta-monitoring": {"serviceMonitor": {"enabled": True}, "prometheusRule": {"enabled": True}},
    "no-networkpolicy-no-nodes": {"networkPolicy": {"enabled": False}, "rbac": {"nodes": False}},
    "egress-restricted": {
        "networkPolicy": {
            "egress": {
                "restrict": True,
                "apiServerCIDRs": ["10.96.0.1/32"],
                "extraTo": [
                    {
                        "to": [{"namespaceSelector": {"matchLabels": {"name": "monitoring"}}}],
                        "ports": [{"port": 9090, "protocol": "TCP"}],
                    }
                ],
            }
        }
    },
    "trial-secret-no-pvc": {
        "secrets": {"create": True, "values": {"webhookToken": "trial-token-123", "adminToken": "adm-456"}},
        "persistence": {"enabled": False},
    },
    "own-configmaps": {
        "config": {"existingRulesConfigMap": "my-rules", "existingPlaybooksConfigMap": "my-playbooks"}
    },
    "exposed": {
        "ingress": {
            "enabled": True,
            "className": "nginx",
            "hosts": ["medic.example.com"],
            "tls": [{"hosts": ["medic.example.com"], "secretName": "medic-tls"}],
        },
        "httpRoute": {
            "enabled": True,
            "parentRefs": [{"name": "public", "namespace": "gateway-system", "sectionName": "https"}],
            "hostnames": ["medic.example.com"],
        },
        "publicUrl": "https://medic.example.com",
        "networkPolicy": {
            "extraFrom": [
                {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}}
            ]
        },
    },
    "customised": {
        "image": {
            "repository": "123456789012.dkr.ecr.ap-northeast-2.amazonaws.com/playcode-medic",
            "digest": "sha256:" + "a" * 64,
        },
        "imagePullSecrets": [{"name": "ecr"}],
        "podAntiAffinity": "hard",
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "ops", "effect": "NoSchedule"}],
        "settings": {"collector_timeout_seconds": 20, "dedup_ttl_seconds": 1000000},
        "extraEnv": [{"name": "TZ", "value": "UTC"}],
        "extraVolumes": [{"name": "ca", "configMap": {"name": "corp-ca"}}],
        "extraVolumeMounts": [{"name": "ca", "mountPath": "/etc/ssl/corp", "readOnly": True}],
        "podLabels": {"team": "sre"},
        "targets": {"lokiUrl": "http://loki-gateway.monitoring.svc"},
        "webhook": {"username": "alertmanager"},
        "secrets": {"existingSecret": "medic-secrets", "keys": {"webhookPassword": "webhook-password"}},
        "rbac": {"extraReadRules": [{"apiGroups": ["cert-manager.io"], "resources": ["certificates"]}]},
        "persistence": {"storageClass": "gp3", "size": "5Gi"},
        "podDisruptionBudget": {"enabled": True},
        "service": {"annotations": {"a": "b"}},
    },
}

# What the collectors read in each allow-listed namespace: (apiGroup, resource) -> verbs.
READ: dict[tuple[str, str], set[str]] = {
    ("", "pods"): {"get", "list", "watch"},
    ("", "pods/log"): {"get"},
    ("", "configmaps"): {"get"},  # k8s.rollout_history: the metadata of those the pods read
    ("", "events"): {"get", "list", "watch"},
    ("", "persistentvolumeclaims"): {"get", "list", "watch"},
    ("", "services"): {"get", "list", "watch"},  # k8s.ingress: which services select the target
    ("apps", "deployments"): {"get", "list", "watch"},
    ("apps", "replicasets"): {"get", "list", "watch"},
    ("apps", "statefulsets"): {"get", "list", "watch"},
    ("autoscaling", "horizontalpodautoscalers"): {"get", "list", "watch"},
    ("networking.k8s.io", "ingresses"): {"get", "list", "watch"},
    ("batch", "cronjobs"): {"get", "list", "watch"},
    ("batch", "jobs"): {"get", "list", "watch"},
    ("metrics.k8s.io", "pods"): {"get", "list"},
    ("cert-manager.io", "certificates"): {"get", "list", "watch"},  # runbook 6.3 (rbac.certManager)
    ("cert-manager.io", "certificaterequests"): {"get", "list", "watch"},
    ("cert-manager.io", "issuers"): {"get", "list", "watch"},
    ("acme.cert-manager.io", "orders"): {"get", "list", "watch"},
    ("acme.cert-manager.io", "challenges"): {"get", "list", "watch"},
}
READ_PERMS = {(g, r, v) for (g, r), verbs in READ.items() for v in verbs}
ACTION_WRITES: dict[str, set[tuple[str, str, str]]] = {
    "rollback": {("apps", "deployments", "patch")},
    "restart": {("apps", "deployments", "patch")},
    "setImage": {("apps", "deployments", "patch")},
    "deletePod": {("", "pods", "delete")},
    "createJobFromCronjob": {("batch", "jobs", "create")},
    "renewCertificate": {("cert-manager.io", "certificates/status", "patch")},
}
NODE_PERMS = {
    ("", "nodes", "get"),
    ("", "nodes", "list"),
    ("", "nodes", "watch"),
    ("metrics.k8s.io", "nodes", "get"),
    ("metrics.k8s.io", "nodes", "list"),
}
FORBIDDEN_RESOURCES = {"secrets", "pods/exec", "pods/attach", "pods/portforward", "serviceaccounts/token"}
# Settings that other engineers are adding (the chart already wires them, from the Secret).
PENDING_SETTINGS = {"redis_url", "mongo_url"}


@pytest.fixture(scope="module", params=list(VALUE_SETS), ids=list(VALUE_SETS))
def rendered(request: pytest.FixtureRequest) -> Rendered:
    return render(VALUE_SETS[request.param])


def _actions(**on: bool) -> dict[str, Any]:
    return {"actions": {name: on.get(name, False) for name in ACTION_WRITES}}


# --------------------------------------------------------------------------- engine and lint
def test_engine_is_bundled_and_offline() -> None:
    """helm-python-sdk loads its own libhelm_c from the wheel: no helm binary, no download."""
    lib = Path(helm_python.library_path)
    assert lib.is_file()
    assert Path(helm_python.__file__).parent in lib.parents
    assert helm_python.helm_sdk_version().startswith("v4.")


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
@pytest.mark.parametrize("value_set", list(VALUE_SETS))
def test_lint_strict(value_set: str, kube_version: str) -> None:
    report = helm_python.lint(
        CHART_DIR, VALUE_SETS[value_set], strict=True, namespace=NAMESPACE, kube_version=f"v{kube_version}.0"
    )
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert not report["errors"] and not problems, report


def test_symlinked_config_dirs_point_at_the_repo() -> None:
    """files/rules and files/playbooks are the repo's dirs (one source of truth, no copy to sync)."""
    for kind in ("rules", "playbooks"):
        link = CHART_DIR / "files" / kind
        assert link.is_symlink(), f"{link} must stay a symlink to the repo's {kind}/"
        assert link.resolve() == (REPO / kind).resolve()


def test_packaged_chart_carries_the_config(tmp_path: Path) -> None:
    """`helm package` stores the symlinked files resolved: a published chart needs no repo."""
    archive = helm_python.package(CHART_DIR, destination=tmp_path)
    with helm_python.Chart.load(archive) as packaged:
        manifests = packaged.render(name="medic", namespace=NAMESPACE)
    (text,) = [t for p, t in manifests.items() if p.endswith("configmaps.yaml")]
    docs = {d["metadata"]["name"]: d for d in yaml.safe_load_all(text) if d}
    assert docs[f"{FULLNAME}-rules"]["data"] == _repo_files("rules")
    assert docs[f"{FULLNAME}-playbooks"]["data"] == _repo_files("playbooks")


# --------------------------------------------------------------------------- schemas
@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
def test_every_object_validates_strictly(rendered: Rendered, kube_version: str) -> None:
    assert rendered.objects
    for obj in rendered.objects:
        where = f"{obj['kind']}/{obj['metadata']['name']}"
        if obj["kind"] in CRD_KINDS:
            assert obj["apiVersion"] == CRD_KINDS[obj["kind"]], where
            continue  # no schema shipped: checked by their own tests below
        try:
            kubernetes_validate.validate(obj, kube_version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(
                f"{where} is invalid for Kubernetes {kube_version}: {exc.message} at {list(exc.path)}"
            )
        if obj["kind"] not in CLUSTER_SCOPED:
            assert obj["metadata"].get("namespace"), f"{where} has no namespace"
        assert obj["metadata"]["labels"]["app.kubernetes.io/instance"] == "medic", where


def test_the_validator_bites() -> None:
    """Guard against a silently lenient validator: an unknown field must be an error."""
    deployment = render().deployment
    deployment["spec"]["template"]["spec"]["containers"][0]["securityContxt"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBE_VERSIONS[0], strict=True)


@pytest.mark.parametrize(
    "values, message",
    [
        ({"mode": "yolo"}, "/mode"),
        ({"unknownKey": 1}, "unknownKey"),
        ({"actions": {"rollbak": True}}, "rollbak"),
        ({"namespaces": []}, "/namespaces"),
        ({"namespaces": ["Bad_NS"]}, "/namespaces/0"),
        ({"securityContext": {"readOnlyRootFilesystem": False}}, "readOnlyRootFilesystem"),
        ({"securityContext": {"capabilities": {"drop": ["ALL"], "add": ["NET_ADMIN"]}}}, "add"),
        ({"podSecurityContext": {"runAsNonRoot": False}}, "runAsNonRoot"),
        ({"rbac": {"extraReadRules": [{"apiGroups": [""], "resources": ["secrets"]}]}}, "resources/0"),
        ({"rbac": {"extraReadRules": [{"apiGroups": ["*"], "resources": ["pods"]}]}}, "apiGroups/0"),
        ({"config": {"rules": {"bad name!.yaml": "[]"}}}, "bad name"),
        ({"targets": {"prometheusUrl": "prometheus:9090"}}, "prometheusUrl"),
        ({"extraVolumes": [{"name": "host", "hostPath": {"path": "/"}}]}, "extraVolumes/0"),
        ({"extraVolumeMounts": [{"name": "ca"}]}, "mountPath"),
        ({"extraEnv": [{"value": "x"}]}, "name"),
        ({"ingress": {"enabled": True, "hosts": ["Medic Example"]}}, "hosts/0"),
        ({"ingress": {"paths": []}}, "/ingress/paths"),
        ({"ingress": {"host": "a.b"}}, "host"),
        ({"httpRoute": {"parentRefs": [{"namespace": "gw"}]}}, "name"),
        ({"httpRoute": {"paths": ["incidents"]}}, "paths/0"),
        ({"prometheusRule": {"runbookBaseUrl": "docs/operations.md"}}, "runbookBaseUrl"),
        ({"prometheusRule": {"killSwitchFor": "2 hours"}}, "killSwitchFor"),
    ],
)
def test_schema_is_strict(values: dict[str, Any], message: str) -> None:
    merged = chart().merge_values(values)
    with pytest.raises(helm_python.HelmValuesError, match=message):
        chart().validate_schema(merged)
    with pytest.raises(helm_python.HelmValuesError):
        render(values)


def test_default_values_pass_the_schema() -> None:
    chart().validate_schema(chart().merge_values(None))


# --------------------------------------------------------------------------- values table
VALUES_TABLE_SCRIPT = REPO / "helm" / "values_table.py"


@functools.cache
def _values_table() -> types.ModuleType:
    spec = importlib.util.spec_from_file_location("values_table", VALUES_TABLE_SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _value_rows() -> list[Any]:
    rows: list[Any] = _values_table().rows((CHART_DIR / "values.yaml").read_text(encoding="utf-8"))
    return rows


def test_readme_values_table_is_current() -> None:
    proc = subprocess.run(
        [sys.executable, str(VALUES_TABLE_SCRIPT), "--check"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr


def test_a_stale_values_table_fails_the_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    readme, values = tmp_path / "README.md", tmp_path / "values.yaml"
    readme.write_text((CHART_DIR / "README.md").read_text(encoding="utf-8"), encoding="utf-8")
    text = (CHART_DIR / "values.yaml").read_text(encoding="utf-8")
    values.write_text(
        text + "# A value added without regenerating the table\nnewValue: 3\n", encoding="utf-8"
    )
    argv = ["--values", str(values), "--readme", str(readme)]
    main = _values_table().main
    assert main([*argv, "--check"]) == 1
    assert "values table is stale" in capsys.readouterr().err
    assert main(argv) == 0
    assert "| `newValue` | `3` | A value added without regenerating the table |" in readme.read_text(
        encoding="utf-8"
    )
    assert main([*argv, "--check"]) == 0


def test_every_value_is_documented_and_in_the_schema() -> None:
    schema = json.loads((CHART_DIR / "values.schema.json").read_text(encoding="utf-8"))
    rows = _value_rows()
    assert len(rows) > 50
    for row in rows:
        assert row.description, f"values.yaml: {row.key} has no comment"
        node = schema
        for part in row.key.split("."):
            assert part in node.get("properties", {}), f"values.schema.json has no {row.key}"
            node = node["properties"][part]
    top = {row.key.split(".")[0] for row in rows}
    assert set(schema["properties"]) - {"global"} == top


# --------------------------------------------------------------------------- RBAC
@pytest.mark.parametrize(
    "enabled",
    [set(c) for n in range(len(ACTION_WRITES) + 1) for c in itertools.combinations(ACTION_WRITES, n)],
    ids=lambda s: "+".join(sorted(s)) or "none",
)
def test_role_grants_exactly_what_enabled_actions_need(enabled: set[str]) -> None:
    namespaces = ["playcode", "playcode-staging"]
    out = render(deep_merge(_actions(**dict.fromkeys(enabled, True)), {"namespaces": namespaces}))
    expected = READ_PERMS.union(*(ACTION_WRITES[a] for a in enabled))
    roles = out.of_kind("Role")
    assert sorted(r["metadata"]["namespace"] for r in roles) == sorted(namespaces)
    for role in roles:
        assert permissions(role) == expected, role["metadata"]["namespace"]


def test_turning_an_action_off_removes_its_verb() -> None:
    def verbs(values: dict[str, Any]) -> set[tuple[str, str, str]]:
        return permissions(render(values).one("Role")) - READ_PERMS

    everything = verbs(ALL_ACTIONS)
    assert everything == {
        ("apps", "deployments", "patch"),
        ("", "pods", "delete"),
        ("batch", "jobs", "create"),
        ("cert-manager.io", "certificates/status", "patch"),
    }
    assert ("", "pods", "delete") not in verbs(deep_merge(ALL_ACTIONS, {"actions": {"deletePod": False}}))
    assert ("batch", "jobs", "create") not in verbs(
        deep_merge(ALL_ACTIONS, {"actions": {"createJobFromCronjob": False}})
    )
    # patch deployments stays while any of rollback/restart/setImage needs it
    only_restart = deep_merge(ALL_ACTIONS, {"actions": {"rollback": False, "setImage": False}})
    assert ("apps", "deployments", "patch") in verbs(only_restart)
    no_deploy_writes = deep_merge(only_restart, {"actions": {"restart": False}})
    assert ("apps", "deployments", "patch") not in verbs(no_deploy_writes)


def test_default_install_is_read_only() -> None:
    out = render()
    for role in out.rbac_roles():
        assert {v for _, _, v in permissions(role)} <= {"get", "list", "watch"}
    assert out.plain_env["MEDIC_MODE"] == "dry-run"


def test_rbac_invariants(rendered: Rendered) -> None:
    """Whatever the values: no wildcard, no secrets, no exec, no privilege-escalation verbs."""
    roles = rendered.rbac_roles()
    assert roles
    for role in roles:
        for group, resource, verb in permissions(role):
            assert "*" not in group + resource + verb, role
            assert resource not in FORBIDDEN_RESOURCES, (role["metadata"]["name"], resource)
            assert verb in {"get", "list", "watch", "patch", "delete", "create"}, verb
            if verb in {"patch", "delete", "create"}:
                assert role["kind"] == "Role", "writes are namespace-scoped only"
        assert not [s for s in walk_strings(role["rules"]) if "*" in s]


def test_cluster_roles_read_nodes_and_cluster_issuers_only() -> None:
    out = render(ALL_ACTIONS)
    roles = {r["metadata"]["name"]: permissions(r) for r in out.of_kind("ClusterRole")}
    assert roles == {
        f"{FULLNAME}-{NAMESPACE}-nodes": NODE_PERMS,
        f"{FULLNAME}-{NAMESPACE}-cert-manager": {
            ("cert-manager.io", "clusterissuers", v) for v in ("get", "list", "watch")
        },
    }
    bindings = out.of_kind("ClusterRoleBinding")
    assert sorted(b["roleRef"]["name"] for b in bindings) == sorted(roles)
    for binding in bindings:
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": FULLNAME, "namespace": NAMESPACE}]
    off = render({"rbac": {"nodes": False, "certManager": False}})
    assert not off.of_kind("ClusterRole") and not off.of_kind("ClusterRoleBinding")
    only_nodes = render({"rbac": {"certManager": False}})
    assert permissions(only_nodes.one("ClusterRole")) == NODE_PERMS


def test_role_bindings_bind_medics_service_account_in_each_namespace() -> None:
    namespaces = ["playcode", "playcode-staging", "playcode-dev"]
    out = render({"namespaces": namespaces})
    bindings = out.of_kind("RoleBinding")
    assert sorted(b["metadata"]["namespace"] for b in bindings) == sorted(namespaces)
    for b in bindings:
        assert b["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": FULLNAME}
        assert b["subjects"] == [{"kind": "ServiceAccount", "name": FULLNAME, "namespace": NAMESPACE}]
    assert out.plain_env["MEDIC_NAMESPACES"] == ",".join(namespaces)
    assert out.one("ServiceAccount")["metadata"]["name"] == out.pod_spec["serviceAccountName"]


def test_extra_read_rules_are_read_only() -> None:
    extra = {"rbac": {"extraReadRules": [{"apiGroups": ["argoproj.io"], "resources": ["rollouts"]}]}}
    perms = permissions(render(extra).one("Role"))
    assert {p for p in perms if p[0] == "argoproj.io"} == {
        ("argoproj.io", "rollouts", v) for v in ("get", "list", "watch")
    }
    no_cert_manager = permissions(render({"rbac": {"certManager": False}}).one("Role"))
    assert not {p for p in no_cert_manager if "cert-manager" in p[0]}


# --------------------------------------------------------------------------- rules and playbooks
def _repo_files(kind: str) -> dict[str, str]:
    return {
        p.name: p.read_text(encoding="utf-8")
        for p in sorted((REPO / kind).iterdir())
        if p.suffix in (".yaml", ".yml") and p.is_file()
    }


def _write_config(out: Rendered, root: Path) -> tuple[Path, Path]:
    dirs = []
    for kind in ("rules", "playbooks"):
        d = root / kind
        d.mkdir()
        for name, content in out.config_files(kind).items():
            (d / name).write_text(content, encoding="utf-8")
        dirs.append(d)
    return dirs[0], dirs[1]


def test_configmaps_hold_the_repo_files_verbatim() -> None:
    out = render()
    for kind in ("rules", "playbooks"):
        assert out.config_files(kind) == _repo_files(kind), f"{kind} ConfigMap differs from {kind}/"
        assert _repo_files(kind), f"the repo ships no {kind}"


def test_rendered_configmaps_pass_medic_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rules, playbooks = _write_config(render(), tmp_path)
    code = medic_main(["check", str(rules), str(playbooks)])
    out = capsys.readouterr()
    assert code == 0, out.out + out.err
    assert "OK" in out.out


def _extra_rule(name: str, playbook: str) -> str:
    return textwrap.dedent(
        f"""\
        - name: {name}
          matchers: ['alertname="MedicHelmTest"']
          playbook: {playbook}
        """
    )


def test_config_overrides_add_and_replace_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    playbook = next(iter(yaml.safe_load(t)["name"] for t in _repo_files("playbooks").values()))
    first_rule_file = next(iter(_repo_files("rules")))
    values = {
        "config": {
            "rules": {
                "zz-extra.yaml": _extra_rule("helm-extra", playbook),
                first_rule_file: _extra_rule("helm-replaced", playbook),
            }
        }
    }
    out = render(values)
    files = out.config_files("rules")
    assert files["zz-extra.yaml"] == values["config"]["rules"]["zz-extra.yaml"]
    assert files[first_rule_file] == values["config"]["rules"][first_rule_file]
    assert set(files) == set(_repo_files("rules")) | {"zz-extra.yaml"}
    rules, playbooks = _write_config(out, tmp_path)
    assert medic_main(["check", str(rules), str(playbooks)]) == 0, capsys.readouterr()
    # a changed config rolls the pods
    checksum = "checksum/config"
    anno = out.deployment["spec"]["template"]["metadata"]["annotations"]
    assert anno[checksum] != render().deployment["spec"]["template"]["metadata"]["annotations"][checksum]


def test_a_broken_override_fails_medic_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = render({"config": {"rules": {"broken.yaml": _extra_rule("dangling", "no-such-playbook")}}})
    rules, playbooks = _write_config(out, tmp_path)
    assert medic_main(["check", str(rules), str(playbooks)]) != 0
    assert "no-such-playbook" in capsys.readouterr().err


def test_builtin_off_ships_only_the_given_files() -> None:
    out = render({"config": {"builtin": False, "playbooks": {"p.yaml": "name: p\n"}}})
    assert out.config_files("playbooks") == {"p.yaml": "name: p\n"}
    assert out.config_files("rules") == {}


def test_own_configmaps_are_mounted_instead() -> None:
    out = render(VALUE_SETS["own-configmaps"])
    assert not out.of_kind("ConfigMap")
    assert out.volume("rules")["configMap"]["name"] == "my-rules"
    assert out.volume("playbooks")["configMap"]["name"] == "my-playbooks"


def test_config_mounts_match_the_settings(rendered: Rendered) -> None:
    env = rendered.plain_env
    assert rendered.mount("rules") == {"name": "rules", "mountPath": env["MEDIC_RULES_DIR"], "readOnly": True}
    assert rendered.mount("playbooks")["mountPath"] == env["MEDIC_PLAYBOOKS_DIR"]
    assert rendered.mount("data")["mountPath"] == env["MEDIC_DATA_DIR"]


# --------------------------------------------------------------------------- security context
def test_security_context(rendered: Rendered) -> None:
    pod = rendered.pod_spec
    psc = pod["securityContext"]
    assert psc["runAsNonRoot"] is True
    assert psc["runAsUser"] == 10001 and psc["runAsGroup"] == 10001
    assert psc["seccompProfile"] == {"type": "RuntimeDefault"}
    csc = rendered.container["securityContext"]
    assert csc["runAsNonRoot"] is True
    assert csc["readOnlyRootFilesystem"] is True
    assert csc["allowPrivilegeEscalation"] is False
    assert csc["privileged"] is False
    assert csc["capabilities"] == {"drop": ["ALL"]}
    assert csc["seccompProfile"] == {"type": "RuntimeDefault"}
    # Medic needs the API: the token is mounted on purpose
    assert pod["automountServiceAccountToken"] is True
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        assert not pod.get(key)
    assert not [v for v in pod["volumes"] if "hostPath" in v]
    # only /tmp and the data dir are writable
    writable = {m["mountPath"] for m in rendered.container["volumeMounts"] if not m.get("readOnly")}
    assert writable == {"/tmp", "/var/lib/medic"}
    assert "emptyDir" in rendered.volume("tmp")


def test_service_account_token_automounted() -> None:
    assert render().one("ServiceAccount")["automountServiceAccountToken"] is True


def test_probes_resources_and_ports(rendered: Rendered) -> None:
    c = rendered.container
    assert c["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    assert rendered.plain_env["MEDIC_PORT"] == "8080"
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert c["startupProbe"]["httpGet"]["path"] == "/healthz"
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(c["resources"][kind])
    assert c["args"] == ["serve"]
    svc = rendered.one("Service")
    assert svc["spec"]["ports"][0]["targetPort"] == "http"
    assert svc["spec"]["selector"] == rendered.deployment["spec"]["selector"]["matchLabels"]


# --------------------------------------------------------------------------- state and replicas
def test_embedded_state_is_one_replica_recreate_on_a_pvc() -> None:
    out = render()
    spec = out.deployment["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "Recreate"}
    pvc = out.one("PersistentVolumeClaim")
    assert out.volume("data")["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"]
    assert not out.of_kind("PodDisruptionBudget"), "a PDB on one replica blocks node drains"
    assert out.plain_env["MEDIC_DATA_DIR"] == "/var/lib/medic"


def test_embedded_without_persistence_uses_emptydir() -> None:
    out = render({"persistence": {"enabled": False}})
    assert "emptyDir" in out.volume("data") and not out.of_kind("PersistentVolumeClaim")
    out = render({"persistence": {"existingClaim": "medic-data"}})
    assert out.volume("data")["persistentVolumeClaim"]["claimName"] == "medic-data"
    assert not out.of_kind("PersistentVolumeClaim")


def test_production_backends_are_two_replicas_with_pdb_and_anti_affinity() -> None:
    out = render(PRODUCTION)
    spec = out.deployment["spec"]
    assert spec["replicas"] == 2
    assert spec["strategy"]["type"] == "RollingUpdate"
    assert spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    pdb = out.one("PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"] == spec["selector"]["matchLabels"]
    anti = out.pod_spec["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert anti[0]["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    assert anti[0]["podAffinityTerm"]["labelSelector"]["matchLabels"] == spec["selector"]["matchLabels"]
    assert not out.of_kind("PersistentVolumeClaim")
    assert "emptyDir" in out.volume("data")
    env = out.env
    for name, key in (("MEDIC_REDIS_URL", "redis-url"), ("MEDIC_MONGO_URL", "mongo-url")):
        ref = env[name]["valueFrom"]["secretKeyRef"]
        assert ref == {"name": "medic-secrets", "key": key, "optional": False}
    assert render(deep_merge(PRODUCTION, {"replicaCount": 3})).deployment["spec"]["replicas"] == 3


def test_hard_anti_affinity() -> None:
    affinity = render({"podAntiAffinity": "hard"}).pod_spec["affinity"]["podAntiAffinity"]
    assert "requiredDuringSchedulingIgnoredDuringExecution" in affinity
    assert "affinity" not in render({"podAntiAffinity": "none"}).pod_spec


@pytest.mark.parametrize(
    "values",
    [{"replicaCount": 2}, {"replicaCount": 3, "persistence": {"enabled": False}}],
)
def test_sqlite_refuses_more_than_one_replica(values: dict[str, Any]) -> None:
    with pytest.raises(helm_python.HelmRenderError, match="single-writer"):
        render(values)


@pytest.mark.parametrize("replicas", [None, 1, 2])
@pytest.mark.parametrize("only", ["redis", "mongo"])
def test_one_backend_without_the_other_is_refused(only: str, replicas: int | None) -> None:
    """Issue 11: the chart rendered Redis alone (any replica count), which Medic refuses at start."""
    other = "mongo" if only == "redis" else "redis"
    values = deep_merge(SECRET, {"backends": {only: {"enabled": True}}, "replicaCount": replicas})
    with pytest.raises(
        helm_python.HelmRenderError,
        match=rf"backends\.{only}\.enabled is true but backends\.{other}\.enabled",
    ):
        render(values)


@pytest.mark.parametrize(
    "values, message",
    [
        ({"webhook": {"username": "alertmanager"}}, "webhook.username is set but no basic-auth password"),
        (deep_merge(SECRET, {"webhook": {"username": "am"}}), "webhook.username is set"),
        (
            deep_merge(SECRET, {"secrets": {"keys": {"webhookPassword": "webhook-password"}}}),
            "webhook.username is empty",
        ),
        (
            {
                "secrets": {
                    "create": True,
                    "keys": {"webhookPassword": "webhook-password"},
                    "values": {"webhookToken": "t" * 40, "webhookPassword": "p" * 20},
                }
            },
            "webhook.username is empty",
        ),
        (
            {
                "webhook": {"username": "am"},
                "secrets": {
                    "create": True,
                    "values": {"webhookToken": "t" * 40, "webhookPassword": "p" * 20},
                },
            },
            r"secrets\.values\.webhookPassword is given but secrets\.keys\.webhookPassword is empty",
        ),
    ],
)
def test_half_basic_auth_is_refused(values: dict[str, Any], message: str) -> None:
    """Medic refuses a user name without a password and a password without a user name."""
    with pytest.raises(helm_python.HelmRenderError, match=message):
        render(values)


def test_extra_env_cannot_override_what_the_chart_sets() -> None:
    for name in ("MEDIC_MODE", "MEDIC_REDIS_URL", "MEDIC_WEBHOOK_TOKEN"):
        with pytest.raises(helm_python.HelmRenderError, match=f"extraEnv: {name} is set by the chart"):
            render({"extraEnv": [{"name": name, "value": "x"}]})
    assert (
        render({"extraEnv": [{"name": "MEDIC_COLLECTOR_TIMEOUT_SECONDS", "value": "5"}]}).plain_env[
            "MEDIC_COLLECTOR_TIMEOUT_SECONDS"
        ]
        == "5"
    )


def test_backends_without_a_secret_fail_to_render() -> None:
    with pytest.raises(helm_python.HelmRenderError, match="redisUrl"):
        render(BACKENDS)


# --------------------------------------------------------------------------- settings and secrets
def test_env_names_are_medic_settings(rendered: Rendered) -> None:
    fields = set(Settings.model_fields) | PENDING_SETTINGS
    for name in rendered.env:
        if name.startswith("MEDIC_"):
            assert name.removeprefix("MEDIC_").lower() in fields, f"{name} is not a Medic setting"


FAKE_SECRET_VALUES = {
    "MEDIC_REDIS_URL": "redis://medic-redis:6379/0",
    "MEDIC_MONGO_URL": "mongodb://medic-mongo:27017/medic",
    "MEDIC_TARGET_REDIS_URL": "redis://redis.playcode:6379/0",
    "MEDIC_TARGET_MONGO_URL": "mongodb://mongodb.playcode:27017/playcode",
}


@pytest.mark.parametrize(
    "value_set", ["default", "production", "customised", "enforce-all-actions", "trial-secret-no-pvc"]
)
def test_rendered_env_loads_with_medics_settings(value_set: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("MEDIC_") or name == "KUBECONFIG":
            monkeypatch.delenv(name)
    out = render(VALUE_SETS[value_set])
    for name, value in out.plain_env.items():
        monkeypatch.setenv(name, value)
    for name, entry in out.env.items():  # the Secret holds every key the chart reads
        if "secretKeyRef" in entry.get("valueFrom", {}):
            monkeypatch.setenv(name, FAKE_SECRET_VALUES.get(name, "s3cret-" + "k" * 40))
    settings = load_settings()
    assert settings.mode == (VALUE_SETS[value_set] or {}).get("mode", "dry-run")
    assert settings.rules_dir == Path("/etc/medic/rules")
    assert settings.data_dir == Path("/var/lib/medic")
    assert settings.kube_mode == "in-cluster"
    assert settings.port == 8080
    if value_set == "customised":
        assert settings.collector_timeout_seconds == 20
        assert settings.dedup_ttl_seconds == 1000000
        assert settings.webhook_username == "alertmanager"


def test_settings_cannot_override_what_the_chart_sets() -> None:
    with pytest.raises(helm_python.HelmRenderError, match=r"settings\.mode"):
        render({"settings": {"mode": "enforce"}})


def test_no_secret_references_by_default() -> None:
    out = render()
    assert not [e for e in out.env.values() if "valueFrom" in e]
    assert not out.of_kind("Secret")
    assert "credentials:" in out.notes and "WARNING" in out.notes


def test_existing_secret_is_referenced_never_rendered() -> None:
    out = render(VALUE_SETS["enforce-all-actions"])
    assert not out.of_kind("Secret")
    refs = {n: e["valueFrom"]["secretKeyRef"] for n, e in out.env.items() if "valueFrom" in e}
    assert refs == {
        "MEDIC_WEBHOOK_TOKEN": {"name": "medic-secrets", "key": "webhook-token", "optional": False},
        "MEDIC_ADMIN_TOKEN": {"name": "medic-secrets", "key": "admin-token", "optional": True},
        "MEDIC_TARGET_MONGO_URL": {"name": "medic-secrets", "key": "target-mongo-url", "optional": True},
        "MEDIC_TARGET_REDIS_URL": {"name": "medic-secrets", "key": "target-redis-url", "optional": True},
        "MEDIC_READ_TOKEN": {"name": "medic-secrets", "key": "read-token", "optional": True},
        "MEDIC_APPROVAL_SECRET": {"name": "medic-secrets", "key": "approval-secret", "optional": True},
    }
    secret_env = {
        "MEDIC_WEBHOOK_TOKEN",
        "MEDIC_WEBHOOK_PASSWORD",
        "MEDIC_ADMIN_TOKEN",
        "MEDIC_REDIS_URL",
        "MEDIC_MONGO_URL",
        "MEDIC_TARGET_MONGO_URL",
        "MEDIC_TARGET_REDIS_URL",
        "MEDIC_READ_TOKEN",
        "MEDIC_APPROVAL_SECRET",
    }
    assert not secret_env & set(out.plain_env)


def test_trial_secret_holds_only_given_values() -> None:
    out = render(VALUE_SETS["trial-secret-no-pvc"])
    assert out.secret_data() == {"webhook-token": "trial-token-123", "admin-token": "adm-456"}
    refs = {n: e["valueFrom"]["secretKeyRef"]["key"] for n, e in out.env.items() if "valueFrom" in e}
    assert refs == {"MEDIC_WEBHOOK_TOKEN": "webhook-token", "MEDIC_ADMIN_TOKEN": "admin-token"}
    elsewhere = [o for o in out.objects if o["kind"] != "Secret"]
    for text in [*walk_strings(elsewhere), out.notes]:
        assert "trial-token-123" not in text and "adm-456" not in text


# --------------------------------------------------------------------------- network policy
def test_network_policy_lets_in_alertmanager_and_prometheus_only() -> None:
    out = render()
    np = out.one("NetworkPolicy")
    assert np["spec"]["podSelector"]["matchLabels"] == out.deployment["spec"]["selector"]["matchLabels"]
    assert np["spec"]["policyTypes"] == ["Ingress"], "egress is open by default (documented)"
    (rule,) = np["spec"]["ingress"]
    assert rule["ports"] == [{"port": "http", "protocol": "TCP"}]
    names = [peer["podSelector"]["matchLabels"]["app.kubernetes.io/name"] for peer in rule["from"]]
    assert names == ["alertmanager", "prometheus"]
    for peer in rule["from"]:
        assert peer["namespaceSelector"] == {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}
    assert not render({"networkPolicy": {"enabled": False}}).of_kind("NetworkPolicy")


def test_network_policy_restricted_egress() -> None:
    np = render(VALUE_SETS["egress-restricted"]).one("NetworkPolicy")
    assert np["spec"]["policyTypes"] == ["Ingress", "Egress"]
    dns, api, extra = np["spec"]["egress"]
    assert {p["port"] for p in dns["ports"]} == {53}
    assert api["to"] == [{"ipBlock": {"cidr": "10.96.0.1/32"}}]
    assert {p["port"] for p in api["ports"]} == {443, 6443}
    assert extra["ports"] == [{"port": 9090, "protocol": "TCP"}]


# --------------------------------------------------------------------------- exposure
def test_ingress_routes_the_oncall_paths_to_the_service() -> None:
    out = render(VALUE_SETS["exposed"])
    spec = out.one("Ingress")["spec"]
    assert spec["ingressClassName"] == "nginx"
    assert spec["tls"] == [{"hosts": ["medic.example.com"], "secretName": "medic-tls"}]
    (rule,) = spec["rules"]
    assert rule["host"] == "medic.example.com"
    paths = {p["path"]: p for p in rule["http"]["paths"]}
    assert set(paths) == {"/incidents", "/api/v1/incidents"}, "the webhook and admin API stay in-cluster"
    svc = out.one("Service")
    for p in paths.values():
        assert p["pathType"] == "Prefix"
        assert p["backend"]["service"]["name"] == svc["metadata"]["name"]
        assert p["backend"]["service"]["port"]["name"] in {port["name"] for port in svc["spec"]["ports"]}
    # no host: one rule for every host
    (any_host,) = render({"ingress": {"enabled": True}}).one("Ingress")["spec"]["rules"]
    assert "host" not in any_host


def test_http_route_attaches_to_the_gateway() -> None:
    out = render(VALUE_SETS["exposed"])
    route = out.one("HTTPRoute")
    assert route["apiVersion"] == "gateway.networking.k8s.io/v1"
    spec = route["spec"]
    assert spec["parentRefs"] == [{"name": "public", "namespace": "gateway-system", "sectionName": "https"}]
    assert spec["hostnames"] == ["medic.example.com"]
    (rule,) = spec["rules"]
    assert [m["path"] for m in rule["matches"]] == [
        {"type": "PathPrefix", "value": "/incidents"},
        {"type": "PathPrefix", "value": "/api/v1/incidents"},
    ]
    svc = out.one("Service")
    assert rule["backendRefs"] == [{"name": svc["metadata"]["name"], "port": svc["spec"]["ports"][0]["port"]}]
    with pytest.raises(helm_python.HelmRenderError, match=r"httpRoute\.parentRefs"):
        render({"httpRoute": {"enabled": True}})


def test_exposure_is_off_by_default_and_notes_say_what_is_missing() -> None:
    out = render()
    assert not out.of_kind("Ingress") and not out.of_kind("HTTPRoute")
    bare = render({"ingress": {"enabled": True}}).notes
    assert "networkPolicy.extraFrom" in bare and "publicUrl is empty" in bare
    complete = render(VALUE_SETS["exposed"]).notes
    assert "networkPolicy.extraFrom" not in complete and "publicUrl is empty" not in complete


PUBLIC = "WARNING: the incident pages and the read API are PUBLIC"
INGRESS = {"ingress": {"enabled": True}}
PROXY_ENV = [{"name": "MEDIC_AUTH_PROXY_HEADER", "value": "X-User"}]


@pytest.mark.parametrize(
    "values, public",
    [
        (INGRESS, True),  # no Secret at all
        (deep_merge(VALUE_SETS["exposed"], SECRET), True),  # a Secret the chart cannot see into
        (deep_merge(VALUE_SETS["exposed"], SECRET, {"secrets": {"readTokenSet": True}}), False),
        # the key is not read, whatever readTokenSet says
        (deep_merge(INGRESS, SECRET, {"secrets": {"readTokenSet": True, "keys": {"readToken": ""}}}), True),
        (deep_merge(INGRESS, {"secrets": {"create": True, "values": {"webhookToken": "w"}}}), True),
        (deep_merge(INGRESS, {"secrets": {"create": True, "values": {"readToken": "r" * 32}}}), False),
        (deep_merge(INGRESS, SECRET, {"settings": {"auth_proxy_header": "X-Forwarded-User"}}), False),
        (deep_merge(INGRESS, SECRET, {"extraEnv": PROXY_ENV}), False),
        (SECRET, False),  # not exposed: in-cluster only
    ],
)
def test_notes_warn_when_an_exposure_makes_the_pages_public(values: dict[str, Any], public: bool) -> None:
    notes = render(values).notes
    assert (PUBLIC in notes) is public, notes
    if public:
        assert "secrets.readTokenSet=true" in notes and "settings.auth_proxy_header" in notes
        if "existingSecret" in values.get("secrets", {}):
            assert "Secret medic-secrets" in notes


# --------------------------------------------------------------------------- pod template
RECOMMENDED_LABELS = {
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
    "app.kubernetes.io/component",
    "app.kubernetes.io/part-of",
    "app.kubernetes.io/managed-by",
    "helm.sh/chart",
}


def test_pod_template_carries_the_recommended_labels(rendered: Rendered) -> None:
    labels = rendered.deployment["spec"]["template"]["metadata"]["labels"]
    assert set(labels) >= RECOMMENDED_LABELS
    assert labels.items() >= rendered.deployment["metadata"]["labels"].items()
    assert labels.items() >= rendered.deployment["spec"]["selector"]["matchLabels"].items()


def test_pod_labels_add_but_never_replace_the_selector() -> None:
    out = render({"podLabels": {"team": "sre", "app.kubernetes.io/name": "other"}})
    labels = out.deployment["spec"]["template"]["metadata"]["labels"]
    assert labels["team"] == "sre"
    assert labels["app.kubernetes.io/name"] == "playcode-medic"
    assert labels.items() >= out.deployment["spec"]["selector"]["matchLabels"].items()


def test_extra_volumes_and_mounts() -> None:
    out = render(VALUE_SETS["customised"])
    assert out.volume("ca") == {"name": "ca", "configMap": {"name": "corp-ca"}}
    assert out.mount("ca") == {"name": "ca", "mountPath": "/etc/ssl/corp", "readOnly": True}
    assert out.plain_env["TZ"] == "UTC"


@pytest.mark.parametrize(
    "values, message",
    [
        ({"extraVolumes": [{"name": "data", "emptyDir": {}}]}, 'volume name "data" is taken'),
        ({"extraVolumeMounts": [{"name": "nope", "mountPath": "/x"}]}, '"nope" mounts no volume'),
        (
            {
                "extraVolumes": [{"name": "x", "emptyDir": {}}],
                "extraVolumeMounts": [{"name": "x", "mountPath": "/tmp/"}],
            },
            "overlaps the chart's mount /tmp",
        ),
        (
            {
                "extraVolumes": [{"name": "x", "emptyDir": {}}],
                "extraVolumeMounts": [{"name": "x", "mountPath": "/etc/medic"}],
            },
            "overlaps the chart's mount /etc/medic/rules",
        ),
        (
            {
                "extraVolumes": [{"name": "x", "emptyDir": {}}],
                "extraVolumeMounts": [{"name": "x", "mountPath": "/var/lib/medic/extra"}],
            },
            "overlaps the chart's mount /var/lib/medic",
        ),
    ],
)
def test_extra_mounts_cannot_shadow_the_charts(values: dict[str, Any], message: str) -> None:
    with pytest.raises(helm_python.HelmRenderError, match=message):
        render(values)


# --------------------------------------------------------------------------- meta-monitoring
def _metric_names() -> set[str]:
    names = set()
    for family in Metrics().registry.collect():
        names.add(family.name)
        if family.type == "counter":
            names.add(family.name + "_total")
    return names


def test_service_monitor_scrapes_the_service() -> None:
    out = render(VALUE_SETS["meta-monitoring"])
    sm = out.one("ServiceMonitor")
    svc = out.one("Service")
    assert sm["metadata"]["labels"]["release"] == "prometheus"
    assert sm["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    assert sm["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    (endpoint,) = sm["spec"]["endpoints"]
    assert endpoint["port"] in {p["name"] for p in svc["spec"]["ports"]}
    assert endpoint["path"] == "/metrics"
    assert not render().of_kind("ServiceMonitor") and not render().of_kind("PrometheusRule")


MEDIC_ALERTS = {
    # alert -> (metric it watches, severity)
    "MedicDown": ("up", "critical"),
    "MedicWebhookErrors": ("medic_webhooks_failed_total", "warning"),
    "MedicWebhooksRejected": ("medic_webhooks_rejected_total", "warning"),
    "MedicActionsFailed": ("medic_actions_total", "critical"),
    "MedicQueueBacklog": ("medic_queue_depth", "warning"),
    "MedicDeadLetters": ("medic_dead_letters", "warning"),
    "MedicNotificationsFailing": ("medic_notifications_failed_total", "warning"),
    "MedicKillSwitchOnForLong": ("medic_kill_switch_enabled", "warning"),
    "MedicBackendDown": ("medic_backend_up", "warning"),
}
# Gauges other engineers are adding to medic/metrics.py (issue 15 item 6, issue 11).
PENDING_METRICS = {"medic_kill_switch_enabled", "medic_backend_up"}
OPERATIONS_DOC = REPO / "docs" / "operations.md"
SELECTOR = f'job="{FULLNAME}",namespace="{NAMESPACE}"'


def _prometheus_rule(values: dict[str, Any] | None = None) -> dict[str, Any]:
    rule: dict[str, Any] = render(deep_merge(VALUE_SETS["meta-monitoring"] or {}, values or {})).one(
        "PrometheusRule"
    )
    return rule


def _alerts(values: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    (group,) = _prometheus_rule(values)["spec"]["groups"]
    return {r["alert"]: r for r in group["rules"]}


def _doc_anchors(path: Path) -> set[str]:
    """GitHub's anchors of a Markdown file's headings (lower case, spaces to dashes)."""
    anchors = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            anchors.add("".join(c for c in title.replace(" ", "-") if c.isalnum() or c in "-_"))
    return anchors


def test_prometheus_rule_covers_medics_failure_modes() -> None:
    alerts = _alerts()
    assert set(alerts) == set(MEDIC_ALERTS)
    assert alerts["MedicDown"]["expr"] == f"absent(up{{{SELECTOR}}} == 1)"
    assert 'status="failed"' in alerts["MedicActionsFailed"]["expr"]
    exported = _metric_names() | PENDING_METRICS
    for alert, (metric, severity) in MEDIC_ALERTS.items():
        rule = alerts[alert]
        if metric != "up":
            assert metric in exported, f"Medic exports no {metric}"
            assert f"{metric}{{{SELECTOR}" in rule["expr"], alert
        assert rule["labels"] == {"component": "playcode-medic", "severity": severity}, alert
        assert alert.startswith("Medic") and alert.isalnum() and alert[0].isupper()


def test_every_alert_links_its_runbook_section() -> None:
    anchors = _doc_anchors(OPERATIONS_DOC)
    base = "https://github.com/playcode-gg/playcode-medic/blob/main/docs/operations.md"
    chart = yaml.safe_load((CHART_DIR / "Chart.yaml").read_text(encoding="utf-8"))
    assert base.startswith(chart["sources"][0] + "/blob/"), "the runbooks live in the chart's source"
    for name, rule in _alerts().items():
        ann = rule["annotations"]
        assert ann["summary"] and ann["description"], name
        url, _, anchor = ann["runbook_url"].partition("#")
        assert url == base, name
        assert anchor in anchors, f"{name}: docs/operations.md has no section #{anchor}"
    mirrored = _alerts({"prometheusRule": {"runbookBaseUrl": "https://git.example/medic/docs/ops.md"}})
    assert (
        mirrored["MedicDown"]["annotations"]["runbook_url"]
        == "https://git.example/medic/docs/ops.md#medicdown"
    )


def test_alert_labels_and_extra_rules() -> None:
    extra = {"alert": "MedicCustom", "expr": "vector(1)", "labels": {"severity": "info"}}
    values = {
        "prometheusRule": {"alertLabels": {"team": "sre"}, "extraRules": [extra], "killSwitchFor": "30m"}
    }
    alerts = _alerts(values)
    assert alerts["MedicCustom"] == extra
    assert alerts["MedicDeadLetters"]["labels"] == {
        "component": "playcode-medic",
        "team": "sre",
        "severity": "warning",
    }
    assert alerts["MedicKillSwitchOnForLong"]["for"] == "30m"
    # severity is the alert's own, whatever alertLabels say
    assert _alerts({"prometheusRule": {"alertLabels": {"severity": "info"}}})["MedicDown"]["labels"][
        "severity"
    ] == ("critical")


def promtool() -> str:
    return require_binary("promtool", debian_package="prometheus", env_var="MEDIC_TEST_PROMTOOL")


def _rules_file(tmp_path: Path) -> Path:
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": _prometheus_rule()["spec"]["groups"]}))
    return path


def test_prometheus_rule_passes_promtool(tmp_path: Path) -> None:
    proc = subprocess.run(
        [promtool(), "check", "rules", str(_rules_file(tmp_path))], capture_output=True, text=True, timeout=30
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"{len(MEDIC_ALERTS)} rules found" in proc.stdout


def _series(metric: str, values: str, **labels: str) -> dict[str, str]:
    sel = ",".join([SELECTOR, *(f'{k}="{v}"' for k, v in labels.items())])
    return {"series": f"{metric}{{{sel}}}", "values": values}


@functools.cache
def _default_annotations() -> dict[str, dict[str, str]]:
    return {name: rule["annotations"] for name, rule in _alerts().items()}


def _expand(template: str, labels: dict[str, str], value: str | None) -> str:
    """Prometheus' annotation templating for the two forms the chart uses."""
    out = re.sub(r"\{\{\s*\$labels\.(\w+)\s*\}\}", lambda m: labels[m.group(1)], template)
    if value is not None:
        out = re.sub(r"\{\{\s*\$value\s*\}\}", value, out)
    assert "{{" not in out, out
    return out


def _firing(alert: str, at: str, *labels: dict[str, str], value: str | None = None) -> dict[str, Any]:
    """An alert_rule_test: ``alert`` fires at ``at`` with exactly these label sets (none: silent),
    each with its annotations as Prometheus expands them (``value``: what ``$value`` becomes)."""
    severity = MEDIC_ALERTS[alert][1]
    annotations = _default_annotations()[alert]
    return {
        "eval_time": at,
        "alertname": alert,
        "exp_alerts": [
            {
                "exp_labels": {"component": "playcode-medic", "severity": severity, **extra},
                "exp_annotations": {k: _expand(v, extra, value) for k, v in annotations.items()},
            }
            for extra in labels
        ],
    }


PROMTOOL_UNIT_TESTS: list[dict[str, Any]] = [
    {
        # dead letters: none, then 2 set aside at minute 10 (for: 5m), retried away at minute 30
        "interval": "1m",
        "input_series": [_series("medic_dead_letters", "0x9 2x19 0x10", pod="medic-0")],
        "alert_rule_test": [
            _firing("MedicDeadLetters", "9m"),
            _firing("MedicDeadLetters", "13m"),  # pending: for 5m not over
            _firing("MedicDeadLetters", "16m", {}, value="2"),
            _firing("MedicDeadLetters", "35m"),
        ],
    },
    {
        # the kill switch turned on at minute 10: forgotten after 2h, not during an incident
        "interval": "5m",
        "input_series": [_series("medic_kill_switch_enabled", "0 0 1x40", pod="medic-0")],
        "alert_rule_test": [
            _firing("MedicKillSwitchOnForLong", "1h"),
            _firing("MedicKillSwitchOnForLong", "2h5m"),
            _firing("MedicKillSwitchOnForLong", "2h15m", {}),
        ],
    },
    {
        # the kill switch on and off again within the hour: no alert
        "interval": "5m",
        "input_series": [_series("medic_kill_switch_enabled", "0 1x10 0x30", pod="medic-0")],
        "alert_rule_test": [
            _firing("MedicKillSwitchOnForLong", "2h30m"),
            _firing("MedicKillSwitchOnForLong", "3h"),
        ],
    },
    {
        # a notifier's first failure creates its series at 1 (labelled counters start on first use):
        # increase() alone would miss it. Another notifier keeps working.
        "interval": "1m",
        "input_series": [
            _series("medic_notifications_failed_total", "_x9 1x30", pod="medic-0", notifier="slack"),
            _series("medic_notifications_sent_total", "0+1x40", pod="medic-0", notifier="grafana"),
        ],
        "alert_rule_test": [
            _firing("MedicNotificationsFailing", "5m"),
            _firing("MedicNotificationsFailing", "12m", {"notifier": "slack"}),
            _firing("MedicNotificationsFailing", "35m"),  # no new failure for 15 minutes
        ],
    },
    {
        # a remediation failing for the first time, the same way
        "interval": "1m",
        "input_series": [
            _series("medic_actions_total", "_x4 1x20 2x20", pod="medic-0", action="rollback", status="failed")
        ],
        "alert_rule_test": [
            _firing("MedicActionsFailed", "6m", {"action": "rollback"}),
            _firing("MedicActionsFailed", "22m"),
            _firing("MedicActionsFailed", "27m", {"action": "rollback"}),
        ],
    },
    {
        # one replica loses its inbox backend (Redis) for 10 minutes; the store (MongoDB) stays up
        "interval": "1m",
        "input_series": [
            _series("medic_backend_up", "1x4 0x10 1x10", pod="medic-0", backend="inbox"),
            _series("medic_backend_up", "1x25", pod="medic-1", backend="inbox"),
            _series("medic_backend_up", "1x25", pod="medic-0", backend="store"),
        ],
        "alert_rule_test": [
            _firing("MedicBackendDown", "7m"),
            _firing("MedicBackendDown", "11m", {"backend": "inbox"}),
            _firing("MedicBackendDown", "20m"),
        ],
    },
]


def test_alerts_fire_as_documented_promtool_test_rules(tmp_path: Path) -> None:
    rules = _rules_file(tmp_path)
    tests = tmp_path / "tests.yaml"
    tests.write_text(
        yaml.safe_dump(
            {"rule_files": [rules.name], "evaluation_interval": "1m", "tests": PROMTOOL_UNIT_TESTS}
        )
    )
    proc = subprocess.run(
        [promtool(), "test", "rules", str(tests)], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


def test_promtool_unit_tests_can_fail(tmp_path: Path) -> None:
    """A wrong expectation makes `promtool test rules` fail (the test above is not vacuous)."""
    rules = _rules_file(tmp_path)
    wrong = copy.deepcopy(PROMTOOL_UNIT_TESTS[0])
    wrong["alert_rule_test"] = [_firing("MedicDeadLetters", "13m", {}, value="2")]  # still pending at 13m
    tests = tmp_path / "tests.yaml"
    tests.write_text(
        yaml.safe_dump({"rule_files": [rules.name], "evaluation_interval": "1m", "tests": [wrong]})
    )
    proc = subprocess.run(
        [promtool(), "test", "rules", str(tests)], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert proc.returncode != 0 and "MedicDeadLetters" in proc.stdout + proc.stderr


# --------------------------------------------------------------------------- NOTES
# The route the NOTES print is checked with amtool against examples/alertmanager.yml in
# test_alertmanager_example.py.
def test_notes_receiver_snippet() -> None:
    out = render(SECRET)
    snippet = notes_snippet(out.notes)
    (receiver,) = snippet["receivers"]
    (hook,) = receiver["webhook_configs"]
    assert hook["url"] == f"http://{FULLNAME}.{NAMESPACE}.svc:8080/api/v1/alerts"
    assert hook["send_resolved"] is True
    assert hook["max_alerts"] == 0
    auth = hook["http_config"]["authorization"]
    assert auth == {
        "type": "Bearer",
        "credentials_file": "/etc/alertmanager/secrets/medic-secrets/webhook-token",
    }
    medic, oncall = snippet["route"]["routes"]
    assert medic["receiver"] == receiver["name"] and medic["continue"] is True
    assert 'component!="playcode-medic"' in medic["matchers"]
    assert oncall["receiver"] == snippet["route"]["receiver"] != receiver["name"]


def test_notes_keep_every_alert_label_out_of_medics_route() -> None:
    labels = {"prometheusRule": {"alertLabels": {"component": None, "team": "sre", "medic_self": "true"}}}
    medic = notes_snippet(render(labels).notes)["route"]["routes"][0]
    assert {'team!="sre"', 'medic_self!="true"'} <= set(medic["matchers"])
    assert 'component!="playcode-medic"' not in medic["matchers"]
    assert "alertLabels is empty" not in render(labels).notes
    assert "alertLabels is empty" in render({"prometheusRule": {"alertLabels": {"component": None}}}).notes


def test_notes_warn_when_enforcing_without_actions() -> None:
    assert "no action is enabled" in render({"mode": "enforce"}).notes
    assert "no action is enabled" not in render(deep_merge(SECRET, {"mode": "enforce"}, ALL_ACTIONS)).notes


# --------------------------------------------------------------------------- image
DOCKERFILE = REPO / "Dockerfile"


# The Dockerfile's own structure (digest pin, layers, no pip, labels, non-root): test_dockerfile.py.


def test_dockerfile_agrees_with_the_chart() -> None:
    final = parse_dockerfile(DOCKERFILE).stages[-1]
    env = final.env()
    chart_env = render().plain_env
    for name in ("MEDIC_RULES_DIR", "MEDIC_PLAYBOOKS_DIR", "MEDIC_DATA_DIR", "MEDIC_PORT"):
        assert env[name] == chart_env[name], name
    copies = {tuple(i.args.split()) for i in final.all("COPY") if "from" not in i.flags}
    assert ("rules/", env["MEDIC_RULES_DIR"] + "/") in copies
    assert ("playbooks/", env["MEDIC_PLAYBOOKS_DIR"] + "/") in copies
    assert render().pod_spec["securityContext"]["runAsUser"] == int(final.last("USER").args.split(":")[0])  # type: ignore[union-attr]


def test_dockerignore_keeps_the_build_inputs_only() -> None:
    ignore = REPO / ".dockerignore"
    for needed in (
        "pyproject.toml",
        "README.md",
        "service/medic/app.py",
        "rules/latency.yaml",
        "playbooks/high-latency.yaml",
    ):
        assert not dockerignore_excludes(ignore, needed), needed
    for unwanted in (
        ".git/config",
        ".venv/bin/python",
        "tests/unit/test_matchers.py",
        "helm/playcode-medic/Chart.yaml",
        "service/medic/__pycache__/app.cpython-311.pyc",
        "data/medic.sqlite3",
        ".env",
    ):
        assert dockerignore_excludes(ignore, unwanted), unwanted
