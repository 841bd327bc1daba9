"""Which rules an alert goes to (first match wins, ``continue: true`` goes on), and the
coalescing key that makes one incident per (rule, target)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from medic.domain.alert import Alert
from medic.domain.incident import Target
from medic.rules.labels import subject_labels
from medic.rules.matchers import Matcher
from medic.rules.model import Rule

UNMATCHED = "-"


@dataclass(frozen=True)
class RouteStep:
    """One rule tried for an alert: ``failed`` is the first of its matchers the labels fail
    (None: the rule matches)."""

    rule: Rule
    failed: Matcher | None

    @property
    def matched(self) -> bool:
        return self.failed is None


def route_steps(labels: Mapping[str, str], rules: Sequence[Rule]) -> list[RouteStep]:
    """The rules tried for an alert's labels, in order, up to the first match without
    ``continue: true``. Matchers see the subject's labels (an ``exported_<name>`` stands for
    ``<name>``: see :func:`medic.rules.labels.subject_labels`). ``medic rules test`` prints these."""
    subject = subject_labels(labels)
    out: list[RouteStep] = []
    for rule in rules:
        failed = next((m for m in rule.parsed_matchers if not m.matches(subject)), None)
        out.append(RouteStep(rule, failed))
        if failed is None and not rule.continue_:
            break
    return out


def matching_rules(alert: Alert, rules: Sequence[Rule]) -> list[Rule]:
    """Rules for ``alert`` in order. A resolved alert is routed by labels alone, so that it finds
    the incident its firing opened; the ``status`` filter decides only what may open one."""
    return [step.rule for step in route_steps(alert.labels, rules) if step.matched]


def coalescing_key(rule: Rule | None, target: Target | None, labels: Mapping[str, str]) -> str:
    head = rule.name if rule else UNMATCHED
    if target is not None:
        return f"{head}|{target.key}"
    labels = subject_labels(labels)
    return f"{head}|alert/{labels.get('namespace', '')}/{labels.get('alertname', '')}"
