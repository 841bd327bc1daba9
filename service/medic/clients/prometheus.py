"""Prometheus' HTTP API through prometheus-api-client, on a pool of its own."""

from __future__ import annotations

import asyncio
import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from prometheus_api_client import PrometheusConnect
from urllib3.util.retry import Retry


@dataclass
class PrometheusBackend:
    """prometheus-api-client on a thread pool of its own: a dead or slow Prometheus holds only
    these threads, never the loop's default executor (which DNS lookups of the other collectors
    need). A refused connection is not retried; a 429/502/503/504 is retried once."""

    url: str
    http_timeout: float = 10.0
    threads: int = 8

    def __post_init__(self) -> None:
        retry = Retry(
            total=1,
            connect=0,
            read=0,
            status=1,
            backoff_factor=0.2,
            status_forcelist=(429, 502, 503, 504),
            allowed_methods=None,
        )
        self._client = PrometheusConnect(
            url=self.url, disable_ssl=False, timeout=self.http_timeout, retry=retry
        )
        self._pool = ThreadPoolExecutor(max_workers=self.threads, thread_name_prefix="medic-prometheus")

    async def _call(self, fn: Any, *args: Any) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)
        return result

    async def instant(self, expr: str, timeout: float) -> list[dict[str, Any]]:
        return await self._call(self._client.custom_query, expr, None, max(1, math.ceil(timeout)))

    async def range(self, expr: str, start: Any, end: Any, step: str, timeout: float) -> list[dict[str, Any]]:
        return await self._call(
            self._client.custom_query_range, expr, start, end, step, None, max(1, math.ceil(timeout))
        )

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._client.close()
