"""Label and field selectors, parsed and matched the way kube-apiserver does.

Label selectors support ``k=v``, ``k==v``, ``k!=v``, ``k in (a,b)``, ``k notin (a,b)``,
``k`` (exists) and ``!k`` (does not exist). Field selectors support ``=``, ``==`` and ``!=`` on
the fields a resource type allows (anything else is a 400 like the real server).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any


class SelectorError(ValueError):
    """The selector string does not parse, or names an unsupported field (HTTP 400)."""


_NAME = r"[A-Za-z0-9](?:[-A-Za-z0-9_.]*[A-Za-z0-9])?"
_KEY = rf"(?:{_NAME}/)?{_NAME}"
_VALUE = rf"(?:{_NAME})?"

_RE_SET = re.compile(rf"({_KEY})\s+(in|notin)\s*\((.*)\)")
_RE_NOT_EXISTS = re.compile(rf"!\s*({_KEY})")
_RE_EQUALITY = re.compile(rf"({_KEY})\s*(==|!=|=)\s*({_VALUE})")
_RE_EXISTS = re.compile(_KEY)
_RE_VALUE = re.compile(_VALUE)
_RE_FIELD = re.compile(r"([^=!\s]+)\s*(==|!=|=)\s*(.*)")


@dataclass(frozen=True)
class Requirement:
    """One label requirement. ``op`` is one of ``= != in notin exists !``."""

    key: str
    op: str
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        if self.op == "=":
            return present and value == self.values[0]
        if self.op == "!=":
            return not present or value != self.values[0]
        if self.op == "in":
            return present and value in self.values
        if self.op == "notin":
            return not present or value not in self.values
        if self.op == "exists":
            return present
        return not present  # "!"


def _split_top_level(text: str) -> list[str]:
    parts: list[str] = []
    depth = 0
    current: list[str] = []
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth < 0:
                raise SelectorError(f"unable to parse requirement: unbalanced ')' in {text!r}")
        if char == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    if depth != 0:
        raise SelectorError(f"unable to parse requirement: unbalanced '(' in {text!r}")
    parts.append("".join(current))
    return parts


def parse_label_selector(text: str | None) -> list[Requirement]:
    """Parse a label selector string; an empty string selects everything."""
    if text is None or not text.strip():
        return []
    requirements: list[Requirement] = []
    for raw in _split_top_level(text):
        term = raw.strip()
        if not term:
            raise SelectorError(f"unable to parse requirement: empty term in {text!r}")
        if m := _RE_SET.fullmatch(term):
            values = tuple(v.strip() for v in m.group(3).split(","))
            if not m.group(3).strip() or any(not _RE_VALUE.fullmatch(v) for v in values):
                raise SelectorError(f"unable to parse requirement: invalid values in {term!r}")
            requirements.append(Requirement(m.group(1), m.group(2), values))
        elif m := _RE_NOT_EXISTS.fullmatch(term):
            requirements.append(Requirement(m.group(1), "!"))
        elif m := _RE_EQUALITY.fullmatch(term):
            op = "=" if m.group(2) in ("=", "==") else "!="
            requirements.append(Requirement(m.group(1), op, (m.group(3),)))
        elif _RE_EXISTS.fullmatch(term):
            requirements.append(Requirement(term, "exists"))
        else:
            raise SelectorError(f"unable to parse requirement: {term!r}")
    return requirements


def requirements_from_label_selector(selector: Mapping[str, Any] | None) -> list[Requirement]:
    """Requirements of a ``metav1.LabelSelector`` object (matchLabels + matchExpressions)."""
    if not selector:
        return []
    reqs = [Requirement(k, "=", (str(v),)) for k, v in (selector.get("matchLabels") or {}).items()]
    ops = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!"}
    for expr in selector.get("matchExpressions") or []:
        op = ops.get(str(expr.get("operator")))
        if op is None:
            raise SelectorError(f"unsupported selector operator {expr.get('operator')!r}")
        reqs.append(Requirement(str(expr["key"]), op, tuple(expr.get("values") or ())))
    return reqs


def label_selector_string(selector: Mapping[str, Any] | None) -> str:
    """Render a LabelSelector object as the string form (as ``Scale.status.selector``)."""
    parts: list[str] = []
    for req in requirements_from_label_selector(selector):
        if req.op == "=":
            parts.append(f"{req.key}={req.values[0]}")
        elif req.op in ("in", "notin"):
            parts.append(f"{req.key} {req.op} ({','.join(req.values)})")
        elif req.op == "exists":
            parts.append(req.key)
        else:
            parts.append(f"!{req.key}")
    return ",".join(parts)


def match_labels(requirements: Iterable[Requirement], labels: Mapping[str, str] | None) -> bool:
    labels = labels or {}
    return all(req.matches(labels) for req in requirements)


@dataclass(frozen=True)
class FieldRequirement:
    field: str
    op: str  # "=" or "!="
    value: str


def parse_field_selector(text: str | None, allowed: Iterable[str]) -> list[FieldRequirement]:
    """Parse a field selector; fields outside ``allowed`` are rejected as the apiserver does."""
    if text is None or not text.strip():
        return []
    allowed_set = set(allowed)
    reqs: list[FieldRequirement] = []
    for raw in text.split(","):
        term = raw.strip()
        m = _RE_FIELD.fullmatch(term)
        if not m:
            raise SelectorError(f"invalid selector: '{text}'; can't understand '{term}'")
        field, op, value = m.group(1), m.group(2), m.group(3).strip()
        if field not in allowed_set:
            raise SelectorError(f"field label not supported: {field}")
        reqs.append(FieldRequirement(field, "=" if op in ("=", "==") else "!=", value))
    return reqs


def field_value(obj: Mapping[str, Any], path: str) -> str:
    """The string form of a dotted field (missing -> ``""``, booleans -> ``true``/``false``)."""
    current: Any = obj
    for part in path.split("."):
        if not isinstance(current, Mapping) or part not in current:
            return ""
        current = current[part]
    if current is None:
        return ""
    if isinstance(current, bool):
        return "true" if current else "false"
    return str(current)


def match_fields(requirements: Iterable[FieldRequirement], obj: Mapping[str, Any]) -> bool:
    for req in requirements:
        equal = field_value(obj, req.field) == req.value
        if equal != (req.op == "="):
            return False
    return True
