"""What the plugins call on the systems Medic diagnoses, as Protocols: the collectors read through
:class:`KubeApi`, :class:`PrometheusApi`, :class:`LokiApi`, :class:`MongoApi` and :class:`RedisApi`,
the actions write through :class:`KubeApi`.

The plugin contract (and so the pure core that reads it) depends on these, never on
``medic.clients``: the concrete clients (``medic.clients.kube.client.KubeClient``,
``medic.clients.prometheus.PrometheusBackend``...) satisfy them structurally, and mypy checks it
where the runtime builds the backends (:class:`medic.app.backends.Backends`) and the action
context (:class:`medic.remediation.executor`).
"""

from __future__ import annotations

from typing import Any, Literal, Protocol, TypeAlias, overload

KubeObject: TypeAlias = dict[str, Any]
"""One answer of the API server as JSON: an object, a List (``items``) or a Status."""
KubeBody: TypeAlias = KubeObject | list[KubeObject]
"""What Medic sends: an object (a merge patch, DeleteOptions, a new Job) or a JSON Patch."""


class KubeApi(Protocol):
    """The Kubernetes API as the plugins use it: reads (get, list, a log as text) and writes."""

    @overload
    async def request(
        self,
        method: str,
        path: str,
        *,
        query: dict[str, Any] | None = None,
        body: KubeBody | None = None,
        content_type: str = "application/json",
        text: Literal[False] = False,
        retry: bool = True,
    ) -> KubeObject: ...

    @overload
    async def request(
        self,
        method: str,
        path: str,
        *,
        query: dict[str, Any] | None = None,
        body: KubeBody | None = None,
        content_type: str = "application/json",
        text: Literal[True],
        retry: bool = True,
    ) -> str: ...

    async def get(self, path: str, **query: Any) -> KubeObject: ...

    async def list(self, path: str, **query: Any) -> list[KubeObject]: ...

    async def patch(self, path: str, body: KubeBody, content_type: str) -> KubeObject: ...


class PrometheusApi(Protocol):
    """Prometheus' query API: an instant vector, a range matrix."""

    async def instant(self, expr: str, timeout: float) -> list[dict[str, Any]]: ...

    async def range(
        self, expr: str, start: Any, end: Any, step: str, timeout: float
    ) -> list[dict[str, Any]]: ...


class LokiApi(Protocol):
    """Loki's query_range API, and the selector of the ingress controller's log streams."""

    @property
    def ingress_selector(self) -> str: ...

    async def query_range(
        self, query: str, *, start_ns: int, end_ns: int, limit: int, timeout: float, step: str | None = None
    ) -> dict[str, Any]: ...


class MongoApi(Protocol):
    """The MongoDB being diagnosed: a database command, a bounded find."""

    async def command(self, db: str, command: dict[str, Any]) -> dict[str, Any]: ...

    async def find(
        self,
        db: str,
        collection: str,
        query: dict[str, Any],
        *,
        projection: dict[str, Any],
        sort: list[tuple[str, int]],
        limit: int,
    ) -> list[dict[str, Any]]: ...


class RedisApi(Protocol):
    """The Redis being diagnosed: PING's round trip, INFO's raw text, DBSIZE, SLOWLOG."""

    @property
    def db(self) -> int: ...

    async def ping(self) -> float: ...

    async def info(self) -> bytes: ...

    async def dbsize(self) -> int: ...

    async def slowlog(self, count: int) -> tuple[int, list[Any]]: ...
