"""Deploy verification latencies (issue 13), on the fake kube-apiserver (its controllers), a real
Prometheus (backfilled) and Medic in-process with its Deployment watch:

* **new revision → first evaluation**: from the moment the controller made a new revision
  current (``kubectl set image`` applied and rolled out) to the verification's first sample
  (the watch reports the revision, the incident opens, the verifier samples it);
* **failing evaluation → rollback PATCH**: from the sample that failed the verification (a 5xx
  ratio over ``fail_fast``) to the moment the fake receives the rollback PATCH (decision, guards,
  the executor's plan and write), in ``enforce`` with the rule in ``auto``.

    .venv/bin/python bench/bench_verification.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.integration.verify_world import APP, NS, Traffic, VerifyWorld, verify_world
from tests.servers.process import BaseServer
from tests.servers.prometheus import PrometheusServer

from medic.incidents.base import IncidentQuery


class Servers:
    """A prometheus_factory outside pytest: starts servers, closes them all at the end."""

    def __init__(self) -> None:
        self.started: list[BaseServer] = []

    async def __call__(self, series: Any = (), **kwargs: Any) -> PrometheusServer:
        server = PrometheusServer(series, **kwargs)
        self.started.append(server)
        await server.start()
        return server

    async def close(self) -> None:
        for server in reversed(self.started):
            await server.close()


async def _samples(w: VerifyWorld) -> list[Any]:
    page, _ = await w.medic.runtime.store.query(IncidentQuery(rule="deploy-verify", limit=10))
    return [s for i in page if i.verification for s in i.verification.samples]


async def to_first_evaluation(tmp: Path, servers: Servers) -> float:
    async with verify_world(tmp, servers, log_level="warning") as w:
        await w.kube.watching()
        w.kube.set_image(NS, APP, "registry.example/playcode-app:v3")
        await w.kube.settle()  # the controller made revision 3 current
        current = datetime.now(UTC)
        deadline = time.monotonic() + 30
        while not (samples := await _samples(w)):
            if time.monotonic() > deadline:
                raise RuntimeError("no evaluation within 30 s")
            await asyncio.sleep(0.005)
        return (samples[0].at - current).total_seconds() * 1000


async def to_rollback_patch(tmp: Path, servers: Servers) -> float:
    bad = Traffic(error_ratio=0.4)
    async with verify_world(
        tmp, servers, new=bad, mode="enforce", rule_mode="auto", window="60s", log_level="warning"
    ) as w:
        await w.request()
        deadline = time.monotonic() + 30
        while w.rollback_patches() == 0:
            if time.monotonic() > deadline:
                raise RuntimeError("no rollback PATCH within 30 s")
            await asyncio.sleep(0.001)
        patched = datetime.now(UTC)
        samples = await _samples(w)
        for _ in range(3000):  # stored once the action is recorded
            if samples:
                break
            await asyncio.sleep(0.01)
            samples = await _samples(w)
        failing = samples[-1]
        return (patched - failing.at).total_seconds() * 1000


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5, help="runs of each scenario (default 5)")
    args = ap.parse_args()
    servers = Servers()
    first: list[float] = []
    patch: list[float] = []
    try:
        for i in range(args.rounds):
            with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
                first.append(await to_first_evaluation(Path(a), servers))
                patch.append(await to_rollback_patch(Path(b), servers))
            print(
                f"round {i + 1}: new revision -> first evaluation {first[-1]:.0f} ms; "
                f"failing evaluation -> rollback PATCH {patch[-1]:.0f} ms",
                flush=True,
            )
    finally:
        await servers.close()
    result = {
        "rounds": args.rounds,
        "to_first_evaluation_ms": {"median": round(statistics.median(first)), "max": round(max(first))},
        "failing_evaluation_to_patch_ms": {
            "median": round(statistics.median(patch)),
            "max": round(max(patch)),
        },
    }
    print(json.dumps(result))


if __name__ == "__main__":
    asyncio.run(main())
