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

from medic.clients.kube.client import JSON_PATCH, ns_path
from medic.clients.kube.errors import KubeConflict, KubeInvalid
from medic.domain.actions import Precondition
from medic.domain.errors import StepError
from medic.playbooks.action import ActionContext, ActionFacts, ActionPlan, ApplyResult
from medic.playbooks.contract import ActionDef, NoParams
from medic.remediation.actions.kube_objects import Certificate, Condition, condition, view

CERT = "cert-manager.io/v1"
REASON = "ManuallyTriggered"


def _path(ctx: ActionContext, sub: str = "") -> str:
    t = ctx.target
    if t.kind != "certificate":
        raise StepError(f"this action works on a certificate, not on {t.kind}")
    return ns_path(CERT, t.namespace, "certificates", t.name) + (f"/{sub}" if sub else "")


async def _certificate(ctx: ActionContext) -> Certificate:
    return view(Certificate, await ctx.require_kube().get(_path(ctx)))


def _condition(cert: Certificate, kind: str) -> Condition:
    """The condition of type ``kind`` (an empty one when the Certificate has none)."""
    return condition(cert.status.conditions if cert.status else [], kind) or Condition()


def _revision(cert: Certificate) -> int:
    return cert.status.revision if cert.status else 0


def _not_after(cert: Certificate) -> str | None:
    return cert.status.not_after if cert.status else None


def _or(value: str | None, absent: str) -> str:
    return absent if value is None else value


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
        cert = await _certificate(ctx)
        meta, status = cert.metadata, cert.status
        issuing = _condition(cert, "Issuing")
        revision = _revision(cert)
        stamp = ctx.now.strftime("%Y-%m-%dT%H:%M:%SZ")
        wanted: dict[str, Any] = {
            "type": "Issuing",
            "status": "True",
            "reason": REASON,
            "message": f"Certificate re-issuance manually triggered by Medic (incident {ctx.incident.id})",
            "lastTransitionTime": stamp,
        }
        if meta.generation is not None:
            wanted["observedGeneration"] = meta.generation
        kept = zip(status.conditions, status.conditions_raw, strict=True) if status else ()
        others = [raw for c, raw in kept if c.type != "Issuing"]  # as they are
        ops: list[dict[str, Any]] = [
            {"op": "test", "path": "/metadata/resourceVersion", "value": meta.resource_version}
        ]
        if status is not None:
            ops.append({"op": "add", "path": "/status/conditions", "value": [*others, wanted]})
        else:
            ops.append({"op": "add", "path": "/status", "value": {"conditions": [wanted]}})
        t = ctx.target
        ready = _condition(cert, "Ready")
        return ActionPlan(
            summary=(
                f"renew certificate {t.namespace}/{t.name} (cmctl renew: Issuing=True, reason {REASON}); "
                f"now revision {revision}, Ready={_or(ready.status, '?')}, "
                f"expires {_or(_not_after(cert), '?')}"
            ),
            preconditions=[Precondition("certificate", True, f"certificate {t.namespace}/{t.name} exists")],
            skip_reason=(
                f"an issuance is already in progress ({issuing.reason}: {issuing.message})"
                if issuing.status == "True"
                else None
            ),
            facts=CertificateFacts(
                revision=revision,
                resource_version=meta.resource_version,
                not_after=_not_after(cert),
                triggered_at=stamp,
            ),
            target_annotations=dict(meta.annotations),
            target_labels=dict(meta.labels),
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
            cert = view(Certificate, await kube.get(_path(ctx)))
            issuing = _condition(cert, "Issuing")
            ours = issuing.reason == REASON and ctx.incident.id in str(_or(issuing.message, ""))
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
            cert = view(Certificate, await kube.get(_path(ctx)))
            ready, issuing = _condition(cert, "Ready"), _condition(cert, "Issuing")
            revision = _revision(cert)
            if revision > before and ready.status == "True":
                return True, f"revision {revision} issued, ready until {_not_after(cert)}"
            if issuing.status == "False" and issuing.reason == "Failed":
                return False, f"the renewal failed: {issuing.message}"
            if loop.time() >= deadline:
                state = f"Issuing={_or(issuing.status, 'absent')}, Ready={_or(ready.status, '?')}"
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
