"""The data of ``k8s.certificate_status`` (issue 16.3): what it stores and the certificates
analyzer reads.

Pure pydantic, no I/O. Every field has a default, so a bundle written by hand (rule tests) or
stored before a field existed still reads.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from medic.collectors.output_base import Out

IssuerType = Literal["acme", "ca", "selfSigned", "vault", "venafi"]


class Condition(Out):
    type: str | None = None
    status: str | None = None
    reason: str | None = None
    message: str | None = None
    since: str | None = None  # lastTransitionTime


def condition(conditions: list[Condition], kind: str) -> Condition | None:
    """The condition of type ``kind``, if there is one."""
    return next((c for c in conditions if c.type == kind), None)


class IssuerRef(Out):
    """The Certificate's ``spec.issuerRef`` as the API has it (a key it leaves out is not stored)."""

    omit_when_none = frozenset({"name", "kind", "group"})
    name: str | None = None
    kind: str | None = None
    group: str | None = None


class CertificateInfo(Out):
    name: str = ""
    namespace: str = ""
    secret_name: str | None = None
    dns_names: list[str] = Field(default_factory=list)
    issuer_ref: IssuerRef = Field(default_factory=IssuerRef)
    not_before: str | None = None
    not_after: str | None = None
    renewal_time: str | None = None
    revision: int | None = None
    last_failure_time: str | None = None
    failed_attempts: int | None = None
    conditions: list[Condition] = Field(default_factory=list)


class RequestInfo(Out):
    name: str | None = None
    revision: int = 0
    created: str | None = None
    failure_time: str | None = None
    conditions: list[Condition] = Field(default_factory=list)


class OrderInfo(Out):
    name: str | None = None
    request: str | None = None  # the CertificateRequest that owns it
    state: str | None = None  # pending, ready, processing, valid, invalid, expired, errored
    reason: str | None = None


class ChallengeInfo(Out):
    name: str | None = None
    order: str | None = None  # the Order that owns it
    type: str | None = None  # HTTP-01 | DNS-01
    dns_name: str | None = None
    state: str | None = None
    reason: str | None = None
    presented: bool = False
    processing: bool = False


class IssuerInfo(Out):
    kind: str | None = None  # Issuer | ClusterIssuer (or an external issuer's kind)
    name: str | None = None
    group: str = "cert-manager.io"
    missing: bool = False
    error: str | None = None  # not read: forbidden, an external issuer...
    type: IssuerType | None = None
    conditions: list[Condition] = Field(default_factory=list)


class CertificateStatusOutput(Out):
    certificate: CertificateInfo = Field(default_factory=CertificateInfo)
    requests: list[RequestInfo] = Field(default_factory=list)  # newest revision first
    orders: list[OrderInfo] = Field(default_factory=list)
    challenges: list[ChallengeInfo] = Field(default_factory=list)
    issuer: IssuerInfo = Field(default_factory=IssuerInfo)
