"""``POST /api/v1/alerts``: Alertmanager's webhook. 2xx only once the delivery is durable."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Any, Protocol

import structlog
from aiohttp import web
from pydantic import ValidationError

from medic.domain.errors import StoreError
from medic.inbox.base import Inbox
from medic.intake.auth import Credentials, check_authorization
from medic.intake.http_errors import MAX_JSON_DEPTH, json_depth
from medic.intake.model import WebhookPayload, unstorable_field
from medic.intake.problem import problem
from medic.intake.reject_log import RejectLog, begin_delivery, note_body
from medic.telemetry.metrics import Metrics

log = structlog.get_logger("medic.intake")


_ACCEPTED = b'{"status": "accepted", "alerts": %d, "new": %d, "duplicates": %d}'


class Wakeable(Protocol):
    """What the intake tells that a delivery was accepted: the workers' asyncio.Event, or the
    diagnosis process's wake-up pipe (:class:`medic.app.worker_process.Waker`)."""

    def set(self) -> None: ...


def _field(loc: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in loc)


def validation_problem(exc: ValidationError) -> web.Response:
    errors = exc.errors(include_url=False, include_input=False)
    first = errors[0]
    field = _field(first["loc"])
    if field == "version":
        return problem(
            400,
            "Unsupported webhook version",
            'only Alertmanager webhook version "4" is understood',
            field="version",
        )
    detail = f"{field}: {first['msg']}" if field else first["msg"]
    more = [{"field": _field(e["loc"]), "message": e["msg"]} for e in errors[:20]]
    return problem(400, "Invalid webhook payload", detail, field=field, errors=more)


def _problem_detail(response: web.Response) -> str | None:
    try:
        return str(json.loads(response.text or "{}").get("detail", ""))[:300] or None
    except ValueError:
        return None


class WebhookIntake:
    def __init__(
        self,
        inbox: Inbox,
        metrics: Metrics,
        credentials: Credentials,
        max_body_bytes: int,
        wake: Wakeable,
    ) -> None:
        self.inbox = inbox
        self.metrics = metrics
        self.credentials = credentials
        self.max_body_bytes = max_body_bytes
        self.wake = wake
        self._wake_due = False
        self.reject_log = RejectLog()

    def reject(self, reason: str, response: web.Response) -> web.Response:
        self.metrics.webhooks_rejected.labels(reason=reason).inc()
        self.reject_log.rejected(reason, status=response.status, detail=lambda: _problem_detail(response))
        return response

    async def handle(self, request: web.Request) -> web.Response:
        """Refuse what is not a delivery for us, read the body within its bound, validate it,
        and answer 2xx only once it is durably accepted."""
        begin_delivery(request.remote)  # for the warning a rejection logs
        refused = self._refuse_early(request)
        if refused is not None:
            return refused
        body = await self._read_bounded(request)
        if body is None:
            return self.reject("too_large", self._too_large())
        parsed = self._parse(body)
        if isinstance(parsed, web.Response):
            return parsed
        return await self._accept(*parsed)

    def _refuse_early(self, request: web.Request) -> web.Response | None:
        """The refusals decided by the request head alone: credentials, media type, size."""
        if not check_authorization(request.headers.get("Authorization"), self.credentials):
            return self.reject(
                "auth",
                problem(
                    401,
                    "Unauthorized",
                    "missing or wrong webhook credentials",
                    headers={"WWW-Authenticate": 'Bearer realm="medic", Basic realm="medic"'},
                ),
            )
        if request.content_type not in ("application/json", ""):
            return self.reject(
                "content_type",
                problem(
                    415,
                    "Unsupported Media Type",
                    f"expected application/json, got {request.content_type}",
                ),
            )
        if request.content_length is not None and request.content_length > self.max_body_bytes:
            return self.reject("too_large", self._too_large())
        return None

    async def _accept(self, payload: WebhookPayload, text: str) -> web.Response:
        """Store the delivery (new episodes only count as new) and answer; 503 when it could not
        be stored, so that Alertmanager retries."""
        episodes = [a.episode_key for a in payload.alerts]
        self.metrics.alerts_received.inc(len(episodes))
        try:
            result = await self.inbox.accept(text, episodes, datetime.now(UTC))
        except StoreError as exc:
            self.metrics.webhooks_failed.inc()
            log.error("could not store delivery", error=str(exc), group_key=payload.groupKey)
            return problem(
                503,
                "Not stored",
                "the delivery could not be stored; retry later",
                headers={"Retry-After": "5"},
            )
        if result.duplicates:
            self.metrics.alerts_deduplicated.inc(result.duplicates)
        if result.item_id is not None:
            self._wake_soon()
        log.debug(
            "delivery accepted",
            alerts=len(episodes),
            new=len(result.new_episodes),
            duplicates=result.duplicates,
            truncated=payload.truncatedAlerts,
            group_key=payload.groupKey,
        )
        # the answer Alertmanager waits for, written directly (json.dumps was 5 % of the intake)
        answer = _ACCEPTED % (len(episodes), len(result.new_episodes), result.duplicates)
        return web.Response(body=answer, content_type="application/json")

    def _wake_soon(self) -> None:
        """Tell the workers once for all the deliveries a group commit answers (they resume in
        the same turn of the loop): one write to the diagnosis process's pipe, not one each."""
        if not self._wake_due:
            self._wake_due = True
            asyncio.get_running_loop().call_soon(self._wake_now)

    def _wake_now(self) -> None:
        self._wake_due = False
        self.wake.set()

    def _parse(self, body: bytes) -> tuple[WebhookPayload, str] | web.Response:
        """The validated payload and the body's text (stored as received), or the 400 problem.

        Parsed and validated in one pass by pydantic-core; a body that fails is parsed again
        step by step only to say what is wrong with it (not JSON, not an object, which field).
        """
        try:
            return WebhookPayload.model_validate_json(body), body.decode("utf-8")
        except (ValidationError, UnicodeDecodeError):
            pass
        try:
            raw = json.loads(body.decode("utf-8"))
        except RecursionError:
            raw = None  # deeper than Python's parser goes: refused below as too deep
        except ValueError as exc:  # not JSON, not UTF-8, an integer of more than 4,300 digits
            return self.reject("json", problem(400, "Malformed JSON", str(exc)))
        if raw is None or json_depth(raw) > MAX_JSON_DEPTH:
            return self.reject(
                "json", problem(400, "Malformed JSON", f"nested deeper than {MAX_JSON_DEPTH} levels")
            )
        note_body(raw)
        if not isinstance(raw, dict):
            return self.reject(
                "schema", problem(400, "Invalid webhook payload", "the body must be a JSON object")
            )
        try:
            payload = WebhookPayload.model_validate(raw)
        except ValidationError as exc:
            return self.reject("schema", validation_problem(exc))
        # pydantic-core's parser refuses lone surrogates, Python's keeps them: only this path
        # can hold text that no store can write, so only here is the whole delivery walked.
        if unstorable := unstorable_field(raw):
            field, why = unstorable
            return self.reject(
                "schema", problem(400, "Invalid webhook payload", f"{field}: {why}", field=field)
            )
        return payload, body.decode("utf-8")

    async def _read_bounded(self, request: web.Request) -> bytes | None:
        """The body, or None as soon as it grows past the limit (chunked and decoded bodies
        included). A body already received in full (most deliveries arrive with their request
        head) is taken as it is, without waiting."""
        stream = request.content
        if stream.is_eof():
            body = stream.read_nowait()
            return body if len(body) <= self.max_body_bytes else None
        chunks: list[bytes] = []
        size = 0
        while chunk := await stream.read(65536):
            size += len(chunk)
            if size > self.max_body_bytes:
                return None
            chunks.append(chunk)
        return b"".join(chunks)

    def _too_large(self) -> web.Response:
        return problem(
            413,
            "Payload Too Large",
            f"the body exceeds {self.max_body_bytes} bytes (MEDIC_MAX_BODY_BYTES)",
        )
