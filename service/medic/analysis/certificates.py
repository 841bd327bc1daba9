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

from medic.domain.incident import Finding
from medic.playbooks.contract import AnalysisInput, AnalyzerDef

COLLECTOR = "k8s.certificate_status"
EXPIRY_WARNING = timedelta(days=21)  # the cert-manager mixin's CertManagerCertExpirySoon
FAILED_STATES = ("invalid", "errored", "expired")


def parse_time(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None


def condition(obj: dict[str, Any], kind: str) -> dict[str, Any] | None:
    for c in obj.get("conditions") or []:
        if c.get("type") == kind:
            return dict(c)
    return None


def _days(delta: timedelta) -> float:
    return round(delta.total_seconds() / 86400, 1)


@dataclass(frozen=True)
class _Cert:
    """What the findings are read from: the Certificate, its latest issuance and its issuer."""

    cert: dict[str, Any]
    ns: str
    name: str
    now: datetime
    steps: list[str]
    latest: dict[str, Any]  # the newest CertificateRequest
    latest_orders: list[dict[str, Any]]  # the ACME Orders of the latest request
    challenges: list[dict[str, Any]]  # the Challenges of those Orders
    issuer: dict[str, Any]

    @property
    def describe(self) -> str:
        return f"kubectl describe certificate {self.name} -n {self.ns}"

    @property
    def renew(self) -> str:
        return f"cmctl renew {self.name} -n {self.ns}"

    @property
    def latest_ready(self) -> dict[str, Any]:
        return condition(self.latest, "Ready") or {}

    def finding(
        self,
        code: str,
        severity: str,
        summary: str,
        details: dict[str, Any],
        next_steps: list[str],
        suggests: str | None = "renew",
    ) -> Finding:
        base = {"certificate": self.name, "namespace": self.ns, "dns_names": self.cert.get("dns_names") or []}
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


def _read(inp: AnalysisInput, data: dict[str, Any]) -> _Cert:
    cert: dict[str, Any] = data.get("certificate") or {}
    requests: list[dict[str, Any]] = data.get("requests") or []
    latest = requests[0] if requests else {}
    latest_orders = [
        o for o in data.get("orders") or [] if not latest or o.get("request") == latest.get("name")
    ]
    order_names = {o.get("name") for o in latest_orders}
    return _Cert(
        cert=cert,
        ns=str(cert.get("namespace") or ""),
        name=str(cert.get("name") or ""),
        now=inp.now,
        steps=[e.step for e in inp.of(COLLECTOR) if e.ok],
        latest=latest,
        latest_orders=latest_orders,
        challenges=[c for c in data.get("challenges") or [] if c.get("order") in order_names],
        issuer=data.get("issuer") or {},
    )


def _issuer_problem(c: _Cert) -> str | None:
    """Why the issuer cannot issue: missing, not Ready, or the request waits on it."""
    issuer, latest_ready = c.issuer, c.latest_ready
    issuer_ready = condition(issuer, "Ready")
    label = f"{issuer.get('kind', 'Issuer')} {issuer.get('name', '?')}"
    if issuer.get("missing"):
        return f"{label} does not exist"
    if issuer_ready is not None and issuer_ready.get("status") != "True":
        return f"{label} is not ready: {issuer_ready.get('message') or issuer_ready.get('reason')}"
    if latest_ready.get("reason") == "Pending" and "issuer" in str(latest_ready.get("message", "")).lower():
        return str(latest_ready.get("message"))
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
            {"issuer": {k: issuer.get(k) for k in ("kind", "name")}, "reason": problem},
            [
                f"kubectl describe {str(issuer.get('kind', 'issuer')).lower()} {issuer.get('name', '')}"
                + (f" -n {c.ns}" if issuer.get("kind") == "Issuer" else ""),
                c.describe,
            ],
            suggests=None,
        )
    ]


def _challenge_failed(c: _Cert, found: list[Finding]) -> list[Finding]:
    bad = [
        ch
        for ch in c.challenges
        if ch.get("state") in FAILED_STATES or (ch.get("reason") and ch.get("state") != "valid")
    ]
    return [_challenge_finding(c, ch) for ch in bad]


def _challenge_finding(c: _Cert, ch: dict[str, Any]) -> Finding:
    kind = str(ch.get("type") or "ACME")
    return c.finding(
        "cert.challenge_failed",
        "critical",
        f"the {kind} challenge for {ch.get('dns_name')} is {ch.get('state') or 'pending'}: "
        f"{ch.get('reason')}",
        {
            "type": kind,
            "dns_name": ch.get("dns_name"),
            "state": ch.get("state"),
            "reason": ch.get("reason"),
            "challenge": ch.get("name"),
            "order": ch.get("order"),
        },
        [
            f"kubectl describe challenge {ch.get('name')} -n {c.ns}",
            (
                f"dig TXT _acme-challenge.{ch.get('dns_name')}  # the DNS-01 record must be visible"
                if kind == "DNS-01"
                else f"curl -v http://{ch.get('dns_name')}/.well-known/acme-challenge/"
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
            f"ACME order {o.get('name')} is {o.get('state')}: {o.get('reason') or 'no reason given'}",
            {"order": o.get("name"), "state": o.get("state"), "reason": o.get("reason")},
            [f"kubectl describe order {o.get('name')} -n {c.ns}", f"once fixed: {c.renew}"],
        )
        for o in c.latest_orders
        if o.get("state") in FAILED_STATES
    ]


def _request_failed(c: _Cert, found: list[Finding]) -> list[Finding]:
    if _codes(found) & {"cert.issuer_not_ready", "cert.challenge_failed", "cert.order_failed"}:
        return []
    latest, latest_ready = c.latest, c.latest_ready
    if not (latest_ready.get("reason") in ("Failed", "Denied") or condition(latest, "Denied")):
        return []
    message = latest_ready.get("message") or (condition(latest, "Denied") or {}).get("message")
    return [
        c.finding(
            "cert.request_failed",
            "critical",
            f"certificate request {latest.get('name')} failed: {message}",
            {"request": latest.get("name"), "reason": latest_ready.get("reason"), "message": message},
            [f"kubectl describe certificaterequest {latest.get('name')} -n {c.ns}", f"once fixed: {c.renew}"],
        )
    ]


def _expiry(c: _Cert, found: list[Finding]) -> list[Finding]:
    cert, now = c.cert, c.now
    not_after = parse_time(cert.get("not_after"))
    renewal = parse_time(cert.get("renewal_time"))
    # a renewal cannot help while the issuer is broken: the expiry then argues for nothing
    suggests = None if "cert.issuer_not_ready" in _codes(found) else "renew"
    if not_after is None:
        return []
    if not_after <= now:
        return [
            c.finding(
                "cert.expired",
                "critical",
                f"certificate {c.ns}/{c.name} expired on {cert.get('not_after')}",
                {"not_after": cert.get("not_after"), "days_left": _days(not_after - now)},
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
            f"certificate {c.ns}/{c.name} expires in {_days(not_after - now)} days ({cert.get('not_after')})"
            + (f"; renewal was due {cert.get('renewal_time')}" if overdue else ""),
            {
                "not_after": cert.get("not_after"),
                "renewal_time": cert.get("renewal_time"),
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
    ready = condition(c.cert, "Ready") or {}
    if ready.get("status") == "True" or _codes(found) & _CAUSES:
        return []
    return [
        c.finding(
            "cert.not_ready",
            "warning",
            f"certificate {c.ns}/{c.name} is not ready: "
            + ": ".join(str(x) for x in (ready.get("reason") or "?", ready.get("message")) if x),
            {"reason": ready.get("reason"), "message": ready.get("message")},
            [c.describe, f"cmctl status certificate {c.name} -n {c.ns}"],
            suggests=None,
        )
    ]


def _issuing(c: _Cert, found: list[Finding]) -> list[Finding]:
    issuing = condition(c.cert, "Issuing") or {}
    if issuing.get("status") != "True":
        return []
    return [
        c.finding(
            "cert.issuing",
            "info",
            f"an issuance of {c.ns}/{c.name} is in progress "
            f"({issuing.get('reason')}: {issuing.get('message')})",
            {"reason": issuing.get("reason")},
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
    data = inp.data(COLLECTOR)
    if not data:
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
    ),
]
