"""The data of ``k8s.pod_describe``, ``k8s.pod_logs`` and ``k8s.top_pods`` (issue 16.3): what they
store and the analyzers read.

Pure pydantic, no I/O. Every field has a default, so a bundle written by hand (rule tests) or
stored before a field existed still reads.
"""

from __future__ import annotations

from typing import Any

from pydantic import ConfigDict, Field

from medic.collectors.output_base import Out

# A resource quantity as the API gives it ("512Mi", "250m"); a number in a bundle written by hand.
Quantity = str | int | float

# ---------------------------------------------------------------------- describe


class Terminated(Out):
    """A container's last termination (``lastState.terminated``)."""

    reason: str | None = None
    exit_code: int | None = None
    signal: int | None = None
    started_at: str | None = None
    finished_at: str | None = None
    message: str | None = None


class Resources(Out):
    requests: dict[str, Quantity] = Field(default_factory=dict)
    limits: dict[str, Quantity] = Field(default_factory=dict)


class Waiting(Out):
    """``state.waiting``: why the container is not running. The API's other keys pass through."""

    model_config = ConfigDict(extra="allow")
    omit_when_none = frozenset({"reason", "message"})
    reason: str | None = Field(None)  # CrashLoopBackOff, ImagePullBackOff, CreateContainerConfigError…
    message: str | None = Field(None)


class ContainerState(Out):
    """The API's container state, stored as is: ``waiting`` is read, ``running`` and
    ``terminated`` pass through unread (the last termination is ``last_state``)."""

    model_config = ConfigDict(extra="allow")
    omit_when_none = frozenset({"waiting"})
    waiting: Waiting | None = Field(None)


class EnvVar(Out):
    """Either ``value`` or ``value_from``, as the pod spec has it (the other key is not stored)."""

    omit_when_none = frozenset({"value", "value_from"})
    name: str | None = None
    value: str | None = Field(None)  # a literal value (redacted when secret)
    value_from: dict[str, Any] | None = Field(None)  # secretKeyRef, fieldRef...


class ContainerDescription(Out):
    name: str | None = None
    image: str | None = None
    ready: bool = False
    restart_count: int = 0
    state: ContainerState = Field(default_factory=ContainerState)  # the API's state, as is
    last_state: dict[str, Terminated] = Field(default_factory=dict)  # {} or {"terminated": …}
    resources: Resources = Field(default_factory=Resources)
    env: list[EnvVar] = Field(default_factory=list)
    liveness_probe: dict[str, Any] | None = None
    readiness_probe: dict[str, Any] | None = None
    startup_probe: dict[str, Any] | None = None

    @property
    def terminated(self) -> Terminated | None:
        return self.last_state.get("terminated")


class OwnerRef(Out):
    kind: str | None = None
    name: str | None = None


class PodDescription(Out):
    name: str | None = None
    namespace: str | None = None
    phase: str | None = None
    reason: str | None = None
    node: str | None = None
    created: str | None = None
    owner: OwnerRef | None = None
    replicaset: str = ""
    revision: int = 0
    pod_template_hash: str = ""
    conditions: dict[str, str] = Field(default_factory=dict)  # type -> status
    containers: list[ContainerDescription] = Field(default_factory=list)
    init_containers: list[ContainerDescription] = Field(default_factory=list)


class PodDescribeOutput(Out):
    pods: list[PodDescription] = Field(default_factory=list)  # alert pods first, then in trouble
    total_pods: int = 0
    missing_pods: list[str] = Field(default_factory=list)  # alert pods that no longer exist


# ---------------------------------------------------------------------- logs


class ContainerLog(Out):
    pod: str = ""
    container: str = ""
    previous: bool = False  # the previous (crashed) instance's log
    lines: list[str] = Field(default_factory=list)
    truncated: bool = False
    error: str | None = None


class PodLogsOutput(Out):
    logs: list[ContainerLog] = Field(default_factory=list)


# ---------------------------------------------------------------------- top


class ContainerUsage(Out):
    name: str | None = None
    cpu_millicores: int | None = None
    memory_bytes: int | None = None
    cpu_limit_millicores: int | None = None
    memory_limit_bytes: int | None = None


class PodUsage(Out):
    name: str = ""
    containers: list[ContainerUsage] = Field(default_factory=list)


class TopPodsOutput(Out):
    pods: list[PodUsage] = Field(default_factory=list)
    without_metrics: list[str] = Field(default_factory=list)  # pods metrics-server has no sample of
