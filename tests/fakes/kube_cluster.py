"""The state behind the fake kube-apiserver: objects, API semantics, tiny controllers and a
Python seeding API. :class:`tests.fakes.kube_apiserver.FakeKubeApiserver` serves it over HTTP.

Controllers run synchronously after every write (``auto_settle``) or on ``settle()``:

- Deployment: template change -> ReplicaSet ``<name>-<hash>`` (reused when an old one matches,
  with its revision bumped to max+1, as ``kubectl rollout undo`` relies on); rolling update
  with maxSurge/maxUnavailable, so a crash-looping new revision gets stuck exactly like on a
  real cluster (old pods stay up); Recreate; paused; revisionHistoryLimit; status and
  conditions (Available, Progressing incl. ProgressDeadlineExceeded against the fake clock).
- ReplicaSet: creates/deletes Pods (not-ready pods go first).
- StatefulSet: ordinal pods, OrderedReady/Parallel, rolling update from the highest ordinal,
  PVCs from volumeClaimTemplates.
- Job: runs ``parallelism`` pods to completion (or failure).
- Garbage collection of dependents (ownerReferences) after a cascading delete.
- "Kubelet": pods get node, IPs, container statuses; images listed in ``bad_images`` /
  ``image_faults`` crash-loop, get OOMKilled, fail config or image pulls, or fail readiness,
  with the Events a kubelet would emit.
"""

from __future__ import annotations

import copy
import itertools
import json
import random
import uuid
from collections.abc import Callable, Generator, Iterable, Mapping
from typing import Any, Literal

from tests.fakes import kube_store as ks
from tests.fakes.kube_patch import (
    PatchApplyError,
    PatchDecodeError,
    apply_json_patch,
    apply_merge_patch,
    apply_strategic_merge_patch,
)
from tests.fakes.kube_selectors import (
    SelectorError,
    label_selector_string,
    match_fields,
    match_labels,
    parse_field_selector,
    parse_label_selector,
)
from tests.fakes.kube_store import ApiError, Obj, ResourceType, format_time, parse_time
from tests.fakes.kube_workloads import (
    CHANGE_CAUSE,
    CRASH_REASONS,
    DESIRED_REPLICAS,
    MAX_REPLICAS,
    POD_TEMPLATE_HASH,
    REVISION,
    REVISION_HISTORY,
    FaultReason,
    ImageFault,
    apply_defaults,
    check_immutable_metadata,
    controller_uid,
    copied_annotations,
    default_job_selector,
    default_pod_spec,
    owner_reference,
    pod_is_ready,
    pod_is_terminal,
    pod_status,
    revision_of,
    safe_encode,
    surge_and_unavailable,
    template_hash,
    templates_equal,
    validate,
)

MetricsMode = Literal["available", "absent", "unavailable"]
PatchKind = Literal["json", "merge", "strategic"]

JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"


class Settled:
    """Returned by :meth:`FakeCluster.settle`; awaiting it is a no-op, so both
    ``fake.settle()`` and ``await fake.settle()`` work."""

    def __await__(self) -> Generator[Any, None, None]:
        return
        yield  # pragma: no cover


def _content(obj: Mapping[str, Any]) -> Obj:
    """The object without what the server stamps (to tell a write that changed it)."""
    out = copy.deepcopy(dict(obj))
    meta = out.get("metadata") or {}
    for key in ("resourceVersion", "managedFields", "generation", "uid", "creationTimestamp"):
        meta.pop(key, None)
    out.pop("kind", None)
    out.pop("apiVersion", None)
    return out


def manage_fields(rt: ResourceType, current: Obj | None, obj: Obj, manager: str, now: str, *,
                  operation: str = "Update", subresource: str | None = None) -> None:
    """``metadata.managedFields`` as the API server keeps them: one entry per manager,
    operation and subresource (field sets left empty); a write that changed the object moves
    its writer's ``time``. The client cannot rewrite them by omission."""
    meta = obj.setdefault("metadata", {})
    entries = [dict(e) for e in ((current or {}).get("metadata") or {}).get("managedFields") or []]
    meta["managedFields"] = entries
    if not manager or (current is not None and _content(current) == _content(obj)):
        return
    entry: Obj = {"manager": manager, "operation": operation, "apiVersion": rt.api_version,
                  "time": now, "fieldsType": "FieldsV1", "fieldsV1": {}}
    if subresource:
        entry["subresource"] = subresource
    key = (manager, operation, subresource)
    for n, e in enumerate(entries):
        if (e.get("manager"), e.get("operation"), e.get("subresource")) == key:
            entries[n] = entry
            return
    entries.append(entry)


def parse_bool(value: str | None) -> bool:
    return value is not None and value.strip().lower() in ("true", "1", "t", "yes")


def _parse_int(value: str | None, name: str) -> int | None:
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise ks.bad_request(f"invalid value for {name}: {value!r}") from None


class FakeCluster:
    """In-memory Kubernetes state plus the semantics of the API verbs."""

    def __init__(
        self,
        *,
        seed: int = 0,
        bad_images: Iterable[str] = (),
        default_node: str | None = "node-1",
        auto_settle: bool = True,
    ) -> None:
        self.registry = ks.ResourceRegistry()
        self.clock = ks.FakeClock()
        self.store = ks.ObjectStore(self.clock)
        self.rng = random.Random(seed)
        #: images whose containers crash-loop (exit 1, reason Error)
        self.bad_images: set[str] = set(bad_images)
        #: per-image faults (take precedence over ``bad_images``)
        self.image_faults: dict[str, ImageFault] = {}
        #: node created on demand when a pod must be scheduled and no Ready node exists
        self.default_node = default_node
        #: run controllers after each write (else only on ``settle()``)
        self.auto_settle = auto_settle
        #: metrics.k8s.io: "available", "absent" (404 as without metrics-server) or
        #: "unavailable" (503, APIService registered but metrics-server down)
        self.metrics_mode: MetricsMode = "available"
        #: usage reported for running pods without explicit metrics, per container
        #: (cpu, memory), e.g. ("5m", "64Mi"); None = no metrics for them
        self.default_pod_usage: tuple[str, str] | None = None
        self._logs: dict[tuple[str, str, str, bool], str] = {}
        self._image_logs: dict[tuple[str, bool], str] = {}
        self._pod_metrics: dict[tuple[str, str], dict[str, tuple[str, str]]] = {}
        self._node_metrics: dict[str, tuple[str, str]] = {}
        self._managed_pods: dict[str, tuple[str, str]] = {}
        self._emitted: set[tuple[str, ...]] = set()
        self._deleted_uids: set[str] = set()
        self._created_seq: dict[str, int] = {}
        self._seq = itertools.count()
        self._pod_ips = itertools.count(10)
        self._node_ips = itertools.count(10)
        self._schedule_rr = itertools.count()
        self._settling = False
        #: extra controllers run by ``settle()`` (each returns whether it changed anything),
        #: e.g. :class:`tests.fakes.kube_certmanager.CertManager`'s issuing controller
        self.controllers: list[Callable[[], bool]] = []
        for ns in ("default", "kube-system"):
            self._insert(self._t("Namespace"), {"metadata": {"name": ns}})

    # ------------------------------------------------------------------ small helpers

    def _t(self, kind: str) -> ResourceType:
        return self.registry.by_name(kind)

    def _rand_suffix(self, length: int = 5) -> str:
        return safe_encode(self.rng.getrandbits(64).to_bytes(8, "big"), length)

    def _seq_of(self, obj: Obj) -> int:
        return self._created_seq.get(obj["metadata"].get("uid", ""), -1)

    def fault_for(self, image: str) -> ImageFault | None:
        """The fault configured for ``image`` (``image_faults`` first, then ``bad_images``)."""
        if image in self.image_faults:
            return self.image_faults[image]
        if image in self.bad_images:
            return ImageFault()
        return None

    def _insert(self, rt: ResourceType, obj: Obj) -> Obj:
        """Store a new object after defaulting (no validation, no existence check)."""
        meta = obj.setdefault("metadata", {})
        meta.setdefault("uid", str(uuid.uuid4()))
        apply_defaults(rt, obj)
        if rt.kind == "Job":
            default_job_selector(obj)
        stored = self.store.create(rt, obj)
        self._created_seq[meta["uid"]] = next(self._seq)
        return stored

    def _save(self, rt: ResourceType, obj: Obj) -> bool:
        _, changed = self.store.update(rt, obj)
        return changed

    def _owned(self, rt: ResourceType, namespace: str, owner_uid: str) -> list[Obj]:
        items = [o for o in self.store.list(rt, namespace) if controller_uid(o) == owner_uid]
        return sorted(items, key=self._seq_of)

    def _after_write(self) -> None:
        if self.auto_settle:
            self.settle()

    def _ensure_namespace(self, namespace: str) -> None:
        if self.store.get(self._t("Namespace"), None, namespace) is None:
            self._insert(self._t("Namespace"), {"metadata": {"name": namespace}})

    # ------------------------------------------------------------------ API verbs

    def api_get(self, rt: ResourceType, namespace: str | None, name: str) -> Obj:
        obj = self.store.get(rt, namespace, name)
        if obj is None:
            raise ks.not_found(rt, name)
        return copy.deepcopy(obj)

    def api_list(
        self,
        rt: ResourceType,
        namespace: str | None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
        limit: str | None = None,
        continue_token: str | None = None,
    ) -> Obj:
        items = self._select(rt, self.store.list(rt, namespace), label_selector, field_selector)
        return self._list_response(rt, items, limit, continue_token)

    def _select(self, rt: ResourceType, objs: Iterable[Obj], label_selector: str | None,
                field_selector: str | None) -> list[Obj]:
        try:
            labels = parse_label_selector(label_selector)
            fields = parse_field_selector(field_selector, rt.fields)
        except SelectorError as exc:
            raise ks.bad_request(str(exc)) from None
        return [
            o for o in objs
            if match_labels(labels, o["metadata"].get("labels")) and match_fields(fields, o)
        ]

    def _list_response(self, rt: ResourceType, items: list[Obj], limit: str | None,
                       continue_token: str | None) -> Obj:
        start = 0
        if continue_token:
            try:
                start = int(continue_token)
            except ValueError:
                raise ks.ApiError(410, "Expired", "The provided continue parameter is too "
                                  "old to display a consistent list result.", {}) from None
        meta: Obj = {"resourceVersion": self.store.resource_version}
        size = _parse_int(limit, "limit")
        selected = items[start:]
        if size is not None and size > 0 and len(selected) > size:
            selected = selected[:size]
            meta["continue"] = str(start + size)
            meta["remainingItemCount"] = len(items) - start - size
        out = []
        for obj in selected:
            item = copy.deepcopy(obj)
            item.pop("kind", None)
            item.pop("apiVersion", None)
            out.append(item)
        return {"kind": rt.list_kind, "apiVersion": rt.api_version, "metadata": meta,
                "items": out}

    def api_create(self, rt: ResourceType, namespace: str | None, body: Any, *,
                   dry_run: bool = False, manager: str = "") -> Obj:
        if not isinstance(body, dict) or not isinstance(body.get("metadata", {}), dict):
            raise ks.bad_request("the object provided is not a valid JSON object")
        obj = copy.deepcopy(body)
        meta = obj.setdefault("metadata", {})
        if rt.namespaced:
            body_ns = meta.get("namespace")
            if body_ns and body_ns != namespace:
                raise ks.bad_request("the namespace of the provided object does not match "
                                     "the namespace sent on the request")
            meta["namespace"] = namespace
            if self.store.get(self._t("Namespace"), None, namespace or "") is None:
                raise ks.not_found(self._t("Namespace"), namespace or "")
        name = meta.get("name")
        if not name and meta.get("generateName"):
            name = f"{meta['generateName']}{self._rand_suffix()}"
        if not name:
            raise ks.invalid(rt, "", [("metadata.name",
                                       "Required value: name or generateName is required")])
        meta["name"] = name
        if self.store.get(rt, namespace, name) is not None:
            raise ks.already_exists(rt, name)
        for key in ("uid", "resourceVersion", "creationTimestamp", "generation",
                    "deletionTimestamp", "managedFields"):
            meta.pop(key, None)
        meta["uid"] = str(uuid.uuid4())
        if rt.kind == "Pod":
            obj["status"] = {"phase": "Pending"}
        manage_fields(rt, None, obj, manager, format_time(self.clock.now()))
        apply_defaults(rt, obj)
        if rt.kind == "Job":
            default_job_selector(obj)
        validate(rt, obj, None)
        if dry_run:
            meta["creationTimestamp"] = format_time(self.clock.now())
            obj["kind"], obj["apiVersion"] = rt.kind, rt.api_version
            return obj
        stored = self._insert(rt, obj)
        if rt.kind == "Pod":
            self._manage_pod(stored)
        snapshot = copy.deepcopy(stored)
        self._after_write()
        return snapshot

    def api_replace(self, rt: ResourceType, namespace: str | None, name: str, body: Any, *,
                    subresource: str | None = None, dry_run: bool = False,
                    manager: str = "") -> Obj:
        current = self.store.get(rt, namespace, name)
        if current is None:
            raise ks.not_found(rt, name)
        if not isinstance(body, dict) or not isinstance(body.get("metadata", {}), dict):
            raise ks.bad_request("the object provided is not a valid JSON object")
        obj = copy.deepcopy(body)
        meta = obj.setdefault("metadata", {})
        body_name = meta.get("name")
        if body_name != name:
            raise ks.bad_request(f"the name of the object ({body_name}) does not match the "
                                 f"name on the URL ({name})")
        rv = meta.get("resourceVersion")
        if rv and rv != current["metadata"]["resourceVersion"]:
            raise ks.conflict(rt, name)
        if subresource == "scale":
            return self._write_scale(rt, current, obj, dry_run=dry_run)
        return self._commit_update(rt, current, obj, subresource=subresource, dry_run=dry_run,
                                   manager=manager)

    def api_patch(self, rt: ResourceType, namespace: str | None, name: str,
                  content_type: str, raw_body: bytes, *, subresource: str | None = None,
                  dry_run: bool = False, manager: str = "") -> Obj:
        current = self.store.get(rt, namespace, name)
        if current is None:
            raise ks.not_found(rt, name)
        media = content_type.split(";", 1)[0].strip().lower()
        if media not in (JSON_PATCH, MERGE_PATCH, STRATEGIC_PATCH):
            raise ks.unsupported_media_type(media)
        try:
            patch = json.loads(raw_body or b"null")
        except ValueError as exc:
            raise ks.bad_request(f"error decoding patch: {exc}") from None
        base = self._scale_of(rt, current) if subresource == "scale" else copy.deepcopy(current)
        try:
            if media == JSON_PATCH:
                patched = apply_json_patch(base, patch)
            else:
                if not isinstance(patch, dict):
                    raise ks.bad_request("error decoding patch: json: cannot unmarshal "
                                         f"{type(patch).__name__} into Go value of type "
                                         "map[string]interface {}")
                merge = apply_merge_patch if media == MERGE_PATCH else (
                    apply_strategic_merge_patch)
                patched = merge(base, patch)
        except PatchDecodeError as exc:
            raise ks.bad_request(str(exc)) from None
        except PatchApplyError:
            raise ks.patch_not_applied() from None
        if not isinstance(patched, dict) or not isinstance(patched.get("metadata"), dict):
            raise ks.bad_request("the patched object is not a valid JSON object")
        rv = patched["metadata"].get("resourceVersion")
        if rv and rv != current["metadata"]["resourceVersion"]:
            raise ks.conflict(rt, name)
        if subresource == "scale":
            return self._write_scale(rt, current, patched, dry_run=dry_run)
        return self._commit_update(rt, current, patched, subresource=subresource,
                                   dry_run=dry_run, manager=manager)

    def _commit_update(self, rt: ResourceType, current: Obj, obj: Obj, *,
                       subresource: str | None, dry_run: bool, manager: str = "") -> Obj:
        if subresource == "status":
            updated = copy.deepcopy(current)
            if "status" in obj:
                updated["status"] = obj["status"]
            else:
                updated.pop("status", None)
            obj = updated
        elif subresource is not None:
            raise ks.path_not_found()
        elif rt.status_subresource:
            if "status" in current:
                obj["status"] = copy.deepcopy(current["status"])
            else:
                obj.pop("status", None)
        meta = obj.setdefault("metadata", {})
        if rt.namespaced:
            meta.setdefault("namespace", current["metadata"].get("namespace"))
        check_immutable_metadata(rt, current, obj)
        apply_defaults(rt, obj)
        validate(rt, obj, current)
        manage_fields(rt, current, obj, manager, format_time(self.clock.now()),
                      subresource=subresource)
        if dry_run:
            return self.store.preview_update(rt, obj)
        for fld in ("deletionTimestamp", "deletionGracePeriodSeconds"):  # not the client's to clear
            if fld in current["metadata"]:
                meta[fld] = current["metadata"][fld]
        stored, changed = self.store.update(rt, obj)
        snapshot = copy.deepcopy(stored)
        changed |= self._finish_deletion(rt, stored)
        if changed:
            self._after_write()
        return snapshot

    def _scale_of(self, rt: ResourceType, obj: Obj) -> Obj:
        if not rt.scale:
            raise ks.path_not_found()
        meta = obj["metadata"]
        return {
            "kind": "Scale",
            "apiVersion": "autoscaling/v1",
            "metadata": {k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion",
                                              "creationTimestamp") if k in meta},
            "spec": {"replicas": (obj.get("spec") or {}).get("replicas", 0)},
            "status": {"replicas": (obj.get("status") or {}).get("replicas", 0),
                       "selector": label_selector_string((obj.get("spec") or {}).get(
                           "selector"))},
        }

    def _write_scale(self, rt: ResourceType, current: Obj, scale: Obj, *,
                     dry_run: bool) -> Obj:
        if not rt.scale:
            raise ks.path_not_found()
        replicas = (scale.get("spec") or {}).get("replicas", 0)
        if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
            raise ks.ApiError(422, "Invalid", f'Scale.autoscaling "{current["metadata"]["name"]}"'
                              f" is invalid: spec.replicas: Invalid value: {replicas!r}: must "
                              "be greater than or equal to 0", {})
        updated = copy.deepcopy(current)
        updated.setdefault("spec", {})["replicas"] = replicas
        result = self._commit_update(rt, current, updated, subresource=None, dry_run=dry_run)
        return self._scale_of(rt, result)

    def api_delete(self, rt: ResourceType, namespace: str | None, name: str,
                   options: Mapping[str, Any] | None = None, *, dry_run: bool = False) -> Obj:
        current = self.store.get(rt, namespace, name)
        if current is None:
            raise ks.not_found(rt, name)
        options = options or {}
        meta = current["metadata"]
        pre = options.get("preconditions") or {}
        if pre.get("uid") and pre["uid"] != meta["uid"]:
            raise ks.conflict(rt, name, f"Precondition failed: UID in precondition: "
                              f"{pre['uid']}, UID in object meta: {meta['uid']}")
        if pre.get("resourceVersion") and pre["resourceVersion"] != meta["resourceVersion"]:
            raise ks.conflict(rt, name, f"Precondition failed: ResourceVersion in precondition: "
                              f"{pre['resourceVersion']}, ResourceVersion in object meta: "
                              f"{meta['resourceVersion']}")
        propagation = options.get("propagationPolicy")
        if options.get("orphanDependents") is True:
            propagation = "Orphan"
        if not propagation:
            propagation = "Orphan" if rt.orphan_by_default else "Background"
        if meta.get("finalizers"):
            return self._mark_deleted(rt, current, options, dry_run=dry_run)
        response: Obj
        if rt.kind == "Pod":
            response = copy.deepcopy(current)
            response["metadata"]["deletionTimestamp"] = format_time(self.clock.now())
            response["metadata"]["deletionGracePeriodSeconds"] = int(
                options.get("gracePeriodSeconds") or 30)
        else:
            details: Obj = {"name": name, "kind": rt.plural, "uid": meta["uid"]}
            if rt.group:
                details["group"] = rt.group
            response = {"kind": "Status", "apiVersion": "v1", "metadata": {},
                        "status": "Success", "details": details}
        if not dry_run:
            self._delete(rt, namespace, name, str(propagation))
            self._after_write()
        return response

    def _mark_deleted(self, rt: ResourceType, current: Obj, options: Mapping[str, Any], *,
                      dry_run: bool) -> Obj:
        """An object with finalizers is only marked (``deletionTimestamp``, "Terminating"): it
        stays readable, with its uid, until an update removes its last finalizer (as
        kube-apiserver does; the answer is the marked object, 200)."""
        marked = copy.deepcopy(current)
        meta = marked["metadata"]
        if "deletionTimestamp" not in meta:
            meta["deletionTimestamp"] = format_time(self.clock.now())
            meta["deletionGracePeriodSeconds"] = (
                int(options.get("gracePeriodSeconds") or 30) if rt.kind == "Pod" else 0)
            if not dry_run:
                self._save(rt, marked)
                self._after_write()
        stored = self.store.get(rt, meta.get("namespace") if rt.namespaced else None, meta["name"])
        return copy.deepcopy(stored if stored is not None and not dry_run else marked)

    def _finish_deletion(self, rt: ResourceType, obj: Obj) -> bool:
        """A marked object whose last finalizer was just removed is deleted."""
        meta = obj["metadata"]
        if "deletionTimestamp" not in meta or meta.get("finalizers"):
            return False
        self._delete(rt, meta.get("namespace") if rt.namespaced else None, meta["name"], "Background")
        return True

    def api_delete_collection(self, rt: ResourceType, namespace: str | None, *,
                              label_selector: str | None, field_selector: str | None,
                              dry_run: bool = False) -> Obj:
        items = self._select(rt, self.store.list(rt, namespace), label_selector, field_selector)
        response = self._list_response(rt, items, None, None)
        if not dry_run:
            for obj in items:
                self._delete(rt, obj["metadata"].get("namespace"), obj["metadata"]["name"],
                             "Orphan" if rt.orphan_by_default else "Background")
            self._after_write()
        return response

    def api_scale_get(self, rt: ResourceType, namespace: str | None, name: str) -> Obj:
        return self._scale_of(rt, self.api_get(rt, namespace, name))

    def api_pod_log(self, namespace: str, name: str, query: Mapping[str, str]) -> str:
        pod_rt = self._t("Pod")
        pod = self.store.get(pod_rt, namespace, name)
        if pod is None:
            raise ks.not_found(pod_rt, name)
        spec = pod.get("spec") or {}
        names = [str(c["name"]) for c in spec.get("containers") or []]
        init_names = [str(c["name"]) for c in spec.get("initContainers") or []]
        container = query.get("container")
        if not container:
            if len(names) != 1:
                raise ks.bad_request(f"a container name must be specified for pod {name}, "
                                     f"choose one of: [{' '.join(names)}]")
            container = names[0]
        if container not in names and container not in init_names:
            raise ks.bad_request(f"container {container} is not valid for pod {name}")
        statuses = (pod.get("status") or {}).get("containerStatuses") or []
        cstatus: Obj = next((s for s in statuses if s.get("name") == container), {})
        image = next((str(c.get("image")) for c in (spec.get("containers") or [])
                      + (spec.get("initContainers") or []) if c.get("name") == container), "")
        previous = parse_bool(query.get("previous"))
        text = self._logs.get((namespace, name, container, previous))
        if text is None and previous:
            terminated = (cstatus.get("lastState") or {}).get("terminated")
            if not cstatus.get("restartCount") and not terminated:
                raise ks.bad_request(f'previous terminated container "{container}" in pod '
                                     f'"{name}" not found')
            text = self._image_logs.get((image, True), "")
        elif text is None:
            waiting = (cstatus.get("state") or {}).get("waiting") or {}
            if waiting and not cstatus.get("restartCount"):
                raise ks.bad_request(f'container "{container}" in pod "{name}" is waiting to '
                                     f"start: {waiting.get('reason', 'ContainerCreating')}")
            if not cstatus and (pod.get("status") or {}).get("phase") == "Pending":
                raise ks.bad_request(f'container "{container}" in pod "{name}" is waiting to '
                                     "start: ContainerCreating")
            text = self._image_logs.get((image, False), "")
        return self._shape_log(text, query)

    def _shape_log(self, text: str, query: Mapping[str, str]) -> str:
        lines = text.splitlines(keepends=True)
        tail = _parse_int(query.get("tailLines"), "tailLines")
        if tail is not None:
            lines = lines[-tail:] if tail > 0 else []
        if parse_bool(query.get("timestamps")):
            stamp = self.clock.now().strftime("%Y-%m-%dT%H:%M:%S.000000000Z")
            lines = [f"{stamp} {line}" for line in lines]
        out = "".join(lines)
        limit = _parse_int(query.get("limitBytes"), "limitBytes")
        if limit is not None:
            if limit <= 0:
                raise ks.invalid(self._t("Pod"), "", [("limitBytes", "Invalid value: must be "
                                                       "greater than 0")])
            out = out.encode()[:limit].decode(errors="ignore")
        return out

    # ------------------------------------------------------------------ metrics.k8s.io

    def _pod_metrics_obj(self, pod: Obj) -> Obj | None:
        meta = pod["metadata"]
        key = (meta.get("namespace", ""), meta["name"])
        usage = self._pod_metrics.get(key)
        if usage is None:
            if self.default_pod_usage is None or (pod.get("status") or {}).get(
                    "phase") != "Running":
                return None
            usage = {str(c["name"]): self.default_pod_usage
                     for c in (pod.get("spec") or {}).get("containers") or []}
        now = format_time(self.clock.now())
        return {
            "kind": "PodMetrics",
            "apiVersion": "metrics.k8s.io/v1beta1",
            "metadata": {"name": meta["name"], "namespace": key[0], "creationTimestamp": now,
                         "labels": dict(meta.get("labels") or {})},
            "timestamp": now,
            "window": "15s",
            "containers": [{"name": c, "usage": {"cpu": cpu, "memory": mem}}
                           for c, (cpu, mem) in usage.items()],
        }

    def _node_metrics_obj(self, node: Obj) -> Obj | None:
        name = node["metadata"]["name"]
        if name not in self._node_metrics:
            return None
        cpu, mem = self._node_metrics[name]
        now = format_time(self.clock.now())
        return {
            "kind": "NodeMetrics",
            "apiVersion": "metrics.k8s.io/v1beta1",
            "metadata": {"name": name, "creationTimestamp": now,
                         "labels": dict(node["metadata"].get("labels") or {})},
            "timestamp": now,
            "window": "20s",
            "usage": {"cpu": cpu, "memory": mem},
        }

    def _check_metrics(self) -> None:
        if self.metrics_mode == "absent":
            raise ks.path_not_found()
        if self.metrics_mode == "unavailable":
            raise ks.service_unavailable()

    def api_metrics_get(self, rt: ResourceType, namespace: str | None, name: str) -> Obj:
        self._check_metrics()
        if rt.kind == "PodMetrics":
            pod = self.store.get(self._t("Pod"), namespace, name)
            found = self._pod_metrics_obj(pod) if pod else None
            label = f"{namespace}/{name}"
        else:
            node = self.store.get(self._t("Node"), None, name)
            found = self._node_metrics_obj(node) if node else None
            label = name
        if found is None:
            raise ApiError(404, "NotFound", f'{rt.kind.lower()}.metrics.k8s.io "{label}" '
                           "not found", {"name": label, "group": "metrics.k8s.io",
                                         "kind": rt.kind.lower()})
        return found

    def api_metrics_list(self, rt: ResourceType, namespace: str | None, *,
                         label_selector: str | None, field_selector: str | None) -> Obj:
        self._check_metrics()
        if rt.kind == "PodMetrics":
            source = self._select(rt, self.store.list(self._t("Pod"), namespace),
                                  label_selector, field_selector)
            items = [m for p in source if (m := self._pod_metrics_obj(p)) is not None]
        else:
            source = self._select(rt, self.store.list(self._t("Node")), label_selector,
                                  field_selector)
            items = [m for n in source if (m := self._node_metrics_obj(n)) is not None]
        for item in items:
            item.pop("kind", None)
            item.pop("apiVersion", None)
        return {"kind": rt.list_kind, "apiVersion": rt.api_version,
                "metadata": {}, "items": items}

    # ------------------------------------------------------------------ deletion and GC

    def _delete(self, rt: ResourceType, namespace: str | None, name: str,
                propagation: str) -> Obj | None:
        obj = self.store.delete(rt, namespace, name)
        if obj is None:
            return None
        uid = obj["metadata"]["uid"]
        self._managed_pods.pop(uid, None)
        if rt.kind == "Namespace":
            for other_rt, other in list(self.store.all_objects()):
                if other_rt.namespaced and other["metadata"].get("namespace") == name:
                    self.store.delete(other_rt, name, other["metadata"]["name"])
                    self._managed_pods.pop(other["metadata"]["uid"], None)
        if propagation == "Orphan":
            for other_rt, other in list(self.store.all_objects()):
                refs = other["metadata"].get("ownerReferences") or []
                if any(r.get("uid") == uid for r in refs):
                    updated = copy.deepcopy(other)
                    kept = [r for r in refs if r.get("uid") != uid]
                    if kept:
                        updated["metadata"]["ownerReferences"] = kept
                    else:
                        updated["metadata"].pop("ownerReferences", None)
                    self._save(other_rt, updated)
        else:
            self._deleted_uids.add(uid)
        return obj

    def _collect_garbage(self) -> bool:
        changed = False
        while self._deleted_uids:
            deleted = set(self._deleted_uids)
            doomed = []
            for rt, obj in self.store.all_objects():
                refs = obj["metadata"].get("ownerReferences") or []
                if refs and any(r.get("uid") in deleted for r in refs) and all(
                    r.get("uid") in deleted or self.store.find_uid(str(r.get("uid"))) is None
                    for r in refs
                ):
                    doomed.append((rt, obj))
            self._deleted_uids.clear()
            for rt, obj in doomed:
                self._delete(rt, obj["metadata"].get("namespace"), obj["metadata"]["name"],
                             "Background")
                changed = True
        return changed

    # ------------------------------------------------------------------ controllers

    def settle(self) -> Settled:
        """Run all controllers until nothing changes."""
        if self._settling:
            return Settled()
        self._settling = True
        try:
            for _ in range(500):
                changed = self._collect_garbage()
                for kind, sync in (("Deployment", self._sync_deployment),
                                   ("ReplicaSet", self._sync_replicaset),
                                   ("StatefulSet", self._sync_statefulset),
                                   ("Job", self._sync_job)):
                    for obj in self.store.list(self._t(kind)):
                        changed |= sync(obj["metadata"]["namespace"], obj["metadata"]["name"])
                changed |= self._refresh_pods()
                for controller in self.controllers:
                    changed |= controller()
                if not changed:
                    break
            else:  # pragma: no cover - a controller bug
                raise RuntimeError("fake controllers did not converge")
        finally:
            self._settling = False
        return Settled()

    # ---- deployment

    def _sync_deployment(self, namespace: str, name: str) -> bool:
        d_rt, rs_rt = self._t("Deployment"), self._t("ReplicaSet")
        d = self.store.get(d_rt, namespace, name)
        if d is None:
            return False
        spec = d["spec"]
        uid = d["metadata"]["uid"]
        changed = False
        rss = self._owned(rs_rt, namespace, uid)
        new_rs = next((rs for rs in rss if templates_equal(rs["spec"].get("template"),
                                                           spec.get("template"))), None)
        old = [rs for rs in rss if rs is not new_rs]
        max_old = max((revision_of(rs) for rs in old), default=0)
        paused = bool(spec.get("paused"))
        replicas = int(spec.get("replicas", 1))
        surge, _ = surge_and_unavailable(d)
        if new_rs is None and not paused:
            new_rs = self._create_replicaset(d, max_old + 1)
            changed = True
        elif new_rs is not None and revision_of(new_rs) <= max_old:
            bumped = copy.deepcopy(new_rs)
            annotations = bumped["metadata"].setdefault("annotations", {})
            history = [h for h in (annotations.get(REVISION_HISTORY, "").split(",")) if h]
            history.append(str(revision_of(new_rs)))
            annotations[REVISION_HISTORY] = ",".join(history)
            annotations[REVISION] = str(max_old + 1)
            changed |= self._save(rs_rt, bumped)
        if new_rs is not None:
            new_rs = self.store.get(rs_rt, namespace, new_rs["metadata"]["name"])
            assert new_rs is not None
            synced = copy.deepcopy(new_rs)
            annotations = synced["metadata"].setdefault("annotations", {})
            annotations.update(copied_annotations(d))
            annotations[DESIRED_REPLICAS] = str(replicas)
            annotations[MAX_REPLICAS] = str(replicas + surge)
            changed |= self._save(rs_rt, synced)
            revision = str(revision_of(synced))
            if (d["metadata"].get("annotations") or {}).get(REVISION) != revision:
                updated = copy.deepcopy(d)
                updated["metadata"].setdefault("annotations", {})[REVISION] = revision
                changed |= self._save(d_rt, updated)
            if not paused:
                changed |= self._rollout_step(namespace, name)
        changed |= self._cleanup_history(namespace, name)
        changed |= self._update_deployment_status(namespace, name)
        return changed

    def _create_replicaset(self, d: Obj, revision: int) -> Obj:
        rs_rt = self._t("ReplicaSet")
        namespace, name = d["metadata"]["namespace"], d["metadata"]["name"]
        template = copy.deepcopy(d["spec"]["template"])
        digest = template_hash(template)
        collision = 0
        while self.store.get(rs_rt, namespace, f"{name}-{digest}") is not None:
            collision += 1
            digest = template_hash({**template, "collisionCount": collision})
        template.setdefault("metadata", {}).setdefault("labels", {})[POD_TEMPLATE_HASH] = digest
        selector = copy.deepcopy(d["spec"]["selector"])
        selector.setdefault("matchLabels", {})[POD_TEMPLATE_HASH] = digest
        replicas = int(d["spec"].get("replicas", 1))
        surge, _ = surge_and_unavailable(d)
        annotations = copied_annotations(d)
        annotations.update({DESIRED_REPLICAS: str(replicas),
                            MAX_REPLICAS: str(replicas + surge), REVISION: str(revision)})
        rs = {
            "metadata": {
                "name": f"{name}-{digest}",
                "namespace": namespace,
                "labels": dict(template["metadata"]["labels"]),
                "annotations": annotations,
                "ownerReferences": [owner_reference(d)],
            },
            "spec": {"replicas": 0, "minReadySeconds": d["spec"].get("minReadySeconds", 0),
                     "selector": selector, "template": template},
        }
        return self._insert(rs_rt, rs)

    def _scale_replicaset(self, d: Obj, rs: Obj, replicas: int) -> bool:
        before = int(rs["spec"].get("replicas", 0))
        if before == replicas:
            return False
        updated = copy.deepcopy(rs)
        updated["spec"]["replicas"] = replicas
        self._save(self._t("ReplicaSet"), updated)
        direction = "up" if replicas > before else "down"
        self._emit(d, "ScalingReplicaSet",
                   f"Scaled {direction} replica set {rs['metadata']['name']} from {before} "
                   f"to {replicas}", component="deployment-controller")
        return True

    def _rollout_step(self, namespace: str, name: str) -> bool:
        d = self.store.get(self._t("Deployment"), namespace, name)
        assert d is not None
        rss = self._owned(self._t("ReplicaSet"), namespace, d["metadata"]["uid"])
        new_rs = next((rs for rs in rss if templates_equal(rs["spec"].get("template"),
                                                           d["spec"].get("template"))), None)
        if new_rs is None:
            return False
        old = [rs for rs in rss if rs is not new_rs]
        replicas = int(d["spec"].get("replicas", 1))

        def spec_replicas(rs: Obj) -> int:
            return int(rs["spec"].get("replicas", 0))

        def available(rs: Obj) -> int:
            return int((rs.get("status") or {}).get("availableReplicas", 0))

        if (d["spec"].get("strategy") or {}).get("type") == "Recreate":
            active = [rs for rs in old if spec_replicas(rs) > 0]
            if active:
                for rs in active:
                    self._scale_replicaset(d, rs, 0)
                return True
            if any((rs.get("status") or {}).get("replicas", 0) for rs in old):
                return False
            return self._scale_replicaset(d, new_rs, replicas)

        surge, unavailable = surge_and_unavailable(d)
        total = sum(spec_replicas(rs) for rs in rss)
        current = spec_replicas(new_rs)
        target = current
        if current > replicas:
            target = replicas
        elif current < replicas:
            room = replicas + surge - total
            if room > 0:
                target = current + min(room, replicas - current)
        if target != current:
            return self._scale_replicaset(d, new_rs, target)
        if sum(spec_replicas(rs) for rs in old) == 0:
            return False
        min_available = replicas - unavailable
        new_unavailable = spec_replicas(new_rs) - available(new_rs)
        max_scaled_down = total - min_available - new_unavailable
        if max_scaled_down <= 0:
            return False
        changed = False
        cleaned = 0
        for rs in old:
            if cleaned >= max_scaled_down:
                break
            want, ok = spec_replicas(rs), available(rs)
            if want == 0 or want == ok:
                continue
            down = min(max_scaled_down - cleaned, want - ok)
            changed |= self._scale_replicaset(d, rs, want - down)
            cleaned += down
        all_available = sum(available(rs) for rs in rss)
        budget = all_available - min_available
        for rs in old:
            if budget <= 0:
                break
            fresh = self.store.get(self._t("ReplicaSet"), namespace, rs["metadata"]["name"])
            if fresh is None or spec_replicas(fresh) == 0:
                continue
            down = min(spec_replicas(fresh), budget)
            changed |= self._scale_replicaset(d, fresh, spec_replicas(fresh) - down)
            budget -= down
        return changed

    def _cleanup_history(self, namespace: str, name: str) -> bool:
        d = self.store.get(self._t("Deployment"), namespace, name)
        if d is None:
            return False
        limit = d["spec"].get("revisionHistoryLimit")
        if limit is None:
            return False
        rss = self._owned(self._t("ReplicaSet"), namespace, d["metadata"]["uid"])
        current = next((rs for rs in rss if templates_equal(rs["spec"].get("template"),
                                                            d["spec"].get("template"))), None)
        idle = [rs for rs in rss if rs is not current and not rs["spec"].get("replicas")
                and not (rs.get("status") or {}).get("replicas")]
        idle.sort(key=revision_of)
        excess = len(idle) - int(limit)
        for rs in idle[:max(excess, 0)]:
            self._delete(self._t("ReplicaSet"), namespace, rs["metadata"]["name"], "Background")
        return excess > 0

    def _update_deployment_status(self, namespace: str, name: str) -> bool:
        d_rt = self._t("Deployment")
        d = self.store.get(d_rt, namespace, name)
        if d is None:
            return False
        spec = d["spec"]
        rss = self._owned(self._t("ReplicaSet"), namespace, d["metadata"]["uid"])
        new_rs = next((rs for rs in rss if templates_equal(rs["spec"].get("template"),
                                                           spec.get("template"))), None)
        desired = int(spec.get("replicas", 1))

        def total(field: str, items: Iterable[Obj]) -> int:
            return sum(int((rs.get("status") or {}).get(field, 0)) for rs in items)

        actual = total("replicas", rss)
        updated = total("replicas", [new_rs] if new_rs else [])
        ready = total("readyReplicas", rss)
        avail = total("availableReplicas", rss)
        spec_total = sum(int(rs["spec"].get("replicas", 0)) for rs in rss)
        unavailable_budget = 0
        if (spec.get("strategy") or {}).get("type", "RollingUpdate") == "RollingUpdate":
            unavailable_budget = surge_and_unavailable(d)[1]
        old_status = d.get("status") or {}
        old_conditions = {c.get("type"): c for c in old_status.get("conditions") or []}
        now = format_time(self.clock.now())

        def condition(kind: str, status: str, reason: str, message: str) -> Obj:
            prev = old_conditions.get(kind) or {}
            same = prev.get("status") == status and prev.get("reason") == reason and (
                prev.get("message") == message)
            return {
                "type": kind, "status": status,
                "lastUpdateTime": prev.get("lastUpdateTime", now) if same else now,
                "lastTransitionTime": prev.get("lastTransitionTime", now)
                if prev.get("status") == status else now,
                "reason": reason, "message": message,
            }

        if avail >= desired - unavailable_budget:
            available_cond = condition("Available", "True", "MinimumReplicasAvailable",
                                       "Deployment has minimum availability.")
        else:
            available_cond = condition("Available", "False", "MinimumReplicasUnavailable",
                                       "Deployment does not have minimum availability.")
        rs_name = new_rs["metadata"]["name"] if new_rs else ""
        complete = (new_rs is not None and updated == desired and actual == desired
                    and avail == desired)
        if spec.get("paused"):
            progressing = condition("Progressing", "Unknown", "DeploymentPaused",
                                    "Deployment is paused")
        elif complete:
            progressing = condition("Progressing", "True", "NewReplicaSetAvailable",
                                    f'ReplicaSet "{rs_name}" has successfully progressed.')
        else:
            progressing = condition("Progressing", "True", "ReplicaSetUpdated",
                                    f'ReplicaSet "{rs_name}" is progressing.')
            prev = old_conditions.get("Progressing") or {}
            deadline = spec.get("progressDeadlineSeconds")
            if prev.get("reason") == "ProgressDeadlineExceeded" and prev.get(
                    "message") == f'ReplicaSet "{rs_name}" has timed out progressing.':
                progressing = dict(prev)
            elif deadline is not None and progressing["lastUpdateTime"] != now and (
                self.clock.now() - parse_time(progressing["lastUpdateTime"])
            ).total_seconds() > int(deadline):
                progressing = condition("Progressing", "False", "ProgressDeadlineExceeded",
                                        f'ReplicaSet "{rs_name}" has timed out progressing.')
        status: Obj = {"observedGeneration": d["metadata"].get("generation", 1)}
        for key, value in (("replicas", actual), ("updatedReplicas", updated),
                           ("readyReplicas", ready), ("availableReplicas", avail),
                           ("unavailableReplicas", max(spec_total - avail, 0))):
            if value:
                status[key] = value
        status["conditions"] = [available_cond, progressing]
        if status == old_status:
            return False
        new = copy.deepcopy(d)
        new["status"] = status
        return self._save(d_rt, new)

    # ---- replicaset

    def _sync_replicaset(self, namespace: str, name: str) -> bool:
        rs_rt, pod_rt = self._t("ReplicaSet"), self._t("Pod")
        rs = self.store.get(rs_rt, namespace, name)
        if rs is None:
            return False
        changed = False
        pods = [p for p in self._owned(pod_rt, namespace, rs["metadata"]["uid"])
                if not pod_is_terminal(p) and "deletionTimestamp" not in p["metadata"]]
        want = int(rs["spec"].get("replicas", 0))
        template = rs["spec"].get("template") or {}
        while len(pods) < want:
            pod_name = f"{name}-{self._rand_suffix()}"
            if self.store.get(pod_rt, namespace, pod_name) is not None:
                continue
            pod = self._create_pod(rs, template, pod_name, {})
            self._emit(rs, "SuccessfulCreate", f"Created pod: {pod_name}",
                       component="replicaset-controller")
            pods.append(pod)
            changed = True
        if len(pods) > want:
            ranked = sorted(pods, key=lambda p: (pod_is_ready(p), -self._seq_of(p)))
            for pod in ranked[:len(pods) - want]:
                self._delete(pod_rt, namespace, pod["metadata"]["name"], "Background")
                self._emit(rs, "SuccessfulDelete", f"Deleted pod: {pod['metadata']['name']}",
                           component="replicaset-controller")
            changed = True
            pods = [p for p in self._owned(pod_rt, namespace, rs["metadata"]["uid"])
                    if not pod_is_terminal(p) and "deletionTimestamp" not in p["metadata"]]
        ready = sum(1 for p in pods if pod_is_ready(p))
        status: Obj = {"replicas": len(pods)}
        if pods:
            status["fullyLabeledReplicas"] = len(pods)
        if ready:
            status["readyReplicas"] = ready
            status["availableReplicas"] = ready
        status["observedGeneration"] = rs["metadata"].get("generation", 1)
        rs = self.store.get(rs_rt, namespace, name)
        assert rs is not None
        if rs.get("status") != status:
            updated = copy.deepcopy(rs)
            updated["status"] = status
            changed |= self._save(rs_rt, updated)
        return changed

    # ---- statefulset

    def _sync_statefulset(self, namespace: str, name: str) -> bool:
        sts_rt, pod_rt, pvc_rt = self._t("StatefulSet"), self._t("Pod"), self._t(
            "PersistentVolumeClaim")
        sts = self.store.get(sts_rt, namespace, name)
        if sts is None:
            return False
        spec = sts["spec"]
        replicas = int(spec.get("replicas", 1))
        revision = f"{name}-{template_hash(spec.get('template'))}"
        parallel = spec.get("podManagementPolicy") == "Parallel"
        changed = False
        for claim in spec.get("volumeClaimTemplates") or []:
            for ordinal in range(replicas):
                claim_name = f"{claim['metadata']['name']}-{name}-{ordinal}"
                if self.store.get(pvc_rt, namespace, claim_name) is None:
                    pvc = copy.deepcopy(claim)
                    pvc["metadata"] = {"name": claim_name, "namespace": namespace,
                                       "labels": dict((spec.get("selector") or {}).get(
                                           "matchLabels") or {})}
                    pvc["status"] = {"phase": "Bound", "accessModes": pvc.get("spec", {}).get(
                        "accessModes", ["ReadWriteOnce"]), "capacity": {
                        "storage": pvc.get("spec", {}).get("resources", {}).get(
                            "requests", {}).get("storage", "1Gi")}}
                    self._insert(pvc_rt, pvc)
                    changed = True
        pods: dict[int, Obj] = {}
        for pod in self._owned(pod_rt, namespace, sts["metadata"]["uid"]):
            try:
                pods[int(pod["metadata"]["name"].rsplit("-", 1)[1])] = pod
            except (IndexError, ValueError):
                continue
        for ordinal in sorted(pods, reverse=True):
            if ordinal >= replicas:
                self._delete(pod_rt, namespace, pods.pop(ordinal)["metadata"]["name"],
                             "Background")
                changed = True
                if not parallel:
                    break
        for ordinal in range(replicas):
            if ordinal in pods:
                if not parallel and not pod_is_ready(pods[ordinal]):
                    break
                continue
            pods[ordinal] = self._create_statefulset_pod(sts, ordinal, revision)
            changed = True
            if not parallel and not pod_is_ready(pods[ordinal]):
                break
        if not changed:
            for ordinal in sorted(pods, reverse=True):
                pod = pods[ordinal]
                if pod["metadata"].get("labels", {}).get("controller-revision-hash") != revision:
                    self._delete(pod_rt, namespace, pod["metadata"]["name"], "Background")
                    pods[ordinal] = self._create_statefulset_pod(sts, ordinal, revision)
                    changed = True
                    break
                if not pod_is_ready(pod):
                    break
        sts = self.store.get(sts_rt, namespace, name)
        assert sts is not None
        current_pods = list(pods.values())
        updated = sum(1 for p in current_pods
                      if p["metadata"]["labels"].get("controller-revision-hash") == revision)
        ready = sum(1 for p in current_pods if pod_is_ready(p))
        old_status = sts.get("status") or {}
        current_revision = old_status.get("currentRevision", revision)
        if updated == len(current_pods) == replicas:
            current_revision = revision
        status: Obj = {"observedGeneration": sts["metadata"].get("generation", 1),
                       "replicas": len(current_pods)}
        for key, value in (("readyReplicas", ready), ("availableReplicas", ready),
                           ("currentReplicas", len(current_pods) - (
                               0 if current_revision == revision else updated)),
                           ("updatedReplicas", updated)):
            if value:
                status[key] = value
        status.update({"currentRevision": current_revision, "updateRevision": revision,
                       "collisionCount": 0})
        if status != old_status:
            new = copy.deepcopy(sts)
            new["status"] = status
            changed |= self._save(sts_rt, new)
        return changed

    def _create_statefulset_pod(self, sts: Obj, ordinal: int, revision: str) -> Obj:
        name = sts["metadata"]["name"]
        pod_name = f"{name}-{ordinal}"
        template = copy.deepcopy(sts["spec"].get("template") or {})
        spec = template.setdefault("spec", {})
        spec["hostname"] = pod_name
        if sts["spec"].get("serviceName"):
            spec["subdomain"] = sts["spec"]["serviceName"]
        for claim in sts["spec"].get("volumeClaimTemplates") or []:
            claim_name = claim["metadata"]["name"]
            volumes = spec.setdefault("volumes", [])
            if not any(v.get("name") == claim_name for v in volumes):
                volumes.append({"name": claim_name, "persistentVolumeClaim": {
                    "claimName": f"{claim_name}-{name}-{ordinal}"}})
        pod = self._create_pod(sts, template, pod_name, {
            "controller-revision-hash": revision,
            "statefulset.kubernetes.io/pod-name": pod_name,
            "apps.kubernetes.io/pod-index": str(ordinal),
        })
        self._emit(sts, "SuccessfulCreate",
                   f"create Pod {pod_name} in StatefulSet {name} successful",
                   component="statefulset-controller")
        return pod

    # ---- job

    def _sync_job(self, namespace: str, name: str) -> bool:
        job_rt, pod_rt = self._t("Job"), self._t("Pod")
        job = self.store.get(job_rt, namespace, name)
        if job is None:
            return False
        spec = job["spec"]
        status = copy.deepcopy(job.get("status") or {})
        finished = any(c.get("type") in ("Complete", "Failed") and c.get("status") == "True"
                       for c in status.get("conditions") or [])
        if finished or spec.get("suspend"):
            return False
        changed = False
        pods = self._owned(pod_rt, namespace, job["metadata"]["uid"])
        if not pods:
            for _ in range(int(spec.get("parallelism", 1))):
                pod_name = f"{name}-{self._rand_suffix()}"
                pod = self._create_pod(job, spec.get("template") or {}, pod_name, {})
                self._emit(job, "SuccessfulCreate", f"Created pod: {pod_name}",
                           component="job-controller")
                pods.append(pod)
            changed = True
        now = format_time(self.clock.now())
        succeeded = sum(1 for p in pods if p["status"].get("phase") == "Succeeded")
        failed = sum(1 for p in pods if p["status"].get("phase") == "Failed")
        active = len(pods) - succeeded - failed
        status["startTime"] = status.get("startTime", now)
        status["active"], status["succeeded"], status["failed"] = active, succeeded, failed
        status["ready"] = sum(1 for p in pods if pod_is_ready(p))
        for key in ("active", "succeeded", "failed"):
            if not status[key]:
                del status[key]
        if succeeded >= int(spec.get("completions", 1)):
            status["completionTime"] = now
            status["conditions"] = [
                {"type": "SuccessCriteriaMet", "status": "True", "reason": "CompletionsReached",
                 "message": "Reached expected number of succeeded pods",
                 "lastProbeTime": now, "lastTransitionTime": now},
                {"type": "Complete", "status": "True", "reason": "CompletionsReached",
                 "message": "Reached expected number of succeeded pods",
                 "lastProbeTime": now, "lastTransitionTime": now}]
            self._emit(job, "Completed", "Job completed", component="job-controller")
        elif failed:
            status["conditions"] = [
                {"type": "FailureTarget", "status": "True", "reason": "BackoffLimitExceeded",
                 "message": "Job has reached the specified backoff limit",
                 "lastProbeTime": now, "lastTransitionTime": now},
                {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
                 "message": "Job has reached the specified backoff limit",
                 "lastProbeTime": now, "lastTransitionTime": now}]
            self._emit(job, "BackoffLimitExceeded", "Job has reached the specified backoff "
                       "limit", type_="Warning", component="job-controller")
        if status != (job.get("status") or {}):
            updated = copy.deepcopy(job)
            updated["status"] = status
            changed |= self._save(job_rt, updated)
        return changed

    # ---- pods ("kubelet" + "scheduler")

    def _schedule(self) -> str | None:
        nodes = [n for n in self.store.list(self._t("Node"))
                 if pod_is_ready(n) and not (n.get("spec") or {}).get("unschedulable")]
        if not nodes:
            if self.default_node is None:
                return None
            if self.store.get(self._t("Node"), None, self.default_node) is None:
                self._insert_node(self.default_node)
            return self.default_node
        return str(nodes[next(self._schedule_rr) % len(nodes)]["metadata"]["name"])

    def _node_ip(self, node_name: str | None) -> str:
        node = self.store.get(self._t("Node"), None, node_name) if node_name else None
        for address in ((node or {}).get("status") or {}).get("addresses") or []:
            if address.get("type") == "InternalIP":
                return str(address["address"])
        return "10.0.0.1"

    def _create_pod(self, owner: Obj, template: Obj, name: str,
                    extra_labels: Mapping[str, str]) -> Obj:
        template = copy.deepcopy(template)
        tmeta = template.get("metadata") or {}
        meta: Obj = {
            "name": name,
            "namespace": owner["metadata"]["namespace"],
            "labels": {**(tmeta.get("labels") or {}), **extra_labels},
            "ownerReferences": [owner_reference(owner)],
        }
        if tmeta.get("annotations"):
            meta["annotations"] = dict(tmeta["annotations"])
        spec = template.get("spec") or {}
        default_pod_spec(spec)
        pod = self._insert(self._t("Pod"), {"metadata": meta, "spec": spec,
                                            "status": {"phase": "Pending"}})
        return self._manage_pod(pod)

    def _manage_pod(self, pod: Obj) -> Obj:
        """Hand a stored pod to the fake scheduler + kubelet; returns the stored pod."""
        pod_rt = self._t("Pod")
        meta = pod["metadata"]
        self._managed_pods[meta["uid"]] = (meta["namespace"], meta["name"])
        if not pod["spec"].get("nodeName"):
            node = self._schedule()
            if node is not None:
                updated = copy.deepcopy(pod)
                updated["spec"]["nodeName"] = node
                self._save(pod_rt, updated)
                self._emit(updated, "Scheduled", f"Successfully assigned {meta['namespace']}/"
                           f"{meta['name']} to {node}", component="default-scheduler")
        self._refresh_pod(meta["namespace"], meta["name"])
        stored = self.store.get(pod_rt, meta["namespace"], meta["name"])
        assert stored is not None
        return stored

    def _refresh_pods(self) -> bool:
        changed = False
        for namespace, name in list(self._managed_pods.values()):
            changed |= self._refresh_pod(namespace, name)
        return changed

    def _refresh_pod(self, namespace: str, name: str) -> bool:
        pod_rt = self._t("Pod")
        pod = self.store.get(pod_rt, namespace, name)
        if pod is None:
            return False
        spec = pod.get("spec") or {}
        node = spec.get("nodeName")
        old = pod.get("status") or {}
        if not node:
            status: Obj = {"phase": "Pending", "conditions": [{
                "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                "message": "0/0 nodes are available: no nodes available to schedule pods.",
                "lastProbeTime": None,
                "lastTransitionTime": pod["metadata"]["creationTimestamp"]}],
                "qosClass": "BestEffort"}
        else:
            images = [str(c.get("image")) for c in spec.get("containers") or []]
            faults = {i: f for i in images if (f := self.fault_for(i)) is not None}
            pod_ip = old.get("podIP") or self._next_pod_ip()
            status = pod_status(pod, faults, host_ip=self._node_ip(node), pod_ip=pod_ip)
            self._emit_pod_events(pod, faults)
        if status == old:
            return False
        updated = copy.deepcopy(pod)
        updated["status"] = status
        return self._save(pod_rt, updated)

    def _next_pod_ip(self) -> str:
        n = next(self._pod_ips)
        return f"10.244.{n // 250}.{n % 250 + 2}"

    def _emit_pod_events(self, pod: Obj, faults: Mapping[str, ImageFault]) -> None:
        meta = pod["metadata"]
        host = pod["spec"].get("nodeName")
        restart_policy = pod["spec"].get("restartPolicy", "Always")
        for container in pod["spec"].get("containers") or []:
            cname, image = str(container["name"]), str(container["image"])
            fault = faults.get(image)
            if fault is None:
                continue
            key = (meta["uid"], cname, fault.reason)
            if key in self._emitted:
                continue
            self._emitted.add(key)
            field = f"spec.containers{{{cname}}}"
            if fault.reason in CRASH_REASONS and restart_policy != "Never":
                self._emit(pod, "BackOff", f"Back-off restarting failed container {cname} in "
                           f"pod {meta['name']}_{meta['namespace']}({meta['uid']})",
                           type_="Warning", component="kubelet", host=host,
                           count=max(1, fault.restart_count), field_path=field)
            elif fault.reason == "CreateContainerConfigError":
                message = fault.message or 'secret "app-secrets" not found'
                self._emit(pod, "Failed", f"Error: {message}", type_="Warning",
                           component="kubelet", host=host, field_path=field)
            elif fault.reason in ("ImagePullBackOff", "ErrImagePull"):
                self._emit(pod, "Failed", f'Failed to pull image "{image}": rpc error: code = '
                           f"NotFound desc = failed to pull and unpack image \"{image}\": not "
                           "found", type_="Warning", component="kubelet", host=host,
                           field_path=field)
                self._emit(pod, "BackOff", f'Back-off pulling image "{image}"',
                           component="kubelet", host=host, field_path=field)
            elif fault.reason == "NotReady":
                self._emit(pod, "Unhealthy", fault.message or "Readiness probe failed: HTTP "
                           "probe failed with statuscode: 503", type_="Warning",
                           component="kubelet", host=host, field_path=field)

    def _emit(self, involved: Obj, reason: str, message: str, *, type_: str = "Normal",
              component: str, host: str | None = None, count: int = 1,
              field_path: str | None = None) -> Obj:
        meta = involved["metadata"]
        namespace = meta.get("namespace") or "default"
        now = format_time(self.clock.now())
        ref: Obj = {"kind": involved.get("kind"), "namespace": meta.get("namespace"),
                    "name": meta["name"], "uid": meta.get("uid"),
                    "apiVersion": involved.get("apiVersion"),
                    "resourceVersion": meta.get("resourceVersion")}
        if not meta.get("namespace"):
            ref.pop("namespace")
        if field_path:
            ref["fieldPath"] = field_path
        source: Obj = {"component": component}
        if host:
            source["host"] = host
        event = {
            "metadata": {"name": f"{meta['name']}.{self.rng.getrandbits(64):016x}",
                         "namespace": namespace},
            "involvedObject": ref,
            "reason": reason,
            "message": message,
            "source": source,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": count,
            "type": type_,
            "eventTime": None,
            "reportingComponent": component,
            "reportingInstance": host or "",
        }
        self._ensure_namespace(namespace)
        return self._insert(self._t("Event"), event)

    # ------------------------------------------------------------------ seeding API

    def _rt_of(self, obj: Mapping[str, Any]) -> ResourceType:
        kind = str(obj.get("kind", ""))
        api_version = str(obj.get("apiVersion", ""))
        for rt in self.registry:
            if rt.kind == kind and (not api_version or rt.api_version == api_version):
                return rt
        raise KeyError(f"unknown kind {api_version}/{kind}")

    def add_object(self, obj: Mapping[str, Any], *, manager: str = "kubectl-create") -> Obj:
        """Create any supported object from a manifest dict (``kind`` + ``apiVersion``).

        The namespace (default ``"default"``) is created if missing. A given ``status`` is
        kept; a Pod without ``status`` is run by the fake kubelet. Returns the stored object
        after the controllers ran.
        """
        rt = self._rt_of(obj)
        new = copy.deepcopy(dict(obj))
        meta = new.setdefault("metadata", {})
        namespace: str | None = None
        if rt.namespaced:
            namespace = meta.setdefault("namespace", "default")
            self._ensure_namespace(str(namespace))
        if self.store.get(rt, namespace, meta["name"]) is not None:
            raise ks.already_exists(rt, meta["name"])
        has_status = bool(new.get("status"))
        manage_fields(rt, None, new, manager, format_time(self.clock.now()))
        apply_defaults(rt, new)
        validate(rt, new, None)
        stored = self._insert(rt, new)
        if rt.kind == "Pod" and not has_status:
            self._manage_pod(stored)
        self._after_write()
        return self.get_object(rt.kind, namespace, meta["name"])

    def get_object(self, kind: str, namespace: str | None, name: str) -> Obj:
        """A copy of a stored object; ``KeyError`` when missing."""
        found = self.find_object(kind, namespace, name)
        if found is None:
            raise KeyError(f"{kind} {namespace}/{name} not found")
        return found

    def find_object(self, kind: str, namespace: str | None, name: str) -> Obj | None:
        rt = self._t(kind)
        obj = self.store.get(rt, namespace if rt.namespaced else None, name)
        return copy.deepcopy(obj) if obj is not None else None

    def list_objects(self, kind: str, namespace: str | None = None, *,
                     label_selector: str | None = None) -> list[Obj]:
        rt = self._t(kind)
        items = self._select(rt, self.store.list(rt, namespace), label_selector, None)
        return [copy.deepcopy(o) for o in items]

    def update_object(self, obj: Mapping[str, Any], *, manager: str = "kubectl-edit") -> Obj:
        """Replace an object wholesale (status included, no resourceVersion check); ``manager``
        is the writer ``metadata.managedFields`` records."""
        rt = self._rt_of(obj)
        new = copy.deepcopy(dict(obj))
        meta = new["metadata"]
        namespace = meta.get("namespace", "default") if rt.namespaced else None
        current = self.store.get(rt, namespace, meta["name"])
        if current is None:
            raise KeyError(f"{rt.kind} {namespace}/{meta['name']} not found")
        if rt.namespaced:
            meta["namespace"] = namespace
        apply_defaults(rt, new)
        validate(rt, new, current)
        manage_fields(rt, current, new, manager, format_time(self.clock.now()))
        self._save(rt, new)
        self._finish_deletion(rt, new)
        self._after_write()
        return new if self.store.get(rt, namespace, meta["name"]) is None else self.get_object(
            rt.kind, namespace, meta["name"])

    def patch_object(self, kind: str, namespace: str | None, name: str, patch: Any,
                     patch_type: PatchKind = "merge") -> Obj:
        """Patch an object (status included) without going through HTTP."""
        current = self.get_object(kind, namespace, name)
        if patch_type == "json":
            new = apply_json_patch(current, patch)
        elif patch_type == "strategic":
            new = apply_strategic_merge_patch(current, patch)
        else:
            new = apply_merge_patch(current, patch)
        return self.update_object(new, manager="kubectl-patch")

    def delete_object(self, kind: str, namespace: str | None, name: str, *,
                      propagation: str = "Background") -> None:
        rt = self._t(kind)
        if self._delete(rt, namespace if rt.namespaced else None, name, propagation) is None:
            raise KeyError(f"{kind} {namespace}/{name} not found")
        self._after_write()

    def add_namespace(self, name: str, *, labels: Mapping[str, str] | None = None) -> Obj:
        return self.add_object({"apiVersion": "v1", "kind": "Namespace",
                                "metadata": {"name": name, "labels": dict(labels or {})}})

    @staticmethod
    def _container(name: str, image: str, *, env: Mapping[str, str] | None = None,
                   resources: Mapping[str, Any] | None = None,
                   ports: Iterable[int] | None = None,
                   command: list[str] | None = None) -> Obj:
        container: Obj = {"name": name, "image": image}
        if command:
            container["command"] = list(command)
        if env:
            container["env"] = [{"name": k, "value": v} for k, v in env.items()]
        if resources:
            container["resources"] = copy.deepcopy(dict(resources))
        if ports:
            container["ports"] = [{"containerPort": p, "protocol": "TCP"} for p in ports]
        return container

    def add_deployment(
        self,
        namespace: str,
        name: str,
        image: str | None = None,
        replicas: int = 3,
        *,
        labels: Mapping[str, str] | None = None,
        annotations: Mapping[str, str] | None = None,
        pod_annotations: Mapping[str, str] | None = None,
        container_name: str | None = None,
        containers: list[Obj] | None = None,
        env: Mapping[str, str] | None = None,
        resources: Mapping[str, Any] | None = None,
        ports: Iterable[int] | None = None,
        strategy: Mapping[str, Any] | None = None,
        paused: bool = False,
        revision_history_limit: int | None = None,
        progress_deadline_seconds: int | None = None,
    ) -> Obj:
        """Create a Deployment (selector and pod labels = ``labels``, default
        ``{"app": name}``); controllers create its ReplicaSet (revision 1) and pods."""
        if containers is None:
            if image is None:
                raise ValueError("add_deployment needs image or containers")
            containers = [self._container(container_name or name, image, env=env,
                                          resources=resources, ports=ports)]
        pod_labels = dict(labels or {"app": name})
        template_meta: Obj = {"labels": dict(pod_labels)}
        if pod_annotations:
            template_meta["annotations"] = dict(pod_annotations)
        spec: Obj = {
            "replicas": replicas,
            "selector": {"matchLabels": dict(pod_labels)},
            "template": {"metadata": template_meta,
                         "spec": {"containers": copy.deepcopy(containers)}},
        }
        if strategy is not None:
            spec["strategy"] = copy.deepcopy(dict(strategy))
        if paused:
            spec["paused"] = True
        if revision_history_limit is not None:
            spec["revisionHistoryLimit"] = revision_history_limit
        if progress_deadline_seconds is not None:
            spec["progressDeadlineSeconds"] = progress_deadline_seconds
        return self.add_object({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": namespace, "labels": dict(pod_labels),
                         "annotations": dict(annotations or {})},
            "spec": spec,
        })

    def set_image(self, namespace: str, name: str, image: str, *,
                  container: str | None = None, kind: str = "Deployment",
                  change_cause: str | None = None) -> Obj:
        """Like ``kubectl set image``: change the image of ``container`` (default: all
        containers) in the pod template; the controllers roll it out."""
        obj = self.get_object(kind, namespace, name)
        containers = obj["spec"]["template"]["spec"]["containers"]
        targets = [c for c in containers if container is None or c["name"] == container]
        if not targets:
            raise KeyError(f"container {container!r} not found in {kind} {namespace}/{name}")
        for target in targets:
            target["image"] = image
        if change_cause is not None:
            obj["metadata"].setdefault("annotations", {})[CHANGE_CAUSE] = change_cause
        return self.update_object(obj, manager="kubectl-set")

    def scale(self, namespace: str, name: str, replicas: int, *,
              kind: str = "Deployment") -> Obj:
        obj = self.get_object(kind, namespace, name)
        obj["spec"]["replicas"] = replicas
        return self.update_object(obj)

    def add_statefulset(
        self,
        namespace: str,
        name: str,
        image: str,
        replicas: int = 1,
        *,
        labels: Mapping[str, str] | None = None,
        container_name: str | None = None,
        service_name: str | None = None,
        volume_claims: Mapping[str, str] | None = None,
        pod_management_policy: str = "OrderedReady",
        env: Mapping[str, str] | None = None,
        ports: Iterable[int] | None = None,
    ) -> Obj:
        """StatefulSet with pods ``<name>-<ordinal>``; ``volume_claims`` maps claim template
        name to size (e.g. ``{"data": "10Gi"}``) and creates Bound PVCs
        ``<claim>-<name>-<ordinal>``."""
        pod_labels = dict(labels or {"app": name})
        spec: Obj = {
            "replicas": replicas,
            "serviceName": service_name or name,
            "podManagementPolicy": pod_management_policy,
            "selector": {"matchLabels": dict(pod_labels)},
            "template": {"metadata": {"labels": dict(pod_labels)}, "spec": {"containers": [
                self._container(container_name or name, image, env=env, ports=ports)]}},
        }
        if volume_claims:
            spec["volumeClaimTemplates"] = [
                {"metadata": {"name": claim},
                 "spec": {"accessModes": ["ReadWriteOnce"],
                          "resources": {"requests": {"storage": size}}}}
                for claim, size in volume_claims.items()]
            mounts = [{"name": claim, "mountPath": f"/{claim}"} for claim in volume_claims]
            spec["template"]["spec"]["containers"][0]["volumeMounts"] = mounts
        return self.add_object({"apiVersion": "apps/v1", "kind": "StatefulSet",
                                "metadata": {"name": name, "namespace": namespace,
                                             "labels": dict(pod_labels)},
                                "spec": spec})

    def add_job(self, namespace: str, name: str, image: str, *,
                command: list[str] | None = None, restart_policy: str = "Never",
                owner: Obj | None = None) -> Obj:
        meta: Obj = {"name": name, "namespace": namespace}
        if owner is not None:
            meta["ownerReferences"] = [owner_reference(owner)]
        return self.add_object({
            "apiVersion": "batch/v1", "kind": "Job", "metadata": meta,
            "spec": {"template": {"spec": {
                "restartPolicy": restart_policy,
                "containers": [self._container(name, image, command=command)]}}},
        })

    def add_cronjob(self, namespace: str, name: str, image: str,
                    schedule: str = "0 3 * * *", *, command: list[str] | None = None,
                    suspend: bool = False, container_name: str | None = None) -> Obj:
        return self.add_object({
            "apiVersion": "batch/v1", "kind": "CronJob",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"schedule": schedule, "suspend": suspend, "jobTemplate": {"spec": {
                "template": {"spec": {"restartPolicy": "OnFailure", "containers": [
                    self._container(container_name or name, image, command=command)]}}}}},
        })

    def _insert_node(self, name: str, *, ready: bool = True,
                     labels: Mapping[str, str] | None = None, cpu: str = "4",
                     memory: str = "16Gi", pods: str = "110", unschedulable: bool = False,
                     taints: list[Obj] | None = None,
                     conditions: Mapping[str, str] | None = None,
                     internal_ip: str | None = None) -> Obj:
        when = format_time(self.clock.now())
        messages = {
            "MemoryPressure": ("KubeletHasSufficientMemory", "KubeletHasInsufficientMemory",
                               "kubelet has sufficient memory available"),
            "DiskPressure": ("KubeletHasNoDiskPressure", "KubeletHasDiskPressure",
                             "kubelet has no disk pressure"),
            "PIDPressure": ("KubeletHasSufficientPID", "KubeletHasInsufficientPID",
                            "kubelet has sufficient PID available"),
        }
        overrides = dict(conditions or {})
        node_conditions = []
        for kind, (ok_reason, bad_reason, message) in messages.items():
            value = overrides.pop(kind, "False")
            node_conditions.append({
                "type": kind, "status": value,
                "reason": ok_reason if value == "False" else bad_reason,
                "message": message if value == "False" else f"{kind} is {value}",
                "lastHeartbeatTime": when, "lastTransitionTime": when})
        ready_value = overrides.pop("Ready", "True" if ready else "False")
        node_conditions.append({
            "type": "Ready", "status": ready_value,
            "reason": "KubeletReady" if ready_value == "True" else "KubeletNotReady",
            "message": "kubelet is posting ready status" if ready_value == "True"
            else "container runtime network not ready",
            "lastHeartbeatTime": when, "lastTransitionTime": when})
        for kind, value in overrides.items():
            node_conditions.append({"type": kind, "status": value, "reason": kind,
                                    "message": kind, "lastHeartbeatTime": when,
                                    "lastTransitionTime": when})
        ip = internal_ip or f"10.0.0.{next(self._node_ips)}"
        resources = {"cpu": cpu, "memory": memory, "pods": pods,
                     "ephemeral-storage": "100Gi"}
        node: Obj = {
            "metadata": {"name": name, "labels": {
                "kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64", **dict(labels or {})}},
            "spec": {"podCIDR": "10.244.0.0/24"},
            "status": {
                "conditions": node_conditions,
                "addresses": [{"type": "InternalIP", "address": ip},
                              {"type": "Hostname", "address": name}],
                "capacity": dict(resources),
                "allocatable": dict(resources),
                "nodeInfo": {
                    "architecture": "amd64", "bootID": str(uuid.uuid4()),
                    "containerRuntimeVersion": "containerd://1.7.13",
                    "kernelVersion": "6.1.0-18-amd64", "kubeProxyVersion": "v1.30.0",
                    "kubeletVersion": "v1.30.0", "machineID": uuid.uuid4().hex,
                    "operatingSystem": "linux", "osImage": "Debian GNU/Linux 12 (bookworm)",
                    "systemUUID": str(uuid.uuid4())},
            },
        }
        if unschedulable:
            node["spec"]["unschedulable"] = True
        if taints:
            node["spec"]["taints"] = copy.deepcopy(taints)
        return self._insert(self._t("Node"), node)

    def add_node(self, name: str, *, ready: bool = True,
                 labels: Mapping[str, str] | None = None, cpu: str = "4",
                 memory: str = "16Gi", pods: str = "110", unschedulable: bool = False,
                 taints: list[Obj] | None = None, conditions: Mapping[str, str] | None = None,
                 internal_ip: str | None = None) -> Obj:
        """A Node with capacity/allocatable, addresses, nodeInfo and conditions;
        ``conditions`` overrides statuses, e.g. ``{"MemoryPressure": "True"}``."""
        if self.store.get(self._t("Node"), None, name) is not None:
            raise ks.already_exists(self._t("Node"), name)
        self._insert_node(name, ready=ready, labels=labels, cpu=cpu, memory=memory, pods=pods,
                          unschedulable=unschedulable, taints=taints, conditions=conditions,
                          internal_ip=internal_ip)
        self._after_write()
        return self.get_object("Node", None, name)

    def add_pvc(self, namespace: str, name: str, *, storage: str = "10Gi",
                phase: str = "Bound", storage_class: str = "standard",
                access_modes: Iterable[str] = ("ReadWriteOnce",),
                volume_name: str | None = None) -> Obj:
        modes = list(access_modes)
        status: Obj = {"phase": phase}
        if phase == "Bound":
            status.update({"accessModes": modes, "capacity": {"storage": storage}})
        spec: Obj = {"accessModes": modes, "storageClassName": storage_class,
                     "resources": {"requests": {"storage": storage}},
                     "volumeMode": "Filesystem"}
        if phase == "Bound":
            spec["volumeName"] = volume_name or f"pvc-{uuid.uuid4()}"
        return self.add_object({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                                "metadata": {"name": name, "namespace": namespace},
                                "spec": spec, "status": status})

    def add_configmap(self, namespace: str, name: str, data: Mapping[str, str] | None = None, *,
                      manager: str = "kubectl-client-side-apply") -> Obj:
        """A ConfigMap as ``kubectl apply`` leaves it: its data, the
        ``last-applied-configuration`` annotation that copies it, ``manager`` in managedFields."""
        body: Obj = {"apiVersion": "v1", "kind": "ConfigMap",
                     "metadata": {"name": name, "namespace": namespace}, "data": dict(data or {})}
        applied = json.dumps(body, sort_keys=True)
        body["metadata"]["annotations"] = {"kubectl.kubernetes.io/last-applied-configuration": applied}
        return self.add_object(body, manager=manager)

    def set_configmap_data(self, namespace: str, name: str, data: Mapping[str, str], *,
                           manager: str = "kubectl-edit") -> Obj:
        """Change a ConfigMap's data (``data`` merged over its keys) as ``manager``: its
        managedFields entry takes the fake clock's time."""
        cm = self.get_object("ConfigMap", namespace, name)
        cm["data"] = {**(cm.get("data") or {}), **data}
        return self.update_object(cm, manager=manager)

    def add_hpa(self, namespace: str, name: str, target: str, *, target_kind: str = "Deployment",
                min_replicas: int = 1, max_replicas: int = 10,
                current_replicas: int | None = None, desired_replicas: int | None = None,
                target_cpu_utilization: int = 80,
                current_cpu_utilization: int | None = None,
                conditions: list[Obj] | None = None) -> Obj:
        status: Obj = {"currentReplicas": current_replicas if current_replicas is not None
                       else min_replicas,
                       "desiredReplicas": desired_replicas if desired_replicas is not None
                       else (current_replicas or min_replicas)}
        if current_cpu_utilization is not None:
            status["currentMetrics"] = [{"type": "Resource", "resource": {
                "name": "cpu", "current": {"averageUtilization": current_cpu_utilization,
                                           "averageValue": "100m"}}}]
        now = format_time(self.clock.now())
        status["conditions"] = conditions if conditions is not None else [
            {"type": "AbleToScale", "status": "True", "reason": "ReadyForNewScale",
             "message": "recommended size matches current size", "lastTransitionTime": now},
            {"type": "ScalingActive", "status": "True", "reason": "ValidMetricFound",
             "message": "the HPA was able to successfully calculate a replica count",
             "lastTransitionTime": now},
            {"type": "ScalingLimited",
             "status": "True" if status["desiredReplicas"] >= max_replicas else "False",
             "reason": "TooManyReplicas" if status["desiredReplicas"] >= max_replicas
             else "DesiredWithinRange",
             "message": "the desired replica count is more than the maximum replica count"
             if status["desiredReplicas"] >= max_replicas
             else "the desired count is within the acceptable range",
             "lastTransitionTime": now},
        ]
        return self.add_object({
            "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": target_kind,
                                        "name": target},
                     "minReplicas": min_replicas, "maxReplicas": max_replicas,
                     "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {
                         "type": "Utilization",
                         "averageUtilization": target_cpu_utilization}}}]},
            "status": status,
        })

    def add_event(self, involved: Mapping[str, Any], reason: str, message: str, *,
                  type_: str = "Warning", count: int = 1, component: str = "kubelet",
                  field_path: str | None = None) -> Obj:
        """An Event about ``involved`` (a stored object dict, e.g. from ``get_object``)."""
        event = self._emit(dict(involved), reason, message, type_=type_, component=component,
                           count=count, field_path=field_path)
        return copy.deepcopy(event)

    def set_log(self, namespace: str, pod: str, container: str, text: str, *,
                previous: bool = False) -> None:
        """Log text of one container of one pod (``previous=True``: the last terminated
        instance, served for ``?previous=true``)."""
        self._logs[(namespace, pod, container, previous)] = text

    def set_image_log(self, image: str, text: str, *, previous: bool = False) -> None:
        """Default log text of every container running ``image`` (pods created by
        controllers have random names)."""
        self._image_logs[(image, previous)] = text

    def set_image_fault(self, image: str, reason: FaultReason = "CrashLoopBackOff", *,
                        restart_count: int = 5, exit_code: int | None = None,
                        message: str | None = None) -> None:
        """Make containers running ``image`` misbehave (see :class:`ImageFault`); existing
        pods are updated on the next settle."""
        self.image_faults[image] = ImageFault(reason, restart_count, exit_code, message)
        self._after_write()

    def clear_image_fault(self, image: str) -> None:
        self.image_faults.pop(image, None)
        self.bad_images.discard(image)
        self._after_write()

    def set_pod_metrics(self, namespace: str, pod: str,
                        usage: Mapping[str, tuple[str, str]] | tuple[str, str]) -> None:
        """metrics.k8s.io usage of a pod: ``{container: (cpu, memory)}`` or one
        ``(cpu, memory)`` for every container. Served only while the pod exists."""
        if isinstance(usage, tuple):
            stored = self.store.get(self._t("Pod"), namespace, pod)
            names = [str(c["name"]) for c in ((stored or {}).get("spec") or {}).get(
                "containers") or []] or [pod]
            self._pod_metrics[(namespace, pod)] = dict.fromkeys(names, usage)
        else:
            self._pod_metrics[(namespace, pod)] = dict(usage)

    def set_node_metrics(self, node: str, cpu: str, memory: str) -> None:
        self._node_metrics[node] = (cpu, memory)

    # ------------------------------------------------------------------ inspection

    def replicasets_of(self, namespace: str, deployment: str) -> list[Obj]:
        """ReplicaSets controlled by a Deployment, ordered by revision."""
        d = self.get_object("Deployment", namespace, deployment)
        rss = self._owned(self._t("ReplicaSet"), namespace, d["metadata"]["uid"])
        return [copy.deepcopy(rs) for rs in sorted(rss, key=revision_of)]

    def pods_of(self, namespace: str, name: str, *, kind: str = "Deployment") -> list[Obj]:
        """Pods controlled by a Deployment (through its ReplicaSets), StatefulSet, Job, ..."""
        owner = self.get_object(kind, namespace, name)
        owners = [owner]
        if kind.lower() in ("deployment", "deployments"):
            owners = self._owned(self._t("ReplicaSet"), namespace, owner["metadata"]["uid"])
        pods: list[Obj] = []
        for o in owners:
            pods.extend(self._owned(self._t("Pod"), namespace, o["metadata"]["uid"]))
        return [copy.deepcopy(p) for p in pods]

    def rollout_status(self, namespace: str, name: str) -> tuple[bool, str]:
        """``kubectl rollout status`` for a Deployment: ``(done, message)``; raises
        ``RuntimeError`` when the progress deadline was exceeded."""
        d = self.get_object("Deployment", namespace, name)
        status = d.get("status") or {}
        desired = int(d["spec"].get("replicas", 1))
        if d["metadata"].get("generation", 0) > status.get("observedGeneration", 0):
            return False, "Waiting for deployment spec update to be observed..."
        for cond in status.get("conditions") or []:
            if cond.get("type") == "Progressing" and cond.get("reason") == (
                    "ProgressDeadlineExceeded"):
                raise RuntimeError(f'deployment "{name}" exceeded its progress deadline')
        updated = status.get("updatedReplicas", 0)
        replicas = status.get("replicas", 0)
        available = status.get("availableReplicas", 0)
        if updated < desired:
            return False, (f'Waiting for deployment "{name}" rollout to finish: {updated} out '
                           f"of {desired} new replicas have been updated...")
        if replicas > updated:
            return False, (f'Waiting for deployment "{name}" rollout to finish: '
                           f"{replicas - updated} old replicas are pending termination...")
        if available < updated:
            return False, (f'Waiting for deployment "{name}" rollout to finish: {available} of '
                           f"{updated} updated replicas are available...")
        return True, f'deployment "{name}" successfully rolled out'

    def rollout_complete(self, namespace: str, name: str) -> bool:
        try:
            return self.rollout_status(namespace, name)[0]
        except RuntimeError:
            return False
