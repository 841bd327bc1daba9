"""Runbook 6.3, certificates: why a cert-manager Certificate is not ready or not renewed, from the
chain of its latest issuance (``k8s.certificate_status``). Pure.

One finding per cause, most specific first:

- ``cert.issuer_not_ready`` (critical): the Issuer/ClusterIssuer is missing or not Ready, or the
  request waits on it. A renewal cannot help until it is fixed (no suggestion).
- ``cert.challenge_failed`` (critical): an ACME Challenge is ``invalid``/``errored`` (or still
  pending with a reason): ``details.type`` (HTTP-01 / DNS-01), ``dns_name``, ``reason``.
- ``cert.order_failed`` (critical): an ACME Order failed with no Challenge telling why.
- ``cert.request_failed`` (critical): the CertificateRequest failed or was denied (any issuer).
- ``cert.expired`` (critical) / ``cert.expiring`` (warning): ``notAfter`` passed / within
  :data:`EXPIRY_WARNING`, or ``renewalTime`` passed without a renewal.
- ``cert.not_ready`` (warning): not Ready for a reason none of the above explains.
- ``cert.issuing`` (info): an issuance is in progress now.

The failures and the expiry suggest ``renew`` (what ``cmctl renew`` does); cert-manager retries
a failed issuance with an exponential backoff (up to 32 h), so a renewal once the cause is fixed
saves that wait.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from medic.analysis.dataplane import typed_first
from medic.collectors.k8s.certs_output import (
    CertificateInfo,
    CertificateStatusOutput,
    ChallengeInfo,
    Condition,
    IssuerInfo,
    OrderInfo,
    RequestInfo,
    condition,
)
from medic.domain.incident import Finding
from medic.domain.rollout import parse_time
from medic.playbooks.contract import AnalysisInput, AnalyzerDef

COLLECTOR = "k8s.certificate_status"
EXPIRY_WARNING = timedelta(days=21)  # the cert-manager mixin's CertManagerCertExpirySoon
FAILED_STATES = ("invalid", "errored", "expired")


def _days(delta: timedelta) -> float:
    return round(delta.total_seconds() / 86400, 1)


@dataclass(frozen=True)
class _Cert:
    """What the findings are read from: the Certificate, its latest issuance and its issuer."""

    cert: CertificateInfo
    ns: str
    name: str
    now: datetime
    steps: list[str]
    latest: RequestInfo  # the newest CertificateRequest (all defaults when there is none)
    latest_orders: list[OrderInfo]  # the ACME Orders of the latest request
    challenges: list[ChallengeInfo]  # the Challenges of those Orders
    issuer: IssuerInfo

    @property
    def describe(self) -> str:
        return f"kubectl describe certificate {self.name} -n {self.ns}"

    @property
    def renew(self) -> str:
        return f"cmctl renew {self.name} -n {self.ns}"

    @property
    def latest_ready(self) -> Condition:
        return condition(self.latest.conditions, "Ready") or Condition()

    def finding(
        self,
        code: str,
        severity: str,
        summary: str,
        details: dict[str, Any],
        next_steps: list[str],
        suggests: str | None = "renew",
    ) -> Finding:
        base = {"certificate": self.name, "namespace": self.ns, "dns_names": self.cert.dns_names}
        return Finding(
            analyzer="certificates",
            code=code,
            severity=severity,
            summary=summary,
            details={**base, **details},
            evidence=self.steps,
            next_steps=next_steps,
            suggests=suggests,
        )


def _read(inp: AnalysisInput, data: CertificateStatusOutput) -> _Cert:
    cert, requests = data.certificate, data.requests
    latest = requests[0] if requests and requests[0].model_fields_set else None  # {} says nothing
    latest_orders = [o for o in data.orders if latest is None or o.request == latest.name]
    order_names = {o.name for o in latest_orders}
    return _Cert(
        cert=cert,
        ns=cert.namespace,
        name=cert.name,
        now=inp.now,
        steps=[e.step for e in inp.of(COLLECTOR) if e.ok],
        latest=latest or RequestInfo(),
        latest_orders=latest_orders,
        challenges=[c for c in data.challenges if c.order in order_names],
        issuer=data.issuer,
    )


def _issuer_problem(c: _Cert) -> str | None:
    """Why the issuer cannot issue: missing, not Ready, or the request waits on it."""
    issuer, latest_ready = c.issuer, c.latest_ready
    issuer_ready = condition(issuer.conditions, "Ready")
    kind = "Issuer" if issuer.kind is None else issuer.kind
    label = f"{kind} {'?' if issuer.name is None else issuer.name}"
    if issuer.missing:
        return f"{label} does not exist"
    if issuer_ready is not None and issuer_ready.status != "True":
        return f"{label} is not ready: {issuer_ready.message or issuer_ready.reason}"
    if latest_ready.reason == "Pending" and "issuer" in (latest_ready.message or "").lower():
        return str(latest_ready.message)
    return None


def _codes(found: list[Finding]) -> set[str]:
    return {f.code for f in found}


def _issuer_not_ready(c: _Cert, found: list[Finding]) -> list[Finding]:
    problem = _issuer_problem(c)
    if not problem:
        return []
    issuer = c.issuer
    return [
        c.finding(
            "cert.issuer_not_ready",
            "critical",
            f"certificate {c.ns}/{c.name} cannot be issued: {problem}",
            {"issuer": {"kind": issuer.kind, "name": issuer.name}, "reason": problem},
            [
                f"kubectl describe {(issuer.kind or 'issuer').lower()} {issuer.name or ''}"
                + (f" -n {c.ns}" if issuer.kind == "Issuer" else ""),
                c.describe,
            ],
            suggests=None,
        )
    ]


def _challenge_failed(c: _Cert, found: list[Finding]) -> list[Finding]:
    bad = [ch for ch in c.challenges if ch.state in FAILED_STATES or (ch.reason and ch.state != "valid")]
    return [_challenge_finding(c, ch) for ch in bad]


def _challenge_finding(c: _Cert, ch: ChallengeInfo) -> Finding:
    kind = ch.type or "ACME"
    return c.finding(
        "cert.challenge_failed",
        "critical",
        f"the {kind} challenge for {ch.dns_name} is {ch.state or 'pending'}: {ch.reason}",
        {
            "type": kind,
            "dns_name": ch.dns_name,
            "state": ch.state,
            "reason": ch.reason,
            "challenge": ch.name,
            "order": ch.order,
        },
        [
            f"kubectl describe challenge {ch.name} -n {c.ns}",
            (
                f"dig TXT _acme-challenge.{ch.dns_name}  # the DNS-01 record must be visible"
                if kind == "DNS-01"
                else f"curl -v http://{ch.dns_name}/.well-known/acme-challenge/"
            ),
            f"once fixed: {c.renew}",
        ],
    )


def _order_failed(c: _Cert, found: list[Finding]) -> list[Finding]:
    if "cert.challenge_failed" in _codes(found):  # the challenge says why already
        return []
    return [
        c.finding(
            "cert.order_failed",
            "critical",
            f"ACME order {o.name} is {o.state}: {o.reason or 'no reason given'}",
            {"order": o.name, "state": o.state, "reason": o.reason},
            [f"kubectl describe order {o.name} -n {c.ns}", f"once fixed: {c.renew}"],
        )
        for o in c.latest_orders
        if o.state in FAILED_STATES
    ]


def _request_failed(c: _Cert, found: list[Finding]) -> list[Finding]:
    if _codes(found) & {"cert.issuer_not_ready", "cert.challenge_failed", "cert.order_failed"}:
        return []
    latest, latest_ready = c.latest, c.latest_ready
    denied = condition(latest.conditions, "Denied")
    if not (latest_ready.reason in ("Failed", "Denied") or denied):
        return []
    message = latest_ready.message or (denied or Condition()).message
    return [
        c.finding(
            "cert.request_failed",
            "critical",
            f"certificate request {latest.name} failed: {message}",
            {"request": latest.name, "reason": latest_ready.reason, "message": message},
            [f"kubectl describe certificaterequest {latest.name} -n {c.ns}", f"once fixed: {c.renew}"],
        )
    ]


def _expiry(c: _Cert, found: list[Finding]) -> list[Finding]:
    cert, now = c.cert, c.now
    not_after = parse_time(cert.not_after)
    renewal = parse_time(cert.renewal_time)
    # a renewal cannot help while the issuer is broken: the expiry then argues for nothing
    suggests = None if "cert.issuer_not_ready" in _codes(found) else "renew"
    if not_after is None:
        return []
    if not_after <= now:
        return [
            c.finding(
                "cert.expired",
                "critical",
                f"certificate {c.ns}/{c.name} expired on {cert.not_after}",
                {"not_after": cert.not_after, "days_left": _days(not_after - now)},
                [c.describe, c.renew],
                suggests=suggests,
            )
        ]
    overdue = bool(renewal and renewal < now)
    if not_after - now > EXPIRY_WARNING and not overdue:
        return []
    return [
        c.finding(
            "cert.expiring",
            "warning",
            f"certificate {c.ns}/{c.name} expires in {_days(not_after - now)} days ({cert.not_after})"
            + (f"; renewal was due {cert.renewal_time}" if overdue else ""),
            {
                "not_after": cert.not_after,
                "renewal_time": cert.renewal_time,
                "days_left": _days(not_after - now),
            },
            [c.describe, c.renew],
            suggests=suggests,
        )
    ]


_CAUSES = {
    "cert.issuer_not_ready",
    "cert.challenge_failed",
    "cert.order_failed",
    "cert.request_failed",
    "cert.expired",
}


def _not_ready(c: _Cert, found: list[Finding]) -> list[Finding]:
    ready = condition(c.cert.conditions, "Ready") or Condition()
    if ready.status == "True" or _codes(found) & _CAUSES:
        return []
    return [
        c.finding(
            "cert.not_ready",
            "warning",
            f"certificate {c.ns}/{c.name} is not ready: "
            + ": ".join(x for x in (ready.reason or "?", ready.message) if x),
            {"reason": ready.reason, "message": ready.message},
            [c.describe, f"cmctl status certificate {c.name} -n {c.ns}"],
            suggests=None,
        )
    ]


def _issuing(c: _Cert, found: list[Finding]) -> list[Finding]:
    issuing = condition(c.cert.conditions, "Issuing") or Condition()
    if issuing.status != "True":
        return []
    return [
        c.finding(
            "cert.issuing",
            "info",
            f"an issuance of {c.ns}/{c.name} is in progress ({issuing.reason}: {issuing.message})",
            {"reason": issuing.reason},
            [f"cmctl status certificate {c.name} -n {c.ns}"],
            suggests=None,
        )
    ]


# One function per finding, most specific first; each sees the findings before it.
_FINDINGS: tuple[Callable[[_Cert, list[Finding]], list[Finding]], ...] = (
    _issuer_not_ready,
    _challenge_failed,
    _order_failed,
    _request_failed,
    _expiry,
    _not_ready,
    _issuing,
)


def analyze_certificate(inp: AnalysisInput) -> list[Finding]:
    data = typed_first(inp, COLLECTOR, CertificateStatusOutput)
    if data is None or not data.model_fields_set:  # no run, or an empty one
        return []
    cert = _read(inp, data)
    findings: list[Finding] = []
    for check in _FINDINGS:
        findings += check(cert, findings)
    return findings


ANALYZERS = [
    AnalyzerDef(
        "certificates",
        analyze_certificate,
        "runbook 6.3: why a cert-manager Certificate is not ready or renewed (issuer, ACME, expiry)",
        codes=tuple(
            f"cert.{c}"
            for c in (
                "issuer_not_ready",
                "challenge_failed",
                "order_failed",
                "request_failed",
                "expired",
                "expiring",
                "not_ready",
                "issuing",
            )
        ),
    ),
]
