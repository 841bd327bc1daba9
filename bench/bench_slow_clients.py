"""Slow clients against a real Medic (issue 11.9: 2,000 trickling connections were held for 150 s).

Opens ``--connections`` connections that send their request a byte every ``--every`` seconds:
a third trickle a webhook body, a third the approval form, a third their request head. Meanwhile a
probe asks ``/healthz`` and posts a real webhook delivery every ``--probe-every`` seconds. Prints
how long the server held the connections (closed by the server, by kind), what it answered, and
the probe's latencies while they were held.

    .venv/bin/python bench/bench_slow_clients.py [--connections 2000] [--every 1]
        [--body-read-timeout 10s] [--keepalive-timeout 30s] [--give-up 150]

Client and server share this process (Medic runs in a thread): times include that contention.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.fuzz_http import READ, WEBHOOK, medic_thread
from tests.payloads import alert, payload
from tests.rawhttp import parse_response, raw_request, trickle_bytes

from medic.app.logging import configure_logging

BODY = json.dumps(payload([alert("PlayCodeHighLatency", namespace="playcode", deployment="slow")])).encode()
FORM = b"approval=x&by=alice&reason=" + b"r" * 200


def _head(path: str, token: str, ctype: str, length: int) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: {ctype}\r\nContent-Length: {length}\r\n\r\n"
    ).encode()


KINDS = {
    "webhook body": (_head("/api/v1/alerts", WEBHOOK, "application/json", len(BODY)), BODY),
    "approval form": (
        _head("/incidents/x/approve", READ, "application/x-www-form-urlencoded", len(FORM)),
        FORM,
    ),
    "request head": (b"POST /api/v1/alerts HTTP/1.1\r\nHost: 127.0.0.1\r\n", b"X-Slow: " + b"s" * 400),
}


async def probe(port: int, stop: asyncio.Event, every: float) -> tuple[list[float], list[float], int]:
    health, webhook, accepted = [], [], 0
    auth = [(b"Authorization", f"Bearer {WEBHOOK}".encode()), (b"Content-Type", b"application/json")]
    n = 0
    while not stop.is_set():
        t0 = time.perf_counter()
        r = await raw_request(port, "GET", "/healthz")
        health.append(time.perf_counter() - t0)
        n += 1
        doc = payload([alert("PlayCodeHighLatency", namespace="playcode", deployment=f"probe-{n}")])
        t0 = time.perf_counter()
        r = await raw_request(port, "POST", "/api/v1/alerts", headers=auth, body=json.dumps(doc).encode())
        webhook.append(time.perf_counter() - t0)
        accepted += r.status == 200
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every)
    return health, webhook, accepted


def _ms(values: list[float]) -> str:
    if not values:
        return "none"
    q = statistics.quantiles(values, n=100, method="inclusive") if len(values) > 1 else values * 99
    p50, p99, top = q[49] * 1000, q[98] * 1000, max(values) * 1000
    return f"p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {top:.1f} ms (n={len(values)})"


async def run(port: int, args: argparse.Namespace) -> None:
    kinds = list(KINDS)
    stop = asyncio.Event()
    prober = asyncio.create_task(probe(port, stop, args.probe_every))
    started = time.perf_counter()
    tasks = []
    for i in range(args.connections):
        kind = kinds[i % len(kinds)]
        head, body = KINDS[kind]
        tasks.append(
            (
                kind,
                asyncio.create_task(trickle_bytes(port, head, body, every=args.every, give_up=args.give_up)),
            )
        )
        if i % 100 == 99:
            await asyncio.sleep(0.05)  # open them over a moment, as a real crowd would
    results = [(kind, await task) for kind, task in tasks]
    stop.set()
    health, webhook, accepted = await prober
    took = time.perf_counter() - started

    print(f"{args.connections} slow connections (a byte every {args.every:g} s), all done in {took:.1f} s")
    for kind in kinds:
        mine = [r for k, r in results if k == kind]
        held = [t for _, t, closed in mine if closed]
        answers = collections.Counter(
            parse_response(data).status if data else "closed, no answer" for data, _, _ in mine
        )
        open_still = sum(1 for _, _, closed in mine if not closed)
        span = (
            f"held {min(held):.1f}-{max(held):.1f} s (median {statistics.median(held):.1f} s)"
            if held
            else "none closed by the server"
        )
        still = f"still open after {args.give_up:g} s: {open_still}"
        print(f"  {kind:14} {len(mine)}: {span}, answers {dict(answers)}, {still}")
    print(f"  /healthz meanwhile: {_ms(health)}")
    print(f"  webhook deliveries meanwhile: {accepted}/{len(webhook)} accepted, {_ms(webhook)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=2000)
    parser.add_argument("--every", type=float, default=1.0, help="seconds between two bytes")
    parser.add_argument("--body-read-timeout", default="10s")
    parser.add_argument("--keepalive-timeout", default="30s")
    parser.add_argument("--give-up", type=float, default=150.0, help="stop waiting for a close after")
    parser.add_argument("--probe-every", type=float, default=0.5)
    args = parser.parse_args()
    configure_logging("json", "warning")
    logging.getLogger("aiohttp.server").setLevel(logging.CRITICAL)
    with (
        tempfile.TemporaryDirectory() as tmp,
        medic_thread(
            Path(tmp), body_read_timeout=args.body_read_timeout, keepalive_timeout=args.keepalive_timeout
        ) as server,
    ):
        asyncio.run(run(server.port, args))


if __name__ == "__main__":
    main()
