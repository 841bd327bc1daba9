"""Load and cross-check rules and playbooks. Every error names file, line, rule and field.

``load_config`` collects every problem it finds (``medic check`` prints them all) and raises
:class:`ConfigErrors`; on success it returns a :class:`Config` whose step and action params are
already instances of the registered pydantic models.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from medic.app.yamlsource import YamlDoc, load_yaml_file
from medic.domain.errors import ConfigError, ConfigErrors
from medic.playbooks.compiled import CompiledAction, CompiledPlaybook, CompiledStep
from medic.playbooks.contract import AnalyzerDef, Registry
from medic.playbooks.model import Playbook
from medic.rules.model import Rule


@dataclass
class Config:
    rules: list[Rule] = field(default_factory=list)
    playbooks: dict[str, CompiledPlaybook] = field(default_factory=dict)
    rule_files: dict[str, str] = field(default_factory=dict)

    def playbook_of(self, rule: Rule | None) -> CompiledPlaybook | None:
        """The playbook a rule runs (None: no rule, or a rule that only records)."""
        return self.playbooks.get(rule.playbook) if rule is not None and rule.playbook else None


def _yaml_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise ConfigError("no such file or directory", file=str(path))
    return sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())


def _load_docs(paths: list[Path], errors: list[ConfigError]) -> list[YamlDoc]:
    docs = []
    for path in paths:
        try:
            for file in _yaml_files(path):
                try:
                    docs.append(load_yaml_file(file))
                except ConfigError as exc:
                    errors.append(exc)
        except ConfigError as exc:
            errors.append(exc)
    return docs


def _unknown(
    what: str,
    name: str,
    known: dict[str, Any],
    doc: YamlDoc,
    loc: tuple[str | int, ...],
    where: str,
    field: str,
) -> ConfigError:
    names = ", ".join(sorted(known)) or "none"
    return ConfigError(
        f"unknown {what} {name!r}; known: {names}",
        file=doc.file,
        line=doc.line_of(loc),
        rule=where,
        field=field,
    )


def _compile_playbook(
    doc: YamlDoc, raw: Any, registry: Registry, errors: list[ConfigError]
) -> CompiledPlaybook | None:
    try:
        pb = Playbook.model_validate(raw)
    except ValidationError as exc:
        name = raw.get("name") if isinstance(raw, dict) else None
        errors.extend(doc.errors_from(exc, rule=f"playbook {name}" if name else None))
        return None
    steps = _compile_steps(doc, pb, registry, errors)
    analyzers = _compile_analyzers(doc, pb, registry, errors)
    actions = _compile_actions(doc, pb, registry, errors)
    return CompiledPlaybook(pb, doc.file, steps, analyzers, actions)


def _compile_steps(
    doc: YamlDoc, pb: Playbook, registry: Registry, errors: list[ConfigError]
) -> list[CompiledStep]:
    """Each ``collect`` step with its params validated by the collector's model."""
    where = f"playbook {pb.name}"
    steps: list[CompiledStep] = []
    for i, (step, step_id) in enumerate(zip(pb.collect, pb.step_ids(), strict=True)):
        collector = registry.collectors.get(step.use)
        if collector is None:
            errors.append(
                _unknown(
                    "collector", step.use, registry.collectors, doc, ("collect", i), where, f"collect.{i}"
                )
            )
            continue
        try:
            params = collector.params.model_validate(step.params)
        except ValidationError as exc:
            base = ("collect", i, step.use) if ("collect", i, step.use) in doc.lines else ("collect", i)
            for err in doc.errors_from(exc, base=base, rule=where):
                err.field = f"collect.{i}.{step.use}" + (f".{err.field}" if err.field else "")
                errors.append(err)
            continue
        timeout = step.timeout.total_seconds() if step.timeout else None
        steps.append(CompiledStep(step_id, collector, params, timeout))
    return steps


def _compile_analyzers(
    doc: YamlDoc, pb: Playbook, registry: Registry, errors: list[ConfigError]
) -> list[AnalyzerDef]:
    where = f"playbook {pb.name}"
    analyzers = []
    for i, name in enumerate(pb.analyze):
        if name not in registry.analyzers:
            errors.append(
                _unknown("analyzer", name, registry.analyzers, doc, ("analyze", i), where, f"analyze.{i}")
            )
        else:
            analyzers.append(registry.analyzers[name])
    return analyzers


def _compile_actions(
    doc: YamlDoc, pb: Playbook, registry: Registry, errors: list[ConfigError]
) -> dict[str, CompiledAction[Any]]:
    """Each action of the playbook: known, able to act on the playbook's target kind, and its
    params validated by the action's model."""
    where = f"playbook {pb.name}"
    actions: dict[str, CompiledAction[Any]] = {}
    for name, spec in pb.actions.items():
        action = registry.actions.get(spec.use)
        if action is None:
            errors.append(
                _unknown(
                    "action", spec.use, registry.actions, doc, ("actions", name), where, f"actions.{name}.use"
                )
            )
            continue
        if pb.target not in action.target_kinds:
            errors.append(
                ConfigError(
                    f"action {spec.use!r} works on {', '.join(action.target_kinds)}, "
                    f"not on the playbook's target {pb.target!r}",
                    file=doc.file,
                    line=doc.line_of(("actions", name)),
                    rule=where,
                    field=f"actions.{name}.use",
                )
            )
            continue
        try:
            params = action.params.model_validate(spec.params)
        except ValidationError as exc:
            for err in doc.errors_from(exc, base=("actions", name), rule=where):
                err.field = f"actions.{name}" + (f".{err.field}" if err.field else "")
                errors.append(err)
            continue
        actions[name] = CompiledAction(name, spec, action, params)
    return actions


def _items(doc: YamlDoc, key: str, errors: list[ConfigError]) -> tuple[list[Any], tuple[str, ...]]:
    data = doc.data
    if data is None:
        return [], ()
    if isinstance(data, dict) and key in data:
        items = data[key]
        base: tuple[str, ...] = (key,)
        if not isinstance(items, list):
            errors.append(ConfigError(f"{key!r} must be a list", file=doc.file, line=doc.line_of((key,))))
            return [], base
        return items, base
    if isinstance(data, list):
        return data, ()
    if isinstance(data, dict):
        return [data], ()
    errors.append(ConfigError(f"expected a list of {key}", file=doc.file, line=1))
    return [], ()


def load_config(rules_paths: list[Path], playbooks_paths: list[Path], registry: Registry) -> Config:
    errors: list[ConfigError] = []
    config = Config()
    _load_playbooks(playbooks_paths, registry, config, errors)
    _load_rules(rules_paths, config, errors)
    if errors:
        raise ConfigErrors(errors)
    return config


def _load_playbooks(
    paths: list[Path], registry: Registry, config: Config, errors: list[ConfigError]
) -> None:
    """Every playbook of the files into ``config`` (a name defined twice is an error)."""
    playbook_files: dict[str, str] = {}
    for doc in _load_docs(paths, errors):
        items, base = _items(doc, "playbooks", errors)
        for idx, raw in enumerate(items):
            if base or isinstance(doc.data, list):
                sub = YamlDoc(
                    doc.file,
                    raw,
                    {
                        k[len(base) + 1 :]: v
                        for k, v in doc.lines.items()
                        if k[: len(base) + 1] == (*base, idx)
                    },
                )
            else:
                sub = doc
            compiled = _compile_playbook(sub, raw, registry, errors)
            if compiled is None:
                continue
            if compiled.name in config.playbooks:
                errors.append(
                    ConfigError(
                        f"playbook {compiled.name!r} is also defined in {playbook_files[compiled.name]}",
                        file=doc.file,
                        line=sub.line_of(("name",)),
                        field="name",
                    )
                )
                continue
            config.playbooks[compiled.name] = compiled
            playbook_files[compiled.name] = doc.file


def _load_rules(paths: list[Path], config: Config, errors: list[ConfigError]) -> None:
    """Every rule of the files into ``config``, its playbook and action references checked
    against the playbooks loaded (a name used twice is an error)."""
    for doc in _load_docs(paths, errors):
        items, base = _items(doc, "rules", errors)
        for idx, raw in enumerate(items):
            loc: tuple[str | int, ...] = (*base, idx) if (base or isinstance(doc.data, list)) else ()
            name = raw.get("name") if isinstance(raw, dict) else None
            label = f"rule {name}" if name else f"rule #{idx + 1}"
            try:
                rule = Rule.model_validate(raw)
            except ValidationError as exc:
                errors.extend(doc.errors_from(exc, base=loc, rule=label))
                continue
            if rule.name in config.rule_files:
                errors.append(
                    ConfigError(
                        f"rule name is also used in {config.rule_files[rule.name]}",
                        file=doc.file,
                        line=doc.line_of((*loc, "name")),
                        rule=label,
                        field="name",
                    )
                )
                continue
            errors.extend(_check_rule_refs(rule, config, doc, loc, label))
            config.rules.append(rule)
            config.rule_files[rule.name] = doc.file


def _check_rule_refs(
    rule: Rule, config: Config, doc: YamlDoc, loc: tuple[str | int, ...], label: str
) -> list[ConfigError]:
    if rule.playbook is None:
        return []
    pb = config.playbooks.get(rule.playbook)
    if pb is None:
        known = ", ".join(sorted(config.playbooks)) or "none"
        return [
            ConfigError(
                f"unknown playbook {rule.playbook!r}; known: {known}",
                file=doc.file,
                line=doc.line_of((*loc, "playbook")),
                rule=label,
                field="playbook",
            )
        ]
    if rule.remediation is not None:
        action = pb.actions.get(rule.remediation.action)
        if action is None:
            known = ", ".join(sorted(pb.actions)) or "none"
            return [
                ConfigError(
                    f"playbook {pb.name!r} has no action {rule.remediation.action!r}; known: {known}",
                    file=doc.file,
                    line=doc.line_of((*loc, "remediation", "action")),
                    rule=label,
                    field="remediation.action",
                )
            ]
        if action.action.approve_only and rule.remediation.mode == "auto":
            return [
                ConfigError(
                    f"action {action.action.name!r} may only run with mode approve or dry-run",
                    file=doc.file,
                    line=doc.line_of((*loc, "remediation", "mode")),
                    rule=label,
                    field="remediation.mode",
                )
            ]
    return []
