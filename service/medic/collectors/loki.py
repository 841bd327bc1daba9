"""``loki.query``: the runbook's LogQL queries (3.5, 4.3), grouped into message patterns.

A named query is a LogQL template whose ``$namespace`` / ``$container`` placeholders are filled
with validated Kubernetes names, quoted and escaped as LogQL string literals. The collector asks
Loki's ``query_range`` for at most ``limit`` lines of the last ``since`` (newest first), redacts
every line (tokens, JWTs, passwords, URL credentials) *before* anything else looks at it, and
groups the lines by message pattern: numbers, ids, hex, UUIDs, IPs, emails and timestamps are
masked, so a thousand "user 4711 not found" lines are one pattern with a count and first/last seen.
Lines that are not valid UTF-8 are decoded with replacement characters, never a crash.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from string import Template
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from medic.collectors.loki_output import LokiQueryOutput
from medic.domain.durations import Duration, format_duration
from medic.domain.errors import NotConfigured, StepError
from medic.domain.redact import redact_text
from medic.playbooks.contract import CollectorDef, StepContext
from medic.rules.labels import is_k8s_name, require_var, template_vars


class LogQuery(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    expr: str
    description: str = ""


# Runbook 3.5 (socket, redis adapter lines) and 4.3 (error lines, 5xx responses).
CATALOG: dict[str, LogQuery] = {
    q.name: q
    for q in [
        LogQuery(
            name="app_errors",
            expr='{namespace=$namespace, container=$container} | json | level="error"',
            description="error-level JSON log lines of the app container",
        ),
        LogQuery(
            name="app_error_text",
            expr='{namespace=$namespace, container=$container} |= "error"',
            description="lines of the app container containing 'error'",
        ),
        LogQuery(
            name="http_5xx",
            expr="{namespace=$namespace, container=$container} | json | res_status >= 500",
            description="requests answered with a 5xx status",
        ),
        LogQuery(
            name="socket",
            expr='{namespace=$namespace, container=$container} |~ "(?i)socket"',
            description="socket.io / WebSocket lines (grep -i socket)",
        ),
        LogQuery(
            name="redis_adapter",
            expr='{namespace=$namespace, container=$container} |~ "(?i)redis"',
            description="socket.io Redis adapter lines (grep -i redis)",
        ),
        # The ingress controller's own logs (MEDIC_INGRESS_LOG_SELECTOR, ingress-nginx by default):
        # NGINX logs why it ended a proxied WebSocket ("upstream timed out (110: ...) while
        # proxying upgraded connection") only there, never in the app's container.
        LogQuery(
            name="ingress_websocket",
            expr="$ingress_selector "
            r'|~ "(?i)(upgraded connection|\\[(error|warn|crit|alert|emerg)\\].*(socket\\.io|websocket))"',
            description="ingress controller errors on WebSocket connections (proxy timeouts, resets)",
        ),
    ]
}
MAX_LINE_CHARS = 1000
MAX_PATTERN_CHARS = 240
MAX_SAMPLE_CHARS = 500


def logql_string(value: str) -> str:
    """Quote ``value`` as a LogQL (Go) double-quoted string literal."""
    out = []
    for ch in value:
        if ch == "\\":
            out.append("\\\\")
        elif ch == '"':
            out.append('\\"')
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def render_logql(
    expr: str,
    variables: Mapping[str, str],
    contains: Iterable[str] = (),
    selectors: Mapping[str, str] | None = None,
) -> str:
    """Fill ``$name`` placeholders with quoted values, and ``selectors`` (whole stream selectors
    from the settings, checked there) as they are; append ``|= "text"`` line filters."""
    names = {m.group("named") or m.group("braced") for m in Template.pattern.finditer(expr)}
    names.discard(None)
    raw = selectors or {}
    values = {n: raw[n] if n in raw else logql_string(require_var(variables, n)) for n in sorted(names)}
    query = Template(expr).substitute(values)
    for text in contains:
        query += f" |= {logql_string(text)}"
    return query


_MASKS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"\b\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:[.,]\d+)?(?:Z|[+-]\d{2}:?\d{2})?"), "<ts>"),
    (
        re.compile(r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b"),
        "<uuid>",
    ),
    (re.compile(r"\b[\w.+\-]+@[\w\-]+(?:\.[\w\-]+)+\b"), "<email>"),
    (re.compile(r"\b\d{1,3}(?:\.\d{1,3}){3}(?::\d+)?\b"), "<ip>"),
    (re.compile(r"\b(?=[0-9a-fA-F]*\d)[0-9a-fA-F]{8,}\b"), "<hex>"),
    (re.compile(r"\b0x[0-9a-fA-F]+\b"), "<hex>"),
    (re.compile(r"\d+(?:\.\d+)?"), "<n>"),
    (re.compile(r"\s+"), " "),
]


def mask_variables(text: str) -> str:
    """The pattern of a message: variable parts (numbers, ids, IPs, ...) masked."""
    for pattern, replacement in _MASKS:
        text = pattern.sub(replacement, text)
    return text.strip()


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        inner = value.get("message") or value.get("msg")
        return inner if isinstance(inner, str) else json.dumps(value, default=str)[:300]
    return "" if value is None else str(value)


def message_of(line: str) -> tuple[str, str | None]:
    """(message, level) of a log line: JSON logs give msg/message (+ err and status), else the line."""
    stripped = line.strip()
    if stripped.startswith("{"):
        try:
            obj = json.loads(stripped)
        except ValueError:
            obj = None
        if isinstance(obj, dict):
            message = _text(obj.get("msg") or obj.get("message") or "")
            err = obj.get("err") or obj.get("error")
            if err:
                message = f"{message}: {_text(err)}" if message else _text(err)
            route = obj.get("route") or obj.get("path") or obj.get("url") or obj.get("req_url")
            if isinstance(route, str):
                method = obj.get("method") or obj.get("req_method") or ""
                message = f"{message} {method} {route}".strip()
            level = obj.get("level")
            status = obj.get("res_status") or obj.get("status")
            masked = mask_variables(message or stripped)
            if isinstance(status, int | str) and str(status).isdigit():
                masked += f" status={status}"
            return masked, str(level) if level is not None else None
    return mask_variables(line), None


def _iso(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, UTC).isoformat()


@dataclass
class _Group:
    pattern: str
    level: str | None
    sample: str
    first_ns: int
    last_ns: int
    count: int = 0
    lines: set[str] = field(default_factory=set)
    pods: set[str] = field(default_factory=set)


def _entries(streams: Iterable[Any]) -> Iterator[tuple[int, str, str]]:
    """(ts_ns, pod, raw line) of every well-formed entry; anything else is skipped."""
    for stream in streams:
        if not isinstance(stream, Mapping):
            continue
        labels = stream.get("stream")
        pod = str(labels.get("pod", "")) if isinstance(labels, Mapping) else ""
        for value in stream.get("values") or []:
            if not isinstance(value, list | tuple) or len(value) < 2:
                continue
            try:
                ts = int(value[0])
            except (TypeError, ValueError):
                continue
            yield ts, pod, value[1] if isinstance(value[1], str) else str(value[1])


def group_streams(
    streams: Iterable[Any], *, max_patterns: int, deadline: float | None = None
) -> dict[str, Any]:
    """Pure: Loki ``streams`` -> deduplicated lines grouped by message pattern, biggest first.

    Each distinct line is redacted and parsed once. With a ``deadline`` (``time.monotonic()``),
    lines left when it passes are counted but not grouped, and ``complete`` is false.
    """
    groups: dict[str, _Group] = {}
    seen: dict[str, tuple[str, str, str | None]] = {}  # raw line -> (redacted, pattern, level)
    received = grouped = 0
    for ts, pod, raw in _entries(streams):
        received += 1
        known = seen.get(raw)
        if known is None:
            if deadline is not None and time.monotonic() > deadline:
                continue
            line = redact_text(raw[:MAX_LINE_CHARS])
            pattern, level = message_of(line)
            known = seen[raw] = (line, pattern[:MAX_PATTERN_CHARS], level)
        line, pattern, level = known
        grouped += 1
        group = groups.get(pattern)
        if group is None:
            group = groups[pattern] = _Group(pattern, level, line[:MAX_SAMPLE_CHARS], ts, ts)
        group.count += 1
        group.lines.add(line)
        group.first_ns = min(group.first_ns, ts)
        group.last_ns = max(group.last_ns, ts)
        if pod and len(group.pods) < 5:
            group.pods.add(pod)
    ordered = sorted(groups.values(), key=lambda g: (-g.count, -g.last_ns))
    return {
        "lines": received,
        "distinct_lines": len(seen),
        "complete": grouped == received,
        "patterns_total": len(ordered),
        "capped": len(ordered) > max_patterns,
        "patterns": [
            {
                "pattern": g.pattern,
                "count": g.count,
                "distinct": len(g.lines),
                "level": g.level,
                "first_seen": _iso(g.first_ns),
                "last_seen": _iso(g.last_ns),
                "pods": sorted(g.pods),
                "sample": g.sample,
            }
            for g in ordered[:max_patterns]
        ],
    }


class LokiQueryParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    query: str = Field(description="a named query: " + ", ".join(CATALOG))
    contains: list[str] = Field(default_factory=list, max_length=5, description="extra |= filters")
    container: str | None = Field(None, description="container label (default: the target's name)")
    since: Duration = timedelta(minutes=30)
    limit: int = Field(500, ge=1, le=5000)
    max_patterns: int = Field(20, ge=1, le=200)

    @field_validator("query")
    @classmethod
    def _known(cls, value: str) -> str:
        if value not in CATALOG:
            raise ValueError(f"unknown named query {value!r}; known: {', '.join(sorted(CATALOG))}")
        return value

    @field_validator("container")
    @classmethod
    def _container(cls, value: str | None) -> str | None:
        if value is not None and not is_k8s_name(value):
            raise ValueError(f"{value!r} is not a Kubernetes name")
        return value

    @field_validator("since")
    @classmethod
    def _since(cls, value: timedelta) -> timedelta:
        if not timedelta(seconds=1) <= value <= timedelta(days=1):
            raise ValueError("since must be between 1s and 24h")
        return value


def query_variables(ctx: StepContext, params: LokiQueryParams) -> dict[str, str]:
    variables = template_vars(ctx.target, ctx.labels)
    if params.container:
        variables["container"] = params.container
    elif (
        "container" not in variables
        and ctx.target is not None
        and ctx.target.kind
        in (
            "deployment",
            "statefulset",
        )
    ):
        variables["container"] = ctx.target.name  # PlayCode names its containers after the workload
    return variables


async def loki_query(ctx: StepContext, params: LokiQueryParams) -> LokiQueryOutput:
    backend = ctx.backends.loki
    if backend is None:
        raise NotConfigured("Loki is not configured (set MEDIC_LOKI_URL)")
    deadline = time.monotonic() + ctx.timeout * 0.75
    named = CATALOG[params.query]
    selectors = {"ingress_selector": backend.ingress_selector}
    query = render_logql(named.expr, query_variables(ctx, params), params.contains, selectors)
    end = ctx.now
    start = end - params.since
    data = await backend.query_range(
        query,
        start_ns=int(start.timestamp() * 1e9),
        end_ns=int(end.timestamp() * 1e9),
        limit=params.limit,
        timeout=max(ctx.timeout * 0.9, 0.1),
    )
    if data.get("resultType", "streams") != "streams":
        raise StepError(f"expected log streams from Loki, got {data.get('resultType')!r}")
    # Redacting and parsing thousands of lines is CPU work: done in a thread, so the event loop
    # (intake, the other collectors) stays responsive, and stopped at the step's deadline.
    grouped = await asyncio.to_thread(
        group_streams, data.get("result") or [], max_patterns=params.max_patterns, deadline=deadline
    )
    out = {
        "query": named.name,
        "description": named.description,
        "logql": query,
        "since": format_duration(params.since),
        "start": start.isoformat(),
        "end": end.isoformat(),
        "limit": params.limit,
        "limit_reached": grouped["lines"] >= params.limit,
        **grouped,
    }
    return LokiQueryOutput.model_validate(out)


COLLECTORS = (
    CollectorDef(
        "loki.query",
        loki_query,
        LokiQueryParams,
        "named LogQL queries, lines grouped by pattern",
        LokiQueryOutput,
    ),
)
