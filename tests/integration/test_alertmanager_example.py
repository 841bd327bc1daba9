"""examples/alertmanager.yml and the chart's NOTES route, checked with the real ``amtool``.

The defect this guards against (issue 15): with on-call as the root receiver, a Medic child
route with ``continue: true`` and no sibling sends matching alerts to Medic *only* (the root is a
fallback for alerts no child route matched, not a copy). The example must page on-call for every
PlayCode alert, send those alerts to Medic too, and never send Medic its own alerts.

``amtool`` comes with Debian's prometheus-alertmanager (tests/install-servers.sh installs it);
when it is missing these tests fail (``require_binary``), they do not skip.
"""

from __future__ import annotations

import copy
import itertools
import shlex
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.helm_chart import FULLNAME, NAMESPACE, REPO, notes_snippet, render
from tests.servers.process import require_binary

EXAMPLE = REPO / "examples" / "alertmanager.yml"
PROMETHEUS_RULE = {"prometheusRule": {"enabled": True}, "secrets": {"existingSecret": "medic-secrets"}}

MEDIC, ONCALL = "playcode-medic", "oncall"


def amtool() -> str:
    return require_binary(
        "amtool",
        debian_package="prometheus-alertmanager",
        env_var="MEDIC_TEST_AMTOOL",
        fallback_names=("/usr/bin/amtool",),
    )


def example() -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    return config


def write(config: dict[str, Any], tmp_path: Path, name: str = "alertmanager.yml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def check_config(path: Path) -> None:
    proc = subprocess.run([amtool(), "check-config", str(path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout, proc.stdout


def receivers(path: Path, labels: dict[str, str]) -> list[str]:
    """The receivers `amtool config routes test` resolves ``labels`` to, in routing-tree order."""
    argv = [amtool(), "config", "routes", "test", f"--config.file={path}"]
    argv += [f"{k}={v}" for k, v in labels.items()]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout.strip().split(",")


def medic_alert_labels() -> list[dict[str, str]]:
    """The label sets of the chart's own alerts (PrometheusRule), as Alertmanager would see them.

    Rendered from the chart, so an alert added without the routing label fails here. The alerts
    aggregate away `namespace`; Prometheus Operator or an `absent()` may still attach one, so each
    is tried both without a namespace and in the PlayCode namespace (the worst case)."""
    rule = render(PROMETHEUS_RULE).one("PrometheusRule")
    out = []
    for group in rule["spec"]["groups"]:
        for r in group["rules"]:
            labels = {"alertname": r["alert"], **{k: str(v) for k, v in r["labels"].items()}}
            out += [labels, {**labels, "namespace": "playcode"}]
    assert out
    return out


# --------------------------------------------------------------------------- the example
def test_example_passes_check_config() -> None:
    check_config(EXAMPLE)


@pytest.mark.parametrize(
    "labels",
    [
        {"alertname": "KubePodCrashLooping", "namespace": "playcode", "pod": "api-7d9f-x"},
        {"alertname": "PlayCodeHighLatency", "namespace": "playcode", "severity": "warning"},
    ],
)
def test_playcode_alerts_reach_medic_and_oncall(labels: dict[str, str]) -> None:
    assert receivers(EXAMPLE, labels) == [MEDIC, ONCALL]


@pytest.mark.parametrize("labels", medic_alert_labels(), ids=lambda labels: "-".join(labels.values()))
def test_medics_own_alerts_reach_oncall_only(labels: dict[str, str]) -> None:
    assert receivers(EXAMPLE, labels) == [ONCALL]


@pytest.mark.parametrize(
    "labels",
    [
        {"alertname": "KubePodCrashLooping", "namespace": "payments"},
        {"alertname": "KubePodCrashLooping", "namespace": "playcode-staging"},  # not a regex prefix
    ],
)
def test_other_alerts_reach_oncall_only(labels: dict[str, str]) -> None:
    assert receivers(EXAMPLE, labels) == [ONCALL]


@pytest.mark.parametrize(
    "labels",
    [{"alertname": "Watchdog"}, {"alertname": "InfoInhibitor", "namespace": "playcode"}],
)
def test_always_firing_alerts_page_nobody(labels: dict[str, str]) -> None:
    """kube-prometheus-stack's Watchdog fires forever by design: routed to on-call it would page
    every repeat_interval; InfoInhibitor neither (nor Medic: it is no incident)."""
    assert receivers(EXAMPLE, labels) == ["null"]


def test_without_the_sibling_route_oncall_is_not_paged(tmp_path: Path) -> None:
    """The documented defect, reproduced: the routing assertion above is able to fail."""
    config = example()
    config["route"]["routes"] = [r for r in config["route"]["routes"] if r["receiver"] == MEDIC]
    path = write(config, tmp_path)
    check_config(path)
    assert receivers(path, {"alertname": "KubePodCrashLooping", "namespace": "playcode"}) == [MEDIC]


def medic_url(config: dict[str, Any]) -> str:
    (receiver,) = [r for r in config["receivers"] if r["name"] == MEDIC]
    (hook,) = receiver["webhook_configs"]
    url: str = hook["url"]
    return url


def readme_install() -> tuple[str, str, dict[str, Any]]:
    """Release name, namespace and ``--set`` values of the README's ``helm upgrade --install``."""
    text = (REPO / "README.md").read_text(encoding="utf-8").replace("\\\n", " ")
    (line,) = [ln for ln in text.splitlines() if ln.startswith("helm upgrade --install ")]
    argv = shlex.split(line, comments=True)
    release, namespace = argv[3], argv[argv.index("-n") + 1]
    values: dict[str, Any] = {}
    for n, arg in enumerate(argv):
        if arg == "--set":
            key, _, raw = argv[n + 1].partition("=")
            *parents, leaf = key.split(".")
            node = values
            for part in parents:
                node = node.setdefault(part, {})
            node[leaf] = {"true": True, "false": False}.get(raw, raw)
    return release, namespace, values


def test_example_url_is_what_the_notes_print_for_the_readme_install() -> None:
    """The example, the docs page and the README name the Service the README's install creates."""
    release, namespace, values = readme_install()
    notes_url = medic_url(notes_snippet(render(values, name=release, namespace=namespace).notes))
    assert medic_url(example()) == notes_url
    doc_receivers = [b for b in yaml_blocks(DOC) if isinstance(b, dict) and "receivers" in b]
    assert [medic_url(b) for b in doc_receivers] == [notes_url]
    readme = [b for b in yaml_blocks(REPO / "README.md") if isinstance(b, dict) and "receivers" in b]
    assert readme and all(medic_url(b) == notes_url for b in readme)


def test_the_notes_url_follows_the_release() -> None:
    """The comparison above can fail: another release name renders another Service."""
    _, namespace, values = readme_install()
    other = medic_url(notes_snippet(render(values, name="other", namespace=namespace).notes))
    assert other == f"http://other-playcode-medic.{namespace}.svc:8080/api/v1/alerts"
    assert other != medic_url(example())


def test_example_medic_receiver() -> None:
    (receiver,) = [r for r in example()["receivers"] if r["name"] == MEDIC]
    (hook,) = receiver["webhook_configs"]
    assert hook["send_resolved"] is True
    assert hook["max_alerts"] == 0
    auth = hook["http_config"]["authorization"]
    assert auth["type"] == "Bearer" and auth["credentials_file"].startswith("/etc/alertmanager/secrets/")
    assert "credentials" not in auth, "the example must not carry a token"


# --------------------------------------------------------------------------- the chart's NOTES
def notes_in_example(values: dict[str, Any]) -> dict[str, Any]:
    """The example with its routes and Medic receiver replaced by what the NOTES print."""
    snippet = notes_snippet(render(values).notes)
    config = copy.deepcopy(example())
    config["route"]["routes"] = snippet["route"]["routes"]
    others = [r for r in config["receivers"] if r["name"] != MEDIC]
    config["receivers"] = others + snippet["receivers"]
    return config


def test_notes_route_has_the_example_shape() -> None:
    snippet = notes_snippet(render(PROMETHEUS_RULE).notes)
    medic, sibling = snippet["route"]["routes"]
    assert medic["receiver"] == MEDIC and medic["continue"] is True
    assert 'component!="playcode-medic"' in medic["matchers"]
    assert sibling["receiver"] == ONCALL and not sibling.get("continue", False)
    assert sibling["matchers"] == [m for m in medic["matchers"] if m.startswith("namespace")]
    (hook,) = snippet["receivers"][0]["webhook_configs"]
    assert hook["url"] == f"http://{FULLNAME}.{NAMESPACE}.svc:8080/api/v1/alerts"


@pytest.mark.parametrize(
    "values",
    [PROMETHEUS_RULE, {**PROMETHEUS_RULE, "namespaces": ["playcode", "playcode-staging"]}],
    ids=["one-namespace", "two-namespaces"],
)
def test_notes_route_routes_like_the_example(values: dict[str, Any], tmp_path: Path) -> None:
    path = write(notes_in_example(values), tmp_path)
    check_config(path)
    for ns in values.get("namespaces", ["playcode"]):
        assert receivers(path, {"alertname": "KubePodCrashLooping", "namespace": ns}) == [MEDIC, ONCALL]
    for labels in medic_alert_labels():
        assert receivers(path, labels) == [ONCALL], labels
    assert receivers(path, {"alertname": "KubePodCrashLooping", "namespace": "payments"}) == [ONCALL]


# --------------------------------------------------------------------------- the docs
DOC = REPO / "docs" / "alertmanager.md"


def doc_route_tests() -> list[tuple[list[str], list[str]]]:
    """The `amtool config routes test` lines of docs/alertmanager.md and the `# a,b` line after each."""
    lines = DOC.read_text(encoding="utf-8").splitlines()
    out = []
    for line, after in itertools.pairwise(lines):
        if line.startswith("amtool config routes test "):
            argv = line.split()
            labels = [a for a in argv[4:] if not a.startswith("--")]
            out.append((labels, after.removeprefix("# ").split(",")))
    return out


def test_docs_route_examples_are_what_amtool_prints() -> None:
    cases = doc_route_tests()
    assert len(cases) >= 3
    for labels, expected in cases:
        assert receivers(EXAMPLE, dict(a.split("=", 1) for a in labels)) == expected, labels


def yaml_blocks(path: Path) -> list[Any]:
    text = path.read_text(encoding="utf-8")
    return [yaml.safe_load(b.split("```", 1)[0]) for b in text.split("```yaml\n")[1:]]


def with_stub_receivers(config: dict[str, Any]) -> dict[str, Any]:
    """A route-only snippet made loadable: a bare receiver for each name it routes to."""
    names: list[str] = []

    def collect(route: dict[str, Any]) -> None:
        names.append(route["receiver"])
        for child in route.get("routes", []):
            collect(child)

    collect(config["route"])
    return {**config, "receivers": config.get("receivers") or [{"name": n} for n in dict.fromkeys(names)]}


def test_readme_route_keeps_oncall_paged(tmp_path: Path) -> None:
    """The route the README shows (the docs engineer's) pages on-call beside Medic."""
    blocks = [b for b in yaml_blocks(REPO / "README.md") if isinstance(b, dict) and "route" in b]
    assert blocks, "README.md shows no Alertmanager route"
    for i, config in enumerate(blocks):
        path = write(config, tmp_path, f"block{i}.yml")
        check_config(path)
        assert receivers(path, {"alertname": "KubePodCrashLooping", "namespace": "playcode"}) == [
            MEDIC,
            ONCALL,
        ]
        medic_down = {"alertname": "MedicDown", "component": "playcode-medic", "namespace": "playcode"}
        assert receivers(path, medic_down) == [ONCALL]


def test_docs_routes_wrong_then_right(tmp_path: Path) -> None:
    """docs/alertmanager.md shows the broken shape first, then the fix: amtool agrees with both."""
    wrong, right = [b for b in yaml_blocks(DOC) if isinstance(b, dict) and "route" in b]
    for name, config, expected in (("wrong", wrong, [MEDIC]), ("right", right, [MEDIC, ONCALL])):
        path = write(with_stub_receivers(config), tmp_path, f"{name}.yml")
        check_config(path)
        assert receivers(path, {"namespace": "playcode"}) == expected, name
