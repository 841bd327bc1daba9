"""A stateful fake kube-apiserver (aiohttp, wire level) for the real ``kubernetes_asyncio``
client.

Usage::

    async with FakeKubeApiserver(token="t0k") as kube:
        kube.add_deployment("playcode", "playcode-app", "app:v1", replicas=3)
        kube.bad_images.add("app:v2")
        kube.set_image("playcode", "playcode-app", "app:v2")   # revision 2 crash-loops
        async with kube.api_client() as api:
            apps = AppsV1Api(api)
            ...
        assert kube.count("PATCH", r"/deployments/playcode-app$") == 1

Serves (core ``/api/v1``, ``/apis/<group>/<version>``): namespaces, pods (+ ``log``),
events, nodes, persistentvolumeclaims/volumes, services, endpoints, configmaps, secrets,
serviceaccounts, deployments/replicasets/statefulsets (+ ``scale``, ``status``), daemonsets,
jobs, cronjobs, horizontalpodautoscalers (autoscaling/v2), ingresses (networking.k8s.io/v1),
poddisruptionbudgets, metrics.k8s.io/v1beta1 pods and nodes, plus any type registered with
:meth:`FakeKubeApiserver.register_resource` (e.g. cert-manager Certificates).

Verbs: get, list (label/field selectors, ``limit``/``continue``, all-namespaces lists),
watch (see below), create (POST, 409 AlreadyExists), replace (PUT, 409 Conflict on a stale resourceVersion),
patch (json-patch, merge-patch, strategic-merge-patch), delete (+ preconditions, propagation,
garbage collection), deletecollection, ``dryRun=All``. Errors are ``Status`` objects.
Discovery (``/api``, ``/apis``, ``/version``) is served too.

Watch (``?watch=1`` on a list path, namespaced or cluster-wide, or the legacy
``/<name>?watch=1``): chunked JSON lines ``{"type": ..., "object": ...}`` as the apiserver's
watch cache sends them. Without ``resourceVersion`` (or with ``"0"``) the current objects come
first as ``ADDED``; with one, every write after it (``ADDED``/``MODIFIED``/``DELETED``, the
object stamped with the write's resourceVersion). Label/field selectors apply as for a list,
with the cache's transitions (an object that stops matching is ``DELETED``, one that starts
matching is ``ADDED``). ``allowWatchBookmarks=true`` adds a ``BOOKMARK`` every
:attr:`~FakeKubeApiserver.bookmark_interval` seconds; ``timeoutSeconds`` ends the stream
cleanly. A resourceVersion older than the kept history gets HTTP 200 and one ``ERROR`` event
whose object is a ``Status`` 410 ``Expired``, then the end of the stream. Test hooks:
:meth:`~FakeKubeApiserver.compact_history` (force that 410),
:meth:`~FakeKubeApiserver.drop_watches` (cut or end open watches),
:meth:`~FakeKubeApiserver.watching` (wait until N watches are open),
:meth:`~FakeKubeApiserver.no_watches`.

Fault injection (:meth:`inject_fault`): per method + path regex, a status (404, 409, 422,
429, 500, ...), ``times`` (a queue when several rules match in order) or a ``ratio``,
a ``delay`` (client timeouts) and ``after=True`` (apply the write, then fail or stall: the
"did my PATCH land?" case). Every request is recorded (:attr:`requests`, :meth:`count`).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import random
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from aiohttp import web
from kubernetes_asyncio.client import ApiClient, Configuration

from tests.fakes import kube_store as ks
from tests.fakes.kube_cluster import FakeCluster, Settled, parse_bool
from tests.fakes.kube_store import (
    METRICS_GROUP,
    METRICS_VERSION,
    NODE_METRICS,
    POD_METRICS,
    ApiError,
    Obj,
    ResourceType,
)
from tests.fakes.kube_workloads import ImageFault

__all__ = [
    "FakeKubeApiserver",
    "FaultRule",
    "ImageFault",
    "RecordedRequest",
    "Settled",
]

FAKE_VERSION = {
    "major": "1",
    "minor": "30",
    "gitVersion": "v1.30.0-fake",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2024-04-17T00:00:00Z",
    "goVersion": "go1.22.2",
    "compiler": "gc",
    "platform": "linux/amd64",
}


@dataclass
class FaultRule:
    """An injected fault; see :meth:`FakeKubeApiserver.inject_fault`."""

    method: str | None
    path: re.Pattern[str]
    status: int | None = None
    times: int | None = 1
    ratio: float = 1.0
    delay: float = 0.0
    after: bool = False
    message: str | None = None
    hits: int = 0

    @property
    def active(self) -> bool:
        return self.times is None or self.times > 0

    def matches(self, method: str, path: str) -> bool:
        return (self.active and (self.method is None or self.method.upper() == method)
                and self.path.search(path) is not None)


@dataclass
class RecordedRequest:
    """One request as received (``body`` is parsed JSON when possible)."""

    method: str
    path: str
    query: dict[str, str]
    content_type: str | None
    body: Any
    status: int = 0
    fault: FaultRule | None = None
    headers: dict[str, str] = field(default_factory=dict)


Matcher = Callable[[Obj | None], bool]


@dataclass(eq=False)
class _Watcher:
    """One open watch: woken by every write, by :meth:`FakeKubeApiserver.drop_watches` and on
    stop."""

    path: str
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    drop: str | None = None  # "abort" (cut the connection) or "close" (end the stream)


@dataclass(frozen=True)
class _Target:
    rt: ResourceType
    namespace: str | None
    name: str | None
    subresource: str | None


def field_manager(request: web.Request) -> str:
    """The writer managedFields records: ``?fieldManager=``, else the User-Agent's product
    (what the API server does: ``kubectl/v1.29 …`` → ``kubectl``)."""
    return request.query.get("fieldManager") or request.headers.get("User-Agent", "").split("/", 1)[0]


class FakeKubeApiserver(FakeCluster):
    """The fake cluster served over HTTP on 127.0.0.1 (a free port).

    Args:
        token: when set, requests must carry ``Authorization: Bearer <token>`` (else 401).
        user: the user named in 403 messages of :meth:`deny` rules.
        seed: seeds random names (pods, events) and fault ratios.
        bad_images, default_node, auto_settle: see :class:`FakeCluster`.
    """

    def __init__(
        self,
        *,
        token: str | None = None,
        user: str = "system:serviceaccount:medic:medic",
        seed: int = 0,
        bad_images: Iterable[str] = (),
        default_node: str | None = "node-1",
        auto_settle: bool = True,
    ) -> None:
        super().__init__(seed=seed, bad_images=bad_images, default_node=default_node,
                         auto_settle=auto_settle)
        self.token = token
        self.user = user
        self.requests: list[RecordedRequest] = []
        self.faults: list[FaultRule] = []
        self._denied: list[tuple[str, str, str | None, str | None]] = []
        self._fault_rng = random.Random(seed)
        self._runner: web.AppRunner | None = None
        self._stopping = asyncio.Event()
        self._url: str | None = None
        #: seconds between BOOKMARK events of a watch with ``allowWatchBookmarks=true``
        #: (the real apiserver sends about one a minute)
        self.bookmark_interval: float = 1.0
        self._watchers: set[_Watcher] = set()
        self._watches_changed = asyncio.Event()
        self.store.listeners.append(self._wake_watchers)

    # ------------------------------------------------------------------ lifecycle

    @property
    def url(self) -> str:
        if self._url is None:
            raise RuntimeError("FakeKubeApiserver is not started")
        return self._url

    async def start(self) -> None:
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._stopping = asyncio.Event()
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self._url = f"http://{host}:{port}"

    async def stop(self) -> None:
        self._stopping.set()
        self._wake_watchers()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeKubeApiserver:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.stop()

    # ------------------------------------------------------------------ client config

    def client_configuration(self) -> Configuration:
        """A ``kubernetes_asyncio`` Configuration pointing at this server (with the token)."""
        config = Configuration(host=self.url)
        if self.token:
            config.api_key = {"BearerToken": self.token}
            config.api_key_prefix = {"BearerToken": "Bearer"}
        return config

    def api_client(self) -> ApiClient:
        """A new ``ApiClient`` for this server; use ``async with`` (or ``await close()``)."""
        return ApiClient(configuration=self.client_configuration())

    def write_kubeconfig(self, path: str | Path, *, namespace: str | None = None,
                         context: str = "fake") -> Path:
        """Write a kubeconfig (JSON, valid YAML) for ``load_kube_config(config_file=...)``."""
        user: Obj = {"token": self.token} if self.token else {}
        ctx: Obj = {"cluster": "fake-cluster", "user": "fake-user"}
        if namespace:
            ctx["namespace"] = namespace
        document = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "fake-cluster", "cluster": {"server": self.url}}],
            "users": [{"name": "fake-user", "user": user}],
            "contexts": [{"name": context, "context": ctx}],
            "current-context": context,
            "preferences": {},
        }
        target = Path(path)
        target.write_text(json.dumps(document, indent=2))
        return target

    def register_resource(self, group: str, version: str, plural: str, kind: str, *,
                          namespaced: bool = True) -> ResourceType:
        """Serve a custom resource type (as if its CRD were installed)."""
        rt = ResourceType(group, version, plural, kind, namespaced=namespaced,
                          generation=True)
        self.registry.register(rt)
        return rt

    # ------------------------------------------------------------------ faults, log, RBAC

    def inject_fault(
        self,
        method: str | None = None,
        path: str = "",
        status: int | None = 500,
        *,
        times: int | None = 1,
        ratio: float = 1.0,
        delay: float = 0.0,
        after: bool = False,
        message: str | None = None,
    ) -> FaultRule:
        """Fail (or delay) requests whose method matches and whose path ``re.search``-es
        ``path``.

        ``status`` None = delay only. ``times`` None = forever; rules are tried in the order
        they were added and the first active match is used, so adding several rules with
        ``times=1`` builds a queue. ``ratio`` < 1 applies the fault to that fraction of
        matching requests (seeded). ``after=True`` processes the request first (the write
        happens), then delays and/or answers the error.
        """
        rule = FaultRule(method.upper() if method else None, re.compile(path), status,
                         times, ratio, delay, after, message)
        self.faults.append(rule)
        return rule

    def inject_delay(self, method: str | None, path: str, seconds: float, *,
                     times: int | None = None, after: bool = False) -> FaultRule:
        return self.inject_fault(method, path, None, times=times, delay=seconds, after=after)

    def clear_faults(self) -> None:
        self.faults.clear()

    def deny(self, verb: str, resource: str, *, namespace: str | None = None,
             name: str | None = None) -> None:
        """Answer 403 for ``verb`` ("get", "list", "create", "update", "patch", "delete",
        "deletecollection" or "*") on ``resource`` (plural, e.g. "deployments",
        "pods/log")."""
        self._denied.append((verb, resource, namespace, name))

    def clear_denials(self) -> None:
        self._denied.clear()

    def requests_matching(self, method: str | None = None,
                          path: str | None = None) -> list[RecordedRequest]:
        """Recorded requests by method and path regex (``re.search``)."""
        pattern = re.compile(path) if path is not None else None
        return [r for r in self.requests
                if (method is None or r.method == method.upper())
                and (pattern is None or pattern.search(r.path))]

    def count(self, method: str | None = None, path: str | None = None) -> int:
        return len(self.requests_matching(method, path))

    def clear_requests(self) -> None:
        self.requests.clear()

    # ------------------------------------------------------------------ watch hooks

    @property
    def open_watches(self) -> int:
        return len(self._watchers)

    async def watching(self, count: int = 1, *, timeout: float = 5.0) -> None:
        """Wait until at least ``count`` watches are open (``TimeoutError`` after ``timeout``)."""
        async with asyncio.timeout(timeout):
            while len(self._watchers) < count:
                self._watches_changed.clear()
                await self._watches_changed.wait()

    async def no_watches(self, *, timeout: float = 5.0) -> None:
        """Wait until no watch is open (``TimeoutError`` after ``timeout``)."""
        async with asyncio.timeout(timeout):
            while self._watchers:
                self._watches_changed.clear()
                await self._watches_changed.wait()

    def drop_watches(self, path: str | None = None, *, abort: bool = True) -> int:
        """End every open watch (whose request path ``re.search``-es ``path``, when given);
        returns how many. ``abort=True`` cuts the connection mid-stream (an apiserver restart,
        a load balancer's idle timeout: the client reads a truncated chunked body);
        ``abort=False`` ends the stream cleanly, as ``timeoutSeconds`` does."""
        pattern = re.compile(path) if path is not None else None
        dropped = [w for w in self._watchers if pattern is None or pattern.search(w.path)]
        for watcher in dropped:
            watcher.drop = "abort" if abort else "close"
            watcher.wake.set()
        return len(dropped)

    def compact_history(self, resource_version: int | str | None = None) -> None:
        """Forget the writes up to ``resource_version`` (default: all so far): a watch from an
        older one gets the 410 Expired ERROR event (a watch that is open and already past it
        goes on)."""
        self.store.compact(None if resource_version is None else int(resource_version))

    def _wake_watchers(self) -> None:
        for watcher in self._watchers:
            watcher.wake.set()

    def _take_fault(self, method: str, path: str) -> FaultRule | None:
        for rule in self.faults:
            if rule.matches(method, path):
                if rule.ratio < 1.0 and self._fault_rng.random() >= rule.ratio:
                    return None
                rule.hits += 1
                if rule.times is not None:
                    rule.times -= 1
                return rule
        return None

    async def _sleep(self, seconds: float) -> None:
        if seconds <= 0:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), timeout=seconds)

    def _check_access(self, verb: str, target: _Target) -> None:
        resource = target.rt.plural
        if target.subresource:
            resource = f"{resource}/{target.subresource}"
        for d_verb, d_resource, d_ns, d_name in self._denied:
            if d_verb not in ("*", verb) or d_resource != resource:
                continue
            if d_ns is not None and d_ns != target.namespace:
                continue
            if d_name is not None and d_name != target.name:
                continue
            raise ks.forbidden(target.rt, verb, target.namespace, target.name, self.user,
                               target.subresource)

    # ------------------------------------------------------------------ HTTP

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        body: Any = None
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                body = raw.decode(errors="replace")
        record = RecordedRequest(
            method=request.method, path=request.path, query=dict(request.query),
            content_type=request.headers.get("Content-Type"), body=body,
            headers={k: v for k, v in request.headers.items()
                     if k.lower() in ("content-type", "accept", "user-agent")})
        self.requests.append(record)
        fault = self._take_fault(request.method, request.path)
        record.fault = fault
        response: web.StreamResponse
        try:
            if fault is not None and not fault.after:
                await self._sleep(fault.delay)
                if fault.status is not None:
                    raise self._fault_error(fault, request.path)
            self._authenticate(request)
            watch = self._watch_target(request)
            if watch is not None:
                response = await self._watch(request, watch)
            else:
                response = self._dispatch(request, raw)
            if fault is not None and fault.after:
                await self._sleep(fault.delay)
                if fault.status is not None:
                    raise self._fault_error(fault, request.path)
        except ApiError as err:
            response = web.json_response(err.status(), status=err.code, headers=err.headers)
        record.status = response.status
        return response

    def _fault_error(self, fault: FaultRule, path: str) -> ApiError:
        assert fault.status is not None
        rt: ResourceType | None = None
        name: str | None = None
        try:
            target = self._parse_resource_path(path)
            if target is not None:
                rt, name = target.rt, target.name
        except ApiError:
            pass
        return ks.error_for_code(fault.status, rt, name, message=fault.message)

    def _authenticate(self, request: web.Request) -> None:
        if self.token is None:
            return
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            raise ks.unauthorized()

    def _dispatch(self, request: web.Request, raw: bytes) -> web.StreamResponse:
        path = request.path.rstrip("/") or "/"
        method = request.method
        query = dict(request.query)
        if method == "GET":
            simple = self._discovery(path)
            if simple is not None:
                return simple
        target = self._parse_resource_path(path)
        if target is None:
            raise ks.path_not_found()
        if target.rt.read_only:
            return web.json_response(self._metrics(method, target, query))
        dry_run = query.get("dryRun") == "All"
        rt, ns, name, sub = target.rt, target.namespace, target.name, target.subresource
        body = self._json_body(raw) if method in ("POST", "PUT") else None
        if name is None:
            if method == "GET":
                self._check_access("list", target)
                return web.json_response(self.api_list(
                    rt, ns, label_selector=query.get("labelSelector"),
                    field_selector=query.get("fieldSelector"), limit=query.get("limit"),
                    continue_token=query.get("continue")))
            if method == "POST":
                self._check_access("create", target)
                created = self.api_create(rt, ns, body, dry_run=dry_run,
                                          manager=field_manager(request))
                return web.json_response(created, status=201)
            if method == "DELETE":
                self._check_access("deletecollection", target)
                return web.json_response(self.api_delete_collection(
                    rt, ns, label_selector=query.get("labelSelector"),
                    field_selector=query.get("fieldSelector"), dry_run=dry_run))
            raise ks.method_not_allowed()
        if sub == "log":
            if rt.kind != "Pod" or method != "GET":
                raise ks.method_not_allowed() if rt.kind == "Pod" else ks.path_not_found()
            self._check_access("get", target)
            text = self.api_pod_log(ns or "", name, query)
            return web.Response(text=text, content_type="text/plain")
        if sub not in (None, "status", "scale") or (sub == "scale" and not rt.scale):
            raise ks.path_not_found()
        if method == "GET":
            self._check_access("get", target)
            if sub == "scale":
                return web.json_response(self.api_scale_get(rt, ns, name))
            return web.json_response(self.api_get(rt, ns, name))
        if method == "PUT":
            self._check_access("update", target)
            return web.json_response(self.api_replace(rt, ns, name, body, subresource=sub,
                                                      dry_run=dry_run,
                                                      manager=field_manager(request)))
        if method == "PATCH":
            self._check_access("patch", target)
            return web.json_response(self.api_patch(
                rt, ns, name, request.headers.get("Content-Type", ""), raw, subresource=sub,
                dry_run=dry_run, manager=field_manager(request)))
        if method == "DELETE" and sub is None:
            self._check_access("delete", target)
            options: dict[str, Any] = {}
            if isinstance(body_delete := self._json_body(raw, allow_empty=True), dict):
                options.update(body_delete)
            for key in ("propagationPolicy", "gracePeriodSeconds"):
                if key in query:
                    options.setdefault(key, query[key])
            if "orphanDependents" in query:
                options.setdefault("orphanDependents", parse_bool(query["orphanDependents"]))
            return web.json_response(self.api_delete(rt, ns, name, options, dry_run=dry_run))
        raise ks.method_not_allowed()

    @staticmethod
    def _json_body(raw: bytes, *, allow_empty: bool = False) -> Any:
        if not raw:
            if allow_empty:
                return None
            raise ks.bad_request("the request body is empty")
        try:
            return json.loads(raw)
        except ValueError as exc:
            raise ks.bad_request(f"the object provided is unrecognized: {exc}") from None

    def _metrics(self, method: str, target: _Target, query: Mapping[str, str]) -> Obj:
        if method != "GET":
            self._check_metrics()
            raise ks.method_not_allowed()
        if target.name is None:
            return self.api_metrics_list(target.rt, target.namespace,
                                         label_selector=query.get("labelSelector"),
                                         field_selector=query.get("fieldSelector"))
        if target.subresource is not None:
            raise ks.path_not_found()
        return self.api_metrics_get(target.rt, target.namespace, target.name)

    def _lookup(self, group: str, version: str, plural: str) -> ResourceType | None:
        if group == METRICS_GROUP and version == METRICS_VERSION:
            return {"pods": POD_METRICS, "nodes": NODE_METRICS}.get(plural)
        return self.registry.by_path(group, version, plural)

    def _parse_resource_path(self, path: str) -> _Target | None:
        segs = [s for s in path.split("/") if s]
        if len(segs) >= 2 and segs[0] == "api":
            group, version, rest = "", segs[1], segs[2:]
        elif len(segs) >= 3 and segs[0] == "apis":
            group, version, rest = segs[1], segs[2], segs[3:]
        else:
            return None
        if group == METRICS_GROUP:
            self._check_metrics()
        if not rest:
            return None
        namespace: str | None = None
        if rest[0] == "namespaces" and len(rest) >= 3:
            candidate = self._lookup(group, version, rest[2])
            if candidate is not None and candidate.namespaced:
                namespace, rest = rest[1], rest[2:]
        rt = self._lookup(group, version, rest[0])
        if rt is None or len(rest) > 3:
            return None
        name = rest[1] if len(rest) > 1 else None
        sub = rest[2] if len(rest) > 2 else None
        if rt.namespaced and namespace is None and name is not None:
            return None
        return _Target(rt, namespace, name, sub)

    # ------------------------------------------------------------------ discovery

    def _discovery(self, path: str) -> web.StreamResponse | None:
        if path in ("/healthz", "/readyz", "/livez"):
            return web.Response(text="ok", content_type="text/plain")
        if path == "/version":
            return web.json_response(FAKE_VERSION)
        if path == "/api":
            host = self.url.removeprefix("http://")
            return web.json_response({
                "kind": "APIVersions", "versions": ["v1"],
                "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0",
                                                "serverAddress": host}]})
        groups = self._group_versions()
        if path == "/apis":
            return web.json_response({"kind": "APIGroupList", "apiVersion": "v1", "groups": [
                self._api_group(g, versions) for g, versions in sorted(groups.items()) if g]})
        segs = [s for s in path.split("/") if s]
        if len(segs) == 2 and segs[0] == "apis" and segs[1] in groups:
            body = self._api_group(segs[1], groups[segs[1]])
            body.update({"kind": "APIGroup", "apiVersion": "v1"})
            return web.json_response(body)
        if (segs[:1] == ["api"] and len(segs) == 2) or (segs[:1] == ["apis"] and len(segs) == 3):
            group = "" if segs[0] == "api" else segs[1]
            version = segs[-1]
            if group == METRICS_GROUP:
                self._check_metrics()
            if version not in groups.get(group, set()):
                raise ks.path_not_found()
            return web.json_response(self._resource_list(group, version))
        return None

    def _group_versions(self) -> dict[str, set[str]]:
        groups = self.registry.group_versions()
        if self.metrics_mode != "absent":
            groups.setdefault(METRICS_GROUP, set()).add(METRICS_VERSION)
        return groups

    @staticmethod
    def _api_group(group: str, versions: set[str]) -> Obj:
        ordered = sorted(versions, reverse=True)
        entries = [{"groupVersion": f"{group}/{v}", "version": v} for v in ordered]
        return {"name": group, "versions": entries, "preferredVersion": entries[0]}

    def _resource_list(self, group: str, version: str) -> Obj:
        types = (self.registry.in_group_version(group, version) if group != METRICS_GROUP
                 else [POD_METRICS, NODE_METRICS])
        resources: list[Obj] = []
        for rt in sorted(types, key=lambda t: t.plural):
            verbs = ["get", "list"] if rt.read_only else [
                "create", "delete", "deletecollection", "get", "list", "patch", "update",
                "watch"]
            resources.append({"name": rt.plural, "singularName": rt.kind.lower(),
                              "namespaced": rt.namespaced, "kind": rt.kind, "verbs": verbs})
            subs = []
            if rt.status_subresource and not rt.read_only:
                subs.append(("status", rt.kind, ["get", "patch", "update"]))
            if rt.scale:
                subs.append(("scale", "Scale", ["get", "patch", "update"]))
            if rt.kind == "Pod":
                subs.append(("log", "Pod", ["get"]))
            for sub, kind, sub_verbs in subs:
                resources.append({"name": f"{rt.plural}/{sub}", "singularName": "",
                                  "namespaced": rt.namespaced, "kind": kind,
                                  "verbs": sub_verbs})
        group_version = f"{group}/{version}" if group else version
        return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version,
                "resources": resources}

    # ------------------------------------------------------------------ watch

    def _watch_target(self, request: web.Request) -> _Target | None:
        """The resource a ``GET ...?watch=1`` watches (None: not a watch)."""
        if request.method != "GET" or not parse_bool(request.query.get("watch")):
            return None
        target = self._parse_resource_path(request.path.rstrip("/") or "/")
        if target is None:
            raise ks.path_not_found()
        if target.rt.read_only or target.subresource is not None:
            raise ks.method_not_allowed()
        return target

    async def _watch(self, request: web.Request, target: _Target) -> web.StreamResponse:
        self._check_access("watch", target)
        query = request.query
        label_selector = query.get("labelSelector")
        field_selector = query.get("fieldSelector")
        if target.name is not None:
            by_name = f"metadata.name={target.name}"
            field_selector = f"{field_selector},{by_name}" if field_selector else by_name
        self._select(target.rt, [], label_selector, field_selector)  # a bad selector: 400
        timeout = _positive_int(query.get("timeoutSeconds"), "timeoutSeconds")
        start = _start_resource_version(query.get("resourceVersion"))
        bookmarks = parse_bool(query.get("allowWatchBookmarks"))

        def matches(obj: Obj | None) -> bool:
            if obj is None:
                return False
            if target.namespace is not None and (
                    obj["metadata"].get("namespace") != target.namespace):
                return False
            return bool(self._select(target.rt, [obj], label_selector, field_selector))

        response = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        watcher = _Watcher(request.path)
        self._watchers.add(watcher)
        self._watches_changed.set()
        try:
            await self._stream_events(response, target.rt, watcher, matches, start,
                                      timeout, bookmarks)
            if watcher.drop == "abort" and request.transport is not None:
                request.transport.abort()
            else:
                await response.write_eof()
        except ConnectionResetError:  # the client went away
            pass
        finally:
            self._watchers.discard(watcher)
            self._watches_changed.set()
        return response

    async def _stream_events(self, response: web.StreamResponse, rt: ResourceType,
                             watcher: _Watcher, matches: Matcher, start: int | None,
                             timeout: int | None, bookmarks: bool) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout if timeout else None

        async def send(kind: str, obj: Obj) -> None:
            line = json.dumps({"type": kind, "object": obj}, separators=(",", ":")) + "\n"
            await response.write(line.encode())

        if start is None:
            cursor = int(self.store.resource_version)
            for obj in self.store.list(rt, None):
                if matches(obj):
                    await send("ADDED", obj)
        else:
            cursor = start
        next_bookmark = loop.time() + self.bookmark_interval
        while True:
            watcher.wake.clear()
            if watcher.drop:  # what was not sent yet is lost with the connection
                return
            try:
                events = self.store.events_after(cursor)
            except ApiError as err:
                await send("ERROR", err.status())
                return
            for event in events:
                cursor = event.resource_version
                if event.rt == rt and (out := _visible(event, matches)) is not None:
                    await send(*out)
            now = loop.time()
            if self._stopping.is_set() or (deadline and now >= deadline):
                return
            if bookmarks and now >= next_bookmark:
                await send("BOOKMARK", {"kind": rt.kind, "apiVersion": rt.api_version,
                                        "metadata": {"resourceVersion": str(cursor)}})
                next_bookmark = now + self.bookmark_interval
            wake_at = [t for t in (deadline, next_bookmark if bookmarks else None) if t]
            wait = max(0.0, min(wake_at) - now) if wake_at else None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(watcher.wake.wait(), timeout=wait)


def _visible(event: ks.StoredEvent, matches: Matcher) -> tuple[str, Obj] | None:
    """What a watch with these filters sees of one write (the watch cache's rules): a
    modification that makes an object match is ADDED, one that makes it stop matching is
    DELETED (the old object, stamped with the write's resourceVersion)."""
    now, before = matches(event.obj), matches(event.old)
    if event.type != "MODIFIED":
        return (event.type, event.obj) if now else None
    if now:
        return ("MODIFIED" if before else "ADDED", event.obj)
    if before and event.old is not None:
        gone = copy.deepcopy(event.old)
        gone["metadata"]["resourceVersion"] = str(event.resource_version)
        return ("DELETED", gone)
    return None


def _positive_int(value: str | None, name: str) -> int | None:
    if value in (None, ""):
        return None
    try:
        number = int(value)
    except ValueError:
        raise ks.bad_request(f"invalid value for {name}: {value!r}") from None
    return number if number > 0 else None


def _start_resource_version(value: str | None) -> int | None:
    """None: start with the current objects as ADDED (no resourceVersion, or "0")."""
    if value in (None, "", "0"):
        return None
    try:
        return int(value)
    except ValueError:
        raise ks.bad_request(f"invalid resource version: {value!r}") from None
