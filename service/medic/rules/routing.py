"""Which rules an alert goes to (first match wins, ``continue: true`` goes on), and the
coalescing key that makes one incident per (rule, target)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from medic.domain.alert import Alert
from medic.domain.incident import Target
from medic.rules.labels import subject_labels
from medic.rules.model import Rule

UNMATCHED = "-"


def matching_rules(alert: Alert, rules: Sequence[Rule]) -> list[Rule]:
    """Rules for ``alert`` in order. A resolved alert is routed by labels alone, so that it finds
    the incident its firing opened; the ``status`` filter decides only what may open one.
    Matchers see the subject's labels (an ``exported_<name>`` stands for ``<name>``: see
    :func:`medic.rules.labels.subject_labels`)."""
    labels = subject_labels(alert.labels)
    out: list[Rule] = []
    for rule in rules:
        if rule.matches(labels):
            out.append(rule)
            if not rule.continue_:
                break
    return out


def coalescing_key(rule: Rule | None, target: Target | None, labels: Mapping[str, str]) -> str:
    head = rule.name if rule else UNMATCHED
    if target is not None:
        return f"{head}|{target.key}"
    labels = subject_labels(labels)
    return f"{head}|alert/{labels.get('namespace', '')}/{labels.get('alertname', '')}"
