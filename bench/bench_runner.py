"""Overhead of the playbook runner over its slowest collector.

Runs N concurrent collectors that each sleep (the slowest for 200 ms), through the real runner
(timeouts, redaction, size cap, Evidence), many times, and reports wall time minus the slowest
collector's sleep: the runner's own overhead. Target: < 20 ms.

    .venv/bin/python bench/bench_runner.py [--collectors 12] [--rounds 50]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

from medic.app.backends import Backends
from medic.app.settings import Settings
from medic.playbooks.contract import CollectorDef, NoParams, StepContext
from medic.playbooks.runner import PlannedStep, run_steps

SLOWEST = 0.200


class Payload(BaseModel):
    model_config = ConfigDict(extra="allow")


def collector(seconds: float) -> Any:
    async def fn(_: StepContext, __: NoParams) -> Payload:
        await asyncio.sleep(seconds)
        # realistic payload: a pod description-sized dict with a few secrets to redact
        return Payload(
            **{
                "pods": [
                    {
                        "name": f"p{i}",
                        "env": [{"name": "DB_PASSWORD", "value": "x"}],
                        "lines": ["GET /api 200 12ms"] * 50,
                    }
                    for i in range(5)
                ]
            }
        )

    return fn


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--collectors", type=int, default=12)
    ap.add_argument("--rounds", type=int, default=50)
    args = ap.parse_args()
    ctx = StepContext(
        target=None,
        labels={},
        alerts=[],
        backends=Backends(Settings().diagnosed),
        now=datetime.now(UTC),
        timeout=5,
    )
    steps = [
        PlannedStep(
            f"c{i}",
            CollectorDef(f"c{i}", collector(SLOWEST * (i + 1) / args.collectors), NoParams, "", Payload),
            NoParams(),
            5.0,
        )
        for i in range(args.collectors)
    ]
    overheads = []
    for _ in range(args.rounds):
        t0 = time.perf_counter()
        await run_steps(steps, ctx, deadline=10, max_bytes=256 * 1024)
        overheads.append((time.perf_counter() - t0 - SLOWEST) * 1000)
    overheads.sort()
    result = {
        "collectors": args.collectors,
        "rounds": args.rounds,
        "slowest_ms": SLOWEST * 1000,
        "overhead_median_ms": round(statistics.median(overheads), 2),
        "overhead_p95_ms": round(overheads[int(0.95 * len(overheads)) - 1], 2),
        "overhead_max_ms": round(overheads[-1], 2),
    }
    print(
        f"{args.collectors} collectors, slowest {SLOWEST * 1000:.0f} ms, {args.rounds} rounds: "
        "runner overhead "
        f"median {result['overhead_median_ms']} ms, p95 {result['overhead_p95_ms']} ms, "
        f"max {result['overhead_max_ms']} ms (target < 20 ms)"
    )
    print(json.dumps(result))


if __name__ == "__main__":
    asyncio.run(main())
