"""The Kubernetes client: kubernetes_asyncio's ApiClient (auth, TLS, kubeconfig, in-cluster)
used as a transport. Every call goes through :meth:`KubeClient.request`, which maps errors,
retries transient ones a bounded number of times with backoff, and counts requests.

Objects are plain dicts (the JSON the API server sends): they are stored in bundles, redacted and
analyzed as data, with no model classes in between. The seam is typed all the same: a read answers a
:data:`KubeObject` (a JSON object) or fails with a :class:`KubeError` saying what came instead, so a
caller never has to guess the shape of an answer, and nothing but a ``StepError`` leaves the client.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, TypeAlias, overload

import aiohttp
import structlog
from kubernetes_asyncio import client as k8s
from kubernetes_asyncio import config as k8s_config
from kubernetes_asyncio.config.config_exception import ConfigException

from medic.clients.kube.errors import KubeError, KubeTransient, error_for_status
from medic.domain.errors import ConfigError

log = structlog.get_logger("medic.clients.kube")

JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"

KubeObject: TypeAlias = dict[str, Any]
"""One answer of the API server as JSON: an object, a List (``items``) or a Status."""
KubeBody: TypeAlias = KubeObject | list[KubeObject]
"""What Medic sends: an object (a merge patch, DeleteOptions, a new Job) or a JSON Patch."""


def as_object(answer: Any, what: str) -> KubeObject:
    """``answer`` when it is a JSON object; else a :class:`KubeError` naming what came instead."""
    if not isinstance(answer, dict):
        raise KubeError(f"{what}: the answer is not a JSON object ({type(answer).__name__})")
    return answer


class KubeSettings(Protocol):
    """What the client reads of Medic's settings (:class:`medic.app.settings.Settings` has it)."""

    @property
    def kube_mode(self) -> str: ...

    @property
    def kubeconfig(self) -> str | None: ...

    @property
    def kube_context(self) -> str | None: ...


@dataclass
class RetryPolicy:
    attempts: int = 4  # total tries, never unbounded
    base_delay: float = 0.1
    max_delay: float = 2.0
    request_timeout: float = 10.0

    def delay(self, attempt: int, retry_after: str | None) -> float:
        if retry_after and retry_after.isdigit():
            return min(float(retry_after), self.max_delay)
        backoff: float = self.base_delay * (2.0**attempt)
        return min(backoff, self.max_delay) * (0.5 + random.random() / 2)


@dataclass
class KubeClient:
    api: k8s.ApiClient
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    requests: Counter[str] = field(default_factory=Counter)  # "GET /apis/apps/v1/..." -> count

    @classmethod
    async def from_configuration(cls, configuration: k8s.Configuration, **kw: Any) -> KubeClient:
        return cls(api=k8s.ApiClient(configuration=configuration), **kw)

    @classmethod
    async def from_settings(cls, settings: KubeSettings) -> KubeClient | None:
        """In-cluster, kubeconfig (KUBECONFIG / MEDIC_KUBE_CONTEXT) or None when off/unavailable."""
        mode = settings.kube_mode
        if mode == "off":
            return None
        configuration = k8s.Configuration()
        in_cluster = bool(os.environ.get("KUBERNETES_SERVICE_HOST"))
        if mode == "in-cluster" or (mode == "auto" and in_cluster):
            try:
                k8s_config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
            except ConfigException as exc:
                raise ConfigError(f"in-cluster Kubernetes config: {exc}", field="kube_mode") from exc
            return cls(api=k8s.ApiClient(configuration=configuration))
        path = settings.kubeconfig or os.environ.get("KUBECONFIG") or str(Path.home() / ".kube" / "config")
        path = path.split(os.pathsep)[0]
        if not await asyncio.to_thread(Path(path).is_file):
            if mode == "kubeconfig":
                raise ConfigError("kubeconfig not found", file=path, field="kubeconfig")
            log.info("no Kubernetes configuration found: Kubernetes collectors are not_configured")
            return None
        try:
            await k8s_config.load_kube_config(
                config_file=path, context=settings.kube_context, client_configuration=configuration
            )
        except (ConfigException, OSError, ValueError) as exc:
            raise ConfigError(f"kubeconfig: {exc}", file=path, field="kube_context") from exc
        return cls(api=k8s.ApiClient(configuration=configuration))

    async def close(self) -> None:
        await self.api.close()

    # ------------------------------------------------------------------ transport
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

    async def request(
        self,
        method: str,
        path: str,
        *,
        query: dict[str, Any] | None = None,
        body: KubeBody | None = None,
        content_type: str = "application/json",
        text: bool = False,
        retry: bool = True,
    ) -> KubeObject | str:
        """One API call with bounded retries of transient failures. Returns the JSON object the
        API answered (``text``: the body as text); an answer that is not one is a KubeError."""
        raw = await self._call(method, path, query, body, content_type, retry)
        if text:
            return raw.decode("utf-8", errors="replace")
        return decode_object(raw, f"{method} {path}")

    async def _call(
        self,
        method: str,
        path: str,
        query: dict[str, Any] | None,
        body: KubeBody | None,
        content_type: str,
        retry: bool,
    ) -> bytes:
        """The body of a 2xx answer, after bounded retries of transient failures."""
        params = [(k, v) for k, v in (query or {}).items() if v is not None]
        headers = {"Accept": "application/json, */*", "Content-Type": content_type}
        attempts = self.retry.attempts if retry else 1
        last: KubeError | None = None
        for attempt in range(attempts):
            self.requests[f"{method} {path}"] += 1
            retry_after: str | None = None
            try:
                resp = await self.api.call_api(
                    path,
                    method,
                    query_params=params,
                    header_params=dict(headers),
                    body=body,
                    auth_settings=["BearerToken"],
                    _preload_content=False,
                    _request_timeout=self.retry.request_timeout,
                )
                raw: bytes = await resp.read()
                status = resp.status
                retry_after = resp.headers.get("Retry-After")
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                last = KubeTransient(f"{method} {path}: {type(exc).__name__}: {exc}".rstrip(": "))
            else:
                if 200 <= status < 300:
                    return raw
                last = self._error(method, path, status, raw)
                if not isinstance(last, KubeTransient):
                    raise last
            if attempt + 1 < attempts:
                await asyncio.sleep(self.retry.delay(attempt, retry_after))
        assert last is not None
        raise last

    @staticmethod
    def _error(method: str, path: str, status: int, raw: bytes) -> KubeError:
        try:
            body = json.loads(raw)
        except ValueError:
            body = raw.decode("utf-8", errors="replace")[:500]
        message = body.get("message", "") if isinstance(body, dict) else str(body)
        reason = body.get("reason", "") if isinstance(body, dict) else ""
        return error_for_status(
            status, f"{method} {path}: {status} {reason} {message}".strip(), reason=reason, body=body
        )

    # ------------------------------------------------------------------ helpers
    async def get(self, path: str, **query: Any) -> KubeObject:
        return await self.request("GET", path, query=query)

    async def list(self, path: str, **query: Any) -> list[KubeObject]:
        return items_of(await self.request("GET", path, query=query), path)

    async def patch(self, path: str, body: KubeBody, content_type: str) -> KubeObject:
        return await self.request("PATCH", path, body=body, content_type=content_type)

    @property
    def total_requests(self) -> int:
        return sum(self.requests.values())


def decode_object(raw: bytes, what: str) -> KubeObject:
    """The JSON object in a 2xx answer's body; anything else (empty, not JSON, an array, a
    proxy's HTML page) is a :class:`KubeError`, never a ValueError out of a step."""
    try:
        answer = json.loads(raw)
    except ValueError:
        raise KubeError(f"{what}: the answer is not JSON ({raw[:80]!r})") from None
    return as_object(answer, what)


def items_of(answer: Any, path: str) -> list[KubeObject]:
    """The ``items`` of a LIST answer. Anything else (a proxy's page, a wrong URL) is an error,
    never "none found": an empty list is evidence."""
    if not isinstance(answer, dict) or "items" not in answer:
        raise KubeError(f"GET {path}: the answer is not a list ({type(answer).__name__} without items)")
    items = answer["items"] or []
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise KubeError(f"GET {path}: the list's items are not objects")
    return list(items)


def ns_path(group_version: str, namespace: str, resource: str, name: str = "") -> str:
    """``/api/v1/namespaces/ns/pods/name`` or ``/apis/apps/v1/namespaces/ns/deployments``."""
    base = "/api/v1" if group_version == "v1" else f"/apis/{group_version}"
    path = f"{base}/namespaces/{namespace}/{resource}"
    return f"{path}/{name}" if name else path


def cluster_path(group_version: str, resource: str, name: str = "") -> str:
    base = "/api/v1" if group_version == "v1" else f"/apis/{group_version}"
    return f"{base}/{resource}/{name}" if name else f"{base}/{resource}"
