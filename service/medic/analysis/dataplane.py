"""Shared pieces of the data-plane analyzers: reading evidence, real names, runbook commands.

Pure functions over an :class:`AnalysisInput`. Names come from the incident's target when it is
the system in question (statefulset ``mongodb`` -> pod ``mongodb-0``; deployment ``redis``) and
otherwise from PlayCode's defaults (DESIGN §7), so every next step can be pasted as is.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from medic.collectors.output_base import unknown_keys
from medic.collectors.prometheus_output import PrometheusQueryOutput, SeriesValue
from medic.domain.evidence import Evidence, StepStatus
from medic.playbooks.contract import AnalysisInput

DEFAULT_NAMESPACE = "playcode"
DEFAULT_APP = "playcode-app"
DEFAULT_MONGO_STATEFULSET = "mongodb"
DEFAULT_REDIS = "redis"
FAILED = (StepStatus.ERROR, StepStatus.TIMEOUT)


@dataclass(frozen=True)
class Names:
    namespace: str
    app: str
    mongo_statefulset: str
    redis: str
    # The MongoDB pod the runbook commands exec into: the replica-set member that answers (see
    # medic.analysis.mongodb.aim); ordinal 0 only when nothing better is known.
    mongo_exec_pod: str = ""

    @property
    def mongo_pod(self) -> str:
        return self.mongo_exec_pod or f"{self.mongo_statefulset}-0"


def names(inp: AnalysisInput) -> Names:
    target = inp.target
    namespace = (target.namespace if target and target.namespace else "") or inp.labels.get("namespace", "")
    app, mongo, redis = DEFAULT_APP, DEFAULT_MONGO_STATEFULSET, DEFAULT_REDIS
    if target is not None and target.kind == "statefulset" and "mongo" in target.name:
        mongo = target.name
    elif target is not None and target.kind == "deployment":
        if "redis" in target.name:
            redis = target.name
        else:
            app = target.name
    return Names(namespace or DEFAULT_NAMESPACE, app, mongo, redis)


# --------------------------------------------------------------------------- runbook commands


def mongosh(n: Names, script: str, db: str = "") -> str:
    database = f"{db} " if db else ""
    return f'kubectl exec -it {n.mongo_pod} -n {n.namespace} -- mongosh {database}--eval "{script}"'


def current_op_cmd(n: Names, secs: int = 3) -> str:
    # \$ as in the runbook: the command is pasted into a shell, inside double quotes.
    return mongosh(n, f"db.currentOp({{'secs_running': {{'\\$gte': {secs}}}}})")


def redis_cli(n: Names, args: str) -> str:
    return f"kubectl exec -it deployment/{n.redis} -n {n.namespace} -- redis-cli {args}"


def app_logs_grep(n: Names, word: str) -> str:
    return f'kubectl logs deployment/{n.app} -n {n.namespace} | grep -i "{word}"'


# --------------------------------------------------------------------------- evidence


M = TypeVar("M", bound=BaseModel)


class EvidenceShapeError(ValueError):
    """A step's data does not read as its collector's output model (a bundle written by hand or
    by an older Medic). It is never judged as if the data were absent: an analyzer that meets it
    fails, and the pipeline reports ``analyzer.error`` naming the step and the fields. The
    message names fields and what was wrong with them, never their values (evidence may hold
    secrets)."""

    def __init__(self, ev: Evidence, wrong: list[str]) -> None:
        more = f" (and {len(wrong) - 3} more)" if len(wrong) > 3 else ""
        super().__init__(
            f"{ev.step} ({ev.collector}) data is not of its output model: {'; '.join(wrong[:3])}{more}"
        )

    @classmethod
    def of(cls, ev: Evidence, exc: ValidationError) -> EvidenceShapeError:
        return cls(
            ev,
            [
                f"{'.'.join(str(p) for p in e['loc']) or '(the data)'}: {e['msg']}"
                for e in exc.errors(include_url=False, include_input=False)
            ],
        )


def typed(inp: AnalysisInput, collector: str, model: type[M]) -> Iterator[tuple[Evidence, M]]:
    """(evidence, data as the collector's output model) of every successful run of ``collector``
    (issue 16.3: analyzers read declared fields, not ``.get`` on Any). Data of another shape
    raises :class:`EvidenceShapeError`."""
    return validated(inp.of(collector), model)


def validated(runs: Iterable[Evidence], model: type[M]) -> Iterator[tuple[Evidence, M]]:
    """:func:`typed` over any runs (a verification sample's evidence, not an AnalysisInput's)."""
    for ev in runs:
        if ev.ok and ev.data is not None:
            try:
                data = model.model_validate(ev.data)
            except ValidationError as exc:
                raise EvidenceShapeError.of(ev, exc) from None
            if unknown := unknown_keys(model, ev.data):  # a misspelt key would read as its default
                raise EvidenceShapeError(ev, [f"{'.'.join(map(str, p))}: not a field" for p in unknown])
            yield ev, data


def typed_first(inp: AnalysisInput, collector: str, model: type[M]) -> M | None:
    """The data of the first run of ``collector`` that :func:`typed` reads, or None."""
    found = next(typed(inp, collector, model), None)
    return found[1] if found else None


def failures(inp: AnalysisInput, prefix: str) -> list[Evidence]:
    """Runs of collectors named ``prefix...`` that failed (error or timeout)."""
    return [e for e in inp.evidence.values() if e.collector.startswith(prefix) and e.status in FAILED]


def all_failed(inp: AnalysisInput, prefix: str) -> list[Evidence]:
    """The failures when *every* run of ``prefix...`` collectors failed and there was one, else []."""
    runs = [e for e in inp.evidence.values() if e.collector.startswith(prefix)]
    failed = [e for e in runs if e.status in FAILED]
    tried = [e for e in runs if e.status not in (StepStatus.NOT_CONFIGURED, StepStatus.SKIPPED)]
    return failed if failed and len(failed) == len(tried) else []


@dataclass(frozen=True)
class QueryResult:
    step: str
    name: str
    value: float | None
    values: list[SeriesValue]  # the query's series, typed
    warn: float | None
    crit: float | None

    def by_label(self, label: str) -> dict[str, float]:
        """{value of ``label``: series value} of the series with a value ("?" when unlabelled)."""
        return {s.labels.get(label, "?"): s.value for s in self.values if s.value is not None}


def query(inp: AnalysisInput, name: str) -> QueryResult | None:
    """The named Prometheus query's result from any successful ``prometheus.query`` run."""
    for ev, data in typed(inp, "prometheus.query", PrometheusQueryOutput):
        for q in data.queries:
            if q.name == name and not q.error:
                return QueryResult(ev.step, name, q.value, list(q.series), q.warn, q.crit)
    return None


def series_over(result: QueryResult | None, limit: float, label: str) -> list[tuple[str, float]]:
    """(label value, value) of the series at or above ``limit``, highest first."""
    if result is None:
        return []
    hits = [
        (s.labels.get(label, "?"), s.value) for s in result.values if s.value is not None and s.value >= limit
    ]
    return sorted(hits, key=lambda kv: -kv[1])


# --------------------------------------------------------------------------- plain words

# Why a backend did not answer, from its steps' errors: what on-call checks first.
_WHY_NO_ANSWER: tuple[tuple[re.Pattern[str], str], ...] = (
    (
        re.compile(
            r"(?i)(name or service not known|nodename nor servname|name resolution|getaddrinfo|"
            r"no such host|NXDOMAIN)"
        ),
        "its host name does not resolve (the Service is missing or misspelt)",
    ),
    (
        re.compile(r"(?i)(connection refused|errno 111|error 111|ECONNREFUSED)"),
        "nothing accepts connections at its address (the pod is down or restarting, or the Service "
        "has no ready endpoints)",
    ),
    (
        re.compile(r"(?i)(reset by peer|closed the connection|connection closed|broken pipe|EOF)"),
        "it dropped the connection mid-answer (crashing, restarting or overloaded)",
    ),
    (
        re.compile(r"(?i)(timed? ?out|no answer within)"),
        "it gave no answer in time (overloaded, paused, or the network drops packets)",
    ),
)


def why_no_answer(failed: list[Evidence]) -> str:
    """The plain-words reason a backend did not answer, or "" when the errors say nothing known."""
    text = " ".join(f"{e.status.value} {e.error or ''}" for e in failed)
    return next((why for rx, why in _WHY_NO_ANSWER if rx.search(text)), "")


# --------------------------------------------------------------------------- formatting


def pct(ratio: float) -> str:
    return f"{ratio * 100:.0f}%"


def human_bytes(value: float | None) -> str:
    if value is None:
        return "?"
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(size) < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"


def seconds(value: float) -> str:
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.1f} s"
