"""RFC 9457 problem details (``application/problem+json``) for every HTTP error Medic returns.

Which error becomes which problem is decided in one place, :mod:`medic.intake.http_errors`.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

PROBLEM_TYPE = "application/problem+json"


def problem(
    status: int,
    title: str,
    detail: str = "",
    *,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> web.Response:
    """``{"type": "about:blank", "title", "status", "detail"?, **extra}`` (``None`` extras left out)."""
    body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status}
    if detail:
        body["detail"] = detail
    body.update({k: v for k, v in extra.items() if v is not None})
    return web.Response(status=status, text=json.dumps(body), content_type=PROBLEM_TYPE, headers=headers)
