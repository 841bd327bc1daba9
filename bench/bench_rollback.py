"""Time from webhook accepted to rollback PATCH sent, and Kubernetes API requests per incident,
against the fake kube-apiserver (real kubernetes_asyncio client, real Medic pipeline in-process).

For N crash-looping pods of one Deployment (N = 3, 10, 30 by default) it posts one
KubePodCrashLooping alert per pod, measures the time from the 200 answer to the moment the
fake receives the rollback PATCH, and counts every API request the incident caused (resolution,
collectors, guards, the PATCH and the verification polls). Targets: < 1 s to the PATCH, and a
request count that does not grow with N.

    .venv/bin/python bench/bench_rollback.py [--pods 3 10 30] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.integration.crashloop_world import APP, crashloop_world


async def one(pods: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        surge = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": pods, "maxUnavailable": 0}}
        async with crashloop_world(Path(tmp), strategy=surge, replicas=pods, log_level="warning") as w:
            alerts = w.crash_alerts()
            assert len(alerts) == pods, (len(alerts), pods)
            before = len(w.kube.requests)
            await w.post(alerts)
            t0 = time.perf_counter()
            while w.kube.count("PATCH", rf"/deployments/{APP}$") == 0:
                if time.perf_counter() - t0 > 30:
                    raise RuntimeError("no rollback PATCH within 30 s")
                await asyncio.sleep(0.001)
            to_patch = time.perf_counter() - t0
            patch_index = next(i for i, r in enumerate(w.kube.requests) if r.method == "PATCH")
            await w.medic.drain()
            return {"pods": pods, "to_patch_ms": to_patch * 1000,
                    "requests_to_patch": patch_index - before + 1,
                    "requests_total": len(w.kube.requests) - before}


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pods", type=int, nargs="+", default=[3, 10, 30])
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    rows = []
    for pods in args.pods:
        runs = [await one(pods) for _ in range(args.rounds)]
        row = {
            "pods": pods,
            "to_patch_ms_median": round(statistics.median(r["to_patch_ms"] for r in runs), 1),
            "to_patch_ms_max": round(max(r["to_patch_ms"] for r in runs), 1),
            "requests_to_patch": sorted({int(r["requests_to_patch"]) for r in runs}),
            "requests_total": sorted({int(r["requests_total"]) for r in runs}),
        }
        rows.append(row)
        print(f"{pods:3} crash-looping pods: accepted -> PATCH median {row['to_patch_ms_median']} ms "
              f"(max {row['to_patch_ms_max']}), API requests up to the PATCH {row['requests_to_patch']}, "
              f"whole incident incl. verification {row['requests_total']}")
    print(json.dumps(rows))


if __name__ == "__main__":
    asyncio.run(main())
