"""Resource types, ``Status`` errors, a controllable clock and the in-memory object store
behind the fake kube-apiserver."""

from __future__ import annotations

import copy
import itertools
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

Obj = dict[str, Any]

_COMMON_FIELDS = frozenset({"metadata.name", "metadata.namespace"})


@dataclass(frozen=True)
class ResourceType:
    """One REST resource (``group``/``version``/``plural``) and how the fake treats it."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool = True
    generation: bool = False  # metadata.generation counts spec changes
    status_subresource: bool = True  # writes to the main resource keep .status
    fields: frozenset[str] = _COMMON_FIELDS
    scale: bool = False  # has a /scale subresource
    orphan_by_default: bool = False  # DELETE without propagationPolicy orphans dependents
    read_only: bool = False  # served by the fake itself (metrics)

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def group_resource(self) -> str:
        """As in error messages: ``deployments.apps``, ``pods``."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def list_kind(self) -> str:
        return f"{self.kind}List"

    @property
    def qualified_kind(self) -> str:
        """As in ``Invalid`` messages: ``Deployment.apps``, ``Pod``."""
        return f"{self.kind}.{self.group}" if self.group else self.kind


def _fields(*extra: str) -> frozenset[str]:
    return _COMMON_FIELDS | frozenset(extra)


BUILTIN_RESOURCES: tuple[ResourceType, ...] = (
    ResourceType("", "v1", "namespaces", "Namespace", namespaced=False,
                 fields=_fields("status.phase")),
    ResourceType("", "v1", "pods", "Pod", fields=_fields(
        "spec.nodeName", "spec.restartPolicy", "spec.schedulerName",
        "spec.serviceAccountName", "spec.hostNetwork", "status.phase", "status.podIP",
        "status.nominatedNodeName")),
    ResourceType("", "v1", "events", "Event", status_subresource=False, fields=_fields(
        "involvedObject.kind", "involvedObject.namespace", "involvedObject.name",
        "involvedObject.uid", "involvedObject.apiVersion", "involvedObject.resourceVersion",
        "involvedObject.fieldPath", "reason", "reportingComponent", "source", "type")),
    ResourceType("", "v1", "nodes", "Node", namespaced=False,
                 fields=_fields("spec.unschedulable")),
    ResourceType("", "v1", "persistentvolumeclaims", "PersistentVolumeClaim"),
    ResourceType("", "v1", "persistentvolumes", "PersistentVolume", namespaced=False),
    ResourceType("", "v1", "services", "Service"),
    ResourceType("", "v1", "endpoints", "Endpoints", status_subresource=False),
    ResourceType("", "v1", "configmaps", "ConfigMap", status_subresource=False),
    ResourceType("", "v1", "secrets", "Secret", status_subresource=False,
                 fields=_fields("type")),
    ResourceType("", "v1", "serviceaccounts", "ServiceAccount", status_subresource=False),
    ResourceType("apps", "v1", "deployments", "Deployment", generation=True, scale=True),
    ResourceType("apps", "v1", "replicasets", "ReplicaSet", generation=True, scale=True,
                 fields=_fields("status.replicas")),
    ResourceType("apps", "v1", "statefulsets", "StatefulSet", generation=True, scale=True),
    ResourceType("apps", "v1", "daemonsets", "DaemonSet", generation=True),
    ResourceType("batch", "v1", "jobs", "Job", generation=True, orphan_by_default=True,
                 fields=_fields("status.successful")),
    ResourceType("batch", "v1", "cronjobs", "CronJob", generation=True,
                 orphan_by_default=True),
    ResourceType("autoscaling", "v2", "horizontalpodautoscalers", "HorizontalPodAutoscaler",
                 generation=True),
    ResourceType("networking.k8s.io", "v1", "ingresses", "Ingress", generation=True),
    ResourceType("policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget",
                 generation=True),
)

METRICS_GROUP = "metrics.k8s.io"
METRICS_VERSION = "v1beta1"
POD_METRICS = ResourceType(METRICS_GROUP, METRICS_VERSION, "pods", "PodMetrics",
                           status_subresource=False, read_only=True)
NODE_METRICS = ResourceType(METRICS_GROUP, METRICS_VERSION, "nodes", "NodeMetrics",
                            namespaced=False, status_subresource=False, read_only=True)


class ResourceRegistry:
    """Lookup of resource types by REST path or by kind/plural name."""

    def __init__(self, types: Iterable[ResourceType] = BUILTIN_RESOURCES) -> None:
        self._by_path: dict[tuple[str, str, str], ResourceType] = {}
        self._by_name: dict[str, ResourceType] = {}
        for rt in types:
            self.register(rt)

    def register(self, rt: ResourceType) -> None:
        self._by_path[(rt.group, rt.version, rt.plural)] = rt
        if not rt.read_only:
            self._by_name.setdefault(rt.kind.lower(), rt)
            self._by_name.setdefault(rt.plural.lower(), rt)
            if rt.group:
                self._by_name.setdefault(f"{rt.plural}.{rt.group}".lower(), rt)

    def by_path(self, group: str, version: str, plural: str) -> ResourceType | None:
        return self._by_path.get((group, version, plural))

    def by_name(self, name: str) -> ResourceType:
        """Find by kind (``Deployment``), plural (``deployments``) or ``plural.group``."""
        try:
            return self._by_name[name.lower()]
        except KeyError:
            raise KeyError(f"unknown resource kind {name!r}") from None

    def group_versions(self) -> dict[str, set[str]]:
        out: dict[str, set[str]] = {}
        for group, version, _ in self._by_path:
            out.setdefault(group, set()).add(version)
        return out

    def in_group_version(self, group: str, version: str) -> list[ResourceType]:
        return [rt for (g, v, _), rt in self._by_path.items() if g == group and v == version]

    def __iter__(self) -> Iterator[ResourceType]:
        return iter(list(self._by_path.values()))


# --------------------------------------------------------------------------- Status errors


class ApiError(Exception):
    """An error answered as a Kubernetes ``Status`` object."""

    def __init__(
        self,
        code: int,
        reason: str,
        message: str,
        details: Obj | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(f"{code} {reason}: {message}")
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details
        self.headers = headers or {}

    def status(self) -> Obj:
        body: Obj = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
        }
        if self.details is not None:
            body["details"] = self.details
        body["code"] = self.code
        return body


def _details(rt: ResourceType | None, name: str | None, *, kind: str | None = None) -> Obj:
    details: Obj = {}
    if name:
        details["name"] = name
    if rt is not None and rt.group:
        details["group"] = rt.group
    if rt is not None:
        details["kind"] = kind or rt.plural
    return details


def not_found(rt: ResourceType, name: str) -> ApiError:
    return ApiError(404, "NotFound", f'{rt.group_resource} "{name}" not found',
                    _details(rt, name))


def path_not_found() -> ApiError:
    return ApiError(404, "NotFound", "the server could not find the requested resource", {})


def already_exists(rt: ResourceType, name: str) -> ApiError:
    return ApiError(409, "AlreadyExists", f'{rt.group_resource} "{name}" already exists',
                    _details(rt, name))


def conflict(rt: ResourceType, name: str, detail: str | None = None) -> ApiError:
    detail = detail or (
        "the object has been modified; please apply your changes to the latest version "
        "and try again"
    )
    return ApiError(409, "Conflict",
                    f'Operation cannot be fulfilled on {rt.group_resource} "{name}": {detail}',
                    _details(rt, name))


def patch_not_applied() -> ApiError:
    """What the apiserver answers when a JSON patch fails to apply (e.g. a failed ``test``).

    ``errors.NewGenericServerResponse(422, "", GroupResource{}, "", err, 0, false)``: the
    underlying error is *not* included, ``details`` is an empty object.
    """
    return ApiError(422, "Invalid",
                    "the server rejected our request due to an error in our request", {})


def invalid(rt: ResourceType, name: str, causes: list[tuple[str, str]]) -> ApiError:
    """``<Kind> "<name>" is invalid: <field>: <message>`` with one cause per field."""
    text = ", ".join(f"{fld}: {msg}" for fld, msg in causes)
    details = _details(rt, name, kind=rt.kind)
    details["causes"] = [
        {"reason": "FieldValueInvalid", "message": msg, "field": fld} for fld, msg in causes
    ]
    return ApiError(422, "Invalid", f'{rt.qualified_kind} "{name}" is invalid: {text}', details)


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def unauthorized() -> ApiError:
    return ApiError(401, "Unauthorized", "Unauthorized")


def forbidden(rt: ResourceType | None, verb: str, namespace: str | None, name: str | None,
              user: str, subresource: str | None = None) -> ApiError:
    resource = rt.plural if rt else "unknown"
    if subresource:
        resource = f"{resource}/{subresource}"
    group = rt.group if rt else ""
    subject = f'{rt.group_resource} "{name}"' if rt and name else (
        rt.group_resource if rt else "resource")
    where = f' in the namespace "{namespace}"' if namespace else " at the cluster scope"
    message = (f'{subject} is forbidden: User "{user}" cannot {verb} resource "{resource}" '
               f'in API group "{group}"{where}')
    return ApiError(403, "Forbidden", message, _details(rt, name))


def too_many_requests(retry_after: int = 1) -> ApiError:
    return ApiError(429, "TooManyRequests", "Too many requests, please try again later.",
                    {"retryAfterSeconds": retry_after}, {"Retry-After": str(retry_after)})


def internal_error(message: str = "fake injected failure") -> ApiError:
    return ApiError(500, "InternalError", f"Internal error occurred: {message}",
                    {"causes": [{"message": message}]})


def service_unavailable() -> ApiError:
    return ApiError(503, "ServiceUnavailable",
                    "the server is currently unable to handle the request", {})


def gateway_timeout() -> ApiError:
    return ApiError(504, "Timeout",
                    "Timeout: request did not complete within requested timeout - "
                    "context deadline exceeded", {})


def method_not_allowed() -> ApiError:
    return ApiError(405, "MethodNotAllowed",
                    "the server does not allow this method on the requested resource", {})


def unsupported_media_type(content_type: str) -> ApiError:
    return ApiError(415, "UnsupportedMediaType",
                    f"the body of the request was in an unknown format - accepted media types "
                    f"include: application/json-patch+json, application/merge-patch+json, "
                    f"application/apply-patch+yaml, application/strategic-merge-patch+json "
                    f"(got {content_type!r})")


def error_for_code(code: int, rt: ResourceType | None = None, name: str | None = None,
                   *, message: str | None = None) -> ApiError:
    """A realistic Status for an injected fault with HTTP status ``code``."""
    err: ApiError
    if code == 404:
        err = not_found(rt, name) if rt and name else path_not_found()
    elif code == 409:
        err = conflict(rt, name) if rt and name else ApiError(
            409, "Conflict", "the server reported a conflict", {})
    elif code == 422:
        err = patch_not_applied()
    elif code == 403:
        err = ApiError(403, "Forbidden", "forbidden: injected by the fake", _details(rt, name))
    elif code == 401:
        err = unauthorized()
    elif code == 400:
        err = bad_request("the server rejected our request for an unknown reason")
    elif code == 429:
        err = too_many_requests()
    elif code == 503:
        err = service_unavailable()
    elif code == 504:
        err = gateway_timeout()
    elif code >= 500:
        err = internal_error()
    else:
        err = ApiError(code, "Unknown",
                       f"the server responded with the status code {code} but did not return "
                       "more information", {})
    if message is not None:
        err.message = message
    return err


# --------------------------------------------------------------------------- clock


class FakeClock:
    """Wall-clock time plus an adjustable offset (timestamps keep flowing, unless held)."""

    def __init__(self) -> None:
        self._offset = timedelta(0)
        self._held: datetime | None = None

    def _base(self) -> datetime:
        return self._held if self._held is not None else datetime.now(UTC).replace(microsecond=0)

    def now(self) -> datetime:
        return self._base() + self._offset

    def advance(self, seconds: float) -> None:
        self._offset += timedelta(seconds=seconds)

    def hold(self) -> None:
        """Stop the wall clock's flow: only :meth:`advance` moves time (for exact intervals, which
        a second boundary crossed between two steps would otherwise put one second off)."""
        self._held = self._base()

    def shift_to(self, when: datetime) -> None:
        """Make ``now()`` equal ``when`` (time keeps flowing from there, unless held)."""
        self._offset = when - self._base()

    def reset(self) -> None:
        """Back to the wall clock, flowing."""
        self._offset = timedelta(0)
        self._held = None


def format_time(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


# --------------------------------------------------------------------------- store


def _comparable(obj: Obj) -> Obj:
    out = copy.deepcopy(obj)
    meta = out.get("metadata") or {}
    meta.pop("resourceVersion", None)
    meta.pop("managedFields", None)
    return out


@dataclass(frozen=True)
class StoredEvent:
    """One write as a watch sees it: the object after it (a copy, stamped with the write's
    resourceVersion) and, for MODIFIED, before it (for selector transitions)."""

    resource_version: int
    type: str  # ADDED | MODIFIED | DELETED
    rt: ResourceType
    obj: Obj
    old: Obj | None = None


def too_old(requested: int, compacted: int) -> ApiError:
    """The Status a watch from a compacted resourceVersion gets (in an ERROR event), as the
    apiserver's watch cache words it: ``too old resource version: R (oldest - 1)``."""
    return ApiError(410, "Expired",
                    f"too old resource version: {requested} ({compacted})", {})


@dataclass
class ObjectStore:
    """Objects by resource type and (namespace, name); stamps uid, resourceVersion, times.

    Every write takes the next resourceVersion (one counter for all types, as etcd's revision)
    and is kept in an event history for watches: :meth:`events_after`. The history holds at
    most ``history_limit`` events; older ones are compacted (as etcd compacts every 5 minutes),
    and :meth:`compact` forces it. ``listeners`` are called after every write.
    """

    clock: FakeClock
    history_limit: int = 10_000
    listeners: list[Callable[[], None]] = field(default_factory=list)
    _objects: dict[ResourceType, dict[tuple[str, str], Obj]] = field(default_factory=dict)
    _rv: itertools.count[int] = field(default_factory=lambda: itertools.count(1000))
    _last_rv: int = 999
    _history: deque[StoredEvent] = field(default_factory=deque)
    _compacted: int = 999  # events at or below this resourceVersion are gone

    def next_resource_version(self) -> str:
        self._last_rv = next(self._rv)
        return str(self._last_rv)

    @property
    def resource_version(self) -> str:
        return str(self._last_rv)

    @property
    def compacted_resource_version(self) -> int:
        return self._compacted

    # ---- event history

    def _record(self, kind: str, rt: ResourceType, obj: Obj, old: Obj | None) -> None:
        event = StoredEvent(self._last_rv, kind, rt, copy.deepcopy(obj),
                            copy.deepcopy(old) if old is not None else None)
        self._history.append(event)
        while len(self._history) > self.history_limit:
            self._compacted = self._history.popleft().resource_version
        for listener in list(self.listeners):
            listener()

    def events_after(self, resource_version: int) -> list[StoredEvent]:
        """The writes after ``resource_version``, oldest first; :class:`ApiError` 410 Expired
        when some of them were compacted away."""
        if resource_version < self._compacted:
            raise too_old(resource_version, self._compacted)
        return [e for e in self._history if e.resource_version > resource_version]

    def compact(self, resource_version: int | None = None) -> None:
        """Forget the events up to ``resource_version`` (default: all of them), so a watch
        from an older resourceVersion gets 410 Expired."""
        upto = self._last_rv if resource_version is None else resource_version
        while self._history and self._history[0].resource_version <= upto:
            self._history.popleft()
        self._compacted = max(self._compacted, upto)

    def _bucket(self, rt: ResourceType) -> dict[tuple[str, str], Obj]:
        return self._objects.setdefault(rt, {})

    def get(self, rt: ResourceType, namespace: str | None, name: str) -> Obj | None:
        return self._bucket(rt).get((namespace or "", name))

    def list(self, rt: ResourceType, namespace: str | None = None) -> list[Obj]:
        items = [
            obj for (ns, _), obj in self._bucket(rt).items()
            if namespace is None or ns == namespace
        ]
        return sorted(items, key=lambda o: (o["metadata"].get("namespace", ""),
                                            o["metadata"]["name"]))

    def all_objects(self) -> Iterator[tuple[ResourceType, Obj]]:
        for rt, bucket in list(self._objects.items()):
            for obj in list(bucket.values()):
                yield rt, obj

    def find_uid(self, uid: str) -> tuple[ResourceType, Obj] | None:
        for rt, obj in self.all_objects():
            if obj["metadata"].get("uid") == uid:
                return rt, obj
        return None

    def create(self, rt: ResourceType, obj: Obj) -> Obj:
        """Store a new object (caller checked it does not exist); returns the stored object."""
        meta = obj.setdefault("metadata", {})
        obj["kind"] = rt.kind
        obj["apiVersion"] = rt.api_version
        meta["uid"] = meta.get("uid") or str(uuid.uuid4())
        meta["creationTimestamp"] = meta.get("creationTimestamp") or format_time(
            self.clock.now())
        meta["resourceVersion"] = self.next_resource_version()
        if rt.generation:
            meta["generation"] = 1
        if not rt.namespaced:
            meta.pop("namespace", None)
        self._bucket(rt)[(meta.get("namespace", ""), meta["name"])] = obj
        self._record("ADDED", rt, obj, None)
        return obj

    def _stamp_update(self, rt: ResourceType, obj: Obj) -> tuple[tuple[str, str], Obj, bool]:
        meta = obj.setdefault("metadata", {})
        key = (meta.get("namespace", "") if rt.namespaced else "", meta["name"])
        current = self._bucket(rt)[key]
        cur_meta = current["metadata"]
        obj["kind"] = rt.kind
        obj["apiVersion"] = rt.api_version
        meta["uid"] = cur_meta["uid"]
        meta["creationTimestamp"] = cur_meta["creationTimestamp"]
        if rt.generation:
            generation = int(cur_meta.get("generation", 1))
            if obj.get("spec") != current.get("spec"):
                generation += 1
            meta["generation"] = generation
        meta["resourceVersion"] = cur_meta["resourceVersion"]
        return key, current, _comparable(obj) != _comparable(current)

    def update(self, rt: ResourceType, obj: Obj) -> tuple[Obj, bool]:
        """Replace the stored object; a no-op write keeps the resourceVersion.

        uid and creationTimestamp are kept; generation is bumped when ``spec`` changed.
        Returns ``(stored, changed)``.
        """
        key, current, changed = self._stamp_update(rt, obj)
        if not changed:
            return current, False
        obj["metadata"]["resourceVersion"] = self.next_resource_version()
        self._bucket(rt)[key] = obj
        self._record("MODIFIED", rt, obj, current)
        return obj, True

    def preview_update(self, rt: ResourceType, obj: Obj) -> Obj:
        """What :meth:`update` would store (for ``dryRun=All``), without storing it."""
        preview = copy.deepcopy(obj)
        self._stamp_update(rt, preview)
        return preview

    def delete(self, rt: ResourceType, namespace: str | None, name: str) -> Obj | None:
        """Remove an object; the DELETED event carries the deletion's own resourceVersion."""
        obj = self._bucket(rt).pop((namespace or "", name), None)
        if obj is not None:
            gone = copy.deepcopy(obj)
            gone["metadata"]["resourceVersion"] = self.next_resource_version()
            self._record("DELETED", rt, gone, None)
        return obj
