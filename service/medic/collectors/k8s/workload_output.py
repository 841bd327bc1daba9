"""The data of ``k8s.events``, ``k8s.hpa_status`` and ``k8s.pvc_status`` (issue 16.3): what they
store and the analyzers read (``k8s.rollout_history``'s is in :mod:`.workload`; the parts of it the
pure analyzers read, such as :class:`ConfigMapMeta`, are here).

Pure pydantic, no I/O. Every field has a default, so a bundle written by hand (rule tests) or
stored before a field existed still reads.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from medic.collectors.k8s.output_base import Out


class ObjectRef(Out):
    kind: str | None = None
    name: str | None = None


# ---------------------------------------------------------------------- events


class K8sEvent(Out):
    type: str | None = None  # Normal, Warning
    reason: str | None = None
    message: str | None = None
    object: ObjectRef = Field(default_factory=ObjectRef)  # involvedObject / regarding
    count: int = 1
    first_seen: str | None = None
    last_seen: str | None = None


class EventsOutput(Out):
    events: list[K8sEvent] = Field(default_factory=list)  # newest first
    matched: int = 0  # events about the target's objects, before the limit
    complete: bool = True  # False when the namespace LIST was cut (too many pages)


# ---------------------------------------------------------------------- HPA


class HpaMetric(Out):
    type: str | None = None  # Resource, Pods, Object, External, ContainerResource
    name: str = ""
    target: dict[str, Any] | None = None  # the API's MetricTarget, as is
    current: dict[str, Any] | None = None  # the API's MetricValueStatus, as is


class HpaCondition(Out):
    type: str | None = None
    status: str | None = None
    reason: str | None = None
    message: str | None = None


class HpaStatus(Out):
    name: str | None = None
    target: ObjectRef = Field(default_factory=ObjectRef)  # scaleTargetRef
    min: int = 1
    max: int = 0
    current: int = 0
    desired: int = 0
    at_max: bool = False
    metrics: list[HpaMetric] = Field(default_factory=list)
    conditions: list[HpaCondition] = Field(default_factory=list)


class HpaStatusOutput(Out):
    hpas: list[HpaStatus] = Field(default_factory=list)


# ---------------------------------------------------------------------- PVC


class PvcStatus(Out):
    name: str = ""
    phase: str | None = None
    capacity: str | None = None
    requested: str | None = None
    storage_class: str | None = None
    volume: str | None = None
    access_modes: list[str] = Field(default_factory=list)
    pods: list[str] = Field(default_factory=list)  # the target's pods mounting it


class PvcStatusOutput(Out):
    pvcs: list[PvcStatus] = Field(default_factory=list)
    missing: list[str] = Field(default_factory=list)  # claims wanted but not found


# ---------------------------------------------------------------------- writes and ConfigMaps

ConfigMapStatus = Literal["ok", "missing", "forbidden", "error", "not_read"]


class Write(Out):
    """One ``metadata.managedFields`` entry without its field set: who wrote, how, when."""

    manager: str | None = None
    operation: str | None = None
    time: str | None = None


class ConfigMapMeta(Out):
    """A ConfigMap the pod template reads (``k8s.rollout_history``'s ``config_maps``): its
    metadata only, never its data, or why it could not be read (``missing``: 404, ``forbidden``:
    403, ``error``: any other failure, ``not_read``: beyond the bound of ConfigMaps read)."""

    name: str = ""
    status: ConfigMapStatus = "ok"
    resource_version: str | None = None
    created: str | None = None  # creationTimestamp
    writes: list[Write] = Field(default_factory=list)  # managedFields, newest first
    error: str | None = None
