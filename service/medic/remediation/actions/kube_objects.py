"""Typed views of the Kubernetes objects the remediation actions read: exactly the fields they
use of a Deployment, ReplicaSet, Pod, Job, CronJob, Event and cert-manager Certificate.

An action parses what the kube client returns once (:func:`view`), then reads attributes, so a
misspelt field is a mypy error rather than a silent ``None``. Every field has a default (the API
server omits empty ones; a JSON ``null`` counts as absent) and fields the views do not name are
ignored. A field of the wrong type is a :class:`KubeObjectInvalid` (a ``StepError``) naming the
object and the field. The parts an action copies whole into a write (a pod template into the
rollback's JSON Patch, a CronJob's job spec into the new Job, the conditions a renewal keeps)
stay the dicts the API server sent: they are copied, not read field by field.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.alias_generators import to_camel

from medic.domain.errors import StepError


class KubeObjectInvalid(StepError):
    """An object from the API server has a field of an unexpected type."""


class _View(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, alias_generator=to_camel, populate_by_name=True)

    @model_validator(mode="before")
    @classmethod
    def _null_is_absent(cls, data: object) -> object:
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if v is not None}
        return data


class OwnerReference(_View):
    api_version: str = ""
    kind: str = ""
    name: str = ""
    uid: str | None = None
    controller: bool = False


class ObjectMeta(_View):
    name: str = ""
    namespace: str = ""
    uid: str | None = None
    resource_version: str | None = None
    generation: int | None = None
    creation_timestamp: str | None = None  # as sent (RFC 3339): records keep it verbatim
    annotations: dict[str, str] = Field(default_factory=dict)
    labels: dict[str, str] = Field(default_factory=dict)
    owner_references: list[OwnerReference] = Field(default_factory=list)

    @property
    def created(self) -> datetime | None:
        raw = self.creation_timestamp
        return datetime.fromisoformat(raw.replace("Z", "+00:00")) if raw else None

    @property
    def controllers(self) -> list[OwnerReference]:
        return [ref for ref in self.owner_references if ref.controller]


class Condition(_View):
    type: str | None = None
    status: str | None = None
    reason: str | None = None
    message: str | None = None
    last_update_time: str | None = None
    last_transition_time: str | None = None
    observed_generation: int | None = None


def condition(conditions: list[Condition], kind: str) -> Condition | None:
    """The condition of type ``kind``, if any."""
    return next((c for c in conditions if c.type == kind), None)


# --------------------------------------------------------------------------- pods and templates
class Container(_View):
    name: str | None = None
    image: str = ""


class PodSpec(_View):
    containers: list[Container] = Field(default_factory=list)


class PodTemplate(_View):
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: PodSpec = Field(default_factory=PodSpec)


class Pod(_View):
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)


# --------------------------------------------------------------------------- workloads
class LabelSelector(_View):
    match_labels: dict[str, str] = Field(default_factory=dict)


class _TemplateSpec(_View):
    # the pod template twice: verbatim (what a JSON Patch copies) and read (``pod``)
    template: dict[str, Any] = Field(default_factory=dict)
    pod: PodTemplate = Field(default_factory=PodTemplate, validation_alias="template")


class DeploymentSpec(_TemplateSpec):
    replicas: int | None = None  # absent: 1
    paused: bool = False
    selector: LabelSelector = Field(default_factory=LabelSelector)
    revision_history_limit: int | None = None


class DeploymentStatus(_View):
    observed_generation: int = 0
    replicas: int = 0
    updated_replicas: int = 0
    ready_replicas: int = 0
    available_replicas: int = 0
    conditions: list[Condition] = Field(default_factory=list)


class Deployment(_View):
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: DeploymentSpec = Field(default_factory=DeploymentSpec)
    status: DeploymentStatus = Field(default_factory=DeploymentStatus)


class ReplicaSetSpec(_TemplateSpec):
    replicas: int | None = None


class ReplicaSetStatus(_View):
    replicas: int = 0
    ready_replicas: int = 0
    available_replicas: int = 0


class ReplicaSet(_View):
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: ReplicaSetSpec = Field(default_factory=ReplicaSetSpec)
    status: ReplicaSetStatus = Field(default_factory=ReplicaSetStatus)


class JobTemplate(_View):
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: dict[str, Any] = Field(default_factory=dict)  # copied whole into the Job


class CronJobSpec(_View):
    job_template: JobTemplate = Field(default_factory=JobTemplate)


class CronJob(_View):
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: CronJobSpec = Field(default_factory=CronJobSpec)


class JobStatus(_View):
    conditions: list[Condition] = Field(default_factory=list)
    completion_time: str | None = None
    active: int = 0


class Job(_View):
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    status: JobStatus = Field(default_factory=JobStatus)


# --------------------------------------------------------------------------- events
class EventSeries(_View):
    last_observed_time: str | None = None


class Event(_View):
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    reason: str | None = None
    message: str | None = None
    note: str | None = None  # events.k8s.io/v1
    first_timestamp: str | None = None
    event_time: str | None = None
    last_timestamp: str | None = None
    series: EventSeries = Field(default_factory=EventSeries)


# --------------------------------------------------------------------------- cert-manager
class CertificateStatus(_View):
    conditions: list[Condition] = Field(default_factory=list)
    # verbatim, for a write that keeps the other conditions as they are
    conditions_raw: list[dict[str, Any]] = Field(default_factory=list, validation_alias="conditions")
    revision: int = 0
    not_after: str | None = None


class Certificate(_View):
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    status: CertificateStatus | None = None  # None: the object has no status yet


# --------------------------------------------------------------------------- parsing
V = TypeVar("V", bound=_View)


def view(model: type[V], obj: Mapping[str, Any]) -> V:
    """``obj`` (as the API server returned it) read as ``model``; a field of the wrong type is
    a :class:`KubeObjectInvalid` naming the object and the field."""
    try:
        return model.model_validate(obj)
    except ValidationError as exc:
        raise KubeObjectInvalid(_describe(model, obj, exc)) from None


def _describe(model: type[_View], obj: object, exc: ValidationError) -> str:
    meta = obj.get("metadata") if isinstance(obj, Mapping) else None
    meta = meta if isinstance(meta, Mapping) else {}
    name = "/".join(str(meta[k]) for k in ("namespace", "name") if isinstance(meta.get(k), str))
    problems = [
        f"{_loc(err['loc'])}: {err['msg']} (got {type(err['input']).__name__})"  # never the value
        for err in exc.errors(include_url=False)[:3]
    ]
    more = f" (and {exc.error_count() - 3} more)" if exc.error_count() > 3 else ""
    return (
        f"the {model.__name__} {name or '(no name)'} from the Kubernetes API does not have the shape "
        f"Medic reads: {'; '.join(problems)}{more}"
    )


def _loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(the object)"
