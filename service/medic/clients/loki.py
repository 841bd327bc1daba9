"""Loki's HTTP API."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from medic.domain.errors import StepError, StepTimeout
from medic.domain.redact import redact_text

DEFAULT_INGRESS_SELECTOR = '{namespace="ingress-nginx"}'


@dataclass
class LokiBackend:
    """Loki's HTTP API (``MEDIC_LOKI_URL``); credentials in the URL are sent as basic auth."""

    url: str = field(repr=False)
    max_response_bytes: int = 16 * 1024 * 1024
    # The ingress controller's log streams (MEDIC_INGRESS_LOG_SELECTOR, checked by the settings).
    ingress_selector: str = DEFAULT_INGRESS_SELECTOR
    _session: aiohttp.ClientSession | None = field(default=None, init=False, repr=False)

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(headers={"User-Agent": "playcode-medic"})
        return self._session

    async def query_range(
        self, query: str, *, start_ns: int, end_ns: int, limit: int, timeout: float, step: str | None = None
    ) -> dict[str, Any]:
        params = {
            "query": query,
            "start": str(start_ns),
            "end": str(end_ns),
            "limit": str(limit),
            "direction": "backward",
        }
        if step is not None:  # a metric query's resolution
            params["step"] = step
        try:
            async with self._client().get(
                f"{self.url}/loki/api/v1/query_range",
                params=params,
                timeout=aiohttp.ClientTimeout(total=timeout),
            ) as resp:
                status = resp.status
                body = bytearray()
                async for chunk in resp.content.iter_chunked(64 * 1024):
                    body += chunk
                    if len(body) > self.max_response_bytes:
                        break
        except TimeoutError:
            raise StepTimeout(f"Loki gave no answer within {timeout:g}s") from None
        except aiohttp.ClientError as exc:
            raise StepError(
                f"Loki unreachable: {type(exc).__name__}: {redact_text(str(exc))[:300]}"
            ) from None
        if len(body) > self.max_response_bytes:
            raise StepError(f"Loki's answer exceeds {self.max_response_bytes} bytes; lower the limit")
        text = body.decode("utf-8", errors="replace")
        if status != 200:
            raise StepError(f"Loki answered HTTP {status}: {redact_text(text.strip())[:300]}")
        try:
            data = json.loads(text)
        except ValueError:
            raise StepError("Loki's answer is not JSON") from None
        if not isinstance(data, dict) or data.get("status") != "success":
            raise StepError(f"Loki query failed: {redact_text(str(data))[:300]}")
        result: dict[str, Any] = data.get("data") or {}
        return result

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
