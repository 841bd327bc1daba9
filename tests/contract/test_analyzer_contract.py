"""The one contract every shipped analyzer passes (the catalogue in ``default_registry()``), each
run directly (``AnalyzerDef.fn``) and as the pipeline runs it (``medic.app.pipeline.analyze``):

* when every step of its playbooks (and every collector of the catalogue) is ``not_configured``,
  ``timeout`` or ``error``, it returns a list of Findings and does not raise;
* over real evidence (what the collectors return from the planted worlds of the collector
  contract, and the evidence of the ``medic test`` files in rules/tests/ for the playbooks that
  use it) its findings are well formed: a code ``area.name``, a known severity, a summary, details
  that are plain JSON, evidence references to steps it was given, its own name; the pipeline
  sees the same findings and no ``analyzer.error``;
* it is deterministic (the same input gives the same findings) and does not change its input;
* it is pure: with socket creation, ``open()`` and process creation made to fail (on the
  standard library, never on Medic's code) it returns the same findings;
* importing its module in a fresh interpreter loads no I/O library and no layer above the pure
  core (DESIGN §5: pure code, I/O at the edges): tests/unit/test_layout.py checks it for every
  module of the pure core.

What each analyzer concludes from which evidence is tested in tests/unit/ and by ``medic test``.
"""

from __future__ import annotations

import builtins
import copy
import dataclasses
import io
import json
import os
import re
import socket
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

import pytest
import yaml

from medic.app.catalogue import default_registry
from medic.app.config import Config, load_config
from medic.app.pipeline import analyze
from medic.app.testing.cases import fixture_evidence
from medic.domain.alert import Alert
from medic.domain.evidence import Evidence, StepStatus
from medic.domain.incident import (
    SEVERITY_ORDER,
    Finding,
    Incident,
    IncidentAlert,
    Target,
    shared_labels,
)
from medic.playbooks.compiled import CompiledPlaybook
from medic.playbooks.contract import AnalysisInput, AnalyzerDef
from medic.rules.routing import matching_rules
from medic.rules.targets import target_from_labels
from tests.servers.fixtures import PrometheusFactory, RedisServerFactory

REPO = Path(__file__).resolve().parents[2]
REGISTRY = default_registry()
ANALYZERS: dict[str, AnalyzerDef] = REGISTRY.analyzers
NAMES = sorted(ANALYZERS)
CONFIG: Config = load_config([REPO / "rules"], [REPO / "playbooks"], REGISTRY)
PLAYBOOKS: list[CompiledPlaybook] = sorted(CONFIG.playbooks.values(), key=lambda p: p.name)
ALWAYS = "coverage"  # the analyzer the pipeline adds to every playbook
CODE = re.compile(r"^[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*$")  # area.name
NOW = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
NS = "playcode"
APP = "playcode-app"


def uses(analyzer: str, playbook: CompiledPlaybook) -> bool:
    return analyzer == ALWAYS or analyzer in {a.name for a in playbook.analyzers}


def test_the_catalogue_ships_analyzers_and_the_playbooks_use_them() -> None:
    assert ALWAYS in ANALYZERS
    used = {a.name for p in PLAYBOOKS for a in p.analyzers}
    assert used <= set(ANALYZERS)
    assert set(ANALYZERS) - used <= {ALWAYS}, "an analyzer no shipped playbook runs"


def test_every_analyzer_declares_the_codes_its_source_names() -> None:
    """Every code an analyzer may return is declared (``AnalyzerDef.codes``: what ``medic test``
    checks an expectation against): each ``area.name`` literal of the analyzers' sources, in an
    area some analyzer declares, is declared by one of them. The scenarios below check every
    finding actually returned against its own analyzer's declaration."""
    assert all(ANALYZERS[n].codes for n in NAMES), [n for n in NAMES if not ANALYZERS[n].codes]
    areas = {c.split(".")[0] for n in NAMES for c in ANALYZERS[n].codes}
    literal = re.compile(r"[\"']([a-z][a-z0-9_]*\.[a-z][a-z0-9_]*)[\"']")
    named = {
        m
        for path in (REPO / "service" / "medic" / "analysis").rglob("*.py")
        for m in literal.findall(path.read_text(encoding="utf-8"))
        if m.split(".")[0] in areas and m not in REGISTRY.collectors  # redis.info is a collector
    }
    undeclared = sorted(c for c in named if not any(ANALYZERS[n].declares(c) for n in NAMES))
    assert undeclared == [], undeclared
    assert "crashloop.regression" in named  # the scan reads the sources


# ---------------------------------------------------------------- scenarios


@dataclass(frozen=True)
class Scenario:
    """One analysis input: evidence as the pipeline hands it over, for one playbook."""

    name: str
    playbook: CompiledPlaybook
    target: Target | None
    alerts: list[IncidentAlert]
    evidence: list[Evidence]
    now: datetime = NOW

    @property
    def labels(self) -> dict[str, str]:
        return shared_labels(None, self.alerts) if self.alerts else {}

    def input(self) -> AnalysisInput:
        return AnalysisInput(
            target=self.target,
            labels=self.labels,
            alerts=self.alerts,
            evidence={e.step: e for e in self.evidence},
            now=self.now,
        )

    def incident(self) -> Incident:
        return Incident(
            id="inc-contract",
            key=f"contract|{self.target.key if self.target else 'none'}",
            playbook=self.playbook.name,
            target=self.target,
            labels=self.labels,
            created_at=self.now,
            updated_at=self.now,
        )


def firing(labels: dict[str, str], now: datetime, n: int = 0) -> IncidentAlert:
    return IncidentAlert(
        identity=f"a{n}", status="firing", labels=labels, startsAt=now, first_seen=now, last_seen=now
    )


def every_step() -> dict[str, str]:
    """Step id -> collector of every step of the shipped playbooks, and every catalogue collector."""
    steps = {name: name for name in REGISTRY.collectors}
    for playbook in PLAYBOOKS:
        steps |= {s.step_id: s.collector.name for s in playbook.steps}
    return steps


FAILED = [StepStatus.NOT_CONFIGURED, StepStatus.TIMEOUT, StepStatus.ERROR]
TARGETS: list[Target | None] = [
    Target(kind="deployment", namespace=NS, name=APP),
    Target(kind="namespace", name=NS),
    None,
]


def failed_scenarios(analyzer: str, status: StepStatus) -> Iterator[Scenario]:
    """Every step ``status`` (no data), for each playbook that runs ``analyzer``, on each kind of target."""
    message = {
        StepStatus.NOT_CONFIGURED: "no client configured",
        StepStatus.TIMEOUT: "timed out after 10s",
        StepStatus.ERROR: "connection refused",
    }[status]
    evidence = [
        Evidence(step=step, collector=collector, status=status, started_at=NOW, error=message)
        for step, collector in sorted(every_step().items())
    ]
    labels = {"alertname": "Contract", "namespace": NS, "pod": f"{APP}-7d9c8b5f4-x2x7q", "deployment": APP}
    for playbook in PLAYBOOKS:
        if not uses(analyzer, playbook):
            continue
        for target in TARGETS:
            kind = target.kind if target else "none"
            yield Scenario(
                f"{playbook.name}/{kind}/{status}", playbook, target, [firing(labels, NOW)], evidence
            )


def rules_test_scenarios() -> list[Scenario]:
    """The evidence of every case of the ``medic test`` files shipped in rules/tests/, for the
    playbook its alerts are routed to (steps a case does not give are ``not_configured``, as
    ``medic test`` hands them over)."""
    found: list[Scenario] = []
    for path in sorted((REPO / "rules" / "tests").glob("*.yaml")):
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        for case in doc["tests"]:
            scenario = rules_test_scenario(f"{path.name}: {case['name']}", case)
            if scenario is not None:
                found.append(scenario)
    return found


def rules_test_scenario(name: str, case: dict[str, Any]) -> Scenario | None:
    now = case["now"] if isinstance(case["now"], datetime) else datetime.fromisoformat(case["now"])
    now = now if now.tzinfo else now.replace(tzinfo=UTC)
    alerts = [firing(a["labels"], now, i) for i, a in enumerate(case.get("alerts", []))]
    if not alerts:
        return None
    first = Alert(status="firing", labels=alerts[0].labels, startsAt=now)
    rules = matching_rules(first, CONFIG.rules)
    if not rules or not rules[0].playbook:
        return None
    playbook = CONFIG.playbooks[rules[0].playbook]
    steps = {s.step_id: s.collector.name for s in playbook.steps}
    given = {
        step: fixture_evidence(step, steps.get(step, step.split("#")[0]), value, now)
        for step, value in (case.get("evidence") or {}).items()
    }
    missing = [
        Evidence(step=s, collector=c, status=StepStatus.NOT_CONFIGURED, started_at=now, error="no fixture")
        for s, c in steps.items()
        if s not in given
    ]
    target = target_from_labels(playbook.playbook.target, alerts[0].labels)
    return Scenario(name, playbook, target, alerts, [*given.values(), *missing], now)


RULES_TESTS = rules_test_scenarios()


def test_the_rules_tests_give_evidence_to_every_playbooks_analyzers() -> None:
    """Every analyzer a shipped playbook runs has at least one case here (else the suite below
    would check it on nothing)."""
    assert RULES_TESTS
    covered = {a.name for s in RULES_TESTS for a in s.playbook.analyzers}
    assert covered == {a.name for p in PLAYBOOKS for a in p.analyzers}


# ---------------------------------------------------------------- the checks


def run_direct(analyzer: AnalyzerDef, scenario: Scenario) -> list[Finding]:
    return analyzer.fn(scenario.input())


def run_in_pipeline(analyzer: AnalyzerDef, scenario: Scenario) -> list[Finding]:
    playbook = dataclasses.replace(scenario.playbook, analyzers=[analyzer])
    return analyze(
        REGISTRY, scenario.incident(), list(scenario.alerts), playbook, list(scenario.evidence), scenario.now
    )


def dumped(findings: Sequence[Finding]) -> list[dict[str, Any]]:
    return [f.model_dump(mode="json") for f in findings]


def assert_well_formed(analyzer: AnalyzerDef, scenario: Scenario, findings: Any) -> None:
    assert isinstance(findings, list), type(findings)
    steps = {e.step for e in scenario.evidence}
    for f in findings:
        assert isinstance(f, Finding), type(f)
        assert f.analyzer == analyzer.name, (f.analyzer, f.code)
        assert CODE.match(f.code), f.code
        assert analyzer.declares(f.code), f"{analyzer.name} returned {f.code}, which it does not declare"
        assert f.severity in SEVERITY_ORDER, f.severity
        assert f.summary.strip(), f.code
        json.dumps(f.details, allow_nan=False)  # plain JSON: stored and sent as is
        assert set(f.evidence) <= steps, (f.code, set(f.evidence) - steps)


def assert_pipeline_agrees(analyzer: AnalyzerDef, scenario: Scenario, direct: list[Finding]) -> None:
    piped = run_in_pipeline(analyzer, scenario)
    assert [f.code for f in piped if f.code == "analyzer.error"] == [], [f.summary for f in piped]
    own = [f for f in piped if f.analyzer == analyzer.name]
    by_severity = sorted(direct, key=lambda f: -SEVERITY_ORDER[f.severity])
    assert dumped(own) == dumped(by_severity)


def snapshot(scenario: Scenario) -> Any:
    return (
        [e.model_dump(mode="json") for e in scenario.evidence],
        [a.model_dump(mode="json") for a in scenario.alerts],
        scenario.target.model_dump(mode="json") if scenario.target else None,
    )


def _no_io(*args: Any, **kwargs: Any) -> NoReturn:
    raise OSError("an analyzer did I/O")


def without_io(monkeypatch: pytest.MonkeyPatch) -> None:
    """Socket creation, name resolution, file opening and process creation fail (the standard
    library is patched, not Medic)."""
    monkeypatch.setattr(socket.socket, "__init__", _no_io)
    for name in ("create_connection", "getaddrinfo", "socketpair"):
        monkeypatch.setattr(socket, name, _no_io)
    monkeypatch.setattr(builtins, "open", _no_io)
    monkeypatch.setattr(io, "open", _no_io)
    monkeypatch.setattr(os, "open", _no_io)
    monkeypatch.setattr(subprocess.Popen, "__init__", _no_io)


def assert_contract(
    analyzer: AnalyzerDef, scenario: Scenario, monkeypatch: pytest.MonkeyPatch
) -> list[Finding]:
    """Well formed, the pipeline agrees, deterministic, leaves its input alone, pure."""
    before = snapshot(scenario)
    pristine = copy.deepcopy(scenario)
    findings = run_direct(analyzer, scenario)
    assert_well_formed(analyzer, scenario, findings)
    assert snapshot(scenario) == before, "the analyzer changed its input"
    assert dumped(run_direct(analyzer, pristine)) == dumped(findings), "not deterministic"
    assert_pipeline_agrees(analyzer, scenario, findings)
    with monkeypatch.context() as patched:
        without_io(patched)
        pure = run_direct(analyzer, copy.deepcopy(pristine))
    assert dumped(pure) == dumped(findings), "the analyzer's findings depend on I/O"
    return findings


# ---------------------------------------------------------------- (a) failed steps


@pytest.mark.parametrize("status", FAILED, ids=str)
@pytest.mark.parametrize("name", NAMES)
def test_failed_steps_give_findings_not_an_exception(
    name: str, status: StepStatus, monkeypatch: pytest.MonkeyPatch
) -> None:
    analyzer = ANALYZERS[name]
    scenarios = list(failed_scenarios(name, status))
    assert scenarios
    for scenario in scenarios:
        assert_contract(analyzer, scenario, monkeypatch)


# ---------------------------------------------------------------- wrong-shape data

WRONG_SHAPES: dict[str, Any] = {
    "a string": "<html>502 Bad Gateway</html>",
    "a list": [1, "two", None],
    "unexpected keys": {"unexpected": [{"nested": True}]},
    "a number": 42,
}


@pytest.mark.parametrize("shape", sorted(WRONG_SHAPES))
@pytest.mark.parametrize("name", NAMES)
def test_wrong_shape_data_does_not_crash_the_pipeline(name: str, shape: str) -> None:
    """Evidence ``ok`` but not of its collector's shape (a bundle from another version, a
    hand-written case): what the analyzer makes of it is its own business, but the pipeline's
    analysis returns findings (an exception becomes an ``analyzer.error`` finding) and never raises."""
    analyzer = ANALYZERS[name]
    evidence = [
        Evidence(
            step=step, collector=collector, status=StepStatus.OK, started_at=NOW, data=WRONG_SHAPES[shape]
        )
        for step, collector in sorted(every_step().items())
    ]
    alerts = [firing({"alertname": "Contract", "namespace": NS, "deployment": APP}, NOW)]
    for playbook in PLAYBOOKS:
        if uses(name, playbook):
            scenario = Scenario(f"{playbook.name}/{shape}", playbook, TARGETS[0], alerts, evidence)
            findings = run_in_pipeline(analyzer, scenario)
            assert all(isinstance(f, Finding) for f in findings)
            for f in findings:
                assert CODE.match(f.code) and f.severity in SEVERITY_ORDER, f


# ---------------------------------------------------------------- (b, c) the rules/tests evidence


# Analyzers that no case of rules/tests/ makes find anything (a gap in those files, not in the
# analyzer): the contract is then only checked on an empty list for them. Strict: a case that
# makes one find something must remove it from here.
FINDS_NOTHING_IN_RULES_TESTS = {
    "metric_thresholds": "no case gives a prometheus.query sample over a playbook's threshold",
}


@pytest.mark.parametrize("name", NAMES)
def test_the_medic_test_evidence_of_its_playbooks(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    analyzer = ANALYZERS[name]
    mine = [s for s in RULES_TESTS if uses(name, s.playbook)]
    assert mine
    found = 0
    for scenario in mine:
        try:
            found += len(assert_contract(analyzer, scenario, monkeypatch))
        except AssertionError as exc:
            raise AssertionError(f"{scenario.name}: {exc}") from exc
    # Non-empty, so the checks above ran on findings; the exceptions are listed (strictly).
    assert bool(found) == (name not in FINDS_NOTHING_IN_RULES_TESTS), (name, found)


# ---------------------------------------------------------------- (b, c) real collector output

_REAL: list[Evidence] = []


async def collect_real_evidence(
    redis_factory: RedisServerFactory, prometheus_factory: PrometheusFactory
) -> list[Evidence]:
    """Every catalogue collector's evidence from the collector contract's planted worlds (one
    world per backend), collected once for the module."""
    from tests.contract.test_collector_contract import COLLECTORS, family, planted, run

    if _REAL:
        return _REAL
    families: dict[str, list[str]] = {}
    for collector in sorted(COLLECTORS):
        families.setdefault(family(collector), []).append(collector)
    for names in families.values():
        async with planted(names[0], redis_factory, prometheus_factory) as (backends, pods):
            for collector in names:
                _REAL.append(await run(collector, backends, 10.0, pods))
    return _REAL


@pytest.fixture
async def real_evidence(
    redis_server_factory: RedisServerFactory, prometheus_factory: PrometheusFactory
) -> list[Evidence]:
    return await collect_real_evidence(redis_server_factory, prometheus_factory)


@pytest.mark.integration
@pytest.mark.parametrize("name", NAMES)
async def test_real_collector_output(
    name: str, real_evidence: list[Evidence], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert {e.collector for e in real_evidence} == set(REGISTRY.collectors)
    assert all(e.ok for e in real_evidence), [(e.collector, e.error) for e in real_evidence if not e.ok]
    analyzer = ANALYZERS[name]
    alerts = [
        firing({"alertname": "Contract", "namespace": NS, "deployment": APP, "pod": pod}, NOW, i)
        for i, pod in enumerate(["playcode-app-1", "playcode-app-2"])
    ]
    for playbook in PLAYBOOKS:
        if uses(name, playbook):
            for target in TARGETS:
                scenario = Scenario(f"real/{playbook.name}", playbook, target, alerts, list(real_evidence))
                assert_contract(analyzer, scenario, monkeypatch)


# (d) importing an analyzer's module loads no I/O library: tests/unit/test_layout.py checks it
# for every module of the pure core (test_the_pure_core_loads_no_io_library).
