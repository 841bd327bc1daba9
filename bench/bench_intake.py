"""Webhook acknowledgement: Medic (durable accept) against a bare aiohttp handler, in one run,
with a native load generator (``wrk``, Debian package) so that the client is not the bottleneck.

Three measurements, side by side:

1. **throughput**: ``wrk`` closed loop (``--threads``, ``--connections``, ``--seconds``) on the
   bare handler, then on Medic; every Medic request carries a new alert episode (a Lua script
   numbers the fingerprints), so every one is a real durable insert. Ratio = Medic / bare.
   Each of Medic's runs alerts on a Deployment of its own (one incident each), so the incident
   the throughput run filled (its size depends on the throughput) does not weigh on the others.
2. **paced latency**: ``--rate`` requests/s over ``--paced-connections`` connections, p50/p99 of
   Medic's answers while it has nothing else to do. ``--pacing poisson`` (default): each
   connection waits a random time (exponential, mean connections / rate) after each answer, so
   arrivals are independent, as from many Alertmanager groups. ``--pacing fixed``: a fixed wait
   (wrk's plain ``delay()``); connections that start together stay in step, so the load is a
   burst of one delivery per connection (50 at once) every 100 ms: the same mean rate, but each
   burst queues behind itself.
3. **paced latency during a storm**: ``--storm-targets`` Deployments get one alert each first
   (each one an incident with a diagnosis: the high-latency playbook's Prometheus queries against
   a real Prometheus when ``prometheus`` is installed), then the same paced load runs while those
   diagnoses are under way; the inbox depth before and after shows they overlapped.

Each run starts its own bare handler and Medic; ``--runs N`` repeats the whole sequence and
prints the median of each figure, with the load average before each run (the machine may be
shared: read figures taken under load as upper bounds). Besides req/s, the CPU time the server
process used per request during the throughput runs (``/proc``; Medic's intake process, its
diagnosis child counted apart) is less sensitive to other work on the machine.

    .venv/bin/python bench/bench_intake.py [--seconds 10] [--connections 64] [--rate 500]
        [--storm-targets 500] [--workers N] [--runs 3] [--pacing poisson|fixed]

wrk measures latency from the request it sends (no correction for coordinated omission); at a
paced rate far below the server's capacity that is what a client sees.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench._wrk import BARE, free_port, inbox_depth, wait_http, wrk  # noqa: E402


async def start_prometheus(tmp: str) -> Any:
    """A real, empty Prometheus for the diagnoses' queries (None when it is not installed)."""
    if shutil.which("prometheus") is None:
        return None
    from tests.servers.prometheus import PrometheusServer

    server = PrometheusServer()
    await server.start()
    return server


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=int, default=10, help="length of each wrk run")
    ap.add_argument("--threads", type=int, default=2, help="wrk threads")
    ap.add_argument("--connections", type=int, default=64, help="wrk connections (throughput runs)")
    ap.add_argument("--rate", type=int, default=500, help="paced request rate for the latency runs")
    ap.add_argument("--paced-connections", type=int, default=50, help="connections of the paced runs")
    ap.add_argument("--storm-targets", type=int, default=500, help="targets diagnosed during the storm run")
    ap.add_argument("--workers", type=int, default=0, help="MEDIC_WORKERS (0: Medic's default)")
    ap.add_argument("--runs", type=int, default=1, help="repeat the whole sequence; medians are printed")
    ap.add_argument(
        "--pacing",
        choices=("poisson", "fixed"),
        default="poisson",
        help="paced runs: random waits (independent arrivals) or fixed waits (bursts)",
    )
    args = ap.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: apt-get install wrk")

    loop = asyncio.new_event_loop()
    with tempfile.TemporaryDirectory() as tmp:
        prometheus = loop.run_until_complete(start_prometheus(tmp))
        try:
            runs = []
            for n in range(args.runs):
                runs.append(one_run(args, prometheus, Path(tmp) / f"data-{n}"))
                report(args, runs[-1], prometheus is not None, title=f"run {n + 1} of {args.runs}")
        finally:
            if prometheus is not None:
                loop.run_until_complete(prometheus.stop())
            loop.close()
    if len(runs) > 1:
        report(args, median_run(runs), prometheus is not None, title=f"median of {len(runs)} runs")
    print(json.dumps({"runs": runs}))


def one_run(args: argparse.Namespace, prometheus: Any, data_dir: Path) -> dict[str, Any]:
    """The whole sequence once, on a fresh bare handler and a fresh Medic."""
    bare_port, medic_port = free_port(), free_port()
    env = {
        **os.environ,
        "MEDIC_HOST": "127.0.0.1",
        "MEDIC_PORT": str(medic_port),
        "MEDIC_DATA_DIR": str(data_dir),
        "MEDIC_LOG_LEVEL": "warning",
        "MEDIC_LOG_FORMAT": "json",
        "MEDIC_KUBE_MODE": "off",
    }
    if prometheus is not None:
        env["MEDIC_PROMETHEUS_URL"] = prometheus.url
    if args.workers:
        env["MEDIC_WORKERS"] = str(args.workers)
    load_before = os.getloadavg()[0]
    procs = [
        subprocess.Popen([sys.executable, "-c", BARE, str(bare_port)]),
        subprocess.Popen(
            [str(Path(sys.executable).with_name("medic")), "serve"], env=env, stderr=subprocess.DEVNULL
        ),
    ]
    bare_url, medic_url = f"http://127.0.0.1:{bare_port}", f"http://127.0.0.1:{medic_port}"
    try:
        wait_http(medic_url + "/readyz")
        time.sleep(0.5)
        load = {"threads": args.threads, "connections": args.connections, "seconds": args.seconds}
        bare, bare_cpu = cpu_during(
            [procs[0].pid], lambda: wrk(bare_url + "/api/v1/alerts", prefix="b", targets=1, **load)
        )
        medic, medic_cpu = cpu_during(
            [procs[1].pid, *children(procs[1].pid)],
            lambda: wrk(medic_url + "/api/v1/alerts", prefix="m", targets=1, deployment="bench-tp", **load),
        )
        settle(medic_url)
        paced = {
            "threads": args.threads,
            "connections": args.paced_connections,
            "seconds": args.seconds,
            "delay_ms": args.paced_connections / args.rate * 1000,
            "poisson": args.pacing == "poisson",
        }
        quiet = wrk(medic_url + "/api/v1/alerts", prefix="q", targets=1, deployment="bench-idle", **paced)
        settle(medic_url)
        # the storm: one alert for each of N targets (N incidents, N diagnoses), sent first
        # (set-up, not measured), then the paced load while they are being diagnosed
        fire_storm(medic_url, args.storm_targets)
        before = diagnosis_progress(medic_url)
        storm = wrk(medic_url + "/api/v1/alerts", prefix="p", targets=1, deployment="bench-storm", **paced)
        after = diagnosis_progress(medic_url)
    finally:
        for p in procs:
            p.terminate()
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
    return {
        "load_before": round(load_before, 2),
        "load_after": round(os.getloadavg()[0], 2),
        "bare": bare,
        "medic": medic,
        "ratio": round(medic["rps"] / bare["rps"], 3),
        "cpu_ms_per_request": {
            "bare": per_request(bare_cpu[0], bare),
            "intake": per_request(medic_cpu[0], medic),
            "diagnosis": per_request(sum(medic_cpu[1:]), medic),
        },
        "paced_idle": quiet,
        "paced_storm": storm,
        "storm_progress": [before, after],
    }


def report(args: argparse.Namespace, run: dict[str, Any], real_prometheus: bool, *, title: str) -> None:
    bare, medic, quiet, storm = run["bare"], run["medic"], run["paced_idle"], run["paced_storm"]
    before, after = run["storm_progress"]
    cpu = run["cpu_ms_per_request"]
    print(
        f"{title}: wrk -t{args.threads} -c{args.connections} -d{args.seconds}s, {os.cpu_count()} cores, "
        f"load average {run['load_before']} before, {run['load_after']} after; "
        f"diagnoses against {'a real Prometheus' if real_prometheus else 'no backend'}"
    )
    print(f"  bare aiohttp handler      {bare['rps']:>9.0f} req/s   p99 {bare['p99_ms']:.1f} ms")
    print(
        f"  medic (durable accept)    {medic['rps']:>9.0f} req/s   p99 {medic['p99_ms']:.1f} ms"
        f"   non-2xx {medic['non_2xx']}"
    )
    print(f"  medic / bare throughput   {run['ratio']:.2f}x (target >= 0.35x, stretch 0.5x)")
    print(
        f"  CPU per request           bare {cpu['bare']:.3f} ms, medic intake {cpu['intake']:.3f} ms "
        f"(+ diagnosis process {cpu['diagnosis']:.3f} ms)"
    )
    print(f"  paced runs: {args.rate} req/s over {args.paced_connections} connections, {args.pacing} pacing")
    print(
        f"  paced {args.rate} req/s, idle:  p50 {quiet['p50_ms']:.1f} ms  p99 {quiet['p99_ms']:.1f} ms  "
        f"({quiet['rps']:.0f} req/s served)"
    )
    print(
        f"  paced {args.rate} req/s, storm: p50 {storm['p50_ms']:.1f} ms  p99 {storm['p99_ms']:.1f} ms  "
        f"({storm['rps']:.0f} req/s served) (target p99 < 20 ms)"
    )
    print(
        f"    during it: {args.storm_targets} targets, diagnosed {before['diagnosed']} -> "
        f"{after['diagnosed']}, inbox depth {before['depth']} -> {after['depth']}"
    )


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Each figure's median over the runs (figures of one run do not stay together)."""

    def median(values: list[Any]) -> Any:
        if isinstance(values[0], dict):
            return {key: median([v[key] for v in values]) for key in values[0]}
        if isinstance(values[0], list):
            return [median([v[i] for v in values]) for i in range(len(values[0]))]
        if isinstance(values[0], bool) or not isinstance(values[0], (int, float)):
            return values[0]
        if isinstance(values[0], int):
            return statistics.median_low(values)  # a count: one that was observed
        return round(statistics.median(values), 3)

    return median(runs)  # type: ignore[no-any-return]


def children(pid: int) -> list[int]:
    """The direct children of ``pid`` (Medic's diagnosis process)."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as fh:
            return [int(p) for p in fh.read().split()]
    except OSError:
        return []


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (0 where /proc is not there)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_during(pids: list[int], run: Any) -> tuple[dict[str, Any], list[float]]:
    """``run()``'s result and the CPU seconds each of ``pids`` used meanwhile."""
    before = [cpu_seconds(p) for p in pids]
    result = run()
    return result, [cpu_seconds(p) - b for p, b in zip(pids, before, strict=True)]


def per_request(seconds: float, result: dict[str, Any]) -> float:
    return round(seconds / max(1, result["requests"]) * 1000, 4)


def fire_storm(medic_url: str, targets: int) -> None:
    """One new alert for each of ``targets`` Deployments (set-up: 8 plain clients, not timed)."""
    from concurrent.futures import ThreadPoolExecutor

    from tests.payloads import alert, payload

    def send(n: int) -> None:
        body = payload([alert("PlayCodeHighLatency", namespace="playcode", deployment=f"storm-{n}")])
        request = urllib.request.Request(
            f"{medic_url}/api/v1/alerts",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as resp:
            assert resp.status == 200

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(send, range(targets)))


def diagnosis_progress(medic_url: str) -> dict[str, int]:
    """How many incidents are diagnosed, and the inbox's depth, now."""
    with urllib.request.urlopen(f"{medic_url}/api/v1/incidents?limit=500", timeout=10) as resp:
        items = json.loads(resp.read())["items"]
    return {"diagnosed": sum(i["phase"] == "diagnosed" for i in items), "depth": inbox_depth(medic_url)}


def settle(medic_url: str, within: float = 120) -> None:
    """Wait for Medic's inbox to drain, so one run's backlog does not weigh on the next."""
    end = time.time() + within
    while time.time() < end and inbox_depth(medic_url) > 0:
        time.sleep(0.5)


if __name__ == "__main__":
    main()
