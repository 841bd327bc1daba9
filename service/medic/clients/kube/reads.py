"""Shared Kubernetes reads for one playbook run, each fetched once.

Several collectors of a run need the same objects (the Deployment, its ReplicaSets, its pods).
:func:`get_cached` keeps one task per request in the run's memo (``StepContext.memo``), so
concurrent collectors await the same in-flight request and the API sees it once. A waiter that is
cancelled (its step timed out) does not cancel the request for the others; the request is
cancelled only when nobody waits for it any more.

Objects are the API server's JSON as plain dicts; treat them as read-only (they are shared).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar
from urllib.parse import urlencode

from medic.clients.kube.client import KubeObject, items_of, ns_path
from medic.domain.errors import StepError
from medic.domain.incident import Target
from medic.domain.rollout import REVISION

Obj = KubeObject
T = TypeVar("T")


class KubeReader(Protocol):
    """What these reads call: :class:`~medic.clients.kube.client.KubeClient` and the plugins'
    ``medic.playbooks.ports.KubeApi`` (a collector's ``ctx.backends.kube``) both have it."""

    async def get(self, path: str, **query: Any) -> KubeObject: ...


TEMPLATE_HASH = "pod-template-hash"
CHANGE_CAUSE = "kubernetes.io/change-cause"
EVENTS_PAGE = 500
EVENTS_MAX_PAGES = 4


@dataclass
class _Flight:
    task: asyncio.Task[Any]
    waiters: int = 0


def _retrieve(task: asyncio.Task[Any]) -> None:
    """Mark a finished task's exception as seen (its waiters may all have gone)."""
    if not task.cancelled():
        task.exception()


async def shared(memo: MutableMapping[str, Any], key: str, factory: Callable[[], Awaitable[T]]) -> T:
    """The result of ``factory()``, computed once per memo and key, shared by concurrent callers."""
    flight = memo.get(key)
    if not isinstance(flight, _Flight) or flight.task.cancelled():

        async def run() -> T:
            return await factory()

        flight = _Flight(asyncio.ensure_future(run()))
        flight.task.add_done_callback(_retrieve)
        memo[key] = flight
    flight.waiters += 1
    try:
        result: T = await asyncio.shield(flight.task)
        return result
    except asyncio.CancelledError:
        if flight.waiters == 1 and not flight.task.done():
            flight.task.cancel()
        raise
    finally:
        flight.waiters -= 1


def _key(method: str, path: str, query: Mapping[str, Any]) -> str:
    params = sorted((k, str(v)) for k, v in query.items() if v is not None)
    return f"kube {method} {path}?{urlencode(params)}"


async def get_cached(kube: KubeReader, memo: MutableMapping[str, Any], path: str, **query: Any) -> Obj:
    """``kube.get(path, **query)`` once per run."""
    return await shared(memo, _key("GET", path, query), lambda: kube.get(path, **query))


async def list_cached(kube: KubeReader, memo: MutableMapping[str, Any], path: str, **query: Any) -> list[Obj]:
    """The ``items`` of a LIST, once per run."""
    return items_of(await get_cached(kube, memo, path, **query), path)


async def list_pages(
    kube: KubeReader,
    memo: MutableMapping[str, Any],
    path: str,
    *,
    page_size: int = EVENTS_PAGE,
    max_pages: int = EVENTS_MAX_PAGES,
    **query: Any,
) -> tuple[list[Obj], bool]:
    """A LIST read in pages (``limit``/``continue``), at most ``max_pages`` requests.
    Returns the items and whether the list was read to its end."""

    async def read() -> tuple[list[Obj], bool]:
        items: list[Obj] = []
        token: str | None = None
        for _ in range(max_pages):
            page = await kube.get(path, limit=page_size, **{"continue": token}, **query)
            items += items_of(page, path)
            token = (page.get("metadata") or {}).get("continue") or None
            if not token:
                return items, True
        return items, False

    return await shared(memo, _key("LIST-PAGES", path, {**query, "pages": max_pages}), read)


async def metadata_only(kube: KubeReader, memo: MutableMapping[str, Any], path: str) -> Obj:
    """One object's name, resourceVersion, creationTimestamp and writers (``managedFields``
    without their field sets), once per run. Everything else (a ConfigMap's data, annotations
    such as ``last-applied-configuration`` that copy it) is dropped here, before it is shared or
    stored. Errors are the client's (:class:`~medic.clients.kube.errors.KubeError`)."""

    async def read() -> Obj:
        m = meta(await kube.get(path))  # an object, or the client's KubeError
        writes = [
            {k: f.get(k) for k in ("manager", "operation", "time")}
            for f in m.get("managedFields") or []
            if isinstance(f, dict)
        ]
        kept = {k: m.get(k) for k in ("name", "namespace", "resourceVersion", "creationTimestamp")}
        return {**kept, "managedFields": writes}

    return await shared(memo, _key("GET-METADATA", path, {}), read)


# ---------------------------------------------------------------------- object helpers


def meta(obj: Mapping[str, Any]) -> Obj:
    value = obj.get("metadata")
    return value if isinstance(value, dict) else {}


def annotations_of(obj: Mapping[str, Any]) -> dict[str, str]:
    return dict(meta(obj).get("annotations") or {})


def labels_of(obj: Mapping[str, Any]) -> dict[str, str]:
    return dict(meta(obj).get("labels") or {})


def revision(obj: Mapping[str, Any]) -> int:
    raw = annotations_of(obj).get(REVISION, "")
    return int(raw) if str(raw).isdigit() else 0


def controller_ref(obj: Mapping[str, Any]) -> Obj | None:
    """The ownerReference with ``controller: true``, or None."""
    for ref in meta(obj).get("ownerReferences") or []:
        if isinstance(ref, dict) and ref.get("controller"):
            return ref
    return None


def controlled_by(obj: Mapping[str, Any], owner_uids: Iterable[str]) -> bool:
    ref = controller_ref(obj)
    return ref is not None and ref.get("uid") in set(owner_uids)


def selector_string(selector: Mapping[str, Any] | None) -> str:
    """A LabelSelector object as the ``labelSelector`` query string."""
    if not selector:
        return ""
    parts = [f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items())]
    for expr in selector.get("matchExpressions") or []:
        key, op = expr.get("key", ""), expr.get("operator", "")
        values = ",".join(expr.get("values") or [])
        if op == "In":
            parts.append(f"{key} in ({values})")
        elif op == "NotIn":
            parts.append(f"{key} notin ({values})")
        elif op == "Exists":
            parts.append(key)
        elif op == "DoesNotExist":
            parts.append(f"!{key}")
    return ",".join(parts)


def pod_ready(pod: Mapping[str, Any]) -> bool:
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return bool(cond.get("status") == "True")
    return False


def restarts(pod: Mapping[str, Any]) -> int:
    return sum(
        int(s.get("restartCount") or 0) for s in (pod.get("status") or {}).get("containerStatuses") or []
    )


# ---------------------------------------------------------------------- target reads

_WORKLOADS = {"deployment": ("apps/v1", "deployments"), "statefulset": ("apps/v1", "statefulsets")}


async def workload(kube: KubeReader, memo: MutableMapping[str, Any], target: Target) -> Obj:
    """The Deployment or StatefulSet the target names."""
    if target.kind not in _WORKLOADS:
        raise StepError(f"{target} is not a Deployment or StatefulSet")
    group_version, resource = _WORKLOADS[target.kind]
    return await get_cached(kube, memo, ns_path(group_version, target.namespace, resource, target.name))


async def replicasets(kube: KubeReader, memo: MutableMapping[str, Any], deployment: Obj) -> list[Obj]:
    """The ReplicaSets the Deployment controls (one LIST by its selector, filtered by owner uid)."""
    m = meta(deployment)
    selector = selector_string((deployment.get("spec") or {}).get("selector"))
    if not selector:
        raise StepError(f"deployment {m.get('name')} has no selector")
    items = await list_cached(
        kube, memo, ns_path("apps/v1", m.get("namespace", ""), "replicasets"), labelSelector=selector
    )
    return [rs for rs in items if controlled_by(rs, [m.get("uid", "")])]


async def target_pods(kube: KubeReader, memo: MutableMapping[str, Any], target: Target) -> list[Obj]:
    """Every pod of the target: one LIST by the workload's selector (plus its GET, and for a
    Deployment the ReplicaSet LIST), or the one pod a ``pod`` target names."""
    if target.kind == "pod":
        pod = await get_cached(kube, memo, ns_path("v1", target.namespace, "pods", target.name))
        return [pod] if isinstance(pod, dict) else []
    owner = await workload(kube, memo, target)
    selector = selector_string((owner.get("spec") or {}).get("selector"))
    if not selector:
        raise StepError(f"{target} has no selector")
    if target.kind == "deployment":
        owners = [meta(rs).get("uid", "") for rs in await replicasets(kube, memo, owner)]
    else:
        owners = [meta(owner).get("uid", "")]
    pods = await list_cached(kube, memo, ns_path("v1", target.namespace, "pods"), labelSelector=selector)
    return [p for p in pods if controlled_by(p, owners)]


async def pod_template_labels(
    kube: KubeReader, memo: MutableMapping[str, Any], target: Target
) -> dict[str, str]:
    """The labels the target's pods carry (template labels; the pod's own for a pod target)."""
    if target.kind == "pod":
        pods = await target_pods(kube, memo, target)
        return labels_of(pods[0]) if pods else {}
    owner = await workload(kube, memo, target)
    template = (owner.get("spec") or {}).get("template") or {}
    return dict((template.get("metadata") or {}).get("labels") or {})
