"""``POST /api/v1/verifications``: a CI pipeline asks Medic to verify a deploy (runbook 1.3).

Body: ``{"namespace": "playcode", "deployment": "playcode-app", "revision": 7, "window": "10m"}``
(``revision`` defaults to the current one, ``window`` to the playbook's). The webhook credentials
are required (a CI job holds the same secret as Alertmanager). Answers ``202`` with the
verification's incident (``200`` when that revision is already being verified); follow it with
``GET /api/v1/incidents/{id}`` (``verification.state``) or ``medic verify --wait``.
"""

from __future__ import annotations

import json
import re
from datetime import timedelta
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError, field_validator

from medic.app.verification import VerificationError, Verifications
from medic.domain.durations import Duration
from medic.domain.incident import Incident
from medic.intake.auth import Credentials, check_authorization
from medic.intake.problem import problem

MAX_BODY = 4096
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")


class VerificationRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    namespace: str = Field(max_length=63)
    deployment: str = Field(max_length=253)
    revision: StrictInt | None = Field(None, ge=1, le=2**31)  # a JSON number, not "5" or true
    window: Duration | None = None

    @field_validator("namespace", "deployment")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError("not a Kubernetes object name (lower-case letters, digits, '-' and '.')")
        return value


def verification_json(incident: Incident, public_url: str = "") -> dict[str, Any]:
    """A verification incident as the API and ``medic verify`` show it."""
    v = incident.verification
    out: dict[str, Any] = {
        "incident_id": incident.id,
        "status": incident.status,
        "phase": incident.phase.value,
    }
    if public_url:
        out["url"] = f"{public_url.rstrip('/')}/incidents/{incident.id}"
    if v is not None:
        out |= {
            "namespace": v.namespace,
            "deployment": v.deployment,
            "revision": v.revision,
            "baseline_revision": v.baseline_revision,
            "state": v.state,
            "reason": v.reason,
            "started_at": v.started_at.isoformat(),
            "ends_at": v.ends_at.isoformat(),
            "samples": len(v.samples),
        }
    else:
        out["state"] = "verifying"
    return out


def _field(exc: ValidationError) -> tuple[str, str]:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err.get("loc", ())) or "body"
    return where, f"{where}: {err.get('msg', 'invalid')}"


class VerificationApi:
    def __init__(self, verifications: Verifications, credentials: Credentials, public_url: str = "") -> None:
        self.verifications = verifications
        self.credentials = credentials
        self.public_url = public_url

    async def create(self, request: web.Request) -> web.Response:
        if not check_authorization(request.headers.get("Authorization"), self.credentials):
            return problem(
                401,
                "Unauthorized",
                "missing or wrong webhook credentials",
                headers={"WWW-Authenticate": 'Bearer realm="medic", Basic realm="medic"'},
            )
        if request.content_type not in ("application/json", ""):
            return problem(
                415, "Unsupported Media Type", f"expected application/json, got {request.content_type}"
            )
        body = await request.content.read(MAX_BODY + 1)
        if len(body) > MAX_BODY:
            return problem(413, "Content Too Large", f"a verification request is at most {MAX_BODY} bytes")
        try:
            raw = json.loads(body or b"null")
        except (ValueError, RecursionError):
            return problem(400, "Bad Request", "the body is not JSON")
        if not isinstance(raw, dict):
            return problem(400, "Bad Request", "the body must be a JSON object")
        try:
            req = VerificationRequest.model_validate(raw)
        except ValidationError as exc:
            where, detail = _field(exc)
            return problem(400, "Bad Request", detail, field=where)
        return await self._start(req)

    async def _start(self, req: VerificationRequest) -> web.Response:
        window: timedelta | None = req.window
        try:
            incident, created = await self.verifications.request(
                req.namespace, req.deployment, req.revision, window, "api"
            )
        except VerificationError as exc:
            return problem(exc.status, exc.title, exc.detail, field=exc.field)
        body = verification_json(incident, self.public_url) | {"created": created}
        if not created and req.window is not None:
            body["note"] = (
                "that revision was already being verified: its own window goes on, this one is not applied"
            )
        headers = {"Location": f"/api/v1/incidents/{incident.id}"}
        return web.json_response(body, status=202 if created else 200, headers=headers)
