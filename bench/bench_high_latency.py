"""Wall time of the shipped ``high-latency`` playbook: all collectors at once vs the slowest alone.

Runs against local servers: a real Prometheus with backfilled PlayCode series (promtool), a real
redis-server, and the OP_MSG fake MongoDB and the fake Loki in a child process of their own (so
their CPU work is not charged to Medic's event loop). Two scenarios: the backends as they are, and
with injected backend latency (MongoDB currentOp/profile and Loki answer slowly), which is when
concurrency matters. Target: the concurrent run within 10% or 20 ms of the slowest single step;
the exit status reflects the second scenario (with fast local backends the run is bound by Medic's
own CPU, which the first scenario prints next to the wall time).

    .venv/bin/python bench/bench_high_latency.py [--rounds 7]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import statistics
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.fakes.loki import FakeLoki, now_ns  # noqa: E402
from tests.fakes.mongo_server import FakeMongoServer, slow_collscan_fixtures  # noqa: E402
from tests.servers.playcode_series import Timeline, http_requests, latency_histogram  # noqa: E402
from tests.servers.prometheus import PrometheusServer  # noqa: E402
from tests.servers.redis_server import RedisServer  # noqa: E402

from medic.app.backends import Backends  # noqa: E402
from medic.app.catalogue import default_registry  # noqa: E402
from medic.app.config import load_config  # noqa: E402
from medic.app.settings import Settings  # noqa: E402
from medic.domain.incident import Target  # noqa: E402
from medic.playbooks.compiled import CompiledPlaybook  # noqa: E402
from medic.playbooks.contract import StepContext  # noqa: E402
from medic.playbooks.runner import PlannedStep, run_steps  # noqa: E402

APP = Target(kind="deployment", namespace="playcode", name="playcode-app")


async def timed(fn: Callable[[], Awaitable[object]], rounds: int) -> tuple[list[float], list[float]]:
    """Wall times and Medic's CPU times (this process, all threads), in ms."""
    wall, cpu = [], []
    for _ in range(rounds):
        t0, c0 = time.perf_counter(), time.process_time()
        await fn()
        wall.append((time.perf_counter() - t0) * 1000)
        cpu.append((time.process_time() - c0) * 1000)
    return wall, cpu


async def measure(
    pb: CompiledPlaybook, backends: Backends, rounds: int
) -> tuple[float, float, dict[str, float]]:
    # No kube-apiserver here: the Kubernetes steps (kubectl top pods / get hpa) are left out.
    steps = [
        PlannedStep(s.step_id, s.collector, s.params, 15)
        for s in pb.steps
        if not s.step_id.startswith("k8s.")
    ]

    def run(selected: list[PlannedStep]) -> Callable[[], Awaitable[object]]:
        async def go() -> None:
            ctx = StepContext(APP, {"namespace": "playcode"}, [], backends, datetime.now(UTC), 15)
            evidence = await run_steps(selected, ctx, deadline=30, max_bytes=256 * 1024)
            bad = [f"{e.step}: {e.status.value} {e.error}" for e in evidence if not e.ok]
            if bad:
                raise RuntimeError("; ".join(bad))

        return go

    await run(steps)()  # warm-up: connections, pools
    wall, cpu = await timed(run(steps), rounds)
    singles = {s.step_id: statistics.median((await timed(run([s]), rounds))[0]) for s in steps}
    return statistics.median(wall), statistics.median(cpu), singles


def report(title: str, concurrent: float, cpu: float, singles: dict[str, float]) -> bool:
    slowest_step, slowest = max(singles.items(), key=lambda kv: kv[1])
    over = concurrent - slowest
    ok = over <= max(0.10 * slowest, 20.0)
    print(f"\n{title}")
    for step, ms in sorted(singles.items(), key=lambda kv: -kv[1]):
        print(f"  {step:<22} alone  {ms:8.1f} ms")
    print(f"  {'sum of steps':<22}        {sum(singles.values()):8.1f} ms  (sequential would take this)")
    print(f"  {'all concurrently':<22}        {concurrent:8.1f} ms  (Medic's own CPU in it: {cpu:.1f} ms)")
    print(
        f"  slowest single step {slowest_step}: {slowest:.1f} ms; concurrent - slowest = {over:+.1f} ms "
        f"({over / slowest * 100:+.1f}%) -> {'within' if ok else 'OUTSIDE'} target (10% or 20 ms)"
    )
    if not ok and cpu >= 0.6 * concurrent:
        print(
            "  CPU-bound: Medic's own CPU time is most of the wall time, so the steps cannot overlap "
            "further on this machine; the waiting on backends is overlapped (see the next scenario)"
        )
    return ok


async def _serve_fakes(conn: Connection) -> None:
    async with FakeMongoServer() as mongo, FakeLoki() as loki:
        mongo.set_fixtures(slow_collscan_fixtures())
        labels = {"namespace": "playcode", "container": "playcode-app", "pod": "playcode-app-1"}
        loki.push(
            labels,
            [
                (now_ns() - i * 1_000_000_000, f'{{"level":"error","msg":"timeout {i}"}}')
                for i in range(1, 400)
            ],
        )
        conn.send((mongo.url, loki.url))
        loop = asyncio.get_running_loop()
        while (command := await loop.run_in_executor(None, conn.recv)) != "stop":
            if command == "slow":
                mongo.delay("currentOp", 0.30)
                mongo.delay("find", 0.20)
                loki.delay(0.40)
            conn.send("ok")


def _fakes_process(conn: Connection) -> None:
    asyncio.run(_serve_fakes(conn))


@asynccontextmanager
async def fakes() -> AsyncIterator[tuple[str, str, Callable[[str], None]]]:
    """The fake MongoDB and Loki in a child process: (mongo url, loki url, send command)."""
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_fakes_process, args=(child,), daemon=True)
    proc.start()

    def send(command: str) -> None:
        parent.send(command)
        if command != "stop":
            parent.recv()

    try:
        mongo_url, loki_url = await asyncio.get_running_loop().run_in_executor(None, parent.recv)
        yield mongo_url, loki_url, send
    finally:
        with suppress(OSError):
            parent.send("stop")
        proc.join(10)
        if proc.is_alive():
            proc.kill()


async def main(rounds: int) -> int:
    timeline = Timeline.recent(minutes=60)
    series = [
        *latency_histogram(timeline, p99=0.08, spike_p99=2.2),
        *http_requests(timeline, rps=20, error_ratio=0.001, spike_error_ratio=0.05),
    ]
    pb = load_config([ROOT / "rules"], [ROOT / "playbooks"], default_registry()).playbooks["high-latency"]
    async with (
        PrometheusServer(series) as prom,
        RedisServer() as redis_server,
        fakes() as (mongo_url, loki_url, send),
    ):
        settings = Settings(
            prometheus_url=prom.url,
            target_redis_url=redis_server.url,
            target_mongo_url=mongo_url,
            loki_url=loki_url,
        )
        backends = await Backends.from_settings(settings.diagnosed)
        try:
            print(f"high-latency playbook without its k8s.* steps, median of {rounds} rounds each")
            report(
                "backends as they are (informational: local backends answer in ~1 ms)",
                *await measure(pb, backends, rounds),
            )
            send("slow")
            ok = report(
                "with injected latency (currentOp 300 ms, profile read 200 ms, Loki 400 ms)",
                *await measure(pb, backends, rounds),
            )
        finally:
            await backends.close()
    return 0 if ok else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    sys.exit(asyncio.run(main(parser.parse_args().rounds)))
