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


def analyze_certificate(inp: AnalysisInput) -> list[Finding]:
    data = inp.data(COLLECTOR)
    if not data:
        return []
    steps = [e.step for e in inp.of(COLLECTOR) if e.ok]
    cert: dict[str, Any] = data.get("certificate") or {}
    ns, name = str(cert.get("namespace") or ""), str(cert.get("name") or "")
    base = {"certificate": name, "namespace": ns, "dns_names": cert.get("dns_names") or []}
    describe = f"kubectl describe certificate {name} -n {ns}"
    renew = f"cmctl renew {name} -n {ns}"
    findings: list[Finding] = []

    def add(
        code: str,
        severity: str,
        summary: str,
        details: dict[str, Any],
        next_steps: list[str],
        suggests: str | None = "renew",
    ) -> None:
        findings.append(
            Finding(
                analyzer="certificates",
                code=code,
                severity=severity,
                summary=summary,
                details={**base, **details},
                evidence=steps,
                next_steps=next_steps,
                suggests=suggests,
            )
        )

    ready = condition(cert, "Ready") or {}
    issuing = condition(cert, "Issuing") or {}
    requests: list[dict[str, Any]] = data.get("requests") or []
    latest = requests[0] if requests else {}
    latest_ready = condition(latest, "Ready") or {}
    issuer: dict[str, Any] = data.get("issuer") or {}
    issuer_ready = condition(issuer, "Ready")
    issuer_label = f"{issuer.get('kind', 'Issuer')} {issuer.get('name', '?')}"
    issuer_problem = None
    if issuer.get("missing"):
        issuer_problem = f"{issuer_label} does not exist"
    elif issuer_ready is not None and issuer_ready.get("status") != "True":
        issuer_problem = (
            f"{issuer_label} is not ready: {issuer_ready.get('message') or issuer_ready.get('reason')}"
        )
    elif latest_ready.get("reason") == "Pending" and "issuer" in str(latest_ready.get("message", "")).lower():
        issuer_problem = str(latest_ready.get("message"))
    if issuer_problem:
        add(
            "cert.issuer_not_ready",
            "critical",
            f"certificate {ns}/{name} cannot be issued: {issuer_problem}",
            {"issuer": {k: issuer.get(k) for k in ("kind", "name")}, "reason": issuer_problem},
            [
                f"kubectl describe {str(issuer.get('kind', 'issuer')).lower()} {issuer.get('name', '')}"
                + (f" -n {ns}" if issuer.get("kind") == "Issuer" else ""),
                describe,
            ],
            suggests=None,
        )
    latest_orders = [
        o for o in data.get("orders") or [] if not latest or o.get("request") == latest.get("name")
    ]
    order_names = {o.get("name") for o in latest_orders}
    challenges = [c for c in data.get("challenges") or [] if c.get("order") in order_names]
    bad = [
        c
        for c in challenges
        if c.get("state") in FAILED_STATES or (c.get("reason") and c.get("state") != "valid")
    ]
    for c in bad:
        kind = str(c.get("type") or "ACME")
        add(
            "cert.challenge_failed",
            "critical",
            f"the {kind} challenge for {c.get('dns_name')} is {c.get('state') or 'pending'}: "
            f"{c.get('reason')}",
            {
                "type": kind,
                "dns_name": c.get("dns_name"),
                "state": c.get("state"),
                "reason": c.get("reason"),
                "challenge": c.get("name"),
                "order": c.get("order"),
            },
            [
                f"kubectl describe challenge {c.get('name')} -n {ns}",
                (
                    f"dig TXT _acme-challenge.{c.get('dns_name')}  # the DNS-01 record must be visible"
                    if kind == "DNS-01"
                    else f"curl -v http://{c.get('dns_name')}/.well-known/acme-challenge/"
                ),
                f"once fixed: {renew}",
            ],
        )
    if not bad:
        for o in latest_orders:
            if o.get("state") in FAILED_STATES:
                add(
                    "cert.order_failed",
                    "critical",
                    f"ACME order {o.get('name')} is {o.get('state')}: {o.get('reason') or 'no reason given'}",
                    {"order": o.get("name"), "state": o.get("state"), "reason": o.get("reason")},
                    [f"kubectl describe order {o.get('name')} -n {ns}", f"once fixed: {renew}"],
                )
    if not bad and not any(f.code == "cert.order_failed" for f in findings) and not issuer_problem:
        failed = latest_ready.get("reason") in ("Failed", "Denied") or condition(latest, "Denied")
        if failed:
            message = latest_ready.get("message") or (condition(latest, "Denied") or {}).get("message")
            add(
                "cert.request_failed",
                "critical",
                f"certificate request {latest.get('name')} failed: {message}",
                {"request": latest.get("name"), "reason": latest_ready.get("reason"), "message": message},
                [f"kubectl describe certificaterequest {latest.get('name')} -n {ns}", f"once fixed: {renew}"],
            )
    not_after = parse_time(cert.get("not_after"))
    renewal = parse_time(cert.get("renewal_time"))
    # a renewal cannot help while the issuer is broken: the expiry then argues for nothing
    expiry_suggests = None if issuer_problem else "renew"
    if not_after is not None and not_after <= inp.now:
        add(
            "cert.expired",
            "critical",
            f"certificate {ns}/{name} expired on {cert.get('not_after')}",
            {"not_after": cert.get("not_after"), "days_left": _days(not_after - inp.now)},
            [describe, renew],
            suggests=expiry_suggests,
        )
    elif not_after is not None and (not_after - inp.now <= EXPIRY_WARNING or (renewal and renewal < inp.now)):
        add(
            "cert.expiring",
            "warning",
            f"certificate {ns}/{name} expires in {_days(not_after - inp.now)} days ({cert.get('not_after')})"
            + (f"; renewal was due {cert.get('renewal_time')}" if renewal and renewal < inp.now else ""),
            {
                "not_after": cert.get("not_after"),
                "renewal_time": cert.get("renewal_time"),
                "days_left": _days(not_after - inp.now),
            },
            [describe, renew],
            suggests=expiry_suggests,
        )
    causes = {
        "cert.issuer_not_ready",
        "cert.challenge_failed",
        "cert.order_failed",
        "cert.request_failed",
        "cert.expired",
    }
    if ready.get("status") != "True" and not any(f.code in causes for f in findings):
        add(
            "cert.not_ready",
            "warning",
            f"certificate {ns}/{name} is not ready: "
            + ": ".join(str(x) for x in (ready.get("reason") or "?", ready.get("message")) if x),
            {"reason": ready.get("reason"), "message": ready.get("message")},
            [describe, f"cmctl status certificate {name} -n {ns}"],
            suggests=None,
        )
    if issuing.get("status") == "True":
        add(
            "cert.issuing",
            "info",
            f"an issuance of {ns}/{name} is in progress ({issuing.get('reason')}: {issuing.get('message')})",
            {"reason": issuing.get("reason")},
            [f"cmctl status certificate {name} -n {ns}"],
            suggests=None,
        )
    return findings


ANALYZERS = [
    AnalyzerDef(
        "certificates",
        analyze_certificate,
        "runbook 6.3: why a cert-manager Certificate is not ready or renewed (issuer, ACME, expiry)",
    ),
]
