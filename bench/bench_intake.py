"""Webhook acknowledge throughput and latency: Medic (durable accept) vs a bare aiohttp handler.

Both servers run as separate processes on 127.0.0.1 and get the same closed-loop load from this
process (same payloads, same concurrency), in the same run. Every Medic request carries a new
alert episode, so every one is a real durable insert (SQLite, synchronous=FULL, group commit).

    .venv/bin/python bench/bench_intake.py [--requests 5000] [--concurrency 64] [--targets 1]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.payloads import alert, payload

from bench._load import run_load

REPO = Path(__file__).resolve().parents[1]

BARE = """
import sys
from aiohttp import web
async def ok(request):
    await request.read()
    return web.json_response({"status": "accepted"})
app = web.Application()
app.router.add_post("/api/v1/alerts", ok)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, within: float = 20) -> None:
    end = time.time() + within
    while time.time() < end:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def body(i: int, targets: int = 1) -> dict[str, Any]:
    """One new alert episode; spread over ``targets`` Deployments (one incident each)."""
    return payload(
        [
            alert(
                "PlayCodeHighLatency",
                namespace="playcode",
                deployment="playcode-app" if targets == 1 else f"playcode-app-{i % targets}",
                fingerprint=f"bench{i:08d}",
            )
        ]
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=5000)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--targets", type=int, default=1, help="Deployments the alerts are spread over")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        bare_port, medic_port = free_port(), free_port()
        env = {
            **os.environ,
            "MEDIC_HOST": "127.0.0.1",
            "MEDIC_PORT": str(medic_port),
            "MEDIC_DATA_DIR": tmp,
            "MEDIC_LOG_LEVEL": "info",
            "MEDIC_LOG_FORMAT": "json",
            "MEDIC_KUBE_MODE": "off",
        }
        procs = [
            subprocess.Popen([sys.executable, "-c", BARE, str(bare_port)]),
            subprocess.Popen(
                [str(Path(sys.executable).with_name("medic")), "serve"], env=env, stderr=subprocess.DEVNULL
            ),
        ]
        try:
            wait_port(bare_port)
            wait_port(medic_port)
            bare = asyncio.run(
                run_load(
                    "bare aiohttp handler",
                    f"http://127.0.0.1:{bare_port}/api/v1/alerts",
                    body,
                    total=args.requests,
                    concurrency=args.concurrency,
                )
            )
            medic = asyncio.run(
                run_load(
                    "medic (durable accept)",
                    f"http://127.0.0.1:{medic_port}/api/v1/alerts",
                    lambda i: body(i + 10_000_000, args.targets),
                    total=args.requests,
                    concurrency=args.concurrency,
                )
            )
        finally:
            for p in procs:
                p.terminate()
                p.wait(10)
    print(
        f"{args.requests} requests, concurrency {args.concurrency}, {args.targets} target(s), "
        f"{os.cpu_count()} cores"
    )
    for r in (bare, medic):
        print(r.line())
    ratio = medic.rps / bare.rps
    print(f"medic / bare throughput: {ratio:.0%} (target >= 50%)")
    print(json.dumps({"results": [r.as_dict() for r in (bare, medic)], "ratio": round(ratio, 3)}))


if __name__ == "__main__":
    main()
