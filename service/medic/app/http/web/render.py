"""The Jinja2 environment of the pages: autoescape everywhere, strict undefined, no I/O."""

from __future__ import annotations

import secrets
from datetime import datetime
from functools import lru_cache
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",  # approval links must not leak through Referer
    "Cache-Control": "no-store",
}


def csp(nonce: str) -> str:
    """No external asset, no inline script but ours (by nonce), forms post to Medic only."""
    return (
        "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
        f"script-src 'nonce-{nonce}'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    )


def _dt(value: datetime | None) -> str:
    return f"{value:%Y-%m-%d %H:%M:%S} UTC" if value else "—"


def _time(value: datetime | None) -> str:
    return f"{value:%H:%M:%S}" if value else ""


def _ms(value: float) -> str:
    return f"{value / 1000:.1f} s" if value >= 1000 else f"{value:.0f} ms"


def _num(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "—" if value is None else str(value)


@lru_cache(maxsize=1)
def environment() -> Environment:
    env = Environment(
        loader=PackageLoader("medic.app.http.web", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(dt=_dt, time=_time, ms=_ms, num=_num)
    return env


def render(template: str, **context: Any) -> tuple[str, dict[str, str]]:
    """The page's HTML and its headers (CSP with a fresh nonce for the inline script)."""
    nonce = secrets.token_urlsafe(16)
    html = environment().get_template(template).render(nonce=nonce, **context)
    return html, {**SECURITY_HEADERS, "Content-Security-Policy": csp(nonce)}
