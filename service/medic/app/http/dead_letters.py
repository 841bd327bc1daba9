"""Dead letters: deliveries Medic accepted but could not process, kept for a human.

``GET /api/v1/dead-letters`` lists them (read access, like the incidents API);
``POST /api/v1/dead-letters/{id}/retry`` puts one back in the queue and
``DELETE /api/v1/dead-letters/{id}`` drops it (both need the admin token). ``medic dead-letters``
does the same from the command line. What is shown is redacted like every other output.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from medic.app.http.admin import admin_denied
from medic.domain.redact import redact
from medic.inbox.base import DeadLetter, Inbox
from medic.intake.auth import Credentials
from medic.intake.model import Alert
from medic.intake.problem import problem
from medic.telemetry.metrics import Metrics

MAX_PAGE = 500


def failed_alerts(letter: DeadLetter) -> list[dict[str, Any]]:
    """The alerts of the delivery that failed (every alert, when it cannot tell which)."""
    raw = letter.payload.get("alerts")
    alerts = [a for a in raw if isinstance(a, dict)] if isinstance(raw, list) else []
    wanted = set(letter.episodes)

    def episode(a: dict[str, Any]) -> str | None:
        try:
            return Alert.model_validate(a).episode_key
        except ValueError:
            return None

    return [a for a in alerts if episode(a) in wanted] or alerts


def dead_letter_json(letter: DeadLetter) -> dict[str, Any]:
    """A dead letter as the API and the CLI show it: why, when, and which alerts (redacted)."""
    alerts = [
        {
            "alertname": labels.get("alertname", "") if isinstance(labels := a.get("labels"), dict) else "",
            "status": a.get("status"),
            "fingerprint": a.get("fingerprint", ""),
            "startsAt": a.get("startsAt"),
            "labels": a.get("labels"),
        }
        for a in failed_alerts(letter)
    ]
    shown: dict[str, Any] = redact(
        {
            "id": letter.id,
            "error": letter.error,
            "attempts": letter.attempts,
            "received_at": letter.received_at.isoformat(),
            "dead_at": letter.dead_at.isoformat() if letter.dead_at else None,
            "receiver": letter.payload.get("receiver"),
            "group_key": letter.payload.get("groupKey"),
            "episodes": letter.episodes,
            "alerts": alerts,
        }
    )
    return shown


def _page_param(request: web.Request, name: str, default: int, hi: int) -> int | web.Response:
    raw = request.query.get(name)
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 9) or not 0 <= int(raw) <= hi:
        return problem(400, "Bad Request", f"{name} must be an integer from 0 to {hi}", field=name)
    return int(raw)


class DeadLetterApi:
    def __init__(self, inbox: Inbox, metrics: Metrics, admin_token: str | None) -> None:
        self.inbox = inbox
        self.metrics = metrics
        self.admin = Credentials(token=admin_token)

    async def list(self, request: web.Request) -> web.Response:
        limit = _page_param(request, "limit", 100, MAX_PAGE)
        offset = _page_param(request, "offset", 0, 10**9)
        if isinstance(limit, web.Response):
            return limit
        if isinstance(offset, web.Response):
            return offset
        letters, total = await self.inbox.list_dead_letters(max(limit, 1), offset)
        self.metrics.dead_letters.set(total)
        # redacting up to a page of bodies (1 MiB each) is work for a thread, not the event loop
        items = await asyncio.to_thread(lambda: [dead_letter_json(d) for d in letters])
        return web.json_response({"items": items, "total": total, "limit": limit, "offset": offset})

    async def retry(self, request: web.Request) -> web.Response:
        if (denied := admin_denied(request, self.admin)) is not None:
            return denied
        item_id = request.match_info["id"]
        if not await self.inbox.retry_dead_letter(item_id):
            return problem(404, "Not Found", f"no dead letter {item_id}")
        self.metrics.dead_letters.set(await self.inbox.dead_letters())
        return web.json_response({"id": item_id, "status": "queued"}, status=202)

    async def drop(self, request: web.Request) -> web.Response:
        if (denied := admin_denied(request, self.admin)) is not None:
            return denied
        item_id = request.match_info["id"]
        if not await self.inbox.drop_dead_letter(item_id):
            return problem(404, "Not Found", f"no dead letter {item_id}")
        self.metrics.dead_letters.set(await self.inbox.dead_letters())
        return web.json_response({"id": item_id, "status": "dropped"})
