"""``websocket``: broken WebSockets (runbook 3.5).

Findings: open connections dropped against 30 minutes ago, ingress proxy timeouts too short for
long-lived connections (from a ``k8s.ingress`` evidence ``{"ingresses": [{"name", "annotations"}]}``
when the playbook has one), socket.io Redis adapter errors and socket errors in the app's logs
(``loki.query`` ``redis_adapter`` / ``socket``) with socket.io's disconnect reasons ("transport
close", "ping timeout"…) counted, the ingress controller's own log lines about WebSockets
(``loki.query`` ``ingress_websocket``: "upstream timed out … while proxying upgraded connection"),
which confirm a short proxy timeout, and Redis being unreachable (the adapter's backbone).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from medic.analysis.dataplane import Names, app_logs_grep, names, pct, query, redis_cli, typed
from medic.analysis.redis_health import reply_errors, reply_findings, unreachable
from medic.collectors.k8s.cluster_output import IngressInfo, IngressOutput
from medic.collectors.loki_output import LogPattern, LokiQueryOutput
from medic.domain.incident import Finding
from medic.playbooks.contract import AnalysisInput, AnalyzerDef

DROP_WARN, DROP_CRIT = -0.30, -0.50
MIN_TIMEOUT_SECONDS = 3600  # NGINX ingress docs: raise proxy read/send timeouts for WebSockets
NGINX = "nginx.ingress.kubernetes.io/"
ALB_ATTRIBUTES = "alb.ingress.kubernetes.io/load-balancer-attributes"
DEFAULT_TIMEOUT = 60  # NGINX proxy-read/send-timeout and AWS ALB idle timeout defaults
ERRORISH = re.compile(
    r"(?i)(error|\berr\b|fail|econnrefused|econnreset|etimedout|enotfound|timed? ?out|"
    r"refused|unavailable|exception|disconnect|closed|reconnect|lost)"
)


def _drop(inp: AnalysisInput, n: Names) -> list[Finding]:
    change = query(inp, "websocket_connections_change_30m")
    now, before = query(inp, "websocket_connections"), query(inp, "websocket_connections_30m_ago")
    ratio = change.value if change is not None else None
    now_v = now.value if now is not None else None
    before_v = before.value if before is not None else None
    if (
        ratio is None
        and isinstance(now_v, int | float)
        and isinstance(before_v, int | float)
        and before_v > 0
    ):
        ratio = (now_v - before_v) / before_v
    if not isinstance(ratio, int | float) or ratio > DROP_WARN:
        return []
    if before_v is None and isinstance(now_v, int | float) and ratio > -1:
        before_v = now_v / (1 + ratio)
    numbers = (
        f" ({before_v:.0f} → {now_v:.0f})"
        if isinstance(now_v, int | float) and isinstance(before_v, int | float)
        else ""
    )
    steps = [r.step for r in (change, now, before) if r is not None]
    return [
        Finding(
            analyzer="websocket",
            code="websocket.connection_drop",
            severity="critical" if ratio <= DROP_CRIT else "warning",
            summary=f"open WebSocket connections fell {pct(-ratio)} in 30 minutes{numbers}",
            details={"change_ratio": ratio, "now": now_v, "before": before_v},
            evidence=list(dict.fromkeys(steps)),
            next_steps=[
                f"kubectl get ingress -n {n.namespace} -o yaml",
                app_logs_grep(n, "socket"),
                app_logs_grep(n, "redis"),
                f"kubectl get pods -n {n.namespace} -l app={n.app}",
            ],
        )
    ]


def _seconds(value: str) -> int | None:
    text = value.strip().rstrip("s")
    return int(text) if text.isdigit() else None


def ingress_timeouts(ingress: IngressInfo) -> dict[str, tuple[int, bool]]:
    """{setting: (seconds, explicitly set)} of the timeouts that close idle WebSockets."""
    return annotation_timeouts(ingress.annotations)


def annotation_timeouts(annotations: Mapping[str, str]) -> dict[str, tuple[int, bool]]:
    """:func:`ingress_timeouts` of an ingress's annotations."""
    if any(k.startswith("alb.ingress.kubernetes.io/") for k in annotations):
        attributes = annotations.get(ALB_ATTRIBUTES, "")
        m = re.search(r"idle_timeout\.timeout_seconds\s*=\s*(\d+)", attributes)
        return {
            "alb idle_timeout.timeout_seconds": (int(m.group(1)), True) if m else (DEFAULT_TIMEOUT, False)
        }
    out = {}
    for name in ("proxy-read-timeout", "proxy-send-timeout"):
        raw = annotations.get(NGINX + name)
        value = _seconds(raw) if raw is not None else None
        out[NGINX + name] = (value, True) if value is not None else (DEFAULT_TIMEOUT, False)
    return out


# Why the ingress controller ended a proxied WebSocket, from NGINX's error log wording; plain words.
INGRESS_REASONS: tuple[tuple[str, re.Pattern[str], str], ...] = (
    (
        "upstream_timeout",
        re.compile(r"(?i)upstream timed out.*upgraded connection"),
        "the proxy's read/send timeout ended WebSockets that were quiet for longer than it",
    ),
    (
        "client_timeout",
        re.compile(r"(?i)client timed out.*upgraded connection"),
        "clients stopped sending and the proxy's timeout ended their WebSockets",
    ),
    (
        "upstream_closed",
        re.compile(r"(?i)(upstream prematurely closed|reset by peer|broken pipe)"),
        "the app closed or reset WebSockets under the proxy (pods restarting, crashing or scaled in)",
    ),
    (
        "upstream_refused",
        re.compile(r"(?i)(connect\(\) failed|no live upstreams|connection refused)"),
        "no app pod accepted new WebSockets",
    ),
)
INGRESS_WORDING = {
    "upstream_timeout": "upstream timed out … while proxying upgraded connection",
    "client_timeout": "client timed out … while proxying upgraded connection",
    "upstream_closed": "upstream prematurely closed / reset by peer",
    "upstream_refused": "connect() failed / no live upstreams",
}
# socket.io's disconnect reasons (server side `socket.on("disconnect", reason)`), in plain words.
DISCONNECT_REASONS: dict[str, str] = {
    "ping timeout": "the client stopped answering heartbeats (network, sleeping client or a proxy "
    "that cut the connection)",
    "transport close": "the connection was closed under socket.io (proxy timeout, pod restart, client left)",
    "transport error": "the connection failed with an error",
    "server namespace disconnect": "the server disconnected the socket on purpose",
    "client namespace disconnect": "the client disconnected on purpose",
    "server shutting down": "the app was shutting down (rollout or scale-in)",
    "forced close": "the socket was closed by the server",
    "parse error": "the server got a malformed packet",
}
_DISCONNECT = re.compile("(?i)(" + "|".join(re.escape(r) for r in DISCONNECT_REASONS) + ")")


def ingress_log_reasons(patterns: list[LogPattern]) -> dict[str, int]:
    """Lines per reason (INGRESS_REASONS names, "other" for the rest) of the ingress log patterns."""
    out: dict[str, int] = {}
    for p in patterns:
        reason = next((name for name, rx, _ in INGRESS_REASONS if rx.search(p.pattern)), "other")
        out[reason] = out.get(reason, 0) + p.count
    return out


def disconnect_reasons(patterns: list[LogPattern]) -> dict[str, int]:
    """Lines per socket.io disconnect reason in the app's log patterns, most first."""
    out: dict[str, int] = {}
    for p in patterns:
        if m := _DISCONNECT.search(p.pattern):
            reason = m.group(1).lower()
            out[reason] = out.get(reason, 0) + p.count
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def _ingress_logs(inp: AnalysisInput) -> tuple[str, dict[str, int], str] | None:
    """(step, lines per reason, window) of the ingress controller's WebSocket log lines, if any."""
    for ev, logs in typed(inp, "loki.query", LokiQueryOutput):
        if logs.query == "ingress_websocket":
            reasons = ingress_log_reasons(logs.patterns)
            if sum(reasons.values()):
                return ev.step, reasons, logs.since
    return None


def _reasons_text(reasons: dict[str, int], since: str) -> str:
    meaning = {name: words for name, _, words in INGRESS_REASONS}
    said = [
        f'{count} "{INGRESS_WORDING.get(name, "other WebSocket errors")}"'
        + (f" ({meaning[name]})" if name in meaning else "")
        for name, count in sorted(reasons.items(), key=lambda kv: -kv[1])
        if count
    ]
    return f"the ingress controller logged, in the last {since}: " + "; ".join(said)


def _ingress_log_finding(inp: AnalysisInput, n: Names, confirmed: bool) -> list[Finding]:
    """The ingress controller's own WebSocket errors, when no timeout finding already tells them."""
    logs = _ingress_logs(inp)
    if logs is None or confirmed:
        return []
    step, reasons, since = logs
    timeouts = reasons.get("upstream_timeout", 0) + reasons.get("client_timeout", 0)
    return [
        Finding(
            analyzer="websocket",
            code="websocket.ingress_upstream_timeouts" if timeouts else "websocket.ingress_proxy_errors",
            severity="critical" if reasons.get("upstream_refused") else "warning",
            summary=_reasons_text(reasons, since),
            details={"reasons": reasons, "since": since},
            evidence=[step],
            next_steps=[
                f"kubectl get ingress -n {n.namespace} -o yaml",
                "kubectl logs -n ingress-nginx deployment/ingress-nginx-controller --tail=200 "
                '| grep -E "upgraded connection|socket.io"',
                f"kubectl get pods -n {n.namespace} -l app={n.app}",
            ],
        )
    ]


def _ingress(inp: AnalysisInput, n: Names) -> list[Finding]:
    found = next(typed(inp, "k8s.ingress", IngressOutput), None)
    if found is None:
        return []
    ev, data = found
    short: dict[str, dict[str, str]] = {}
    for ingress in data.ingresses:
        for setting, (value, explicit) in ingress_timeouts(ingress).items():
            if value < MIN_TIMEOUT_SECONDS:
                short.setdefault(str(ingress.name), {})[setting] = (
                    f"{value}s" if explicit else f"not set (default {value}s)"
                )
    if not short:
        return []
    parts = [
        f"{name}: " + ", ".join(f"{k.removeprefix(NGINX)} {v}" for k, v in s.items())
        for name, s in short.items()
    ]
    logs = _ingress_logs(inp)
    timeouts = logs[1].get("upstream_timeout", 0) if logs else 0
    seen = f"; {_reasons_text(logs[1], logs[2])}" if logs and timeouts else ""
    return [
        Finding(
            analyzer="websocket",
            code="websocket.ingress_timeout_short",
            severity="critical" if timeouts else "warning",
            summary="ingress proxy timeouts close idle WebSocket connections early ("
            + "; ".join(parts)
            + f"); {MIN_TIMEOUT_SECONDS}s or more is usual for WebSockets"
            + seen,
            details={
                "ingresses": short,
                "recommended_seconds": MIN_TIMEOUT_SECONDS,
                "ingress_log_reasons": logs[1] if logs else None,
            },
            evidence=[ev.step] + ([logs[0]] if logs and timeouts else []),
            next_steps=[f"kubectl get ingress -n {n.namespace} -o yaml"]
            + [f"kubectl describe ingress {name} -n {n.namespace}" for name in list(short)[:3]],
        )
    ]


def _logs(inp: AnalysisInput, n: Names) -> list[Finding]:
    out: list[Finding] = []
    for ev, logs in typed(inp, "loki.query", LokiQueryOutput):
        name = logs.query
        if name not in ("redis_adapter", "socket"):
            continue
        bad = [
            p
            for p in logs.patterns
            if p.level in ("error", "fatal", "50", "60") or ERRORISH.search(p.pattern)
        ]
        if not bad:
            continue
        lines = sum(p.count for p in bad)
        top = "; ".join(f"{p.pattern} (x{p.count})" for p in bad[:3])
        redis = name == "redis_adapter"
        reasons = disconnect_reasons(bad)
        why = (
            "; disconnect reasons: "
            + "; ".join(f"{r} x{c} ({DISCONNECT_REASONS[r]})" for r, c in reasons.items())
            if reasons
            else ""
        )
        out.append(
            Finding(
                analyzer="websocket",
                code="websocket.redis_adapter_errors" if redis else "websocket.socket_errors",
                severity="warning",
                summary=(
                    f"{lines} socket.io Redis adapter error lines in the last {logs.since}: "
                    if redis
                    else f"{lines} socket error lines in the last {logs.since}: "
                )
                + top
                + (" — events are not relayed between pods" if redis else "")
                + why,
                details={
                    "lines": lines,
                    "patterns": [p.model_dump() for p in bad[:5]],
                    "logql": logs.logql,
                    "disconnect_reasons": reasons,
                },
                evidence=[ev.step],
                next_steps=[app_logs_grep(n, "redis" if redis else "socket")]
                + ([redis_cli(n, "ping")] if redis else []),
            )
        )
    return out


def websocket(inp: AnalysisInput) -> list[Finding]:
    n = names(inp)
    timeout = _ingress(inp, n)
    confirmed = any(f.details.get("ingress_log_reasons") for f in timeout if f.severity == "critical")
    findings = _drop(inp, n) + timeout + _ingress_log_finding(inp, n, confirmed) + _logs(inp, n)
    findings += unreachable(
        inp, n, "websocket", "websocket.redis_unreachable", context=" (socket.io's Redis adapter needs it)"
    )
    # Redis up but refusing (MISCONF, BUSY, NOAUTH…): the adapter's publishes fail the same way
    findings += [
        f.model_copy(
            update={
                "analyzer": "websocket",
                "code": "websocket.redis_" + f.code.removeprefix("redis."),
                "summary": f"{f.summary}; socket.io's Redis adapter cannot relay events meanwhile",
            }
        )
        for f in reply_findings(reply_errors(inp), n)
    ]
    return findings


ANALYZERS = [
    AnalyzerDef(
        "websocket",
        websocket,
        "WebSocket trouble (runbook 3.5)",
        codes=(
            *(
                f"websocket.{c}"
                for c in (
                    "connection_drop",
                    "socket_errors",
                    "ingress_proxy_errors",
                    "ingress_timeout_short",
                    "ingress_upstream_timeouts",
                    "redis_adapter_errors",
                    "redis_unreachable",
                )
            ),
            "websocket.redis_*",  # the Redis findings behind dropped sockets, as websocket.redis_<redis code>
        ),
    )
]
