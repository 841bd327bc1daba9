"""Approve/reject through the admin API (what ``medic approve|reject --url`` calls).

``POST /api/v1/incidents/{id}/approve`` and ``.../reject`` with ``Authorization: Bearer
<MEDIC_ADMIN_TOKEN>`` and a JSON body ``{"by": "alice", "action": "rollback", "reason": "..."}``
(``action`` optional when one proposal awaits). The admin token authorises the decision, so no
approval token is needed; single use and the guard re-check are the same as on the web.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from medic.app.approvals import ApprovalRefused, ApprovalService, Decision
from medic.app.http.admin import admin_denied
from medic.domain.redact import redact
from medic.intake.auth import Credentials
from medic.intake.http_errors import json_body
from medic.intake.problem import problem


class ApprovalApi:
    def __init__(self, approvals: ApprovalService, admin_token: str | None) -> None:
        self.approvals = approvals
        self.credentials = Credentials(token=admin_token)

    def _denied(self, request: web.Request) -> web.Response | None:
        return admin_denied(request, self.credentials)

    async def approve(self, request: web.Request) -> web.Response:
        return await self._decide(request, "approved")

    async def reject(self, request: web.Request) -> web.Response:
        return await self._decide(request, "rejected")

    async def _decide(self, request: web.Request, decision: Decision) -> web.Response:
        if (denied := self._denied(request)) is not None:
            return denied
        body: Any = await json_body(request, empty={})
        if not isinstance(body, dict):
            return problem(400, "Invalid request", 'expected {"by": "...", "action": "..."}')
        fields = {k: body.get(k) for k in ("by", "action", "reason")}
        for name, value in fields.items():
            if value is not None and not isinstance(value, str):
                return problem(400, "Invalid request", f"{name} must be a string", field=name)
        incident_id = request.match_info["id"]
        try:
            outcome = await self.approvals.decide(
                incident_id,
                decision,
                by=fields["by"] or "",
                via="api",
                action=fields["action"] or None,
                reason=(fields["reason"] or "")[:500],
            )
        except ApprovalRefused as exc:
            return problem(exc.status, exc.title, exc.detail, code=exc.code, **exc.info)
        return web.json_response(
            redact(
                {
                    "incident": incident_id,
                    "decision": outcome.decision,
                    "by": outcome.by,
                    "action_index": outcome.index,
                    "action": outcome.record.model_dump(mode="json"),
                }
            )
        )
