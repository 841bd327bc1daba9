"""One HTTP delivery with bounded retries: never raises, always says what happened.

Retried: connection errors, timeouts, 408, 425, 429 and 5xx (``Retry-After`` is honoured up to
the channel's ``max_backoff``). Not retried: other 4xx (the receiver refuses this body; sending it
again cannot help). Error texts never contain the URL (a Slack webhook URL is a credential) and
receivers' answers are redacted.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from medic.domain.redact import redact, redact_text
from medic.notify.config import ChannelBase

RETRYABLE_STATUS = frozenset({408, 425, 429})


@dataclass(frozen=True)
class Outgoing:
    """A request a notifier wants sent: the body is final (redacted, serialised, signed)."""

    url: str
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    method: str = "POST"

    @classmethod
    def json(cls, url: str, payload: Any, headers: dict[str, str] | None = None) -> Outgoing:
        text = json.dumps(redact(payload), ensure_ascii=False, separators=(",", ":"))
        # HTML-safe JSON (as Go's encoder writes it): the same data, but a receiver that pastes a
        # field into a page unescaped gets no markup from an alert label
        for char, escaped in (("&", "\\u0026"), ("<", "\\u003c"), (">", "\\u003e")):
            text = text.replace(char, escaped)
        body = text.encode()
        return cls(url, body, {"Content-Type": "application/json", **(headers or {})})


@dataclass(frozen=True)
class Outcome:
    ok: bool
    attempts: int
    status: int | None = None  # the last HTTP status, if an answer came
    error: str = ""
    response: str = ""  # the start of the last answer (redacted)


def retryable(status: int) -> bool:
    return status in RETRYABLE_STATUS or status >= 500


def backoff_delay(attempt: int, base: float, cap: float, retry_after: str | None = None) -> float:
    """Delay before attempt ``attempt + 1`` (attempt counts from 1): base·2^(n-1), capped."""
    delay = min(base * 2.0 ** (attempt - 1), cap)
    if retry_after:
        with contextlib.suppress(ValueError):  # an HTTP date: keep our own delay
            delay = min(max(float(retry_after), delay), cap)
    return delay


def _describe(exc: BaseException, timeout: float) -> str:
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return f"no answer within {timeout:g}s"
    if isinstance(exc, aiohttp.ClientConnectorError):  # its text names the host: keep the errno only
        code = errno.errorcode.get(exc.os_error.errno or 0, type(exc.os_error).__name__)
        return f"connection failed ({code})"
    if isinstance(exc, aiohttp.ClientError):
        return f"request failed ({type(exc).__name__})"
    return f"{type(exc).__name__}"


async def deliver(
    session: aiohttp.ClientSession,
    out: Outgoing,
    policy: ChannelBase,
    *,
    sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
) -> Outcome:
    timeout = policy.timeout.total_seconds()
    base, cap = policy.backoff.total_seconds(), policy.max_backoff.total_seconds()
    last = Outcome(ok=False, attempts=0, error="not attempted")
    for attempt in range(1, policy.attempts + 1):
        retry_after: str | None = None
        try:
            async with session.request(
                out.method,
                out.url,
                data=out.body,
                headers=out.headers,
                timeout=aiohttp.ClientTimeout(total=timeout),
                allow_redirects=False,
            ) as resp:
                text = redact_text((await resp.text(errors="replace"))[:300])
                if 200 <= resp.status < 300:
                    return Outcome(ok=True, attempts=attempt, status=resp.status, response=text)
                last = Outcome(False, attempt, resp.status, f"HTTP {resp.status}", text)
                if not retryable(resp.status):
                    return last
                retry_after = resp.headers.get("Retry-After")
        except Exception as exc:  # a notifier never raises: the outcome says what went wrong
            last = Outcome(False, attempt, None, _describe(exc, timeout))
        if attempt < policy.attempts:
            await sleep(backoff_delay(attempt, base, cap, retry_after))
    return last
