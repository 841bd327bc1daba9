"""A small closed-loop HTTP load generator (aiohttp) shared by the benchmarks."""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp


@dataclass
class LoadResult:
    name: str
    requests: int
    seconds: float
    latencies_ms: list[float]
    errors: int

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    def pct(self, q: float) -> float:
        data = sorted(self.latencies_ms)
        return data[min(len(data) - 1, int(q * len(data)))]

    def line(self) -> str:
        return (
            f"{self.name:28} {self.rps:8.0f} req/s   p50 {self.pct(0.5):6.2f} ms   "
            f"p99 {self.pct(0.99):6.2f} ms   errors {self.errors}"
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "rps": round(self.rps),
            "p50_ms": round(self.pct(0.5), 3),
            "p99_ms": round(self.pct(0.99), 3),
            "errors": self.errors,
            "requests": self.requests,
            "median_ms": round(statistics.median(self.latencies_ms), 3),
        }


async def run_load(
    name: str,
    url: str,
    body_for: Callable[[int], dict[str, Any]],
    *,
    total: int,
    concurrency: int,
    headers: dict[str, str] | None = None,
) -> LoadResult:
    latencies: list[float] = []
    errors = 0
    counter = iter(range(total))
    conn = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=conn) as session:

        async def one(i: int) -> None:
            nonlocal errors
            data = json.dumps(body_for(i)).encode()
            t0 = time.perf_counter()
            async with session.post(
                url, data=data, headers={"Content-Type": "application/json", **(headers or {})}
            ) as r:
                await r.read()
                if r.status != 200:
                    errors += 1
            latencies.append((time.perf_counter() - t0) * 1000)

        async def worker() -> None:
            for i in counter:
                await one(i)

        # warm-up
        for i in range(min(50, total)):
            await one(-1 - i)
        latencies.clear()
        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        seconds = time.perf_counter() - t0
    return LoadResult(name, total, seconds, latencies, errors)
