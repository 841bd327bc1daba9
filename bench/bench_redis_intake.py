"""Webhook acknowledge throughput and latency with the production backends (Redis + MongoDB) vs a
bare aiohttp handler, and the embedded SQLite backend for reference, in the same run (one after
the other; each Medic is stopped before the next measurement).

Every server is a separate process on 127.0.0.1: a real Redis (AOF on, ``appendfsync
everysec``, the production setting), the MongoDB fake (Medic's incident store; intake does not
touch it, the workers do), the bare handler and Medic. All get the same closed-loop load from this
process (same payloads, same concurrency). Every Medic request carries a new alert episode, so
every one is a real accept: the dedup check + XADD Lua script (Redis) or a synchronous SQLite
commit (embedded). Medic's workers run meanwhile, as in production.

    .venv/bin/python bench/bench_redis_intake.py [--requests 5000] [--concurrency 64]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.servers.process import require_binary
from tests.servers.redis_server import REDIS_BIN, REDIS_PACKAGE

from bench._load import LoadResult, run_load
from bench.bench_intake import BARE, body, free_port, wait_port

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


def measure(args: argparse.Namespace) -> list[LoadResult]:
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
            load = {"total": args.requests, "concurrency": args.concurrency}
            wait_port(bare_port)
            results = [asyncio.run(run_load("bare aiohttp handler", url.format(bare_port), body, **load))]
            runs = [
                ("medic redis+mongo", medic_env(tmp_redis, redis_medic_port, **backends), redis_medic_port),
                ("medic sqlite (reference)", medic_env(tmp_sqlite, sqlite_medic_port), sqlite_medic_port),
            ]
            for n, (name, env, port) in enumerate(runs, start=1):
                server = subprocess.Popen([medic, "serve"], env=env)
                procs.append(server)
                wait_port(port)
                offset = n * 10_000_000  # new episodes only
                results.append(
                    asyncio.run(run_load(name, url.format(port), lambda i, o=offset: body(i + o), **load))
                )
                server.terminate()  # its workers must not compete with the next measurement
                server.wait(30)
            return results
        finally:
            for p in reversed(procs):
                p.terminate()
                p.wait(10)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=5000)
    ap.add_argument("--concurrency", type=int, default=64)
    args = ap.parse_args()
    results = measure(args)
    bare, redis, sqlite = results
    print(f"{args.requests} requests, concurrency {args.concurrency}, {os.cpu_count()} cores")
    for r in results:
        print(r.line())
    print(f"medic redis+mongo / bare throughput: {redis.rps / bare.rps:.0%}")
    print(f"medic sqlite / bare throughput:      {sqlite.rps / bare.rps:.0%}")
    print(
        json.dumps({"results": [r.as_dict() for r in results], "redis_ratio": round(redis.rps / bare.rps, 3)})
    )


if __name__ == "__main__":
    main()
