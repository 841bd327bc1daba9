"""A resumable watch on the Deployments of Medic's namespaces that reports every new revision
that becomes current: the trigger of a deploy verification.

One loop per namespace (the chart's Role grants ``list`` and ``watch`` there and nowhere else):

1. LIST the Deployments (paged) and remember each one's state; report nothing: what exists at
   start is not a deploy;
2. WATCH from the list's resourceVersion (kubernetes-asyncio's ``Watch``, bookmarks on, a
   server-side ``timeoutSeconds``). Each ADDED/MODIFIED object is compared with the remembered
   state by the pure :func:`medic.domain.deploy_changes.new_revision` (Medic's own rollbacks,
   paused and deleted Deployments, scale-only changes are not deploys); DELETED forgets it;
   every event and BOOKMARK moves the resume point;
3. when the stream ends (timeout, dropped connection) WATCH again from the last resourceVersion
   seen: the API server replays what happened meanwhile, nothing is missed;
4. on 410 Gone (the resume point was compacted away) LIST again and compare the list with the
   remembered state: a revision that rose during the gap is reported once, none twice;
5. any other failure (403, 5xx, connection refused, a read timeout) is logged and retried with
   exponential backoff, capped.

The loop never raises except :class:`asyncio.CancelledError`. ``on_new_revision(change)`` is
awaited once per change, in order per namespace; its exceptions are logged and the watch goes
on (a change is consumed when the callback is called: make the callback durable, e.g. enqueue).

Usage::

    watch = DeploymentWatch(kube, settings.namespaces, on_new_revision)
    task = asyncio.create_task(watch.run())
    await watch.wait_synced()   # optional: every namespace listed once
    ...
    watch.stop()
    await task                  # run() returns once the loops are cancelled
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import structlog
from kubernetes_asyncio import client as k8s
from kubernetes_asyncio import watch as k8s_watch
from kubernetes_asyncio.client.exceptions import ApiException

from medic.clients.kube.client import KubeClient, RetryPolicy, items_of, ns_path
from medic.clients.kube.errors import KubeError
from medic.domain.deploy_changes import RevisionChange, new_revision, remembered

log = structlog.get_logger("medic.clients.kube.watch")

OnNewRevision = Callable[[RevisionChange], Awaitable[None]]
Obj = dict[str, Any]

LIST_PAGE = 500


@dataclass(frozen=True)
class WatchPolicy:
    """How one namespace's loop talks to the API server."""

    # the server ends each WATCH after this long; the loop resumes from where it was
    timeout_seconds: int = 300
    # the client gives up on a WATCH this long after the server should have ended it
    # (a half-open connection that delivers nothing)
    read_grace_seconds: float = 30.0
    # a WATCH the server ends sooner than this without one event counts as a failure (backoff),
    # so a proxy that closes every stream at once does not make the loop spin
    min_quiet_seconds: float = 1.0
    # delay before retrying after a failure: base * 2^(failures - 1), capped, with jitter
    backoff: RetryPolicy = field(default_factory=lambda: RetryPolicy(base_delay=0.5, max_delay=30.0))


class _Expired(Exception):
    """410 Gone: the resume point is older than the API server's history."""


class _EndedAtOnce(Exception):
    """The server ended a WATCH at once, without any event."""


@dataclass
class _Cursor:
    """One namespace's loop: the remembered Deployments and where to resume."""

    namespace: str
    known: dict[str, Obj] = field(default_factory=dict)  # name -> remembered(deployment)
    resource_version: str | None = None  # None: (re-)list first
    listed: bool = False  # listed once: a later list reports what changed
    failures: int = 0


class DeploymentWatch:
    """Reports each new revision of a Deployment in ``namespaces`` to ``on_new_revision``."""

    def __init__(
        self,
        kube: KubeClient,
        namespaces: Iterable[str],
        on_new_revision: OnNewRevision,
        *,
        policy: WatchPolicy | None = None,
    ) -> None:
        self.kube = kube
        self.namespaces = tuple(dict.fromkeys(namespaces))
        self.policy = policy or WatchPolicy()
        self._on_new_revision = on_new_revision
        self._stop = asyncio.Event()
        self._synced = {ns: asyncio.Event() for ns in self.namespaces}

    # ------------------------------------------------------------------ lifecycle
    async def run(self) -> None:
        """Watch until :meth:`stop` (then return) or cancellation (then propagate it). Once: a
        stopped watch is not restarted (make a new one)."""
        loops = [
            asyncio.create_task(self._loop(_Cursor(ns)), name=f"deploy-watch:{ns}") for ns in self.namespaces
        ]
        log.info("deploy_watch.started", namespaces=list(self.namespaces))
        try:
            await self._stop.wait()
        finally:
            for task in loops:
                task.cancel()
            await asyncio.gather(*loops, return_exceptions=True)
            log.info("deploy_watch.stopped", namespaces=list(self.namespaces))

    def stop(self) -> None:
        """Make :meth:`run` cancel its loops and return."""
        self._stop.set()

    async def wait_synced(self) -> None:
        """Until every namespace was listed once (changes after that point are reported). It
        waits as long as a namespace cannot be listed (RBAC, API down): give it a timeout."""
        for event in self._synced.values():
            await event.wait()

    # ------------------------------------------------------------------ one namespace
    async def _loop(self, cursor: _Cursor) -> None:
        while True:
            try:
                if cursor.resource_version is None:
                    await self._list(cursor)
                await self._watch(cursor)
            except _Expired:
                log.info("deploy_watch.expired", namespace=cursor.namespace, gone=cursor.resource_version)
                cursor.resource_version = None
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the loop outlives any failure; it is logged
                cursor.failures += 1
                delay = self.policy.backoff.delay(cursor.failures - 1, None)
                log.warning(
                    "deploy_watch.error",
                    namespace=cursor.namespace,
                    error=_describe(exc),
                    status=getattr(exc, "status", None),
                    failures=cursor.failures,
                    retry_in=round(delay, 3),
                    resume_from=cursor.resource_version,
                )
                await asyncio.sleep(delay)

    async def _list(self, cursor: _Cursor) -> None:
        """LIST (paged); on a re-list, report what changed since the remembered state."""
        path = ns_path("apps/v1", cursor.namespace, "deployments")
        items: list[Obj] = []
        resource_version = ""
        token: str | None = None
        while True:
            answer = await self.kube.get(path, limit=LIST_PAGE, **{"continue": token})
            items += items_of(answer, path)
            meta = answer.get("metadata") or {}
            resource_version = resource_version or str(meta.get("resourceVersion") or "")
            token = meta.get("continue") or None
            if token is None:
                break
        if not resource_version:
            raise KubeError(f"GET {path}: the list has no resourceVersion to watch from")
        relist = cursor.listed
        current = {str(d["metadata"]["name"]): d for d in items}
        for name in set(cursor.known) - set(current):
            del cursor.known[name]
        for name, deployment in current.items():
            await self._seen(cursor, name, deployment, report=relist)
        cursor.resource_version = resource_version
        cursor.listed = True
        cursor.failures = 0
        self._synced[cursor.namespace].set()
        log.info(
            "deploy_watch.listed",
            namespace=cursor.namespace,
            deployments=len(current),
            resource_version=resource_version,
            relist=relist,
        )

    async def _watch(self, cursor: _Cursor) -> None:
        """One WATCH request from ``cursor.resource_version`` until the server ends it. A
        stream that stayed up ``min_quiet_seconds`` was healthy: however it ends, the backoff
        starts over; one that ends at once without an event is a failure."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            events = await self._stream(cursor)
        finally:
            if loop.time() - started >= self.policy.min_quiet_seconds:
                cursor.failures = 0
        if not events and loop.time() - started < self.policy.min_quiet_seconds:
            raise _EndedAtOnce("the API server ended the watch at once, without any event")

    async def _stream(self, cursor: _Cursor) -> int:
        """Read one WATCH stream with kubernetes-asyncio's Watch; returns how many events came."""
        path = ns_path("apps/v1", cursor.namespace, "deployments")
        self.kube.requests[f"WATCH {path}"] += 1
        events = 0
        timeout = aiohttp.ClientTimeout(total=self.policy.timeout_seconds + self.policy.read_grace_seconds)
        apps = k8s.AppsV1Api(self.kube.api)
        log.debug("deploy_watch.watching", namespace=cursor.namespace, resume_from=cursor.resource_version)
        # return_type "object": the events' objects stay the API server's JSON (dicts)
        async with k8s_watch.Watch(return_type="object") as watch:
            stream = watch.stream(
                apps.list_namespaced_deployment,
                cursor.namespace,
                resource_version=cursor.resource_version,
                allow_watch_bookmarks=True,
                timeout_seconds=self.policy.timeout_seconds,
                _request_timeout=timeout,
            )
            try:
                async for event in stream:
                    events += 1
                    await self._event(cursor, event["type"], event["raw_object"])
            except ApiException as exc:
                if exc.status == 410:
                    raise _Expired() from exc
                raise
        return events

    async def _event(self, cursor: _Cursor, kind: str, obj: Obj) -> None:
        meta = obj.get("metadata") or {}
        name = str(meta.get("name") or "")
        if kind in ("ADDED", "MODIFIED") and name:
            await self._seen(cursor, name, obj, report=True)
        elif kind == "DELETED":
            cursor.known.pop(name, None)
        if meta.get("resourceVersion"):
            cursor.resource_version = str(meta["resourceVersion"])
        cursor.failures = 0

    async def _seen(self, cursor: _Cursor, name: str, deployment: Obj, *, report: bool) -> None:
        change = new_revision(cursor.known.get(name), deployment) if report else None
        cursor.known[name] = remembered(deployment)
        if change is not None:
            await self._report(change)

    async def _report(self, change: RevisionChange) -> None:
        log.info(
            "deploy_watch.new_revision",
            namespace=change.namespace,
            deployment=change.deployment,
            revision=change.revision,
            previous_revision=change.previous_revision,
            change_cause=change.change_cause,
        )
        try:
            await self._on_new_revision(change)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a callback bug must not end the watch
            log.error(
                "deploy_watch.callback_failed",
                namespace=change.namespace,
                deployment=change.deployment,
                revision=change.revision,
                error=f"{type(exc).__name__}: {exc}",
            )


def _describe(exc: Exception) -> str:
    """One line for the log: an API error by its status and the Status message (not the
    headers and body kubernetes-asyncio's ApiException prints)."""
    if isinstance(exc, ApiException):
        message = str(exc.reason or "")
        try:
            body = json.loads(exc.body or "null")
        except (TypeError, ValueError):
            body = None
        if isinstance(body, dict) and body.get("message"):
            message = str(body["message"])
        return f"{exc.status}: {message}"
    return f"{type(exc).__name__}: {exc}".strip(": ")
