"""``prometheus.query``: named PromQL queries (runbook 4.2) as instant values and short ranges.

prometheus-api-client is synchronous: every call runs in a worker thread with its own HTTP timeout
(the runner's timeout then bounds the wait).
"""

from __future__ import annotations

import asyncio
import math
import re
from datetime import timedelta
from string import Template
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from medic.collectors.prometheus_output import PrometheusQueryOutput
from medic.domain.durations import Duration
from medic.domain.errors import NotConfigured, StepError
from medic.playbooks.contract import CollectorDef, StepContext
from medic.playbooks.ports import PrometheusApi
from medic.rules.labels import promql_string, require_var, template_vars

Compare = Literal["above", "below"]


class NamedQuery(BaseModel):
    """A PromQL template. ``$namespace``-style placeholders are filled with quoted label values,
    so write ``namespace=$namespace`` (the quotes come with the value)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    expr: str
    unit: str = ""
    description: str = ""
    warn: float | None = None
    crit: float | None = None
    compare: Compare = "above"


# PlayCode's metrics (DESIGN §7): http_requests_total{status_code}, http_request_duration_seconds,
# websocket_connections_active. Extended by the data-plane playbooks.
CATALOG: dict[str, NamedQuery] = {
    q.name: q
    for q in [
        NamedQuery(
            name="error_ratio_5xx",
            expr='sum(rate(http_requests_total{namespace=$namespace,status_code=~"5.."}[5m]))'
            " / sum(rate(http_requests_total{namespace=$namespace}[5m]))",
            unit="ratio",
            description="share of HTTP responses that are 5xx",
            warn=0.01,
            crit=0.05,
        ),
        NamedQuery(
            name="latency_p99",
            expr="histogram_quantile(0.99, sum by (le) "
            "(rate(http_request_duration_seconds_bucket{namespace=$namespace}[5m])))",
            unit="s",
            description="p99 request latency",
            warn=1.0,
            crit=3.0,
        ),
        NamedQuery(
            name="latency_p95",
            expr="histogram_quantile(0.95, sum by (le) "
            "(rate(http_request_duration_seconds_bucket{namespace=$namespace}[5m])))",
            unit="s",
            description="p95 request latency",
            warn=0.5,
            crit=2.0,
        ),
        NamedQuery(
            name="request_rate",
            expr="sum(rate(http_requests_total{namespace=$namespace}[5m]))",
            unit="req/s",
            description="requests per second",
        ),
        NamedQuery(
            name="websocket_connections",
            expr="sum(websocket_connections_active{namespace=$namespace})",
            unit="connections",
            description="open WebSocket connections",
        ),
        NamedQuery(
            name="pod_restarts",
            expr="sum by (pod) (increase(kube_pod_container_status_restarts_total"
            "{namespace=$namespace}[15m]))",
            unit="restarts",
            description="container restarts in 15 minutes per pod",
            warn=1,
            crit=3,
        ),
        # Data-plane diagnosis (runbook 3.2, 3.3, 3.5). No thresholds: the analyzers that read
        # them (latency, mongodb, websocket) judge these numbers in context.
        NamedQuery(
            name="websocket_connections_30m_ago",
            expr="sum(websocket_connections_active{namespace=$namespace} offset 30m)",
            unit="connections",
            description="open WebSocket connections 30 minutes ago",
        ),
        NamedQuery(
            name="websocket_connections_change_30m",
            expr="(sum(websocket_connections_active{namespace=$namespace})"
            " - sum(websocket_connections_active{namespace=$namespace} offset 30m))"
            " / sum(websocket_connections_active{namespace=$namespace} offset 30m)",
            unit="ratio",
            description="change of open WebSocket connections against 30 minutes ago",
            compare="below",
        ),
        NamedQuery(
            name="pod_cpu_usage_cores",
            expr="sum by (pod) (rate(container_cpu_usage_seconds_total"
            "{namespace=$namespace,container=$deployment}[5m]))",
            unit="cores",
            description="CPU used per pod (kubectl top pods)",
        ),
        NamedQuery(
            name="pod_cpu_limit_ratio",
            expr="sum by (pod) (rate(container_cpu_usage_seconds_total"
            "{namespace=$namespace,container=$deployment}[5m]))"
            " / sum by (pod) (kube_pod_container_resource_limits"
            '{namespace=$namespace,container=$deployment,resource="cpu"})',
            unit="ratio",
            description="CPU used per pod as a share of its limit",
        ),
        NamedQuery(
            name="pod_memory_working_set_bytes",
            expr="sum by (pod) (container_memory_working_set_bytes"
            "{namespace=$namespace,container=$deployment})",
            unit="bytes",
            description="memory working set per pod (kubectl top pods)",
        ),
        NamedQuery(
            name="pod_memory_limit_ratio",
            expr="sum by (pod) (container_memory_working_set_bytes"
            "{namespace=$namespace,container=$deployment})"
            " / sum by (pod) (kube_pod_container_resource_limits"
            '{namespace=$namespace,container=$deployment,resource="memory"})',
            unit="ratio",
            description="memory working set per pod as a share of its limit",
        ),
        NamedQuery(
            name="hpa_current_replicas",
            expr="max by (horizontalpodautoscaler) "
            "(kube_horizontalpodautoscaler_status_current_replicas{namespace=$namespace})",
            unit="replicas",
            description="current replicas per HPA",
        ),
        NamedQuery(
            name="hpa_max_replicas",
            expr="max by (horizontalpodautoscaler) "
            "(kube_horizontalpodautoscaler_spec_max_replicas{namespace=$namespace})",
            unit="replicas",
            description="maximum replicas per HPA",
        ),
        NamedQuery(
            name="hpa_replicas_ratio",
            expr="max by (horizontalpodautoscaler) "
            "(kube_horizontalpodautoscaler_status_current_replicas{namespace=$namespace})"
            " / max by (horizontalpodautoscaler) "
            "(kube_horizontalpodautoscaler_spec_max_replicas{namespace=$namespace})",
            unit="ratio",
            description="current replicas per HPA as a share of its maximum",
        ),
        NamedQuery(
            name="volume_usage_ratio",
            expr="max by (persistentvolumeclaim) (kubelet_volume_stats_used_bytes{namespace=$namespace}"
            " / kubelet_volume_stats_capacity_bytes{namespace=$namespace})",
            unit="ratio",
            description="used share of each PersistentVolumeClaim (kubelet volume stats)",
        ),
        NamedQuery(
            name="volume_used_bytes",
            expr="max by (persistentvolumeclaim) (kubelet_volume_stats_used_bytes{namespace=$namespace})",
            unit="bytes",
            description="bytes used on each PersistentVolumeClaim (its range gives the growth)",
        ),
        NamedQuery(
            name="volume_capacity_bytes",
            expr="max by (persistentvolumeclaim) (kubelet_volume_stats_capacity_bytes{namespace=$namespace})",
            unit="bytes",
            description="capacity of each PersistentVolumeClaim's filesystem",
        ),
    ]
}
_IDENT = re.compile(r"^[a-z][a-z0-9_]*$")


class QueryRef(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    expr: str | None = None
    unit: str = ""
    warn: float | None = None
    crit: float | None = None
    compare: Compare = "above"


class PrometheusQueryParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    queries: list[str | QueryRef] = Field(min_length=1)
    range: Duration | None = timedelta(minutes=30)
    step: Duration = timedelta(seconds=60)
    max_series: int = Field(20, ge=1, le=500)

    @field_validator("queries")
    @classmethod
    def _known(cls, value: list[str | QueryRef]) -> list[str | QueryRef]:
        for ref in value:
            name = ref if isinstance(ref, str) else ref.name
            if not _IDENT.match(name):
                raise ValueError(f"query name {name!r}: use lower-case letters, digits and _")
            if (isinstance(ref, str) or ref.expr is None) and name not in CATALOG:
                raise ValueError(f"unknown named query {name!r}; known: {', '.join(sorted(CATALOG))}")
        return value

    def resolved(self) -> list[NamedQuery]:
        out = []
        for ref in self.queries:
            if isinstance(ref, str):
                out.append(CATALOG[ref])
            elif ref.expr is None:
                base = CATALOG[ref.name]
                out.append(
                    base.model_copy(
                        update={
                            k: v
                            for k, v in ref.model_dump().items()
                            if k in ("warn", "crit") and v is not None
                        }
                    )
                )
            else:
                out.append(NamedQuery(**ref.model_dump()))
        return out


def render_query(query: NamedQuery, variables: dict[str, str]) -> str:
    names = {m.group("named") or m.group("braced") for m in Template.pattern.finditer(query.expr)}
    names.discard(None)
    values = {n: promql_string(require_var(variables, n)) for n in sorted(names)}
    return Template(query.expr).substitute(values)


def _number(raw: Any) -> float | None:
    try:
        value = float(raw)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(value) or math.isinf(value) else value


def _result(q: NamedQuery, expr: str, error: str | None = None) -> dict[str, Any]:
    """A query's result with every key of :class:`QueryResult`, nothing measured yet."""
    return {
        "name": q.name,
        "expr": expr,
        "unit": q.unit,
        "description": q.description,
        "warn": q.warn,
        "crit": q.crit,
        "compare": q.compare,
        "series": [],
        "value": None,
        "range": None,
        "error": error,
    }


async def _one(
    backend: PrometheusApi, q: NamedQuery, expr: str, ctx: StepContext, p: PrometheusQueryParams
) -> dict[str, Any]:
    result = _result(q, expr)
    try:
        vector = await backend.instant(expr, ctx.timeout)
        series = [
            {"labels": s.get("metric", {}), "value": _number(s.get("value", [None, None])[1])}
            for s in vector[: p.max_series]
        ]
        result["series"] = series
        values = [s["value"] for s in series if s["value"] is not None]
        result["value"] = (max(values) if q.compare == "above" else min(values)) if values else None
        if p.range is not None:
            end = ctx.now
            matrix = await backend.range(
                expr, end - p.range, end, f"{int(p.step.total_seconds())}s", ctx.timeout
            )
            result["range"] = [
                {
                    "labels": s.get("metric", {}),
                    "points": [[float(t), _number(v)] for t, v in s.get("values", [])],
                }
                for s in matrix[: p.max_series]
            ]
    except Exception as exc:
        result["error"] = f"{type(exc).__name__}: {exc}"
    return result


async def prometheus_query(ctx: StepContext, params: PrometheusQueryParams) -> PrometheusQueryOutput:
    backend = ctx.backends.prometheus
    if backend is None:
        raise NotConfigured("Prometheus is not configured (set MEDIC_PROMETHEUS_URL)")
    variables = template_vars(ctx.target, ctx.labels)
    queries = params.resolved()
    rendered: list[tuple[NamedQuery, str]] = []
    results: list[dict[str, Any]] = []
    for q in queries:
        try:
            rendered.append((q, render_query(q, variables)))
        except StepError as exc:
            results.append(_result(q, q.expr, str(exc)))
    results += await asyncio.gather(*(_one(backend, q, e, ctx, params) for q, e in rendered))
    if results and all(r["error"] for r in results):
        raise StepError("; ".join(f"{r['name']}: {r['error']}" for r in results))
    order = {q.name: i for i, q in enumerate(queries)}
    results.sort(key=lambda r: order.get(r["name"], 0))
    return PrometheusQueryOutput.model_validate({"queries": results})


COLLECTORS = (
    CollectorDef(
        name="prometheus.query",
        fn=prometheus_query,
        params=PrometheusQueryParams,
        summary="named PromQL queries: instant value and a short range",
        output=PrometheusQueryOutput,
    ),
)
