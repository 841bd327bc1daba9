"""The data of ``k8s.node_describe`` and ``k8s.ingress`` (issue 16.3): what they store and the
analyzers read.

Pure pydantic, no I/O. Every field has a default, so a bundle written by hand (rule tests) or
stored before a field existed still reads.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field

from medic.collectors.output_base import Out

# ---------------------------------------------------------------------- nodes


class Allocatable(Out):
    cpu_millicores: int | None = None
    memory_bytes: int | None = None
    pods: int | None = None


class Requested(Out):
    """What the node's running pods ask for, summed as ``kubectl describe node`` does."""

    cpu_millicores: int = 0
    memory_bytes: int = 0
    pods: int = 0


class Limits(Out):
    cpu_millicores: int = 0
    memory_bytes: int = 0


class RequestedRatio(Out):
    cpu: float | None = None
    memory: float | None = None
    pods: float | None = None


class Taint(Out):
    key: str | None = None
    value: str | None = None
    effect: str | None = None


class NodeDescription(Out):
    omit_when_none = frozenset({"error", "requested_error"})
    name: str = ""
    error: str | None = Field(None)  # "node not found": nothing else is known
    ready: bool | None = None
    conditions: dict[str, str] = Field(default_factory=dict)  # type -> status
    pressure: list[str] = Field(default_factory=list)  # the *Pressure conditions that are True
    unschedulable: bool = False
    allocatable: Allocatable | None = None
    requested: Requested | None = None  # None when the node's pods could not be listed
    limits: Limits | None = None
    requested_ratio: RequestedRatio | None = None
    taints: list[Taint] = Field(default_factory=list)
    requested_error: str | None = Field(None)  # why its pods could not be listed


class NodeDescribeOutput(Out):
    nodes: list[NodeDescription] = Field(default_factory=list)  # alert pods' nodes first
    total_nodes: int = 0
    unscheduled_pods: list[str] = Field(default_factory=list)


# ---------------------------------------------------------------------- ingress


class IngressBackend(Out):
    host: str | None = None
    path: str | None = None
    service: str | None = None
    port: dict[str, Any] | None = None  # {"number": 3000} or {"name": "http"}


class IngressInfo(Out):
    # "class" is a Python keyword: the field is ``ingress_class``, stored and read as "class".
    model_config = ConfigDict(validate_by_name=True, validate_by_alias=True, serialize_by_alias=True)

    name: str | None = None
    ingress_class: str | None = Field(None, alias="class")
    hosts: list[str] = Field(default_factory=list)
    annotations: dict[str, str] = Field(default_factory=dict)  # nginx ones and those not secret
    proxy_read_timeout_s: int | None = None
    proxy_send_timeout_s: int | None = None
    websocket_services: list[str] = Field(default_factory=list)  # nginx.org/websocket-services
    backends: list[IngressBackend] = Field(default_factory=list)


class IngressOutput(Out):
    ingresses: list[IngressInfo] = Field(default_factory=list)
    scope: Literal["target", "namespace"] = "target"  # "namespace": the target's services unknown
    services: list[str] | None = None  # the services selecting the target's pods (None: unknown)
