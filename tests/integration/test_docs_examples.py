"""The documentation stays true: its examples run and its links resolve.

(a) every ``examples/payloads/*.json`` goes through ``medic replay`` (exit 0) and is routed by a
    shipped rule to a playbook;
(b) every rule or playbook example in README.md and docs/*.md passes ``medic check`` next to the
    shipped configuration (an example says which file it would be on its first line:
    ``# rules/<file>.yaml`` or ``# playbooks/<file>.yaml``; see docs/rules-and-playbooks.md);
(c) README.md is at most 15 KB, every relative link in README.md and docs/*.md points to an
    existing file (and heading), and every alert of the chart's PrometheusRule has its section
    in docs/operations.md (the alerts' ``runbook_url``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from medic.app.catalogue import default_registry
from medic.app.config import load_config
from medic.intake.model import WebhookPayload
from medic.rules.routing import matching_rules

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
DOCS = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md")])
PAYLOADS = sorted((ROOT / "examples" / "payloads").glob("*.json"))
README_MAX_BYTES = 15 * 1024
MARKER = re.compile(r"^#\s*(?P<path>(?:rules|playbooks)/[A-Za-z0-9_.\-]+\.ya?ml)\s*$")
FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})(?P<info>[^`]*)$")


def _medic(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run the CLI as a user would, in a clean environment (no MEDIC_* of the caller)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEDIC_") and k != "KUBECONFIG"}
    env |= {
        "MEDIC_KUBE_MODE": "off",
        "MEDIC_RULES_DIR": str(ROOT / "rules"),
        "MEDIC_PLAYBOOKS_DIR": str(ROOT / "playbooks"),
        "MEDIC_LOG_LEVEL": "warning",
    }
    return subprocess.run(
        [sys.executable, "-m", "medic", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


# --------------------------------------------------------------------------- markdown helpers
@dataclass(frozen=True)
class Block:
    file: Path
    line: int  # of the first line inside the fence
    info: str
    text: str
    preceding: str  # the non-blank line before the fence

    @property
    def where(self) -> str:
        return f"{self.file.relative_to(ROOT)}:{self.line}"


def code_blocks(path: Path) -> Iterator[Block]:
    lines = path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        fence = m.group("fence")
        before = next((s for s in reversed(lines[:i]) if s.strip()), "")
        start = i + 1
        j = start
        while j < len(lines) and not lines[j].strip().startswith(fence):
            j += 1
        yield Block(path, start + 1, m.group("info").strip(), "\n".join(lines[start:j]) + "\n", before)
        i = j + 1


def prose(path: Path) -> str:
    """The file without its fenced code blocks and inline code (links there are not links)."""
    out, inside, fence = [], False, ""
    for line in path.read_text(encoding="utf-8").splitlines():
        m = FENCE.match(line)
        if m and not inside:
            inside, fence = True, m.group("fence")
            out.append("")
            continue
        if inside and line.strip().startswith(fence):
            inside = False
            out.append("")
            continue
        out.append("" if inside else re.sub(r"`[^`]*`", "", line))
    return "\n".join(out)


def github_anchors(path: Path) -> set[str]:
    """Heading anchors as GitHub makes them: lower case, punctuation dropped, spaces to '-',
    repeats numbered; plus explicit ``<a id="...">`` / ``<a name="...">``."""
    seen: dict[str, int] = {}
    anchors: set[str] = set()
    text = prose(path)
    for line in text.splitlines():
        m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not m:
            continue
        title = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", m.group(1))  # links keep their text
        slug = re.sub(r"[^\w\- ]", "", title.lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        anchors.add(slug if n == 0 else f"{slug}-{n}")
    anchors |= set(re.findall(r"<a\s+(?:id|name)=\"([^\"]+)\"", path.read_text(encoding="utf-8")))
    return anchors


def relative_links(path: Path) -> Iterator[tuple[int, str]]:
    for lineno, line in enumerate(prose(path).splitlines(), 1):
        for m in re.finditer(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)", line):
            target = m.group(1)
            if not re.match(r"^[a-z][a-z0-9+.\-]*:", target, re.I):  # http:, https:, mailto: …
                yield lineno, target


# --------------------------------------------------------------------------- (a) payloads
def test_there_are_example_payloads() -> None:
    names = {p.name for p in PAYLOADS}
    assert {"crashloop.json", "high-latency.json", "redis-down.json"} <= names


@pytest.mark.parametrize("payload", PAYLOADS, ids=lambda p: p.name)
def test_example_payload_replays(payload: Path, tmp_path: Path) -> None:
    raw = json.loads(payload.read_text(encoding="utf-8"))
    body = WebhookPayload.model_validate(raw)  # an Alertmanager v4 webhook body
    config = load_config([ROOT / "rules"], [ROOT / "playbooks"], default_registry())
    for alert in body.alerts:
        rules = matching_rules(alert, config.rules)
        assert rules and rules[0].playbook, f"{payload.name}: no shipped rule takes {alert.labels}"
    result = _medic("replay", str(payload), cwd=tmp_path)
    assert result.returncode == 0, f"medic replay {payload.name}: {result.stderr}"
    for name in {a.labels["alertname"] for a in body.alerts}:
        assert name in result.stdout, f"the report of {payload.name} does not name {name}"


def _source_expr(alert: Any) -> str | None:
    """The expression an example alert's own rule has, where the repository says which it is."""
    from medic.collectors.prometheus import CATALOG, render_query

    labels, name = alert.labels, alert.labels["alertname"]
    if name == "PlayCodeHighLatency":  # Medic's own p99 query (runbook 4.2), above 1 s (its summary)
        return render_query(CATALOG["latency_p99"], {"namespace": labels["namespace"]}) + " > 1"
    if name == "RedisDown":  # its description quotes it
        return "redis_up == 0"
    if name == "KubePodCrashLooping":  # kube-prometheus-stack's rule (kubernetes-mixin)
        selector = f'job="{labels["job"]}",reason="{labels["reason"]}"'
        return f"max_over_time(kube_pod_container_status_waiting_reason{{{selector}}}[5m]) >= 1"
    return None


def test_example_payloads_link_to_their_alert_s_expression(tmp_path: Path) -> None:
    """Each example alert's ``generatorURL`` (the Prometheus link on-call opens, and the
    expression Medic's explore links start from) is its own alert's PromQL, URL-encoded as
    Prometheus does, which promtool parses: not a placeholder such as ``up``."""
    from urllib.parse import parse_qs, urlsplit

    from tests.servers.process import require_binary

    rules: list[dict[str, Any]] = []
    for path in PAYLOADS:
        for alert in WebhookPayload.model_validate_json(path.read_bytes()).alerts:
            query = parse_qs(urlsplit(alert.generatorURL).query)
            (expr,) = query.get("g0.expr", [""])
            where = f"{path.name} {alert.labels['alertname']}"
            assert expr.strip() not in ("", "up"), f"{where}: generatorURL {alert.generatorURL!r}"
            if (source := _source_expr(alert)) is not None:
                assert expr == source, where
            rules.append({"alert": alert.labels["alertname"], "expr": expr})
    rule_file = tmp_path / "example-alerts.yaml"
    rule_file.write_text(yaml.safe_dump({"groups": [{"name": "examples", "rules": rules}]}))
    promtool = require_binary("promtool", debian_package="prometheus", env_var="MEDIC_TEST_PROMTOOL")
    checked = subprocess.run(
        [promtool, "check", "rules", str(rule_file)], capture_output=True, text=True, timeout=60
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


# --------------------------------------------------------------------------- (b) YAML examples
def _looks_like_config(data: Any) -> bool:
    if isinstance(data, dict) and ({"rules", "playbooks"} & data.keys()):
        return True
    items = data if isinstance(data, list) else [data]
    return any(
        isinstance(item, dict)
        and "name" in item
        and ({"matchers", "playbook", "remediation"} & item.keys() or {"collect", "analyze"} & item.keys())
        for item in items
    )


def yaml_blocks() -> list[Block]:
    return [b for doc in DOCS for b in code_blocks(doc) if b.info.split()[:1] in (["yaml"], ["yml"])]


def config_examples() -> list[tuple[Block, str]]:
    out = []
    for block in yaml_blocks():
        first = block.text.splitlines()[0] if block.text.strip() else ""
        if m := MARKER.match(first):
            out.append((block, m.group("path")))
    return out


def test_docs_have_rule_and_playbook_examples() -> None:
    kinds = {path.split("/")[0] for _, path in config_examples()}
    assert kinds == {"rules", "playbooks"}, "docs/rules-and-playbooks.md shows a rule and a playbook"


def test_every_rule_or_playbook_example_is_marked() -> None:
    """An example that looks like a rule or playbook but names no file would escape the check."""
    unmarked = []
    for block in yaml_blocks():
        first = block.text.splitlines()[0] if block.text.strip() else ""
        try:
            data = yaml.safe_load(block.text)
        except yaml.YAMLError:
            data = None
        if _looks_like_config(data) and not MARKER.match(first):
            unmarked.append(block.where)
    hint = "start them with '# rules/<file>.yaml' or '# playbooks/<file>.yaml'"
    assert not unmarked, f"unchecked rule/playbook examples at {unmarked}: {hint}"


@pytest.mark.parametrize(
    ("block", "target"), config_examples(), ids=lambda v: v.where if isinstance(v, Block) else v
)
def test_rule_and_playbook_examples_pass_medic_check(block: Block, target: str, tmp_path: Path) -> None:
    shutil.copytree(ROOT / "rules", tmp_path / "rules")
    shutil.copytree(ROOT / "playbooks", tmp_path / "playbooks")
    (tmp_path / target).write_text(block.text, encoding="utf-8")  # replaces a shipped file of that name
    result = _medic("check", "rules", "playbooks", cwd=tmp_path)
    assert result.returncode == 0, f"{block.where}: medic check failed:\n{result.stdout}{result.stderr}"


# --------------------------------------------------------------------------- (c) size, links
def test_readme_is_short() -> None:
    size = (ROOT / "README.md").stat().st_size
    assert size <= README_MAX_BYTES, f"README.md is {size} bytes; move reference material to docs/"


def test_the_readme_says_what_ci_runs_and_what_a_fresh_machine_needs() -> None:
    """The README's sentence on CI names every make target ``.ci/run`` runs, and its fresh-machine
    line names what ``python -m venv`` (the Makefile's) needs on Debian/Ubuntu."""
    readme = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split())
    ci = re.findall(r"^make (\w+)", (ROOT / ".ci" / "run").read_text(encoding="utf-8"), re.MULTILINE)
    said = re.split(r"\.\s", readme[readme.index("(`.ci/run`)") :], maxsplit=1)[0]
    assert ci and all(f"`make {target}`" in said for target in ci), (ci, said)
    assert "exactly" not in said
    assert "-m venv" in (ROOT / "Makefile").read_text(encoding="utf-8") and "python3-venv" in readme


def test_the_readme_picture_is_small() -> None:
    """The incident page picture stays a light download (regenerate: docs/img/screenshot.py)."""
    picture = ROOT / "docs" / "img" / "incident-page.png"
    assert "](docs/img/incident-page.png)" in (ROOT / "README.md").read_text(encoding="utf-8")
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert picture.stat().st_size < 200 * 1024


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(doc: Path) -> None:
    broken = []
    for lineno, target in relative_links(doc):
        file_part, _, anchor = target.partition("#")
        dest = (doc.parent / file_part).resolve() if file_part else doc
        if not dest.exists():
            broken.append(f"{doc.relative_to(ROOT)}:{lineno}: {target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in github_anchors(dest):
            broken.append(f"{doc.relative_to(ROOT)}:{lineno}: {target}: no heading #{anchor}")
    assert not broken, "\n".join(broken)


REPO_PATH = re.compile(r"`((?:service|helm|tests|bench|examples|\.ci)/[^`\s*<>{}]*)`")


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_repository_paths_the_docs_name_exist(doc: Path) -> None:
    """A file or folder named in code font (`service/medic/…`, `bench/…`) is where the page says."""
    missing = [p for p in REPO_PATH.findall(doc.read_text(encoding="utf-8")) if not (ROOT / p).exists()]
    assert not missing, f"{doc.relative_to(ROOT)} names paths that do not exist: {missing}"


def test_every_chart_alert_has_its_runbook_section() -> None:
    template = (ROOT / "helm" / "playcode-medic" / "templates" / "prometheusrule.yaml").read_text()
    alerts = re.findall(r"^\s*-\s*alert:\s*(\S+)", template, re.M)
    assert alerts, "the chart's PrometheusRule defines alerts"
    anchors = github_anchors(ROOT / "docs" / "operations.md")
    missing = [a for a in alerts if a.lower() not in anchors]
    assert not missing, f"docs/operations.md has no section for {missing}"


def test_every_metric_the_docs_name_exists() -> None:
    """A metric named in the docs is one Medic defines (a renamed metric breaks dashboards)."""
    source = "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / "service" / "medic").rglob("*.py"))
    defined = set(re.findall(r"[\"'](medic_[a-z0-9_]+)[\"']", source))
    named = {m for doc in DOCS for m in re.findall(r"`(medic_[a-z0-9_]+)", doc.read_text(encoding="utf-8"))}
    assert named, "the docs name Medic's metrics"
    unknown = sorted(named - defined)
    assert not unknown, f"the docs name metrics Medic does not define: {unknown}"


def test_the_schema_page_names_every_plugin_and_shipped_rule() -> None:
    """docs/rules-and-playbooks.md lists what a playbook may use and what ships: a collector,
    analyzer, action, named query or shipped rule added without its line there fails here."""
    from medic.collectors.loki import CATALOG as LOGQL
    from medic.collectors.prometheus import CATALOG as PROMQL

    page = (ROOT / "docs" / "rules-and-playbooks.md").read_text(encoding="utf-8")
    registry = default_registry()
    config = load_config([ROOT / "rules"], [ROOT / "playbooks"], registry)
    names: dict[str, list[str]] = {
        "collector": list(registry.collectors),
        "analyzer": list(registry.analyzers),
        "action": list(registry.actions),
        "named PromQL query": list(PROMQL),
        "named LogQL query": list(LOGQL),
        "shipped rule": [r.name for r in config.rules],
        "shipped playbook": list(config.playbooks),
    }
    missing = [f"{kind} {name}" for kind, table in names.items() for name in table if f"`{name}`" not in page]
    assert not missing, f"docs/rules-and-playbooks.md does not name: {missing}"


def test_the_guard_table_is_the_code_s_order() -> None:
    """docs/guardrails.md lists every guard the code evaluates, in the code's order."""
    from datetime import UTC, datetime, timedelta

    from medic.decision.guards import Budget, GuardFacts, evaluate_guards
    from medic.domain.actions import KillSwitch, Precondition

    facts = GuardFacts(
        now=datetime(2026, 12, 1, tzinfo=UTC),
        global_mode="enforce",
        kill_switch=KillSwitch(enabled=False),
        rule_mode="auto",
        namespace="playcode",
        allowed_namespaces=["playcode"],
        preconditions=[Precondition("rollout_history", True, "a previous revision exists")],
        target_budget=Budget(1, timedelta(hours=1), 0),
        global_budget=Budget(3, timedelta(hours=1), 0),
    )
    code = [d.guard.split(":")[0] for d in evaluate_guards(facts)]
    page = (ROOT / "docs" / "guardrails.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| \d+ \| `([a-z_]+)(?::\*)?` \|", page, re.M)
    assert rows == code, f"docs/guardrails.md's guard table {rows} is not the code's order {code}"


def test_every_bench_script_is_documented() -> None:
    """docs/benchmarks.md says how to run each bench/ script and what it measures."""
    page = (ROOT / "docs" / "benchmarks.md").read_text(encoding="utf-8")
    scripts = sorted(p.name for p in (ROOT / "bench").glob("bench_*.py"))
    assert scripts
    missing = [name for name in scripts if f"`{name}`" not in page]
    assert not missing, f"docs/benchmarks.md does not describe {missing}"


def test_the_link_checker_sees_broken_links(tmp_path: Path) -> None:
    """The checker itself: a missing file and a missing heading are found, code is skipped."""
    (tmp_path / "a.md").write_text(
        "# Title\n\n## Two words\n\n[ok](#two-words) [bad](#nope) [gone](missing.md)\n"
        "`[code](missing.md)`\n\n```\n[fenced](missing.md)\n```\n",
        encoding="utf-8",
    )
    links = [t for _, t in relative_links(tmp_path / "a.md")]
    assert links == ["#two-words", "#nope", "missing.md"]
    assert github_anchors(tmp_path / "a.md") == {"title", "two-words"}
