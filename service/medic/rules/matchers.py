"""Alertmanager label matchers: ``name="v"``, ``name!="v"``, ``name=~"re"``, ``name!~"re"``.

Semantics follow Alertmanager: regexes are anchored at both ends, a missing label matches as the
empty string (``team=""`` matches alerts without ``team``), values may be quoted (with ``\\"``,
``\\\\`` and ``\\n`` escapes) or bare. A string may also hold a braced set:
``{alertname="KubePodCrashLooping", namespace=~"playcode|staging"}``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

_LABEL_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_MATCHER = re.compile(rf"^\s*({_LABEL_NAME})\s*(=~|!~|!=|=)\s*(.*?)\s*$", re.DOTALL)


class MatchType(StrEnum):
    EQUAL = "="
    NOT_EQUAL = "!="
    REGEX = "=~"
    NOT_REGEX = "!~"


class MatcherError(ValueError):
    """A matcher string does not parse; the message says why."""


@dataclass(frozen=True)
class Matcher:
    name: str
    type: MatchType
    value: str
    _regex: re.Pattern[str] | None = field(default=None, compare=False, repr=False)

    @classmethod
    def create(cls, name: str, type_: MatchType, value: str) -> Matcher:
        regex = None
        if type_ in (MatchType.REGEX, MatchType.NOT_REGEX):
            try:
                regex = re.compile(value)
            except re.error as exc:
                raise MatcherError(f"invalid regular expression {value!r}: {exc}") from exc
        return cls(name, type_, value, regex)

    def matches(self, labels: Mapping[str, str]) -> bool:
        actual = labels.get(self.name, "")
        if self.type is MatchType.EQUAL:
            return actual == self.value
        if self.type is MatchType.NOT_EQUAL:
            return actual != self.value
        assert self._regex is not None
        hit = self._regex.fullmatch(actual) is not None
        return hit if self.type is MatchType.REGEX else not hit

    def __str__(self) -> str:
        escaped = self.value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        return f'{self.name}{self.type.value}"{escaped}"'


def _unquote(raw: str) -> str:
    if not (len(raw) >= 2 and raw[0] == '"' and raw[-1] == '"'):
        if '"' in raw:
            raise MatcherError(f"unbalanced quotes in value {raw!r}")
        return raw
    body = raw[1:-1]
    out: list[str] = []
    i = 0
    while i < len(body):
        ch = body[i]
        if ch == "\\":
            if i + 1 >= len(body):
                raise MatcherError(f"dangling backslash in value {raw!r}")
            nxt = body[i + 1]
            out.append({"n": "\n", "\\": "\\", '"': '"'}.get(nxt, "\\" + nxt))
            i += 2
            continue
        if ch == '"':
            raise MatcherError(f"unescaped double quote inside value {raw!r}")
        out.append(ch)
        i += 1
    return "".join(out)


def parse_matcher(text: str) -> Matcher:
    m = _MATCHER.match(text)
    if not m:
        raise MatcherError(
            f'bad matcher {text!r}: expected name="value", name!="value", name=~"regex" or name!~"regex"'
        )
    name, op, raw = m.groups()
    return Matcher.create(name, MatchType(op), _unquote(raw))


def _split_set(body: str) -> list[str]:
    """Split ``a="x,y", b=~"z"`` on commas outside quotes."""
    parts: list[str] = []
    buf: list[str] = []
    in_quotes = False
    escaped = False
    for ch in body:
        if escaped:
            buf.append(ch)
            escaped = False
            continue
        if ch == "\\" and in_quotes:
            buf.append(ch)
            escaped = True
            continue
        if ch == '"':
            in_quotes = not in_quotes
        if ch == "," and not in_quotes:
            parts.append("".join(buf))
            buf = []
            continue
        buf.append(ch)
    if in_quotes:
        raise MatcherError(f"unterminated quoted value in {body!r}")
    parts.append("".join(buf))
    return [p for p in parts if p.strip()]


def parse_matchers(text: str) -> list[Matcher]:
    """Parse one matcher or a braced set of them."""
    stripped = text.strip()
    if stripped.startswith("{"):
        if not stripped.endswith("}"):
            raise MatcherError(f"missing closing brace in {text!r}")
        return [parse_matcher(p) for p in _split_set(stripped[1:-1])]
    return [parse_matcher(stripped)]


def matches_all(matchers: Iterable[Matcher], labels: Mapping[str, str]) -> bool:
    return all(m.matches(labels) for m in matchers)
