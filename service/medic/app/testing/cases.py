"""``medic test`` files: the format (pydantic, checked at load with file and line), the run of
each case through :func:`medic.app.testing.evaluate.evaluate`, and the comparison with what the
case expects (a list of differences, empty when it passed). docs/testing-rules.md shows the format.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, model_validator

from medic.analysis.verification import WINDOW_STEP, Window
from medic.app.config import Config
from medic.app.pipeline import ANALYZER_ERROR, analyzers_of
from medic.app.testing.evaluate import (
    NO_ACTION,
    WOULD_ACT,
    Case,
    ClusterFacts,
    HistoryEntry,
    Outcome,
    Policy,
    evaluate,
    own_steps,
    route,
)
from medic.app.testing.fixtures import case_fields
from medic.app.yamlsource import YamlDoc, load_yaml_file
from medic.collectors.output_base import unknown_keys
from medic.domain.actions import Precondition
from medic.domain.errors import ConfigError, ConfigErrors
from medic.domain.evidence import Evidence, StepStatus
from medic.domain.incident import IncidentAlert
from medic.incidents.views import IncidentView
from medic.playbooks.compiled import CompiledPlaybook
from medic.playbooks.contract import Registry

ActionExpectation = Literal["would_act", "planned", "awaiting_approval", "refused", "none"]
_ENVELOPE = {"status", "data", "error", "truncated", "duration_ms"}
BUNDLED = {"alerts", "evidence", "history", "cluster", "kill_switch"}  # what a bundle gives a case


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AlertFixture(_Strict):
    labels: dict[str, str]
    annotations: dict[str, str] = Field(default_factory=dict)
    status: Literal["firing", "resolved"] = "firing"
    startsAt: AwareDatetime | None = None  # default: the test's now


class HistoryFixture(_Strict):
    action: str
    at: AwareDatetime
    status: Literal["started", "succeeded", "failed", "skipped"] = "succeeded"
    detail: dict[str, Any] = Field(default_factory=dict)
    # another target (kind/namespace/name, or kind/name): the global budget counts it
    target: str | None = Field(default=None, pattern=r"^[a-z]+/[a-z0-9.-]+(/[A-Za-z0-9._:-]+)?$")


class PreconditionFixture(_Strict):
    ok: bool
    reason: str = ""


class ClusterFixture(_Strict):
    preconditions: dict[str, bool | PreconditionFixture] = Field(default_factory=dict)
    annotations: dict[str, str] | None = None
    labels: dict[str, str] | None = None
    revision_hash: str | None = None


class ActionFixture(_Strict):
    name: str | None = None
    status: ActionExpectation


class Expectation(_Strict):
    rule: str | None = None
    target: str | None = None
    findings: list[str] = Field(default_factory=list)
    not_findings: list[str] = Field(default_factory=list)
    action: ActionFixture | None = None
    refused_by: list[str] | None = None

    @model_validator(mode="after")
    def _expects_something(self) -> Expectation:
        checks = self.model_fields_set & {"rule", "target", "action"}
        checks |= {"findings"} if self.findings else set()
        checks |= {"not_findings"} if self.not_findings else set()
        checks |= {"refused_by"} if self.refused_by is not None else set()
        if not checks:
            raise ValueError(
                "expect checks nothing (empty lists and a null refused_by check nothing), "
                "so the test could never fail"
            )
        return self


class TestCase(_Strict):
    name: str = Field(min_length=1)
    now: AwareDatetime  # with its time zone (Z or +hh:mm): the guards compare it with stored times
    mode: Literal["off", "dry-run", "enforce"] = "dry-run"
    namespaces: list[str] | None = None  # default: MEDIC_NAMESPACES
    kill_switch: bool = False
    alerts: list[AlertFixture] = Field(default_factory=list)
    evidence: dict[str, Any] = Field(default_factory=dict)
    history: list[HistoryFixture] = Field(default_factory=list)
    cluster: ClusterFixture = Field(default_factory=ClusterFixture)
    bundle: str | None = None
    expect: Expectation


class TestFile(_Strict):
    rules_dir: str | None = None
    playbooks_dir: str | None = None
    tests: list[dict[str, Any]] = Field(min_length=1)


@dataclass
class Difference:
    field: str
    expected: Any
    got: Any


@dataclass
class Result:
    name: str
    file: str
    line: int | None
    differences: list[Difference] = field(default_factory=list)
    got: dict[str, Any] = field(default_factory=dict)
    expect: dict[str, Any] = field(default_factory=dict)  # what the test sets

    @property
    def passed(self) -> bool:
        return not self.differences

    def document(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "file": self.file,
            "line": self.line,
            "passed": self.passed,
            "differences": [
                {"field": d.field, "expected": d.expected, "got": d.got} for d in self.differences
            ],
            "expect": self.expect,
            "got": self.got,
        }


ConfigLoader = Callable[[Path, Path], Config]


@dataclass
class Defaults:
    rules_dir: Path
    playbooks_dir: Path
    policy: Policy


def run_file(path: Path, load: ConfigLoader, registry: Registry, defaults: Defaults) -> list[Result]:
    """Every test of one file; raise ConfigError (file and line) when the file or its
    configuration is invalid."""
    doc = load_yaml_file(path)
    try:
        spec = TestFile.model_validate(doc.data)
    except ValidationError as exc:
        raise ConfigErrors(doc.errors_from(exc)) from None
    base = path.parent
    rules_dir = (base / spec.rules_dir) if spec.rules_dir else defaults.rules_dir
    playbooks_dir = (base / spec.playbooks_dir) if spec.playbooks_dir else defaults.playbooks_dir
    for key, given in (("rules_dir", spec.rules_dir), ("playbooks_dir", spec.playbooks_dir)):
        if given and not (base / given).is_dir():
            raise ConfigError(
                f"{key} {given!r}: no such directory ({base / given})",
                file=doc.file,
                line=doc.line_of((key,)),
                field=key,
            )
    config = load(rules_dir, playbooks_dir)
    return [
        _run_one(doc, idx, raw, base, config, registry, defaults.policy) for idx, raw in enumerate(spec.tests)
    ]


def _run_one(
    doc: YamlDoc,
    idx: int,
    raw: dict[str, Any],
    base: Path,
    config: Config,
    registry: Registry,
    policy: Policy,
) -> Result:
    loc: tuple[str | int, ...] = ("tests", idx)
    raw = dict(raw)
    if isinstance(raw.get("bundle"), str):
        line = doc.line_of((*loc, "bundle"))
        if both := sorted(BUNDLED & set(raw)):
            raise ConfigError(
                f"bundle gives the case's {', '.join(sorted(BUNDLED))}: "
                f"remove {', '.join(both)} or the bundle",
                file=doc.file,
                line=line,
                field=f"tests.{idx}.bundle",
            )
        raw |= _bundle_fields(base / raw["bundle"], doc.file, line)
    try:
        case = TestCase.model_validate(raw)
    except ValidationError as exc:
        raise ConfigErrors(located(doc, exc, loc)) from None
    built = _case(case, doc, loc, config, registry)
    pol = Policy(
        mode=case.mode,
        namespaces=case.namespaces if case.namespaces is not None else policy.namespaces,
        global_budget_count=policy.global_budget_count,
        global_budget_window=policy.global_budget_window,
        flap_window=policy.flap_window,
        kill_switch=case.kill_switch,
    )
    _check_action_name(case.expect, built, config, doc, loc)
    _check_history(case, config, doc, loc)
    _check_codes(case.expect, built, config, registry, doc, loc)
    outcome = evaluate(built, config, registry, pol)
    expect = case.expect.model_dump(mode="json", exclude_unset=True)
    return Result(
        case.name, doc.file, doc.line_of(loc), compare(case.expect, outcome), outcome.document(), expect
    )


def _check_codes(
    expect: Expectation,
    case: Case,
    config: Config,
    registry: Registry,
    doc: YamlDoc,
    loc: tuple[str | int, ...],
) -> None:
    """An expected finding code must be one the playbook's analyzers declare (a misspelt code in
    ``not_findings`` would pass forever, in ``findings`` fail for the wrong reason)."""
    rule = route(case.alerts, config)
    playbook = config.playbook_of(rule)
    if playbook is None:
        if expect.not_findings:  # nothing is diagnosed: it could never fail
            raise ConfigError(
                "no playbook runs for these alerts (no rule with one matches): not_findings could never fail",
                file=doc.file,
                line=doc.line_of((*loc, "expect", "not_findings")),
                field=f"tests.{loc[1]}.expect.not_findings",
            )
        return
    analyzers = analyzers_of(registry, playbook)
    for key in ("findings", "not_findings"):
        for i, code in enumerate(getattr(expect, key)):
            if code == ANALYZER_ERROR or any(a.declares(code) for a in analyzers):
                continue
            raise ConfigError(
                f"no analyzer of playbook {playbook.name} returns {code!r} "
                f"(its analyzers: {', '.join(a.name for a in analyzers)}; docs/findings.md lists the codes)",
                file=doc.file,
                line=doc.line_of((*loc, "expect", key, i)),
                field=f"tests.{loc[1]}.expect.{key}.{i}",
            )


def _check_history(case: TestCase, config: Config, doc: YamlDoc, loc: tuple[str | int, ...]) -> None:
    """A past action must be one some playbook defines (a misspelt one would count for nothing
    the rule reads, or for the wrong thing)."""
    known = {name for p in config.playbooks.values() for name in p.actions}
    for i, h in enumerate(case.history):
        if h.action not in known:
            raise ConfigError(
                f"no playbook has an action {h.action!r} (actions: {', '.join(sorted(known)) or 'none'})",
                file=doc.file,
                line=doc.line_of((*loc, "history", i, "action")),
                field=f"tests.{loc[1]}.history.{i}.action",
            )


def _check_action_name(
    expect: Expectation, case: Case, config: Config, doc: YamlDoc, loc: tuple[str | int, ...]
) -> None:
    """An expected action name must be one of the playbook's actions (a misspelt name would
    otherwise pass every test that expects no action)."""
    name = expect.action.name if expect.action else None
    named = next((r for r in config.rules if r.name == expect.rule), None)
    rule = named if expect.rule else route(case.alerts, config)
    playbook = config.playbook_of(rule)
    if name is None or playbook is None or name in playbook.actions:
        return
    raise ConfigError(
        f"playbook {playbook.name} has no action {name!r} "
        f"(its actions: {', '.join(playbook.actions) or 'none'})",
        file=doc.file,
        line=doc.line_of((*loc, "expect", "action", "name")),
        field=f"tests.{loc[1]}.expect.action.name",
    )


def case_from_fields(fields: dict[str, Any], config: Config, registry: Registry) -> Case:
    """A case from stored fields (:func:`medic.app.testing.fixtures.case_fields`), no expectation."""
    case = TestCase.model_validate(fields | {"name": "stored incident", "expect": {"rule": None}})
    return _case(case, YamlDoc("<stored incident>", fields), ("tests", 0), config, registry, strict=False)


def _bundle_fields(bundle: Path, file: str, line: int | None) -> dict[str, Any]:
    """A bundle: an incident document (``incidents show -o json``) or a file of case fields."""
    try:
        data = json.loads(bundle.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read bundle {bundle}: {exc}", file=file, line=line) from exc
    except json.JSONDecodeError as exc:
        raise ConfigError(f"invalid JSON at {exc.lineno}:{exc.colno}: {exc.msg}", file=str(bundle)) from exc
    if not isinstance(data, dict):
        raise ConfigError("a bundle must be a JSON object", file=str(bundle))
    if "id" in data and isinstance(data.get("evidence"), list):
        try:
            view = IncidentView.from_document(data)
        except ValidationError as exc:
            raise ConfigError(
                f"not an incident document: {exc.errors()[0]['msg']}", file=str(bundle)
            ) from exc
        data = {k: v for k, v in case_fields(view).items() if k in BUNDLED}
    elif unknown := sorted(set(data) - BUNDLED):
        raise ConfigError(
            f"a bundle of case fields holds only {', '.join(sorted(BUNDLED))}: not {', '.join(unknown)}",
            file=str(bundle),
        )
    return data | {"bundle": None}


def _case(
    case: TestCase,
    doc: YamlDoc,
    loc: tuple[str | int, ...],
    config: Config,
    registry: Registry,
    *,
    strict: bool = True,
) -> Case:
    """The case to evaluate; ``strict``: evidence for a step the playbook lacks is an error (a
    stored incident replayed under a changed playbook only drops it). Evidence a collector
    returned is read through the collector's output model, as the analyzers read it: data of
    another shape is an error naming the field (an analyzer would not see it)."""
    alerts = [
        IncidentAlert(
            identity=_identity(a.labels),
            status=a.status,
            labels=a.labels,
            annotations=a.annotations,
            startsAt=a.startsAt or case.now,
            first_seen=case.now,
            last_seen=case.now,
        )
        for a in case.alerts
    ]
    rule = route(alerts, config)
    playbook = config.playbook_of(rule)
    evidence = _case_evidence(case, playbook, doc, loc, registry, strict=strict)
    pre = [
        Precondition(name, p if isinstance(p, bool) else p.ok, p.reason if not isinstance(p, bool) else name)
        for name, p in case.cluster.preconditions.items()
    ]
    return Case(
        alerts=alerts,
        evidence=evidence,
        now=case.now,
        history=[HistoryEntry(h.action, h.at, h.status, h.detail, h.target) for h in case.history],
        cluster=ClusterFacts(
            preconditions=pre,
            annotations=case.cluster.annotations,
            labels=case.cluster.labels,
            revision_hash=case.cluster.revision_hash,
        ),
    )


def _case_evidence(
    case: TestCase,
    playbook: CompiledPlaybook | None,
    doc: YamlDoc,
    loc: tuple[str | int, ...],
    registry: Registry,
    *,
    strict: bool,
) -> dict[str, Evidence]:
    """The case's evidence by step, each checked against its collector's output model."""
    steps = {s.step_id: s.collector.name for s in playbook.steps} if playbook else {}
    steps |= {step: step for step in own_steps(playbook)} if playbook else {}
    evidence: dict[str, Evidence] = {}
    for step, value in case.evidence.items():
        if playbook is not None and step not in steps:
            if not strict:
                continue
            known = ", ".join(steps) or "none"
            raise ConfigError(
                f"playbook {playbook.name} has no step {step!r} (its steps: {known})",
                file=doc.file,
                line=doc.line_of((*loc, "evidence", step)),
                field=f"tests.{loc[1]}.evidence.{step}",
            )
        ev = fixture_evidence(step, steps.get(step, step.split("#")[0]), value, case.now)
        at: tuple[str | int, ...] = (*loc, "evidence", step)
        _check_shape(ev, registry, doc, (*at, "data") if _is_envelope(value) else at, strict=strict)
        evidence[step] = ev
    return evidence


def _check_shape(
    ev: Evidence, registry: Registry, doc: YamlDoc, loc: tuple[str | int, ...], *, strict: bool = True
) -> None:
    """Data of a step that succeeded must read as its collector's output model (the verification
    window as the verifier's record): a misspelt or wrongly typed field is an error at load, not a
    finding that silently goes missing."""
    collector = registry.collectors.get(ev.collector)
    model = Window if ev.collector == WINDOW_STEP else collector.output if collector else None
    if model is None or not ev.ok or ev.data is None:
        return
    try:
        model.model_validate(ev.data)
    except ValidationError as exc:
        raise ConfigErrors(located(doc, exc, loc, f"{ev.collector} output: ")) from None
    if strict and (unknown := unknown_keys(model, ev.data)):
        raise ConfigErrors(
            [
                ConfigError(
                    f"{ev.collector} output has no field {path[-1]!r} "
                    "(a misspelt field would read as its default)",
                    file=doc.file,
                    line=doc.line_of((*loc, *path)),
                    field=".".join(str(p) for p in (*loc, *path)),
                )
                for path in unknown
            ]
        )


def located(
    doc: YamlDoc, exc: ValidationError, loc: tuple[str | int, ...], say: str = ""
) -> list[ConfigError]:
    """The validation errors of the part of the file at ``loc``, each with its line and its full
    field path (``tests.0.alerts.0.labels.code``)."""
    where = ".".join(str(p) for p in loc)
    return [
        ConfigError(
            f"{say}{e.message}", file=e.file, line=e.line, field=where + (f".{e.field}" if e.field else "")
        )
        for e in doc.errors_from(exc, base=loc)
    ]


def _is_envelope(value: Any) -> bool:
    """``{status: timeout}``: a status with data/error/truncated, not the collector's data itself."""
    statuses = {s.value for s in StepStatus}
    return isinstance(value, dict) and value.get("status") in statuses and set(value) <= _ENVELOPE


def as_json(value: Any) -> Any:
    """Evidence as a collector stores it, JSON: a timestamp YAML read as a datetime
    (``created: 2026-12-01T09:52:00Z`` unquoted) becomes the ISO text the collector writes."""
    if isinstance(value, dict):
        return {k: as_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [as_json(v) for v in value]
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


def fixture_evidence(step: str, collector: str, value: Any, now: datetime) -> Evidence:
    """``{status: timeout}`` (an envelope: status with data/error/truncated) or the data itself."""
    value = as_json(value)
    if _is_envelope(value):
        return Evidence(
            step=step,
            collector=collector,
            status=StepStatus(value["status"]),
            started_at=now - timedelta(seconds=1),
            data=value.get("data"),
            error=value.get("error"),
            truncated=bool(value.get("truncated")),
        )
    return Evidence(step=step, collector=collector, status=StepStatus.OK, started_at=now, data=value)


def _identity(labels: dict[str, str]) -> str:
    canon = "\x00".join(f"{k}\x01{v}" for k, v in sorted(labels.items()))
    return hashlib.sha256(canon.encode()).hexdigest()[:16]


def compare(expect: Expectation, got: Outcome) -> list[Difference]:
    """What differs between the expectation and the outcome (only the fields the test sets)."""
    out: list[Difference] = []
    given = expect.model_fields_set
    if "rule" in given and expect.rule != got.rule:
        out.append(Difference("rule", expect.rule, got.rule))
    if "target" in given and expect.target != got.target:
        out.append(Difference("target", expect.target, got.target))
    codes = [f.code for f in got.findings]
    missing = [c for c in expect.findings if c not in codes]
    if missing:
        out.append(Difference("findings", f"includes {', '.join(missing)}", codes))
    present = [c for c in expect.not_findings if c in codes]
    if present:
        out.append(Difference("not_findings", f"none of {', '.join(present)}", codes))
    if "action" in given:
        want = expect.action or ActionFixture(status=NO_ACTION)
        if want.status != got.status:
            shown = f"{got.status} ({got.reason})" if got.status in ("refused", NO_ACTION) else got.status
            out.append(Difference("action.status", want.status, shown))
        if want.name is not None and got.action is not None and want.name != got.action:
            out.append(Difference("action.name", want.name, got.action))
    if expect.refused_by is not None and sorted(expect.refused_by) != sorted(got.refused_by):
        out.append(Difference("refused_by", sorted(expect.refused_by), sorted(got.refused_by)))
    return out


__all__ = ["WOULD_ACT", "Defaults", "Difference", "Result", "compare", "run_file"]
