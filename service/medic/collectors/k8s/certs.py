"""``k8s.certificate_status`` (runbook 6.3): a cert-manager Certificate and the chain of its
latest issuance, read as ``kubectl describe certificate`` / ``cmctl status certificate`` show it:
the CertificateRequests it owns, their ACME Orders and Challenges (state, reason, type), and its
Issuer or ClusterIssuer. Custom objects are read through the same client as every other object
(``/apis/cert-manager.io/v1/...``); bounded: one GET per object and one LIST per kind."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from medic.clients.kube.client import cluster_path, ns_path
from medic.clients.kube.errors import KubeError, KubeNotFound
from medic.clients.kube.reads import Obj, annotations_of, controller_ref, get_cached, list_cached, meta
from medic.collectors.k8s.certs_output import (
    CertificateInfo,
    CertificateStatusOutput,
    ChallengeInfo,
    Condition,
    IssuerInfo,
    IssuerRef,
    OrderInfo,
    RequestInfo,
)
from medic.collectors.k8s.common import iso, kube_of, require_target
from medic.domain.errors import StepError
from medic.playbooks.contract import CollectorDef, StepContext
from medic.rules.labels import is_k8s_name

CERT = "cert-manager.io/v1"
ACME = "acme.cert-manager.io/v1"
CERT_NAME = "cert-manager.io/certificate-name"
CERT_REVISION = "cert-manager.io/certificate-revision"


class CertificateStatusParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    max_requests: int = Field(3, ge=1, le=10)


def conditions(obj: Obj) -> list[Condition]:
    return [
        Condition(
            type=c.get("type"),
            status=c.get("status"),
            reason=c.get("reason"),
            message=c.get("message"),
            since=iso(c.get("lastTransitionTime")),
        )
        for c in (obj.get("status") or {}).get("conditions") or []
        if isinstance(c, dict)
    ]


def _owned_by(obj: Obj, uids: set[str]) -> bool:
    return str((controller_ref(obj) or {}).get("uid", "")) in uids


def _revision(obj: Obj) -> int:
    raw = str(annotations_of(obj).get(CERT_REVISION, ""))
    return int(raw) if raw.isdigit() else 0


def _issuer_path(ns: str, kind: str, name: str) -> str:
    return (
        ns_path(CERT, ns, "issuers", name) if kind == "Issuer" else cluster_path(CERT, "clusterissuers", name)
    )


async def _issuer(ctx: StepContext, ns: str, ref: IssuerRef) -> IssuerInfo:
    kind, name, group = ref.kind or "Issuer", ref.name or "", ref.group or "cert-manager.io"
    unread = IssuerInfo(kind=kind, name=name, group=group)
    if group != "cert-manager.io" or kind not in ("Issuer", "ClusterIssuer") or not is_k8s_name(name):
        return unread.model_copy(update={"error": "an external issuer: not read"})
    try:
        issuer = await get_cached(kube_of(ctx), ctx.memo, _issuer_path(ns, kind, name))
    except KubeNotFound:
        return unread.model_copy(update={"missing": True})
    except KubeError as exc:  # e.g. RBAC without the ClusterRole: the rest still counts
        return unread.model_copy(update={"error": str(exc)})
    if not isinstance(issuer, dict):
        return unread.model_copy(update={"error": "the API server sent no object"})
    spec = issuer.get("spec") or {}
    return IssuerInfo(
        kind=kind,
        name=name,
        group=group,
        type=next((k for k in ("acme", "ca", "selfSigned", "vault", "venafi") if k in spec), None),
        conditions=conditions(issuer),
    )


async def _read_certificate(ctx: StepContext, ns: str, name: str) -> Obj:
    try:
        cert = await get_cached(kube_of(ctx), ctx.memo, ns_path(CERT, ns, "certificates", name))
    except KubeNotFound as exc:
        raise StepError(f"certificate {ns}/{name} not found (is cert-manager installed?)") from exc
    if not isinstance(cert, dict):
        raise StepError(f"certificate {ns}/{name}: the API server sent no object")
    return cert


async def _owned(ctx: StepContext, path: str, owners: list[Obj]) -> list[Obj]:
    """The objects at ``path`` whose controller is one of ``owners``."""
    uids = {str(meta(o).get("uid", "")) for o in owners}
    return [o for o in await list_cached(kube_of(ctx), ctx.memo, path) if _owned_by(o, uids)]


async def _latest_requests(ctx: StepContext, ns: str, name: str, cert: Obj, limit: int) -> list[Obj]:
    """The certificate's CertificateRequests, newest revision first, at most ``limit``."""
    uid = str(meta(cert).get("uid", ""))
    requests = [
        r
        for r in await list_cached(kube_of(ctx), ctx.memo, ns_path(CERT, ns, "certificaterequests"))
        if _owned_by(r, {uid}) or annotations_of(r).get(CERT_NAME) == name
    ]
    requests.sort(key=lambda r: (_revision(r), str(meta(r).get("creationTimestamp") or "")), reverse=True)
    return requests[:limit]


def _certificate_info(cert: Obj, ns: str, name: str) -> CertificateInfo:
    spec, status = cert.get("spec") or {}, cert.get("status") or {}
    return CertificateInfo(
        name=name,
        namespace=ns,
        secret_name=spec.get("secretName"),
        dns_names=list(spec.get("dnsNames") or []),
        issuer_ref=IssuerRef.model_validate(spec.get("issuerRef") or {}),
        not_before=iso(status.get("notBefore")),
        not_after=iso(status.get("notAfter")),
        renewal_time=iso(status.get("renewalTime")),
        revision=status.get("revision"),
        last_failure_time=iso(status.get("lastFailureTime")),
        failed_attempts=status.get("failedIssuanceAttempts"),
        conditions=conditions(cert),
    )


def _request_info(r: Obj) -> RequestInfo:
    return RequestInfo(
        name=meta(r).get("name"),
        revision=_revision(r),
        created=iso(meta(r).get("creationTimestamp")),
        failure_time=iso((r.get("status") or {}).get("failureTime")),
        conditions=conditions(r),
    )


def _owner_name(obj: Obj, owners: list[Obj]) -> str | None:
    """The name of the one of ``owners`` that controls ``obj``."""
    name_of = {str(meta(o).get("uid")): str(meta(o).get("name")) for o in owners}
    return name_of.get(str((controller_ref(obj) or {}).get("uid")))


def _order_info(o: Obj, requests: list[Obj]) -> OrderInfo:
    status = o.get("status") or {}
    return OrderInfo(
        name=meta(o).get("name"),
        request=_owner_name(o, requests),
        state=status.get("state"),
        reason=status.get("reason"),
    )


def _challenge_info(c: Obj, orders: list[Obj]) -> ChallengeInfo:
    spec, status = c.get("spec") or {}, c.get("status") or {}
    return ChallengeInfo(
        name=meta(c).get("name"),
        order=_owner_name(c, orders),
        type=spec.get("type"),
        dns_name=spec.get("dnsName"),
        state=status.get("state"),
        reason=status.get("reason"),
        presented=bool(status.get("presented")),
        processing=bool(status.get("processing")),
    )


async def certificate_status(ctx: StepContext, params: CertificateStatusParams) -> CertificateStatusOutput:
    target = require_target(ctx, "k8s.certificate_status", ("certificate",))
    ns, name = target.namespace, target.name
    cert = await _read_certificate(ctx, ns, name)
    requests = await _latest_requests(ctx, ns, name, cert, params.max_requests)
    orders = await _owned(ctx, ns_path(ACME, ns, "orders"), requests)
    challenges = await _owned(ctx, ns_path(ACME, ns, "challenges"), orders)
    info = _certificate_info(cert, ns, name)
    out = CertificateStatusOutput(
        certificate=info,
        requests=[_request_info(r) for r in requests],
        orders=[_order_info(o, requests) for o in orders],
        challenges=[_challenge_info(c, orders) for c in challenges],
        issuer=await _issuer(ctx, ns, info.issuer_ref),
    )
    return out


COLLECTORS = (
    CollectorDef(
        name="k8s.certificate_status",
        fn=certificate_status,
        params=CertificateStatusParams,
        output=CertificateStatusOutput,
        summary="a cert-manager Certificate, its CertificateRequests, ACME Orders/Challenges and issuer",
    ),
)
