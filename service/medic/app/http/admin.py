"""Admin API: the kill switch and the audit log. Needs ``MEDIC_ADMIN_TOKEN`` (bearer); without it
the admin API is disabled (the CLI can still flip the switch in the local store)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from medic.coordination.base import RemediationState
from medic.domain.actions import KillSwitch
from medic.incidents.base import IncidentStore
from medic.intake.auth import Credentials, check_authorization
from medic.intake.http_errors import json_body, query_int
from medic.intake.problem import problem


def kill_switch_json(ks: KillSwitch) -> dict[str, Any]:
    return {
        "enabled": ks.enabled,
        "by": ks.by,
        "reason": ks.reason,
        "at": ks.at.isoformat() if ks.at else None,
    }


def admin_denied(request: web.Request, credentials: Credentials) -> web.Response | None:
    """The problem to answer when the admin token is missing or wrong (or no token is set)."""
    if not credentials.required:
        return problem(403, "Forbidden", "the admin API is disabled: set MEDIC_ADMIN_TOKEN")
    if not check_authorization(request.headers.get("Authorization"), credentials):
        return problem(
            401,
            "Unauthorized",
            "missing or wrong admin token",
            headers={"WWW-Authenticate": 'Bearer realm="medic-admin"'},
        )
    return None


class AdminApi:
    def __init__(self, state: RemediationState, store: IncidentStore, admin_token: str | None) -> None:
        self.state = state
        self.store = store
        self.credentials = Credentials(token=admin_token)

    def _denied(self, request: web.Request) -> web.Response | None:
        return admin_denied(request, self.credentials)

    async def get_kill_switch(self, request: web.Request) -> web.Response:
        if (denied := self._denied(request)) is not None:
            return denied
        return web.json_response(kill_switch_json(await self.state.kill_switch()))

    async def put_kill_switch(self, request: web.Request) -> web.Response:
        if (denied := self._denied(request)) is not None:
            return denied
        body = await json_body(request)
        if not isinstance(body, dict) or not isinstance(body.get("enabled"), bool):
            return problem(
                400, "Invalid request", 'expected {"enabled": true|false, "reason": "..."}', field="enabled"
            )
        reason = body.get("reason", "")
        by = body.get("by", "")
        if not isinstance(reason, str) or not isinstance(by, str):
            return problem(400, "Invalid request", "reason and by must be strings", field="reason")
        ks = await self.state.set_kill_switch(body["enabled"], by or "api", reason[:500])
        return web.json_response(kill_switch_json(ks))

    async def audit(self, request: web.Request) -> web.Response:
        if (denied := self._denied(request)) is not None:
            return denied
        incident = request.query.get("incident")
        limit = query_int(request, "limit", 100, 1, 1000)
        return web.json_response({"items": await self.store.audit(incident, limit)})
