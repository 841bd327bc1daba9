"""RFC 9457 problem details (``application/problem+json``) for every HTTP error Medic returns."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from medic.errors import BackendUnavailable

PROBLEM_TYPE = "application/problem+json"


def problem(
    status: int,
    title: str,
    detail: str = "",
    *,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> web.Response:
    body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status}
    if detail:
        body["detail"] = detail
    body.update({k: v for k, v in extra.items() if v is not None})
    return web.Response(status=status, text=json.dumps(body), content_type=PROBLEM_TYPE, headers=headers)


@web.middleware
async def problem_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Turn aiohttp's own HTTP errors (404, 405, 413, ...) into problem+json."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400 or exc.content_type == PROBLEM_TYPE:
            raise
        headers = {k: v for k, v in exc.headers.items() if k.lower() in ("allow", "www-authenticate")}
        return problem(exc.status, exc.reason, exc.text or "", headers=headers)
    except BackendUnavailable as exc:  # Medic's own Redis or MongoDB is down: try again later
        return problem(503, "Store unavailable", str(exc), headers={"Retry-After": "5"})
