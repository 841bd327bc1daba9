"""A fake Grafana Loki HTTP query API for tests (aiohttp, 127.0.0.1, free port).

Endpoints: ``GET|POST /loki/api/v1/query_range``, ``GET|POST /loki/api/v1/query`` (metric
queries only, like Loki 3), ``GET /loki/api/v1/labels``, ``GET /loki/api/v1/label/<name>/values``
and ``GET /ready``.

Storage: streams seeded with :meth:`FakeLoki.push` (a label set plus ``(ts_ns, line)`` entries;
a line may be ``bytes``, including invalid UTF-8). Identical entries (same timestamp and line) in
one stream are de-duplicated, as Loki does. Lines are returned as JSON strings; invalid UTF-8 is
replaced the way Go's ``encoding/json`` does it: one U+FFFD per invalid byte.

LogQL subset (anything else is answered 400 ``parse error ...``):

* stream selector ``{a="b", c=~"re", d!="x", e!~"re"}``; values are Go string literals
  (``"..."`` with escapes) or raw backtick strings; regexes are fully anchored; at least one
  matcher must not match the empty string (same error text as Loki);
* line filters ``|= "x"``, ``!= "x"``, ``|~ "re"``, ``!~ "re"`` (``|= "a" or "b"`` too);
* parsers ``| json`` (nested keys joined with ``_``, arrays and nulls skipped, clashes with
  stream labels get ``_extracted``; non-JSON lines get ``__error__="JSONParserErr"``) and
  ``| logfmt``;
* label filters ``| level="error"``, ``=~``, ``!=``, ``!~``, numeric ``== != > >= < <=``
  (``| res_status >= 500``), combined with ``and``, ``,``, ``or`` and parentheses. As in Loki,
  a missing label fails a numeric filter while a non-numeric value keeps the line and sets
  ``__error__="LabelFilterErr"``;
* metric queries ``count_over_time|rate|bytes_over_time|bytes_rate(<log query>[range])``,
  optionally inside ``sum|count|min|max|avg [by|without (labels)] (...)``.

Time bounds follow Loki's parser: ``start``/``end`` as Unix ns, Unix seconds (<= 10 digits),
float seconds or RFC3339(Nano); defaults ``now - 1h`` and ``now``; entries with
``start <= ts < end`` are returned; ``limit`` (default 100, max ``max_entries_limit``) keeps the
newest (``direction=backward``, default) or oldest (``forward``) entries across all streams.

Usage::

    async with FakeLoki() as loki:
        loki.push({"namespace": "playcode", "container": "playcode-app"},
                  [(now_ns(), '{"level":"error","res_status":502}')])
        ...  # query loki.url
        assert loki.queries[-1].query == '{namespace="playcode"} | json | res_status >= 500'
"""

from __future__ import annotations

import asyncio
import calendar
import codecs
import contextlib
import decimal
import json
import math
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

__all__ = [
    "FakeLoki",
    "LogQLParseError",
    "RecordedQuery",
    "go_json_string",
    "now_ns",
    "parse_logql",
    "parse_time_ns",
]

NS = 1_000_000_000
DEFAULT_LIMIT = 100
DEFAULT_MAX_ENTRIES_LIMIT = 5000

_EMPTY_MATCHER_ERROR = (
    "queries require at least one regexp or equality matcher that does not have an "
    'empty-compatible value. For instance, app=~".*" does not meet this requirement, but '
    'app=~".+" will'
)
_PARAMS_KEY = "fake_loki_params"  # a plain key: web.RequestKey needs aiohttp >= 3.13, the floor is 3.12
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


def now_ns() -> int:
    return time.time_ns()


# --------------------------------------------------------------------------------------------
# Go-compatible string handling
# --------------------------------------------------------------------------------------------


def _go_replace(error: UnicodeError) -> tuple[str, int]:
    assert isinstance(error, UnicodeDecodeError)
    return "\ufffd", error.start + 1  # one U+FFFD per invalid byte, like Go


codecs.register_error("fake_loki_go_replace", _go_replace)


def go_json_string(line: bytes) -> str:
    """The text Go's JSON encoder produces for ``string(line)``: invalid bytes -> U+FFFD."""
    return line.decode("utf-8", errors="fake_loki_go_replace")


def _to_bytes(line: str | bytes) -> bytes:
    if isinstance(line, bytes):
        return line
    return line.encode("utf-8", errors="surrogateescape")


# --------------------------------------------------------------------------------------------
# time parsing (mirrors Loki's loghttp parseTimestamp)
# --------------------------------------------------------------------------------------------

_RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$"
)


class _BadRequest(Exception):
    """A 400 with a plain-text body."""


def parse_time_ns(value: str | None, default: int) -> int:
    """Parse a Loki timestamp parameter into Unix nanoseconds."""
    if value is None or value == "":
        return default
    if "." in value:
        with contextlib.suppress(ValueError):
            seconds = float(value)
            whole = math.floor(seconds)
            frac = round((seconds - whole) * 1000) / 1000
            return int(whole) * NS + int(frac * NS)
    if re.fullmatch(r"[+-]?\d+", value):
        number = int(value)
        return number * NS if len(value) <= 10 else number
    match = _RFC3339.match(value)
    if match:
        year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
        frac_text = (match.group(7) or ".")[1:]
        nanos = int(frac_text.ljust(9, "0")) if frac_text else 0
        seconds = calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0))
        zone = match.group(8)
        if zone not in ("Z", "z"):
            sign = 1 if zone[0] == "+" else -1
            seconds -= sign * (int(zone[1:3]) * 3600 + int(zone[4:6]) * 60)
        return seconds * NS + nanos
    raise _BadRequest(f'cannot parse "{value}" to a valid timestamp')


_DURATION_UNITS_NS = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,
    "ms": 1_000_000,
    "s": NS,
    "m": 60 * NS,
    "h": 3600 * NS,
    "d": 86400 * NS,
    "w": 7 * 86400 * NS,
    "y": 365 * 86400 * NS,
}
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h|d|w|y)")
_DURATION = re.compile(r"(?:\d+(?:\.\d+)?(?:ns|us|µs|ms|s|m|h|d|w|y))+")


def _duration_ns(text: str) -> int:
    total = 0
    for number, unit in _DURATION_PART.findall(text):
        total += int(decimal.Decimal(number) * _DURATION_UNITS_NS[unit])
    return total


def _parse_step_ns(value: str | None, start: int, end: int) -> int:
    if value is None or value == "":
        return max(math.floor((end - start) / NS / 250), 1) * NS
    with contextlib.suppress(ValueError):
        return int(float(value) * NS)
    if _DURATION.fullmatch(value):
        return _duration_ns(value)
    raise _BadRequest(f'cannot parse "{value}" to a valid duration')


# --------------------------------------------------------------------------------------------
# LogQL lexer
# --------------------------------------------------------------------------------------------


class LogQLParseError(Exception):
    """Rendered like Loki's ``logqlmodel.ParseError``."""

    def __init__(self, message: str, line: int = 0, col: int = 0) -> None:
        super().__init__(message)
        self.message = message
        self.line = line
        self.col = col

    def __str__(self) -> str:
        if self.line == 0 and self.col == 0:
            return f"parse error : {self.message}"
        return f"parse error at line {self.line}, col {self.col}: {self.message}"


@dataclass
class _Tok:
    kind: str
    text: str
    pos: int
    value: Any = None


_OPERATORS = ("|=", "|~", "!=", "!~", "=~", "==", ">=", "<=", "{", "}", "(", ")", "[", "]",
              ",", "|", "=", ">", "<")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NUMBER = re.compile(r"-?\d+(?:\.\d*)?(?:[eE][+-]?\d+)?")
_SIMPLE_ESCAPES = {"a": 7, "b": 8, "f": 12, "n": 10, "r": 13, "t": 9, "v": 11, "\\": 92, '"': 34}


def _line_col(text: str, pos: int) -> tuple[int, int]:
    line = text.count("\n", 0, pos) + 1
    col = pos - (text.rfind("\n", 0, pos) + 1) + 1
    return line, col


def _go_unquote(text: str, start: int) -> tuple[bytes, int]:
    """Read the Go string literal opening at ``text[start] == '"'``; return (bytes, end)."""
    out = bytearray()
    i = start + 1

    def fail(message: str, at: int) -> LogQLParseError:
        return LogQLParseError(message, *_line_col(text, at))

    while True:
        if i >= len(text) or text[i] == "\n":
            raise fail("literal not terminated", start)
        ch = text[i]
        if ch == '"':
            return bytes(out), i + 1
        if ch != "\\":
            out += ch.encode("utf-8", errors="surrogateescape")
            i += 1
            continue
        if i + 1 >= len(text):
            raise fail("literal not terminated", start)
        esc = text[i + 1]
        if esc in _SIMPLE_ESCAPES:
            out.append(_SIMPLE_ESCAPES[esc])
            i += 2
        elif esc == "x" and re.fullmatch(r"[0-9a-fA-F]{2}", text[i + 2 : i + 4]):
            out.append(int(text[i + 2 : i + 4], 16))
            i += 4
        elif esc in "01234567" and re.fullmatch(r"[0-7]{3}", text[i + 1 : i + 4]):
            value = int(text[i + 1 : i + 4], 8)
            if value > 255:
                raise fail("invalid char escape", i)
            out.append(value)
            i += 4
        elif esc in "uU":
            width = 4 if esc == "u" else 8
            digits = text[i + 2 : i + 2 + width]
            if not re.fullmatch(rf"[0-9a-fA-F]{{{width}}}", digits):
                raise fail("invalid char escape", i)
            code = int(digits, 16)
            if code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
                raise fail("invalid char escape", i)
            out += chr(code).encode("utf-8")
            i += 2 + width
        else:
            raise fail("invalid char escape", i)


def _lex(text: str) -> list[_Tok]:
    tokens: list[_Tok] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch.isspace():
            i += 1
            continue
        if ch == "#":
            newline = text.find("\n", i)
            i = len(text) if newline < 0 else newline + 1
            continue
        if ch == '"':
            value, end = _go_unquote(text, i)
            tokens.append(_Tok("STRING", text[i:end], i, value))
            i = end
            continue
        if ch == "`":
            end = text.find("`", i + 1)
            if end < 0:
                raise LogQLParseError("literal not terminated", *_line_col(text, i))
            tokens.append(_Tok("STRING", text[i : end + 1], i,
                               text[i + 1 : end].encode("utf-8", errors="surrogateescape")))
            i = end + 1
            continue
        if ch.isdigit() or (ch == "-" and i + 1 < len(text) and text[i + 1].isdigit()):
            duration = _DURATION.match(text, i) if ch != "-" else None
            if duration and not (
                duration.end() < len(text) and (text[duration.end()].isalnum())
            ):
                tokens.append(_Tok("DURATION", duration.group(), i, _duration_ns(duration.group())))
                i = duration.end()
                continue
            number = _NUMBER.match(text, i)
            assert number is not None
            tokens.append(_Tok("NUMBER", number.group(), i, float(number.group())))
            i = number.end()
            continue
        ident = _IDENT.match(text, i)
        if ident:
            tokens.append(_Tok("IDENT", ident.group(), i))
            i = ident.end()
            continue
        for op in _OPERATORS:
            if text.startswith(op, i):
                tokens.append(_Tok(op, op, i))
                i += len(op)
                break
        else:
            raise LogQLParseError(f"unexpected character: {ch!r}", *_line_col(text, i))
    tokens.append(_Tok("EOF", "", len(text)))
    return tokens


# --------------------------------------------------------------------------------------------
# LogQL AST + evaluation
# --------------------------------------------------------------------------------------------


def _anchored(pattern: str, text: str, pos: int) -> re.Pattern[str]:
    try:
        return re.compile(f"(?:{pattern})\\Z", re.DOTALL)
    except re.error as exc:
        raise LogQLParseError(f"error parsing regexp: {exc}", *_line_col(text, pos)) from exc


@dataclass
class Matcher:
    name: str
    op: str  # = != =~ !~
    value: str
    regex: re.Pattern[str] | None = None

    def matches(self, labels: Mapping[str, str]) -> bool:
        actual = labels.get(self.name, "")
        if self.op == "=":
            return actual == self.value
        if self.op == "!=":
            return actual != self.value
        assert self.regex is not None
        found = self.regex.match(actual) is not None
        return found if self.op == "=~" else not found


@dataclass
class LineFilter:
    op: str  # |= != |~ !~
    values: list[bytes]
    regexes: list[re.Pattern[str]] = field(default_factory=list)

    def keep(self, line: bytes) -> bool:
        if self.op in ("|=", "!="):
            found = any(v in line for v in self.values)
        else:
            text = go_json_string(line)
            found = any(r.search(text) is not None for r in self.regexes)
        return found if self.op in ("|=", "|~") else not found


@dataclass
class ParserStage:
    kind: str  # json | logfmt


@dataclass
class LabelCompare:
    name: str
    op: str  # = != =~ !~ for strings; == != > >= < <= for numbers
    value: str | float
    numeric: bool
    regex: re.Pattern[str] | None = None


@dataclass
class LabelBinary:
    op: str  # and | or
    left: LabelCompare | LabelBinary
    right: LabelCompare | LabelBinary


@dataclass
class LabelFilterStage:
    expr: LabelCompare | LabelBinary


Stage = LineFilter | ParserStage | LabelFilterStage


@dataclass
class LogExpr:
    matchers: list[Matcher]
    stages: list[Stage]


@dataclass
class RangeAgg:
    func: str  # count_over_time | rate | bytes_over_time | bytes_rate
    log: LogExpr
    range_ns: int


@dataclass
class VectorAgg:
    op: str  # sum | count | min | max | avg
    grouping: list[str] | None
    without: bool
    inner: RangeAgg | VectorAgg


Expr = LogExpr | RangeAgg | VectorAgg

_RANGE_FUNCS = ("count_over_time", "rate", "bytes_over_time", "bytes_rate")
_VECTOR_OPS = ("sum", "count", "min", "max", "avg")
_UNSUPPORTED_STAGES = frozenset(
    {"line_format", "label_format", "drop", "keep", "unwrap", "decolorize", "pattern", "regexp",
     "unpack", "distinct"}
)
_TOKEN_NAMES = {"IDENT": "IDENTIFIER", "STRING": "STRING", "NUMBER": "NUMBER",
                "DURATION": "RANGE", "EOF": "$end"}


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _lex(text)
        self.i = 0

    def peek(self, ahead: int = 0) -> _Tok:
        return self.tokens[min(self.i + ahead, len(self.tokens) - 1)]

    def take(self) -> _Tok:
        tok = self.peek()
        if tok.kind != "EOF":
            self.i += 1
        return tok

    def error(self, tok: _Tok, expecting: str | None = None) -> LogQLParseError:
        desc = _TOKEN_NAMES.get(tok.kind, tok.text)
        message = f"syntax error: unexpected {desc}"
        if expecting:
            message += f", expecting {expecting}"
        line, col = _line_col(self.text, tok.pos)
        return LogQLParseError(message, line, col)

    def unsupported(self, tok: _Tok, what: str) -> LogQLParseError:
        return LogQLParseError(f"FakeLoki does not support {what}", *_line_col(self.text, tok.pos))

    def expect(self, kind: str, expecting: str | None = None) -> _Tok:
        tok = self.take()
        if tok.kind != kind:
            raise self.error(tok, expecting or _TOKEN_NAMES.get(kind, kind))
        return tok

    def parse(self) -> Expr:
        if self.peek().kind == "EOF":
            raise self.error(self.peek())
        expr = self.parse_expr()
        if self.peek().kind != "EOF":
            raise self.error(self.peek())
        for log in _log_exprs(expr):
            if not any(
                m.op in ("=", "=~") and not m.matches({}) for m in log.matchers
            ):
                raise LogQLParseError(_EMPTY_MATCHER_ERROR)
        return expr

    def parse_expr(self) -> Expr:
        tok = self.peek()
        if tok.kind == "{":
            return self.parse_log()
        if tok.kind == "(":
            self.take()
            inner = self.parse_expr()
            self.expect(")")
            return inner
        if tok.kind == "IDENT":
            if tok.text in _RANGE_FUNCS:
                return self.parse_range()
            if tok.text in _VECTOR_OPS:
                return self.parse_vector()
            if tok.text.endswith("_over_time") or tok.text in ("topk", "bottomk", "absent"):
                raise self.unsupported(tok, f"'{tok.text}'")
        raise self.error(tok)

    def parse_selector(self) -> list[Matcher]:
        self.expect("{")
        matchers: list[Matcher] = []
        while True:
            name = self.expect("IDENT")
            op = self.take()
            if op.kind not in ("=", "!=", "=~", "!~"):
                raise self.error(op, "= or =~ or !~ or !=")
            value_tok = self.expect("STRING")
            value = value_tok.value.decode("utf-8", errors="surrogateescape")
            regex = _anchored(value, self.text, value_tok.pos) if "~" in op.kind else None
            matchers.append(Matcher(name.text, op.kind, value, regex))
            if self.peek().kind == ",":
                self.take()
                continue
            break
        self.expect("}", "} or ,")
        return matchers

    def parse_log(self) -> LogExpr:
        matchers = self.parse_selector()
        stages: list[Stage] = []
        while True:
            tok = self.peek()
            if tok.kind in ("|=", "|~", "!=", "!~"):
                self.take()
                values_toks = [self.expect("STRING")]
                while self.peek().kind == "IDENT" and self.peek().text == "or":
                    self.take()
                    values_toks.append(self.expect("STRING"))
                values = [t.value for t in values_toks]
                regexes = []
                if "~" in tok.kind:
                    for t in values_toks:
                        try:
                            regexes.append(re.compile(go_json_string(t.value), re.DOTALL))
                        except re.error as exc:
                            raise LogQLParseError(
                                f"error parsing regexp: {exc}", *_line_col(self.text, t.pos)
                            ) from exc
                stages.append(LineFilter(tok.kind, values, regexes))
            elif tok.kind == "|":
                self.take()
                nxt = self.peek()
                if nxt.kind == "IDENT" and nxt.text in ("json", "logfmt"):
                    self.take()
                    follow = self.peek()
                    if follow.kind == "IDENT":
                        raise self.unsupported(follow, f"{nxt.text} parameters")
                    stages.append(ParserStage(nxt.text))
                elif nxt.kind == "IDENT" and nxt.text in _UNSUPPORTED_STAGES:
                    raise self.unsupported(nxt, f"the '{nxt.text}' stage")
                elif nxt.kind in ("IDENT", "("):
                    stages.append(LabelFilterStage(self.parse_label_or()))
                else:
                    raise self.error(nxt)
            else:
                return LogExpr(matchers, stages)

    def parse_label_or(self) -> LabelCompare | LabelBinary:
        left = self.parse_label_and()
        while self.peek().kind == "IDENT" and self.peek().text == "or":
            self.take()
            left = LabelBinary("or", left, self.parse_label_and())
        return left

    def parse_label_and(self) -> LabelCompare | LabelBinary:
        left = self.parse_label_primary()
        while (self.peek().kind == "IDENT" and self.peek().text == "and") or (
            self.peek().kind == ","
        ):
            self.take()
            left = LabelBinary("and", left, self.parse_label_primary())
        return left

    def parse_label_primary(self) -> LabelCompare | LabelBinary:
        if self.peek().kind == "(":
            self.take()
            inner = self.parse_label_or()
            self.expect(")")
            return inner
        name = self.expect("IDENT")
        op = self.take()
        if op.kind not in ("=", "!=", "=~", "!~", "==", ">", ">=", "<", "<="):
            raise self.error(op)
        value = self.take()
        if value.kind == "STRING":
            if op.kind in (">", ">=", "<", "<="):
                raise self.error(value, "NUMBER")
            text = value.value.decode("utf-8", errors="surrogateescape")
            regex = _anchored(text, self.text, value.pos) if "~" in op.kind else None
            string_op = "=" if op.kind == "==" else op.kind
            return LabelCompare(name.text, string_op, text, numeric=False, regex=regex)
        if value.kind == "NUMBER":
            if "~" in op.kind:
                raise self.error(value, "STRING")
            numeric_op = "==" if op.kind == "=" else op.kind
            return LabelCompare(name.text, numeric_op, float(value.value), numeric=True)
        if value.kind == "DURATION":
            raise self.unsupported(value, "duration label filters")
        raise self.error(value, "STRING or NUMBER")

    def parse_range(self) -> RangeAgg:
        func = self.take()
        self.expect("(")
        if self.peek().kind == "(":
            self.take()
            log = self.parse_log()
            self.expect(")")
        else:
            log = self.parse_log()
        self.expect("[")
        duration = self.expect("DURATION")
        self.expect("]")
        self.expect(")")
        return RangeAgg(func.text, log, int(duration.value))

    def parse_grouping(self) -> tuple[list[str], bool]:
        keyword = self.take()
        self.expect("(")
        labels: list[str] = []
        while self.peek().kind != ")":
            labels.append(self.expect("IDENT").text)
            if self.peek().kind == ",":
                self.take()
        self.expect(")")
        return labels, keyword.text == "without"

    def parse_vector(self) -> VectorAgg:
        op = self.take()
        grouping: list[str] | None = None
        without = False
        if self.peek().kind == "IDENT" and self.peek().text in ("by", "without"):
            grouping, without = self.parse_grouping()
        self.expect("(")
        inner = self.parse_expr()
        if isinstance(inner, LogExpr):
            raise LogQLParseError(
                "syntax error: unexpected log query in a vector aggregation",
                *_line_col(self.text, op.pos),
            )
        self.expect(")")
        if grouping is None and self.peek().kind == "IDENT" and self.peek().text in (
            "by",
            "without",
        ):
            grouping, without = self.parse_grouping()
        return VectorAgg(op.text, grouping, without, inner)


def _log_exprs(expr: Expr) -> list[LogExpr]:
    if isinstance(expr, LogExpr):
        return [expr]
    if isinstance(expr, RangeAgg):
        return [expr.log]
    return _log_exprs(expr.inner)


def parse_logql(query: str) -> Expr:
    """Parse the supported LogQL subset; raises :class:`LogQLParseError`."""
    return _Parser(query).parse()


def _sanitize_key(key: str) -> str:
    key = key.strip()
    if not key:
        return key
    if key[0].isdigit():
        key = "_" + key
    return re.sub(r"[^a-zA-Z0-9_]", "_", key)


def _json_labels(line: bytes) -> dict[str, str] | str:
    def reject_constant(name: str) -> Any:
        raise ValueError(f"invalid JSON value {name}")

    try:
        doc = json.loads(
            go_json_string(line), parse_int=str, parse_float=str, parse_constant=reject_constant
        )
    except (ValueError, RecursionError) as exc:
        return f"{exc}"
    if not isinstance(doc, dict):
        return "Value looks like object, but can't find closing '}' symbol"
    out: dict[str, str] = {}

    def walk(prefix: str, obj: Mapping[str, Any]) -> None:
        for key, value in obj.items():
            name = f"{prefix}_{_sanitize_key(key)}" if prefix else _sanitize_key(key)
            if isinstance(value, dict):
                walk(name, value)
            elif isinstance(value, bool):
                out[name] = "true" if value else "false"
            elif isinstance(value, str):
                out[name] = "" if "\ufffd" in value else value
            # arrays and nulls are not extracted

    walk("", doc)
    return out


_LOGFMT_PAIR = re.compile(r'([^\s=]+)(?:=("(?:[^"\\]|\\.)*"|[^\s]*))?')


def _logfmt_labels(line: bytes) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, raw in _LOGFMT_PAIR.findall(go_json_string(line)):
        value = raw
        if raw.startswith('"') and raw.endswith('"') and len(raw) >= 2:
            try:
                value = json.loads(raw)
            except ValueError:
                value = raw[1:-1]
        name = _sanitize_key(key)
        if name:
            out[name] = "" if "\ufffd" in value else value
    return out


def _parse_go_float(text: str) -> float | None:
    if not re.fullmatch(r"[+-]?(?:\d+\.?\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?|[Ii]nf"
                        r"(?:inity)?|NaN)", text):
        return None
    return float(text)


def _set_error(labels: dict[str, str], error: str, details: str) -> None:
    if "__error__" not in labels:
        labels["__error__"] = error
        labels["__error_details__"] = details


def _eval_label_filter(expr: LabelCompare | LabelBinary, labels: dict[str, str]) -> bool:
    if isinstance(expr, LabelBinary):
        left = _eval_label_filter(expr.left, labels)
        if expr.op == "or" and left:
            return True
        if expr.op == "and" and not left:
            return False
        return _eval_label_filter(expr.right, labels)
    if not expr.numeric:
        actual = labels.get(expr.name, "")
        if expr.op == "=":
            return actual == expr.value
        if expr.op == "!=":
            return actual != expr.value
        assert expr.regex is not None
        found = expr.regex.match(actual) is not None
        return found if expr.op == "=~" else not found
    if expr.name not in labels:
        return False
    number = _parse_go_float(labels[expr.name])
    if number is None:
        _set_error(labels, "LabelFilterErr",
                   f'strconv.ParseFloat: parsing "{labels[expr.name]}": invalid syntax')
        return True
    target = float(expr.value)
    return {
        "==": number == target,
        "!=": number != target,
        ">": number > target,
        ">=": number >= target,
        "<": number < target,
        "<=": number <= target,
    }[expr.op]


def _run_pipeline(
    stream_labels: Mapping[str, str], line: bytes, stages: Sequence[Stage]
) -> dict[str, str] | None:
    labels = dict(stream_labels)
    for stage in stages:
        if isinstance(stage, LineFilter):
            if not stage.keep(line):
                return None
        elif isinstance(stage, ParserStage):
            extracted: dict[str, str] | str
            if stage.kind == "json":
                extracted = _json_labels(line)
                if isinstance(extracted, str):
                    _set_error(labels, "JSONParserErr", extracted)
                    continue
            else:
                extracted = _logfmt_labels(line)
            for key, value in extracted.items():
                name = f"{key}_extracted" if key in stream_labels else key
                labels[name] = value
        elif not _eval_label_filter(stage.expr, labels):
            return None
    return labels


def _labels_key(labels: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(labels.items()))


def _labels_string(labels: Mapping[str, str]) -> str:
    inner = ", ".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in sorted(labels.items()))
    return "{" + inner + "}"


def _format_value(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == int(value) and abs(value) < 1e21:
        return str(int(value))
    return format(decimal.Decimal(repr(value)), "f")


def _format_ts(ns: int) -> float | int:
    if ns % NS == 0:
        return ns // NS
    return round(ns / NS, 3)


# --------------------------------------------------------------------------------------------
# the server
# --------------------------------------------------------------------------------------------


@dataclass
class _Stream:
    labels: dict[str, str]
    entries: list[tuple[int, bytes]] = field(default_factory=list)
    seen: set[tuple[int, bytes]] = field(default_factory=set)


@dataclass
class RecordedQuery:
    """One HTTP request as the fake received it (``params`` merges query string and form)."""

    method: str
    path: str
    params: dict[str, str]
    headers: dict[str, str]
    at: float

    @property
    def query(self) -> str | None:
        return self.params.get("query")


@dataclass
class _Failure:
    status: int
    body: str
    times: int | None
    path: str | None


class FakeLoki:
    """A Loki query API look-alike; ``async with FakeLoki() as loki`` -> ``loki.url``.

    Seed with :meth:`push`; inspect :attr:`queries` (query/query_range requests) and
    :attr:`requests` (every request); inject faults with :meth:`fail_next` and :meth:`delay`.
    """

    def __init__(
        self,
        *,
        port: int = 0,
        max_entries_limit: int = DEFAULT_MAX_ENTRIES_LIMIT,
        clock: Callable[[], int] = now_ns,
    ) -> None:
        self.host = "127.0.0.1"
        self.port = port
        self.max_entries_limit = max_entries_limit
        self.clock = clock
        self.ready = True
        self.requests: list[RecordedQuery] = []
        self.queries: list[RecordedQuery] = []
        self._streams: dict[tuple[tuple[str, str], ...], _Stream] = {}
        self._failures: list[_Failure] = []
        self._delay_seconds = 0.0
        self._delay_times: int | None = None
        self._runner: web.AppRunner | None = None
        self._closing = asyncio.Event()

    # ---------------------------------------------------------------- lifecycle

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> None:
        if self._runner is not None:
            return
        app = web.Application(middlewares=[self._middleware])
        for method in ("GET", "POST"):
            app.router.add_route(method, "/loki/api/v1/query_range", self._handle_query_range)
            app.router.add_route(method, "/loki/api/v1/query", self._handle_instant_query)
            app.router.add_route(method, "/loki/api/v1/labels", self._handle_labels)
            app.router.add_route(
                method, "/loki/api/v1/label/{name}/values", self._handle_label_values
            )
        app.router.add_route("GET", "/ready", self._handle_ready)
        self._closing = asyncio.Event()
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        await site.start()
        self._runner = runner
        self.port = int(runner.addresses[0][1])

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        self._closing.set()  # cut injected delays short
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> FakeLoki:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ---------------------------------------------------------------- seeding

    def push(
        self, labels: Mapping[str, str], entries: Iterable[tuple[int, str | bytes]]
    ) -> None:
        """Append entries (``(ts_ns, line)``; ``line`` str or raw bytes) to a stream."""
        if not labels:
            raise ValueError("a stream needs at least one label")
        for name in labels:
            if not _LABEL_NAME.match(name):
                raise ValueError(f"invalid label name {name!r}")
        key = _labels_key(labels)
        stream = self._streams.get(key)
        if stream is None:
            stream = self._streams[key] = _Stream(dict(labels))
        for ts, line in entries:
            entry = (int(ts), _to_bytes(line))
            if entry in stream.seen:
                continue
            stream.seen.add(entry)
            stream.entries.append(entry)
        stream.entries.sort(key=lambda e: e[0])

    def clear(self) -> None:
        self._streams.clear()

    @property
    def streams(self) -> list[tuple[dict[str, str], list[tuple[int, bytes]]]]:
        return [(dict(s.labels), list(s.entries)) for s in self._streams.values()]

    # ---------------------------------------------------------------- faults

    def fail_next(
        self, status: int = 500, times: int | None = 1, *, body: str | None = None,
        path: str | None = None,
    ) -> None:
        """Answer the next ``times`` requests (None = all, until cleared) with ``status``.

        ``path`` limits the fault to requests whose path starts with it."""
        default = {
            429: "too many outstanding requests",
            502: "Bad Gateway",
            503: "Service Unavailable",
            504: "Gateway Timeout",
        }.get(status, "rpc error: code = Unavailable desc = injected by FakeLoki")
        self._failures.append(_Failure(status, body if body is not None else default, times,
                                       path))

    def delay(self, seconds: float, times: int | None = None) -> None:
        """Sleep ``seconds`` before answering each of the next ``times`` requests (None = all).
        ``delay(0)`` clears it."""
        self._delay_seconds = seconds
        self._delay_times = times

    def clear_faults(self) -> None:
        self._failures.clear()
        self._delay_seconds = 0.0
        self._delay_times = None

    # ---------------------------------------------------------------- HTTP plumbing

    @web.middleware
    async def _middleware(
        self, request: web.Request, handler: Callable[[web.Request], Any]
    ) -> web.StreamResponse:
        params: dict[str, str] = {k: v for k, v in request.query.items()}
        if request.method == "POST":
            form = await request.post()
            for key, value in form.items():
                if isinstance(value, str):
                    params[key] = value
        record = RecordedQuery(
            request.method, request.path, params, dict(request.headers), time.time()
        )
        self.requests.append(record)
        if request.path in ("/loki/api/v1/query_range", "/loki/api/v1/query"):
            self.queries.append(record)
        request[_PARAMS_KEY] = params
        if self._delay_seconds > 0 and self._delay_times != 0:
            if self._delay_times is not None:
                self._delay_times -= 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), self._delay_seconds)
        for failure in list(self._failures):
            if failure.path is not None and not request.path.startswith(failure.path):
                continue
            if failure.times is not None:
                failure.times -= 1
                if failure.times <= 0:
                    self._failures.remove(failure)
            return web.Response(status=failure.status, text=failure.body + "\n")
        try:
            response: web.StreamResponse = await handler(request)
        except _BadRequest as exc:
            return web.Response(status=400, text=str(exc))
        except LogQLParseError as exc:
            return web.Response(status=400, text=str(exc))
        return response

    @staticmethod
    def _json(data: Any) -> web.Response:
        return web.Response(
            text=json.dumps(data, ensure_ascii=False, separators=(",", ":")),
            content_type="application/json",
        )

    async def _handle_ready(self, request: web.Request) -> web.Response:
        if not self.ready:
            return web.Response(status=503, text="Ingester not ready: waiting for 15s after "
                                "being ready\n")
        return web.Response(text="ready\n")

    # ---------------------------------------------------------------- queries

    def _limit(self, params: Mapping[str, str]) -> int:
        raw = params.get("limit", "")
        if raw == "":
            limit = DEFAULT_LIMIT
        else:
            try:
                limit = int(raw)
            except ValueError as exc:
                raise _BadRequest(f'strconv.Atoi: parsing "{raw}": invalid syntax') from exc
        if limit <= 0:
            raise _BadRequest("limit must be a positive value")
        return limit

    @staticmethod
    def _direction(params: Mapping[str, str]) -> str:
        raw = params.get("direction", "")
        if raw == "":
            return "BACKWARD"
        if raw.upper() not in ("FORWARD", "BACKWARD"):
            raise _BadRequest(f"invalid direction '{raw}'")
        return raw.upper()

    async def _handle_query_range(self, request: web.Request) -> web.Response:
        params: dict[str, str] = request[_PARAMS_KEY]
        now = self.clock()
        start = parse_time_ns(params.get("start"), now - 3600 * NS)
        end = parse_time_ns(params.get("end"), now)
        if end < start:
            raise _BadRequest("end timestamp must not be before or equal to start time")
        limit = self._limit(params)
        direction = self._direction(params)
        step = _parse_step_ns(params.get("step"), start, end)
        if step <= 0:
            raise _BadRequest(
                "zero or negative query resolution step widths are not accepted. "
                "Try a positive integer"
            )
        if (end - start) // step > 11000:
            raise _BadRequest(
                "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing "
                "the query resolution (?step=XX)"
            )
        expr = parse_logql(params.get("query", ""))
        started = time.perf_counter()
        if isinstance(expr, LogExpr):
            if limit > self.max_entries_limit:
                raise _BadRequest(
                    f"max entries limit per query exceeded, limit > max_entries_limit "
                    f"({limit} > {self.max_entries_limit})"
                )
            result, scanned = self._select_logs(expr, start, end, limit, direction)
            return self._json(self._envelope("streams", result, scanned, started))
        steps = list(range(start, end + 1, step))
        matrix, scanned = self._eval_metric(expr, steps)
        result = [
            {"metric": labels, "values": [[_format_ts(t), _format_value(v)] for t, v in points]}
            for labels, points in matrix
        ]
        return self._json(self._envelope("matrix", result, scanned, started))

    async def _handle_instant_query(self, request: web.Request) -> web.Response:
        params: dict[str, str] = request[_PARAMS_KEY]
        at = parse_time_ns(params.get("time"), self.clock())
        self._limit(params)
        self._direction(params)
        expr = parse_logql(params.get("query", ""))
        if isinstance(expr, LogExpr):
            raise _BadRequest(
                "log queries are not supported as an instant query type, please change your "
                "query to a range query type"
            )
        started = time.perf_counter()
        matrix, scanned = self._eval_metric(expr, [at])
        result = [
            {"metric": labels, "value": [_format_ts(t), _format_value(v)]}
            for labels, points in matrix
            for t, v in points
        ]
        return self._json(self._envelope("vector", result, scanned, started))

    @staticmethod
    def _envelope(
        result_type: str, result: list[Any], scanned: tuple[int, int], started: float
    ) -> dict[str, Any]:
        lines, size = scanned
        elapsed = max(time.perf_counter() - started, 1e-9)
        returned = sum(len(r.get("values", [])) for r in result) if result_type == "streams" else 0
        return {
            "status": "success",
            "data": {
                "resultType": result_type,
                "result": result,
                "stats": {
                    "summary": {
                        "bytesProcessedPerSecond": int(size / elapsed),
                        "linesProcessedPerSecond": int(lines / elapsed),
                        "totalBytesProcessed": size,
                        "totalLinesProcessed": lines,
                        "execTime": elapsed,
                        "queueTime": 0,
                        "subqueries": 0,
                        "totalEntriesReturned": returned,
                        "splits": 0,
                        "shards": 0,
                    },
                    "querier": {"store": {"totalChunksRef": 0, "totalChunksDownloaded": 0}},
                    "ingester": {"totalReached": 1, "totalChunksMatched": 0,
                                 "totalBatches": 0, "totalLinesSent": lines},
                },
            },
        }

    def _matching_streams(self, matchers: Sequence[Matcher]) -> list[_Stream]:
        return [s for s in self._streams.values() if all(m.matches(s.labels) for m in matchers)]

    def _select_logs(
        self, expr: LogExpr, start: int, end: int, limit: int, direction: str
    ) -> tuple[list[dict[str, Any]], tuple[int, int]]:
        candidates: list[tuple[int, int, dict[str, str], bytes]] = []
        lines = size = 0
        for order, stream in enumerate(self._matching_streams(expr.matchers)):
            for ts, line in stream.entries:
                if not start <= ts < end:
                    continue
                lines += 1
                size += len(line)
                labels = _run_pipeline(stream.labels, line, expr.stages)
                if labels is not None:
                    candidates.append((ts, order, labels, line))
        backward = direction == "BACKWARD"
        candidates.sort(key=lambda c: (-c[0] if backward else c[0], c[1]))
        grouped: dict[tuple[tuple[str, str], ...], dict[str, Any]] = {}
        for ts, _order, labels, line in candidates[:limit]:
            key = _labels_key(labels)
            group = grouped.setdefault(key, {"stream": dict(sorted(labels.items())),
                                             "values": []})
            group["values"].append([str(ts), go_json_string(line)])
        result = sorted(grouped.values(), key=lambda g: _labels_string(g["stream"]))
        return result, (lines, size)

    def _eval_metric(
        self, expr: Expr, steps: Sequence[int]
    ) -> tuple[list[tuple[dict[str, str], list[tuple[int, float]]]], tuple[int, int]]:
        if isinstance(expr, LogExpr):  # pragma: no cover - guarded by callers
            raise _BadRequest("not a metric query")
        if isinstance(expr, RangeAgg):
            return self._eval_range(expr, steps)
        inner, scanned = self._eval_metric(expr.inner, steps)
        groups: dict[tuple[tuple[str, str], ...], tuple[dict[str, str], dict[int, list[float]]]]
        groups = {}
        for labels, points in inner:
            if expr.grouping is None:
                out_labels: dict[str, str] = {}
            elif expr.without:
                out_labels = {k: v for k, v in labels.items() if k not in expr.grouping}
            else:
                out_labels = {k: v for k, v in labels.items() if k in expr.grouping}
            key = _labels_key(out_labels)
            bucket = groups.setdefault(key, (out_labels, {}))[1]
            for t, v in points:
                bucket.setdefault(t, []).append(v)
        result = []
        for out_labels, bucket in groups.values():
            points_out = []
            for t in sorted(bucket):
                values = bucket[t]
                aggregated = {
                    "sum": sum(values),
                    "count": float(len(values)),
                    "min": min(values),
                    "max": max(values),
                    "avg": sum(values) / len(values),
                }[expr.op]
                points_out.append((t, aggregated))
            result.append((out_labels, points_out))
        result.sort(key=lambda r: _labels_string(r[0]))
        return result, scanned

    def _eval_range(
        self, expr: RangeAgg, steps: Sequence[int]
    ) -> tuple[list[tuple[dict[str, str], list[tuple[int, float]]]], tuple[int, int]]:
        if not steps:
            return [], (0, 0)
        low, high = steps[0] - expr.range_ns, steps[-1]
        samples: list[tuple[int, dict[str, str], int]] = []
        lines = size = 0
        for stream in self._matching_streams(expr.log.matchers):
            for ts, line in stream.entries:
                if not low < ts <= high:
                    continue
                lines += 1
                size += len(line)
                labels = _run_pipeline(stream.labels, line, expr.log.stages)
                if labels is None:
                    continue
                if "__error__" in labels:
                    shown = {k: v for k, v in labels.items() if k != "__error_details__"}
                    raise _BadRequest(
                        f"pipeline error: '{labels['__error__']}' for series: "
                        f"'{_labels_string(shown)}'.\nUse a label filter to intentionally skip "
                        f"this error. (e.g | __error__!=\"{labels['__error__']}\").\nTo skip all "
                        "potential errors you can match empty errors.(e.g __error__=\"\")"
                    )
                samples.append((ts, labels, len(line)))
        series: dict[tuple[tuple[str, str], ...], tuple[dict[str, str], list[tuple[int, int]]]]
        series = {}
        for ts, labels, length in samples:
            series.setdefault(_labels_key(labels), (labels, []))[1].append((ts, length))
        seconds = expr.range_ns / NS
        result = []
        for labels, entries in series.values():
            points: list[tuple[int, float]] = []
            for t in steps:
                window = [length for ts, length in entries if t - expr.range_ns < ts <= t]
                if not window:
                    continue
                if expr.func == "count_over_time":
                    value = float(len(window))
                elif expr.func == "rate":
                    value = len(window) / seconds
                elif expr.func == "bytes_over_time":
                    value = float(sum(window))
                else:
                    value = sum(window) / seconds
                points.append((t, value))
            if points:
                result.append((dict(sorted(labels.items())), points))
        result.sort(key=lambda r: _labels_string(r[0]))
        return result, (lines, size)

    # ---------------------------------------------------------------- labels

    def _streams_in_window(self, params: Mapping[str, str]) -> list[_Stream]:
        now = self.clock()
        start = parse_time_ns(params.get("start"), now - 6 * 3600 * NS)
        end = parse_time_ns(params.get("end"), now)
        streams = list(self._streams.values())
        if params.get("query"):
            expr = parse_logql(params["query"])
            matchers = [m for log in _log_exprs(expr) for m in log.matchers]
            streams = [s for s in streams if all(m.matches(s.labels) for m in matchers)]
        return [s for s in streams if any(start <= ts <= end for ts, _ in s.entries)]

    async def _handle_labels(self, request: web.Request) -> web.Response:
        params: dict[str, str] = request[_PARAMS_KEY]
        names = sorted({name for s in self._streams_in_window(params)
                        for name in s.labels})
        return self._json({"status": "success", "data": names})

    async def _handle_label_values(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        params: dict[str, str] = request[_PARAMS_KEY]
        values = sorted({s.labels[name] for s in self._streams_in_window(params)
                         if name in s.labels})
        return self._json({"status": "success", "data": values})
