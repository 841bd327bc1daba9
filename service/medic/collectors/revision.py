"""A deploy verification's measurements (runbook 1.3 and 4.2), the new revision against its baseline.

``prometheus.revision_compare``
    Requests, 5xx responses and p99 latency of the new revision's pods since the verification
    started, and of the baseline revision's pods over the hour before it (``offset``), plus the
    alerts firing in the namespace. Pods are told apart by their name, which starts with their
    ReplicaSet's (``<deployment>-<pod-template-hash>-``): the metrics need no extra label.
``loki.revision_errors``
    Error lines per minute in the new revision's logs since the start, and in the baseline's
    over the hour before it.

Both read the revision from :attr:`StepContext.revision` and are ``not_configured`` outside a
verification. The query templates are parameters, so an app with other metric names or log
formats keeps the checks.
"""

from __future__ import annotations

import asyncio
import math
import re
from string import Template
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from medic.collectors.loki import logql_string
from medic.collectors.revision_output import (
    AlertSeen,
    ComparedQuery,
    RevisionCompareOutput,
    RevisionErrorsOutput,
)
from medic.domain.errors import NotConfigured, StepError
from medic.domain.verification import RevisionWindow
from medic.playbooks.contract import CollectorDef, StepContext
from medic.playbooks.ports import LokiApi, PrometheusApi
from medic.rules.labels import promql_string

MIN_RANGE_S = 60  # shorter ranges hold too few scrapes for rate/increase
MAX_ALERTS = 50

DEFAULT_QUERIES = {
    "requests": "sum(increase(http_requests_total{namespace=$namespace,pod=~$pods}$range))",
    "errors_5xx": "sum(increase(http_requests_total"
    '{namespace=$namespace,pod=~$pods,status_code=~"5.."}$range))',
    "latency_p99": "histogram_quantile(0.99, sum by (le) "
    "(increase(http_request_duration_seconds_bucket{namespace=$namespace,pod=~$pods}$range)))",
}


class RevisionCompareParams(BaseModel):
    """PromQL templates: ``$namespace`` and ``$pods`` (a quoted pod-name regex) are filled in,
    ``$range`` becomes ``[Ns]`` for the new revision and ``[1h] offset Ns`` for the baseline."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    requests: str = DEFAULT_QUERIES["requests"]
    errors_5xx: str = DEFAULT_QUERIES["errors_5xx"]
    latency_p99: str = DEFAULT_QUERIES["latency_p99"]
    alerts: bool = Field(True, description="read the alerts firing in the namespace (ALERTS)")


class RevisionErrorsParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    selector: str = Field(
        "{namespace=$namespace, pod=~$pods}",
        description="LogQL stream selector; $namespace and $pods filled in",
    )
    pattern: str = Field(
        r"(?i)\b(error|exception|fatal|panic)\b", description="a line matching it is an error"
    )


def revision_of(ctx: StepContext, collector: str) -> RevisionWindow:
    if ctx.revision is None:
        raise NotConfigured(f"{collector} runs in a deploy verification only")
    return ctx.revision


MAX_GENERATE_NAME = 58  # the API server keeps this much of a generateName, then adds 5 characters


def pods_regex(replicaset: str) -> str:
    """A regex (RE2) for the names of a ReplicaSet's pods: ``generateName`` (``<replicaset>-``,
    cut to 58 characters for a long name) and 5 random characters."""
    return re.escape(f"{replicaset}-"[:MAX_GENERATE_NAME]) + "[a-z0-9]{5}"


def windows(rev: RevisionWindow, ctx: StepContext) -> tuple[int, str, str]:
    """Seconds since the start, and the ``$range`` of the new revision and of the baseline."""
    elapsed = max(0, int((ctx.now - rev.started_at).total_seconds()))
    span = max(MIN_RANGE_S, elapsed)
    return elapsed, f"[{span}s]", f"[{int(rev.baseline_s)}s] offset {max(elapsed, 1)}s"


def render(template: str, namespace: str, replicaset: str, span: str, quote: Any = promql_string) -> str:
    values = {"namespace": quote(namespace), "pods": quote(pods_regex(replicaset)), "range": span}
    try:
        return Template(template).substitute(values)
    except (KeyError, ValueError) as exc:
        raise StepError(f"query template: unknown or malformed placeholder {exc}") from None


def _value(vector: list[dict[str, Any]]) -> float | None:
    if not vector:
        return None
    try:
        value = float(vector[0].get("value", [None, None])[1])
    except (TypeError, ValueError):
        return None
    return None if math.isnan(value) or math.isinf(value) else value


async def _measure(backend: PrometheusApi, expr: str, timeout: float) -> tuple[float | None, str | None]:
    try:
        return _value(await backend.instant(expr, timeout)), None
    except Exception as exc:
        return None, f"{type(exc).__name__}: {str(exc)[:300]}"


async def _compare(
    backend: PrometheusApi, name: str, template: str, rev: RevisionWindow, ctx: StepContext
) -> ComparedQuery:
    _, new_range, base_range = windows(rev, ctx)
    new_expr = render(template, rev.namespace, rev.replicaset, new_range)
    base_expr = (
        render(template, rev.namespace, rev.baseline_replicaset, base_range)
        if rev.baseline_replicaset
        else ""
    )
    (new, new_err), (base, base_err) = await asyncio.gather(
        _measure(backend, new_expr, ctx.timeout),
        _measure(backend, base_expr, ctx.timeout) if base_expr else _none(),
    )
    return ComparedQuery(
        name=name, expr=new_expr, baseline_expr=base_expr, new=new, baseline=base, error=new_err or base_err
    )


async def _none() -> tuple[None, None]:
    return None, None


async def _alerts(backend: PrometheusApi, rev: RevisionWindow, ctx: StepContext) -> list[AlertSeen]:
    """The alerts firing in the namespace that were not firing yet when the revision's rollout
    began: one the previous revision left firing is not the new one's."""
    since = max(1, int((ctx.now - (rev.rollout_at or rev.started_at)).total_seconds()))
    firing = f'ALERTS{{alertstate="firing",namespace={promql_string(rev.namespace)}}}'
    vector = await backend.instant(f"{firing} unless ({firing} offset {since}s)", ctx.timeout)
    seen = []
    for series in vector[:MAX_ALERTS]:
        labels = series.get("metric") or {}
        seen.append(
            AlertSeen(
                alertname=str(labels.get("alertname", "")),
                severity=labels.get("severity"),
                pod=labels.get("pod"),
                deployment=labels.get("deployment"),
                container=labels.get("container"),
            )
        )
    return seen


async def revision_compare(ctx: StepContext, params: RevisionCompareParams) -> RevisionCompareOutput:
    rev = revision_of(ctx, "prometheus.revision_compare")
    backend = ctx.backends.prometheus
    if backend is None:
        raise NotConfigured("Prometheus is not configured (set MEDIC_PROMETHEUS_URL)")
    elapsed, _, _ = windows(rev, ctx)
    queries = {
        "requests": params.requests,
        "errors_5xx": params.errors_5xx,
        "latency_p99": params.latency_p99,
    }
    compared = await asyncio.gather(*(_compare(backend, n, t, rev, ctx) for n, t in queries.items()))
    alerts: list[AlertSeen] = []
    alerts_error = None
    if params.alerts:
        try:
            alerts = await _alerts(backend, rev, ctx)
        except Exception as exc:
            alerts_error = f"{type(exc).__name__}: {str(exc)[:300]}"
    if all(q.error for q in compared) and (alerts_error or not params.alerts):
        raise StepError("; ".join(f"{q.name}: {q.error}" for q in compared))
    return RevisionCompareOutput(
        revision=rev.revision,
        baseline_revision=rev.baseline_revision,
        elapsed_s=elapsed,
        queries=list(compared),
        alerts=alerts,
        alerts_error=alerts_error,
    )


async def _count(backend: LokiApi, query: str, ctx: StepContext, end_ns: int) -> float:
    data = await backend.query_range(
        query, start_ns=end_ns, end_ns=end_ns, limit=1, timeout=ctx.timeout, step="1s"
    )
    if data.get("resultType") != "matrix":
        raise StepError(f"expected a metric result from Loki, got {str(data.get('resultType'))[:40]!r}")
    total = 0.0
    try:
        for series in data.get("result") or []:
            values = series.get("values") or []
            if values:
                total += float(values[-1][1])
    except (AttributeError, TypeError, ValueError, IndexError):
        raise StepError("Loki's metric result is not a list of [time, value] points") from None
    return total


async def revision_errors(ctx: StepContext, params: RevisionErrorsParams) -> RevisionErrorsOutput:
    rev = revision_of(ctx, "loki.revision_errors")
    backend = ctx.backends.loki
    if backend is None:
        raise NotConfigured("Loki is not configured (set MEDIC_LOKI_URL)")
    elapsed, new_range, _ = windows(rev, ctx)
    line = f" |~ {logql_string(params.pattern)}"

    def query(replicaset: str, span: str) -> str:
        selector = render(params.selector, rev.namespace, replicaset, "", quote=logql_string)
        return f"sum(count_over_time({selector}{line} {span}))"

    new_q = query(rev.replicaset, new_range)
    new = await _count(backend, new_q, ctx, int(ctx.now.timestamp() * 1e9))
    minutes = max(MIN_RANGE_S, elapsed) / 60
    baseline = None
    base_q = ""
    if rev.baseline_replicaset:  # the baseline's hour, evaluated when the verification started
        base_q = query(rev.baseline_replicaset, f"[{int(rev.baseline_s)}s]")
        baseline = await _count(backend, base_q, ctx, int(rev.started_at.timestamp() * 1e9))
        baseline /= rev.baseline_s / 60
    return RevisionErrorsOutput(
        query=new_q,
        baseline_query=base_q,
        elapsed_s=elapsed,
        new_lines=new,
        new_per_minute=new / minutes,
        baseline_per_minute=baseline,
    )


COLLECTORS = (
    CollectorDef(
        "prometheus.revision_compare",
        revision_compare,
        RevisionCompareParams,
        "requests, 5xx and p99 of a revision's pods against its baseline's; alerts firing",
        RevisionCompareOutput,
    ),
    CollectorDef(
        "loki.revision_errors",
        revision_errors,
        RevisionErrorsParams,
        "error lines per minute of a revision's pods against its baseline's",
        RevisionErrorsOutput,
    ),
)
