"""The plugin contract: the registry of collectors, analyzers and actions, with each one's typed
params. It imports no plugin.

The catalogue of shipped plugins is built once at start-up by
:func:`medic.app.catalogue.default_registry` (an explicit list, no import-time side effects).
The loader validates every playbook step's params against the registered model, so a typo in a
playbook fails ``medic check`` and start-up, never first at 3 a.m. An action's definition is
typed by its params model (``ActionDef[RollbackParams]``): the model the loader validates with is
the one its ``plan`` reads.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict

from medic.domain.evidence import Evidence
from medic.domain.incident import Finding, IncidentAlert, Target
from medic.domain.verification import RevisionWindow
from medic.playbooks.action import Action, EarlierAction
from medic.playbooks.ports import KubeApi, LokiApi, MongoApi, PrometheusApi, RedisApi


class Clients(Protocol):
    """The systems a collector may read (None: not configured) and the namespaces it may touch.
    Built from the settings by :class:`medic.app.backends.Backends`, whose concrete clients
    satisfy the Protocols of :mod:`medic.playbooks.ports` (the contract imports no client)."""

    @property
    def prometheus(self) -> PrometheusApi | None: ...
    @property
    def kube(self) -> KubeApi | None: ...
    @property
    def mongo(self) -> MongoApi | None: ...
    @property
    def redis(self) -> RedisApi | None: ...
    @property
    def loki(self) -> LokiApi | None: ...
    @property
    def namespaces(self) -> Sequence[str]: ...


class NoParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


P = TypeVar("P", bound=BaseModel)
OutT = TypeVar("OutT", bound=BaseModel)  # a collector's output model


@dataclass(frozen=True)
class StepContext:
    """What a collector sees: the incident's target and alerts, the backends, the clock."""

    target: Target | None
    labels: Mapping[str, str]
    alerts: Sequence[IncidentAlert]
    backends: Clients
    now: datetime
    timeout: float
    # One playbook run's cache, shared by all its collectors (dataclasses.replace keeps the dict):
    # e.g. medic.clients.kube.reads fetches the Deployment once however many collectors need it.
    memo: dict[str, Any] = field(default_factory=dict)
    # A deploy verification's revision and baseline (None outside a verification): the
    # collectors that compare a revision with its baseline read it (medic.collectors.revision).
    revision: RevisionWindow | None = None


@dataclass(frozen=True)
class AnalysisInput:
    """What an analyzer sees: data only (a stored bundle can be re-analyzed offline)."""

    target: Target | None
    labels: Mapping[str, str]
    alerts: Sequence[IncidentAlert]
    evidence: Mapping[str, Evidence]  # by step id
    now: datetime

    def of(self, collector: str) -> list[Evidence]:
        return [e for e in self.evidence.values() if e.collector == collector]


CollectorFn = Callable[[StepContext, P], Awaitable[OutT]]
AnalyzerFn = Callable[[AnalysisInput], list[Finding]]


@dataclass(frozen=True)
class CollectorDef(Generic[P, OutT]):
    """A collector, its params model and its output model: ``fn`` reads exactly the ``params``
    the loader built and answers an instance of ``output`` (issue 16.3: the model its analyzers
    read); the runner stores its JSON dump. Both models are required, ``NoParams`` included: mypy
    infers P and OutT from ``fn`` and the models together, so a model that is not the one ``fn``
    reads or returns is a type error here."""

    name: str
    fn: CollectorFn[P, OutT]
    params: type[P]
    summary: str
    output: type[OutT]


@dataclass(frozen=True)
class AnalyzerDef:
    name: str
    fn: AnalyzerFn
    summary: str = ""
    # The finding codes it may return; ``area.prefix*`` for a family named at run time (a metric
    # query's name, a verification check). ``medic test`` refuses an expected code no analyzer of
    # the playbook declares; the analyzer contract checks every finding against it.
    codes: tuple[str, ...] = ()

    def declares(self, code: str) -> bool:
        return any(code == c or (c.endswith("*") and code.startswith(c[:-1])) for c in self.codes)


@dataclass(frozen=True)
class ActionDef(Generic[P]):
    """An action and its params model: ``impl`` plans with exactly the ``params`` the loader built."""

    name: str
    impl: Action[P, Any]  # its facts model is its own business (ActionPlan[F] from plan to verify)
    # Required, NoParams included: mypy infers P from impl and params together, so a model that
    # is not the one ``impl.plan`` reads (a forgotten RollbackParams) is a type error here.
    params: type[P]
    summary: str = ""
    target_kinds: tuple[str, ...] = ("deployment",)
    approve_only: bool = False  # never runs in rule mode "auto"
    guarded_write: bool = False  # the write carries its own precondition (safe to re-attempt)
    kube_permissions: tuple[tuple[str, str, str], ...] = ()  # (apiGroup, resource, verb) it writes
    # Its earlier run as the target's annotations record it (the rollback's annotation), read
    # where no plan is made (``medic test``, replay): what its plan reports as
    # ``ActionFacts.earlier_on_target`` from the live target.
    recorded_on_target: Callable[[Mapping[str, str]], EarlierAction | None] | None = None


@dataclass
class Registry:
    collectors: dict[str, CollectorDef[Any, Any]] = field(default_factory=dict)
    analyzers: dict[str, AnalyzerDef] = field(default_factory=dict)
    actions: dict[str, ActionDef[Any]] = field(default_factory=dict)

    @staticmethod
    def _put(table: dict[str, Any], d: Any) -> None:
        if d.name in table:
            raise ValueError(f"{d.name!r} is registered twice")
        table[d.name] = d

    def add(self, *defs: CollectorDef[Any, Any] | AnalyzerDef | ActionDef[Any]) -> Registry:
        for d in defs:
            if isinstance(d, CollectorDef):
                self._put(self.collectors, d)
            elif isinstance(d, AnalyzerDef):
                self._put(self.analyzers, d)
            else:
                self._put(self.actions, d)
        return self
