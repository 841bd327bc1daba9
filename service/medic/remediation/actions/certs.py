"""cert-manager actions (runbook 6.3): request a renewal of a Certificate the way ``cmctl renew``
does. Plan reads the Certificate; apply writes once, through the ``status`` subresource.

``cmctl renew`` sets the Certificate's ``Issuing`` condition to True with reason
``ManuallyTriggered``; cert-manager's issuing controller then creates a new CertificateRequest
(``status.revision`` + 1). It skips a Certificate that is already issuing. The write here is a JSON
Patch whose first op tests ``metadata.resourceVersion``: it lands only on the Certificate as
planned, so a re-attempt after a lost answer, or a second replica, cannot trigger twice.
"""

from __future__ import annotations

import asyncio
from typing import Any

from medic.clients.kube.client import JSON_PATCH, KubeObject, ns_path
from medic.clients.kube.errors import KubeConflict, KubeInvalid
from medic.domain.actions import Precondition
from medic.domain.errors import StepError
from medic.playbooks.action import ActionContext, ActionFacts, ActionPlan, ApplyResult
from medic.playbooks.contract import ActionDef, NoParams

CERT = "cert-manager.io/v1"
REASON = "ManuallyTriggered"


def _path(ctx: ActionContext, sub: str = "") -> str:
    t = ctx.target
    if t.kind != "certificate":
        raise StepError(f"this action works on a certificate, not on {t.kind}")
    return ns_path(CERT, t.namespace, "certificates", t.name) + (f"/{sub}" if sub else "")


def _condition(cert: KubeObject, kind: str) -> dict[str, Any]:
    for c in (cert.get("status") or {}).get("conditions") or []:
        if isinstance(c, dict) and c.get("type") == kind:
            return c
    return {}


def _revision(cert: KubeObject) -> int:
    raw = (cert.get("status") or {}).get("revision")
    return int(raw) if isinstance(raw, int) else 0


class CertificateFacts(ActionFacts):
    revision: int  # status.revision when planned: a renewal issues a higher one
    resource_version: str | None  # what the write's test op holds it to
    not_after: str | None
    triggered_at: str


class RenewalRequested(ApplyResult):
    condition: str
    reason: str


class RenewCertificate:
    async def plan(self, ctx: ActionContext, params: NoParams) -> ActionPlan[CertificateFacts]:
        cert = await ctx.require_kube().get(_path(ctx))
        meta = cert.get("metadata") or {}
        status = cert.get("status")
        issuing = _condition(cert, "Issuing")
        revision = _revision(cert)
        stamp = ctx.now.strftime("%Y-%m-%dT%H:%M:%SZ")
        wanted = {
            "type": "Issuing",
            "status": "True",
            "reason": REASON,
            "message": f"Certificate re-issuance manually triggered by Medic (incident {ctx.incident.id})",
            "lastTransitionTime": stamp,
        }
        if isinstance(meta.get("generation"), int):
            wanted["observedGeneration"] = meta["generation"]
        others = [
            c
            for c in (status or {}).get("conditions") or []
            if isinstance(c, dict) and c.get("type") != "Issuing"
        ]
        ops: list[dict[str, Any]] = [
            {"op": "test", "path": "/metadata/resourceVersion", "value": meta.get("resourceVersion")}
        ]
        if isinstance(status, dict):
            ops.append({"op": "add", "path": "/status/conditions", "value": [*others, wanted]})
        else:
            ops.append({"op": "add", "path": "/status", "value": {"conditions": [wanted]}})
        t = ctx.target
        ready = _condition(cert, "Ready")
        return ActionPlan(
            summary=(
                f"renew certificate {t.namespace}/{t.name} (cmctl renew: Issuing=True, reason {REASON}); "
                f"now revision {revision}, Ready={ready.get('status', '?')}, "
                f"expires {(status or {}).get('notAfter', '?')}"
            ),
            preconditions=[Precondition("certificate", True, f"certificate {t.namespace}/{t.name} exists")],
            skip_reason=(
                f"an issuance is already in progress ({issuing.get('reason')}: {issuing.get('message')})"
                if issuing.get("status") == "True"
                else None
            ),
            facts=CertificateFacts(
                revision=revision,
                resource_version=meta.get("resourceVersion"),
                not_after=(status or {}).get("notAfter"),
                triggered_at=stamp,
            ),
            target_annotations=dict(meta.get("annotations") or {}),
            target_labels=dict(meta.get("labels") or {}),
            payload=ops,
            idempotency_scope=f"revision-{revision}",
        )

    async def apply(self, ctx: ActionContext, plan: ActionPlan[CertificateFacts]) -> ApplyResult:
        kube = ctx.require_kube()
        if plan.payload is None:
            raise StepError("the plan has no write to send")
        try:
            await kube.patch(_path(ctx, "status"), plan.payload, JSON_PATCH)
        except (KubeInvalid, KubeConflict):
            # The resourceVersion test failed: our own earlier write landed (a lost answer, a
            # retry after a crash), or the Certificate changed meanwhile. Look before deciding.
            cert = await kube.get(_path(ctx))
            issuing = _condition(cert, "Issuing")
            ours = issuing.get("reason") == REASON and ctx.incident.id in str(issuing.get("message", ""))
            if ours or _revision(cert) > plan.facts.revision:
                return ApplyResult(applied=False, already=True, note="the renewal had already been requested")
            raise KubeConflict(
                "the certificate changed since the plan (someone else acted): not renewed"
            ) from None
        return RenewalRequested(applied=True, condition="Issuing=True", reason=REASON)

    async def verify(
        self, ctx: ActionContext, plan: ActionPlan[CertificateFacts], timeout: float
    ) -> tuple[bool, str]:
        """Done when cert-manager issued a newer revision and the Certificate is Ready; failed
        when the issuance it started failed (``Issuing`` False, reason Failed)."""
        kube = ctx.require_kube()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        before = plan.facts.revision
        while True:
            cert = await kube.get(_path(ctx))
            ready, issuing = _condition(cert, "Ready"), _condition(cert, "Issuing")
            revision = _revision(cert)
            if revision > before and ready.get("status") == "True":
                return (
                    True,
                    f"revision {revision} issued, ready until {(cert.get('status') or {}).get('notAfter')}",
                )
            if issuing.get("status") == "False" and issuing.get("reason") == "Failed":
                return False, f"the renewal failed: {issuing.get('message')}"
            if loop.time() >= deadline:
                state = f"Issuing={issuing.get('status', 'absent')}, Ready={ready.get('status', '?')}"
                return False, f"not renewed within {timeout:g}s (revision {revision}, {state})"
            await asyncio.sleep(min(1.0, max(deadline - loop.time(), 0.05)))


ACTIONS = (  # unannotated: see medic.remediation.actions.k8s.ACTIONS
    ActionDef(
        "certs.renew_certificate",
        RenewCertificate(),
        NoParams,
        "cmctl renew: ask cert-manager to re-issue a Certificate now (runbook 6.3)",
        target_kinds=("certificate",),
        approve_only=True,
        guarded_write=True,
        kube_permissions=(("cert-manager.io", "certificates/status", "patch"),),
    ),
)
