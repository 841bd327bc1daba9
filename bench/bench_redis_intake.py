"""Webhook acknowledge throughput and latency with the production backends (Redis + MongoDB) vs a
bare aiohttp handler, and the embedded SQLite backend for reference, in the same run (one after
the other; each Medic is stopped before the next measurement).

Every server is a separate process on 127.0.0.1: a real Redis (AOF on, ``appendfsync
everysec``, the production setting), the MongoDB fake (Medic's incident store; intake does not
touch it, the workers do), the bare handler and Medic. All get the same closed-loop load from this
process (same payloads, same concurrency). Every Medic request carries a new alert episode, so
every one is a real accept: the dedup check + XADD Lua script (Redis) or a synchronous SQLite
commit (embedded). Medic's workers run meanwhile, as in production. The load comes from ``wrk``
(see bench/_wrk.py).

    .venv/bin/python bench/bench_redis_intake.py [--seconds 10] [--connections 64]
"""

from __future__ import annotations

import argparse
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

from tests.servers.process import require_binary
from tests.servers.redis_server import REDIS_BIN, REDIS_PACKAGE

from bench._wrk import BARE, free_port, wait_http, wrk

MONGO = """
import asyncio, sys
from tests.fakes.mongo_server import FakeMongoServer
async def main():
    async with FakeMongoServer(port=int(sys.argv[1])):
        await asyncio.Event().wait()
asyncio.run(main())
"""

REPO = Path(__file__).resolve().parents[1]


def medic_env(tmp: str, port: int, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEDIC_")}
    return env | {
        "MEDIC_HOST": "127.0.0.1",
        "MEDIC_PORT": str(port),
        "MEDIC_DATA_DIR": tmp,
        "MEDIC_LOG_LEVEL": "warning",
        "MEDIC_LOG_FORMAT": "json",
        "MEDIC_KUBE_MODE": "off",
        **extra,
    }


def wait_port(port: int, within: float = 20) -> None:
    end = time.time() + within
    while time.time() < end:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def measure(args: argparse.Namespace) -> list[tuple[str, dict[str, Any]]]:
    procs: list[subprocess.Popen[bytes]] = []
    with (
        tempfile.TemporaryDirectory() as tmp_redis_data,
        tempfile.TemporaryDirectory() as tmp_redis,
        tempfile.TemporaryDirectory() as tmp_sqlite,
    ):
        try:
            ports = [free_port() for _ in range(5)]
            redis_port, bare_port, mongo_port, redis_medic_port, sqlite_medic_port = ports
            redis_argv = [
                require_binary(REDIS_BIN, debian_package=REDIS_PACKAGE, fallback_names=("redis-server",)),
                "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "yes", "--appendfsync", "everysec", "--dir", tmp_redis_data,
            ]  # fmt: skip
            procs.append(subprocess.Popen(redis_argv, stdout=subprocess.DEVNULL))
            procs.append(subprocess.Popen([sys.executable, "-c", BARE, str(bare_port)]))
            procs.append(subprocess.Popen([sys.executable, "-c", MONGO, str(mongo_port)], cwd=REPO))
            wait_port(redis_port)
            wait_port(mongo_port)
            backends = {
                "MEDIC_REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
                "MEDIC_MONGO_URL": f"mongodb://127.0.0.1:{mongo_port}/?directConnection=true",
            }
            medic = str(Path(sys.executable).with_name("medic"))
            url = "http://127.0.0.1:{}/api/v1/alerts"
            load = {"threads": args.threads, "connections": args.connections, "seconds": args.seconds}
            wait_port(bare_port)
            results = [("bare aiohttp handler", wrk(url.format(bare_port), prefix="b", targets=1, **load))]
            runs = [
                ("medic redis+mongo", medic_env(tmp_redis, redis_medic_port, **backends), redis_medic_port),
                ("medic sqlite (reference)", medic_env(tmp_sqlite, sqlite_medic_port), sqlite_medic_port),
            ]
            for n, (name, env, port) in enumerate(runs, start=1):
                server = subprocess.Popen([medic, "serve"], env=env)
                procs.append(server)
                wait_http(f"http://127.0.0.1:{port}/readyz")
                results.append((name, wrk(url.format(port), prefix=f"m{n}-", targets=1, **load)))
                server.terminate()  # its workers must not compete with the next measurement
                server.wait(30)
            return results
        finally:
            for p in reversed(procs):
                p.terminate()
                p.wait(10)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=int, default=10, help="length of each wrk run")
    ap.add_argument("--threads", type=int, default=2, help="wrk threads")
    ap.add_argument("--connections", type=int, default=64, help="wrk connections")
    args = ap.parse_args()
    results = measure(args)
    (_, bare), (_, redis), (_, sqlite) = results
    print(f"wrk -t{args.threads} -c{args.connections} -d{args.seconds}s, {os.cpu_count()} cores")
    for name, r in results:
        print(
            f"  {name:26} {r['rps']:>9.0f} req/s   p50 {r['p50_ms']:.1f} ms   p99 {r['p99_ms']:.1f} ms"
            f"   non-2xx {r['non_2xx']}"
        )
    print(f"  medic redis+mongo / bare throughput: {redis['rps'] / bare['rps']:.2f}x")
    print(f"  medic sqlite / bare throughput:      {sqlite['rps'] / bare['rps']:.2f}x")
    print(json.dumps({"results": dict(results), "redis_ratio": round(redis["rps"] / bare["rps"], 3)}))


if __name__ == "__main__":
    main()
