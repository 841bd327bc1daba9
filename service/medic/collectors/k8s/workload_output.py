"""The data of ``k8s.events``, ``k8s.hpa_status`` and ``k8s.pvc_status`` (issue 16.3): what they
store and the analyzers read, and ``k8s.rollout_history``'s (:class:`RolloutHistoryOutput`).

Pure pydantic, no I/O. Every field has a default, so a bundle written by hand (rule tests) or
stored before a field existed still reads.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from medic.collectors.k8s.pods_output import Quantity
from medic.collectors.output_base import Out


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


# ---------------------------------------------------------------------- rollout history


class RolloutCondition(Out):
    type: str | None = None
    status: str | None = None
    reason: str | None = None
    message: str | None = None
    last_update: str | None = None  # lastUpdateTime (else lastTransitionTime)
    last_transition: str | None = None


class ConfigRef(Out):
    """A ConfigMap or Secret the pod template reads, by name (never its data)."""

    kind: str = ""
    name: str = ""
    via: str = ""  # "volume cfg", "envFrom", "env DB_URL"


class DeploymentSummary(Out):
    name: str | None = None
    namespace: str | None = None
    uid: str | None = None
    revision: int = 0
    generation: int | None = None
    observed_generation: int | None = None
    replicas: int = 1
    updated_replicas: int = 0
    ready_replicas: int = 0
    available_replicas: int = 0
    paused: bool = False
    strategy: dict[str, Any] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    labels: dict[str, str] = Field(default_factory=dict)
    conditions: list[RolloutCondition] = Field(default_factory=list)
    images: list[str] = Field(default_factory=list)
    config_refs: list[ConfigRef] = Field(default_factory=list)
    writes: list[Write] = Field(default_factory=list)


class RevisionRow(Out):
    revision: int = 0
    replicaset: str | None = None
    pod_template_hash: str = ""
    images: list[str] = Field(default_factory=list)
    created: str | None = None
    desired: int = 0
    replicas: int = 0
    ready: int = 0
    available: int = 0
    change_cause: str | None = None
    revision_history: list[int] = Field(default_factory=list)  # numbers it had before it was reused
    # container -> resources.limits (None: a bundle stored before limits were, or written by hand)
    limits: dict[str, dict[str, Quantity]] | None = None
    current: bool = False


class EventObject(Out):
    kind: str | None = None
    name: str | None = None


class ScalingEvent(Out):
    type: str | None = None
    reason: str | None = None
    message: str | None = None
    object: EventObject = Field(default_factory=EventObject)
    count: int = 1
    first_seen: str | None = None
    last_seen: str | None = None
    resource_version: str = ""


class RolloutHistoryOutput(Out):
    """What ``k8s.rollout_history`` stores (issue 16.3); the rollout timeline
    (:mod:`medic.domain.rollout`) is built from it."""

    deployment: DeploymentSummary = Field(default_factory=DeploymentSummary)
    revisions: list[RevisionRow] = Field(default_factory=list)  # newest first
    scaling_events: list[ScalingEvent] = Field(default_factory=list)  # oldest first
    # the ConfigMaps of deployment.config_refs: metadata only (never data), or why not read
    config_maps: list[ConfigMapMeta] = Field(default_factory=list)
