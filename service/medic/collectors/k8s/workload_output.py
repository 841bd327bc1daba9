"""The data of ``k8s.events``, ``k8s.hpa_status`` and ``k8s.pvc_status`` (issue 16.3): what they
store and the analyzers read (``k8s.rollout_history``'s is in :mod:`.workload`).

Pure pydantic, no I/O. Every field has a default, so a bundle written by hand (rule tests) or
stored before a field existed still reads.
"""

from __future__ import annotations

from typing import Any

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
