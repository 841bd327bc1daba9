"""Pure helpers for the fake's controllers: image faults, pod status synthesis, template
hashing, API defaulting and the bits of validation a client can trip over."""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from tests.fakes.kube_selectors import match_labels, requirements_from_label_selector
from tests.fakes.kube_store import Obj, ResourceType, format_time, invalid, parse_time

POD_TEMPLATE_HASH = "pod-template-hash"
REVISION = "deployment.kubernetes.io/revision"
REVISION_HISTORY = "deployment.kubernetes.io/revision-history"
DESIRED_REPLICAS = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS = "deployment.kubernetes.io/max-replicas"
CHANGE_CAUSE = "kubernetes.io/change-cause"

# Deployment annotations the controller does not copy onto its ReplicaSets.
_NOT_COPIED = frozenset({
    REVISION, REVISION_HISTORY, DESIRED_REPLICAS, MAX_REPLICAS,
    "kubectl.kubernetes.io/last-applied-configuration",
    "deprecated.deployment.rollback.to",
})

FaultReason = Literal[
    "CrashLoopBackOff", "OOMKilled", "CreateContainerConfigError", "ImagePullBackOff",
    "ErrImagePull", "NotReady",
]
CRASH_REASONS = frozenset({"CrashLoopBackOff", "OOMKilled"})
WAITING_REASONS = frozenset({"CreateContainerConfigError", "ImagePullBackOff", "ErrImagePull"})


@dataclass(frozen=True)
class ImageFault:
    """How containers running an image misbehave.

    - ``CrashLoopBackOff``: Running pod, container not ready, ``restartCount`` > 0, waiting
      ``CrashLoopBackOff``, ``lastState.terminated`` {exitCode 1, reason Error};
    - ``OOMKilled``: the same but ``lastState.terminated`` {exitCode 137, reason OOMKilled};
    - ``CreateContainerConfigError`` / ``ImagePullBackOff`` / ``ErrImagePull``: Pending pod,
      container waiting with that reason, never started;
    - ``NotReady``: running but the readiness probe fails (event ``Unhealthy``).
    """

    reason: FaultReason = "CrashLoopBackOff"
    restart_count: int = 5
    exit_code: int | None = None
    message: str | None = None

    @property
    def effective_exit_code(self) -> int:
        if self.exit_code is not None:
            return self.exit_code
        return 137 if self.reason == "OOMKilled" else 1

    @property
    def terminated_reason(self) -> str:
        return "OOMKilled" if self.reason == "OOMKilled" else "Error"


_HASH_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


def safe_encode(digest: bytes, length: int) -> str:
    """Kubernetes' "safe" alphabet (no vowels, no ambiguous characters)."""
    number = int.from_bytes(digest, "big")
    chars = []
    for _ in range(length):
        number, idx = divmod(number, len(_HASH_ALPHABET))
        chars.append(_HASH_ALPHABET[idx])
    return "".join(chars)


def template_without_hash(template: Mapping[str, Any] | None) -> Obj:
    out = copy.deepcopy(dict(template or {}))
    labels = (out.get("metadata") or {}).get("labels")
    if isinstance(labels, dict):
        labels.pop(POD_TEMPLATE_HASH, None)
    return out


def template_hash(template: Mapping[str, Any] | None) -> str:
    canonical = json.dumps(template_without_hash(template), sort_keys=True,
                           separators=(",", ":"))
    return safe_encode(hashlib.sha256(canonical.encode()).digest(), 10)


def templates_equal(a: Mapping[str, Any] | None, b: Mapping[str, Any] | None) -> bool:
    """EqualIgnoreHash: pod templates equal apart from the pod-template-hash label."""
    return template_without_hash(a) == template_without_hash(b)


def revision_of(obj: Mapping[str, Any]) -> int:
    try:
        return int(((obj.get("metadata") or {}).get("annotations") or {}).get(REVISION, "0"))
    except ValueError:
        return 0


def copied_annotations(deployment: Mapping[str, Any]) -> dict[str, str]:
    annotations = (deployment.get("metadata") or {}).get("annotations") or {}
    return {k: v for k, v in annotations.items() if k not in _NOT_COPIED}


def controller_uid(obj: Mapping[str, Any]) -> str | None:
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("controller"):
            return str(ref.get("uid"))
    return None


def owner_reference(owner: Mapping[str, Any]) -> Obj:
    return {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def resolve_int_or_percent(value: Any, total: int, *, round_up: bool) -> int:
    if value is None:
        return 0
    if isinstance(value, int):
        return value
    text = str(value)
    if text.endswith("%"):
        fraction = int(text[:-1]) * total
        return -(-fraction // 100) if round_up else fraction // 100
    return int(text)


def surge_and_unavailable(deployment: Mapping[str, Any]) -> tuple[int, int]:
    spec = deployment.get("spec") or {}
    replicas = int(spec.get("replicas", 1))
    rolling = (spec.get("strategy") or {}).get("rollingUpdate") or {}
    surge = resolve_int_or_percent(rolling.get("maxSurge", "25%"), replicas, round_up=True)
    unavailable = resolve_int_or_percent(rolling.get("maxUnavailable", "25%"), replicas,
                                         round_up=False)
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, unavailable


def pod_is_ready(pod: Mapping[str, Any]) -> bool:
    for condition in (pod.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Ready":
            return bool(condition.get("status") == "True")
    return False


def pod_is_terminal(pod: Mapping[str, Any]) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


# --------------------------------------------------------------------------- defaulting


def _default_container(container: Obj) -> None:
    image = str(container.get("image", ""))
    tag = image.rsplit("/", 1)[-1]
    latest = "@" not in tag and (":" not in tag or tag.endswith(":latest"))
    container.setdefault("imagePullPolicy", "Always" if latest else "IfNotPresent")
    container.setdefault("terminationMessagePath", "/dev/termination-log")
    container.setdefault("terminationMessagePolicy", "File")
    container.setdefault("resources", {})
    for port in container.get("ports") or []:
        if isinstance(port, dict):
            port.setdefault("protocol", "TCP")


def default_pod_spec(spec: Obj, *, restart_policy: str = "Always") -> None:
    spec.setdefault("restartPolicy", restart_policy)
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("securityContext", {})
    for key in ("containers", "initContainers"):
        for container in spec.get(key) or []:
            if isinstance(container, dict):
                _default_container(container)


def _default_template(template: Any, *, restart_policy: str = "Always") -> None:
    if isinstance(template, dict):
        template.setdefault("metadata", {})
        spec = template.setdefault("spec", {})
        if isinstance(spec, dict):
            default_pod_spec(spec, restart_policy=restart_policy)


def apply_defaults(rt: ResourceType, obj: Obj) -> None:
    """The subset of apiserver defaulting that changes what clients read back."""
    spec = obj.get("spec")
    if rt.kind == "Namespace":
        obj.setdefault("spec", {"finalizers": ["kubernetes"]})
        obj.setdefault("status", {"phase": "Active"})
        labels = obj["metadata"].setdefault("labels", {})
        labels.setdefault("kubernetes.io/metadata.name", obj["metadata"]["name"])
    if not isinstance(spec, dict):
        return
    if rt.kind == "Pod":
        default_pod_spec(spec)
    elif rt.kind == "Deployment":
        spec.setdefault("replicas", 1)
        spec.setdefault("revisionHistoryLimit", 10)
        spec.setdefault("progressDeadlineSeconds", 600)
        strategy = spec.setdefault("strategy", {"type": "RollingUpdate"})
        if strategy.get("type", "RollingUpdate") == "RollingUpdate":
            strategy.setdefault("type", "RollingUpdate")
            strategy.setdefault("rollingUpdate", {"maxUnavailable": "25%", "maxSurge": "25%"})
        _default_template(spec.get("template"))
    elif rt.kind in ("ReplicaSet", "DaemonSet"):
        if rt.kind == "ReplicaSet":
            spec.setdefault("replicas", 1)
        _default_template(spec.get("template"))
    elif rt.kind == "StatefulSet":
        spec.setdefault("replicas", 1)
        spec.setdefault("podManagementPolicy", "OrderedReady")
        spec.setdefault("revisionHistoryLimit", 10)
        spec.setdefault("updateStrategy",
                        {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}})
        _default_template(spec.get("template"))
    elif rt.kind == "Job":
        spec.setdefault("parallelism", 1)
        spec.setdefault("completions", 1)
        spec.setdefault("backoffLimit", 6)
        _default_template(spec.get("template"), restart_policy="Never")
    elif rt.kind == "CronJob":
        spec.setdefault("concurrencyPolicy", "Allow")
        spec.setdefault("suspend", False)
        spec.setdefault("successfulJobsHistoryLimit", 3)
        spec.setdefault("failedJobsHistoryLimit", 1)
        job_spec = (spec.get("jobTemplate") or {}).get("spec")
        if isinstance(job_spec, dict):
            job_spec.setdefault("backoffLimit", 6)
            _default_template(job_spec.get("template"), restart_policy="Never")


def default_job_selector(job: Obj) -> None:
    """Labels and selector the Job API adds (needs the uid, so runs at create time)."""
    uid = job["metadata"]["uid"]
    name = job["metadata"]["name"]
    spec = job.setdefault("spec", {})
    if spec.get("manualSelector"):
        return
    spec["selector"] = {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}
    template = spec.setdefault("template", {})
    labels = template.setdefault("metadata", {}).setdefault("labels", {})
    labels.update({
        "batch.kubernetes.io/controller-uid": uid,
        "batch.kubernetes.io/job-name": name,
        "controller-uid": uid,
        "job-name": name,
    })


# --------------------------------------------------------------------------- validation


def _validate_containers(spec: Any, prefix: str, causes: list[tuple[str, str]]) -> None:
    containers = spec.get("containers") if isinstance(spec, dict) else None
    if not isinstance(containers, list) or not containers:
        causes.append((f"{prefix}.containers", "Required value"))
        return
    seen: set[str] = set()
    for n, container in enumerate(containers):
        if not isinstance(container, dict):
            causes.append((f"{prefix}.containers[{n}]", "Invalid value: must be an object"))
            continue
        name = container.get("name")
        if not name:
            causes.append((f"{prefix}.containers[{n}].name", "Required value"))
        elif name in seen:
            causes.append((f"{prefix}.containers[{n}].name", f'Duplicate value: "{name}"'))
        else:
            seen.add(str(name))
        if not container.get("image"):
            causes.append((f"{prefix}.containers[{n}].image", "Required value"))


def validate(rt: ResourceType, obj: Obj, old: Obj | None) -> None:
    """Raise the 422 ``Invalid`` Status the apiserver would for common mistakes."""
    name = str(obj.get("metadata", {}).get("name", ""))
    causes: list[tuple[str, str]] = []
    spec = obj.get("spec")
    if rt.kind == "Pod":
        _validate_containers(spec, "spec", causes)
    elif rt.kind in ("Deployment", "ReplicaSet", "StatefulSet", "DaemonSet"):
        if not isinstance(spec, dict):
            causes.append(("spec", "Required value"))
        else:
            selector = spec.get("selector")
            template = spec.get("template") or {}
            labels = (template.get("metadata") or {}).get("labels") or {}
            if not selector:
                causes.append(("spec.selector", "Required value"))
            elif not match_labels(requirements_from_label_selector(selector), labels):
                causes.append(("spec.template.metadata.labels",
                               f"Invalid value: {json.dumps(labels, sort_keys=True)}: "
                               "`selector` does not match template `labels`"))
            _validate_containers(template.get("spec"), "spec.template.spec", causes)
            replicas = spec.get("replicas", 1)
            if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
                causes.append(("spec.replicas",
                               f"Invalid value: {replicas!r}: must be greater than or equal "
                               "to 0"))
            if old is not None and (old.get("spec") or {}).get("selector") != selector:
                causes.append(("spec.selector",
                               f"Invalid value: {json.dumps(selector, sort_keys=True)}: "
                               "field is immutable"))
    elif rt.kind == "Job" and isinstance(spec, dict):
        _validate_containers((spec.get("template") or {}).get("spec"), "spec.template.spec",
                             causes)
        if old is not None and (old.get("spec") or {}).get("template") != spec.get("template"):
            causes.append(("spec.template", "Invalid value: field is immutable"))
    if causes:
        raise invalid(rt, name, causes)


def check_immutable_metadata(rt: ResourceType, current: Obj, updated: Obj) -> None:
    for fld in ("name", "namespace"):
        if updated["metadata"].get(fld) != current["metadata"].get(fld):
            raise invalid(rt, str(current["metadata"].get("name")), [
                (f"metadata.{fld}", "Invalid value: field is immutable")])


# --------------------------------------------------------------------------- pod status


def _container_id(pod_uid: str, container: str, attempt: int) -> str:
    digest = hashlib.sha256(f"{pod_uid}/{container}/{attempt}".encode()).hexdigest()
    return f"containerd://{digest}"


def _image_id(image: str) -> str:
    digest = hashlib.sha256(image.encode()).hexdigest()
    repo = image.split("@", 1)[0].rsplit(":", 1)[0] if ":" in image.rsplit("/", 1)[-1] else (
        image.split("@", 1)[0])
    return f"{repo}@sha256:{digest}"


def _when(start: datetime, seconds: int) -> str:
    return format_time(start + timedelta(seconds=seconds))


def container_status(pod: Obj, container: Obj, fault: ImageFault | None, *,
                     run_to_completion: bool) -> tuple[Obj, bool, bool]:
    """``(containerStatus, ready, started)`` for one container of a managed pod."""
    meta = pod["metadata"]
    start = parse_time(meta["creationTimestamp"])
    name = str(container["name"])
    image = str(container["image"])
    uid = str(meta["uid"])
    status: Obj = {"name": name, "image": image, "imageID": _image_id(image),
                   "ready": False, "started": False, "restartCount": 0}
    pod_ref = f"{meta['name']}_{meta.get('namespace', '')}({uid})"
    if fault is not None and fault.reason in WAITING_REASONS:
        if fault.reason == "CreateContainerConfigError":
            message = fault.message or 'secret "app-secrets" not found'
        else:
            message = fault.message or f'Back-off pulling image "{image}"'
        status["imageID"] = ""
        status["state"] = {"waiting": {"reason": fault.reason, "message": message}}
        status["lastState"] = {}
        return status, False, False
    if fault is not None and fault.reason in CRASH_REASONS:
        if run_to_completion:
            status["state"] = {"terminated": {
                "exitCode": fault.effective_exit_code, "reason": fault.terminated_reason,
                "startedAt": _when(start, 0), "finishedAt": _when(start, 0),
                "containerID": _container_id(uid, name, 0)}}
            status["lastState"] = {}
            status["containerID"] = _container_id(uid, name, 0)
            return status, False, False
        restarts = max(1, fault.restart_count)
        status["restartCount"] = restarts
        status["state"] = {"waiting": {
            "reason": "CrashLoopBackOff",
            "message": f"back-off 5m0s restarting failed container={name} pod={pod_ref}"}}
        status["lastState"] = {"terminated": {
            "exitCode": fault.effective_exit_code, "reason": fault.terminated_reason,
            "startedAt": _when(start, 0), "finishedAt": _when(start, 0),
            "containerID": _container_id(uid, name, restarts - 1)}}
        status["containerID"] = _container_id(uid, name, restarts - 1)
        return status, False, False
    status["containerID"] = _container_id(uid, name, 0)
    status["lastState"] = {}
    if run_to_completion:
        status["state"] = {"terminated": {
            "exitCode": 0, "reason": "Completed", "startedAt": _when(start, 0),
            "finishedAt": _when(start, 0), "containerID": status["containerID"]}}
        return status, False, False
    status["state"] = {"running": {"startedAt": _when(start, 0)}}
    status["started"] = True
    ready = fault is None or fault.reason != "NotReady"
    status["ready"] = ready
    return status, ready, True


def pod_status(pod: Obj, faults: Mapping[str, ImageFault], *, host_ip: str, pod_ip: str) -> Obj:
    """The status a kubelet would report for a pod whose images behave as ``faults`` say."""
    spec = pod.get("spec") or {}
    meta = pod["metadata"]
    start = meta["creationTimestamp"]
    restart_policy = spec.get("restartPolicy", "Always")
    statuses: list[Obj] = []
    unready: list[str] = []
    waiting = False
    failed = False
    all_done = restart_policy != "Always"
    for container in spec.get("containers") or []:
        fault = faults.get(str(container.get("image")))
        completes = restart_policy == "Never" or (
            restart_policy == "OnFailure" and (fault is None or fault.reason not in CRASH_REASONS))
        status, ready, _ = container_status(pod, container, fault, run_to_completion=completes)
        statuses.append(status)
        if not ready:
            unready.append(str(container["name"]))
        state = status.get("state") or {}
        if "waiting" in state and state["waiting"]["reason"] in WAITING_REASONS:
            waiting = True
        if "terminated" not in state:
            all_done = False
        elif state["terminated"]["exitCode"] != 0:
            failed = True
    init_statuses = [
        {"name": c["name"], "image": c["image"], "imageID": _image_id(str(c["image"])),
         "ready": True, "started": False, "restartCount": 0,
         "containerID": _container_id(str(meta["uid"]), str(c["name"]), 0), "lastState": {},
         "state": {"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": start,
                                  "finishedAt": start,
                                  "containerID": _container_id(str(meta["uid"]),
                                                               str(c["name"]), 0)}}}
        for c in spec.get("initContainers") or []
    ]
    if waiting:
        phase = "Pending"
    elif all_done:
        phase = "Failed" if failed else "Succeeded"
    else:
        phase = "Running"
    ready = not unready and phase == "Running"

    def condition(kind: str, ok: bool, reason: str | None = None,
                  message: str | None = None) -> Obj:
        out: Obj = {"type": kind, "status": "True" if ok else "False",
                    "lastProbeTime": None, "lastTransitionTime": start}
        if reason:
            out["reason"] = reason
        if message:
            out["message"] = message
        return out

    not_ready: tuple[str, str | None]
    if phase in ("Succeeded", "Failed"):
        not_ready = ("PodCompleted", None)
    else:
        not_ready = ("ContainersNotReady",
                     f"containers with unready status: [{' '.join(unready)}]")
    conditions = [
        condition("PodReadyToStartContainers", phase != "Succeeded" and phase != "Failed"),
        condition("Initialized", True),
        condition("Ready", ready, *(() if ready else not_ready)),
        condition("ContainersReady", ready, *(() if ready else not_ready)),
        condition("PodScheduled", True),
    ]
    result: Obj = {
        "phase": phase,
        "conditions": conditions,
        "hostIP": host_ip,
        "hostIPs": [{"ip": host_ip}],
        "podIP": pod_ip,
        "podIPs": [{"ip": pod_ip}],
        "startTime": start,
        "containerStatuses": statuses,
        "qosClass": _qos_class(spec),
    }
    if init_statuses:
        result["initContainerStatuses"] = init_statuses
    return result


def _qos_class(spec: Mapping[str, Any]) -> str:
    containers = spec.get("containers") or []
    requests_any = False
    guaranteed = bool(containers)
    for container in containers:
        resources = container.get("resources") or {}
        limits = resources.get("limits") or {}
        requests = resources.get("requests") or {}
        if limits or requests:
            requests_any = True
        mismatched = any(requests.get(k) != limits.get(k) for k in ("cpu", "memory")
                         if k in requests)
        if not (limits.get("cpu") and limits.get("memory")) or mismatched:
            guaranteed = False
    if guaranteed:
        return "Guaranteed"
    return "Burstable" if requests_any else "BestEffort"

