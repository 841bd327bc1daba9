"""Webhook acknowledgement: Medic (durable accept) against a bare aiohttp handler, in one run,
with a native load generator (``wrk``, Debian package) so that the client is not the bottleneck.

Three measurements, side by side:

1. **throughput**: ``wrk`` closed loop (``--threads``, ``--connections``, ``--seconds``) on the
   bare handler, then on Medic; every Medic request carries a new alert episode (a Lua script
   numbers the fingerprints), so every one is a real durable insert. Ratio = Medic / bare.
2. **paced latency**: ``--rate`` requests/s spread evenly over the connections (wrk's ``delay()``),
   p50/p99 of Medic's answers while it has nothing else to do.
3. **paced latency during a storm**: ``--storm-targets`` Deployments get one alert each first
   (each one an incident with a diagnosis: the high-latency playbook's Prometheus queries against
   a real Prometheus when ``prometheus`` is installed), then the same paced load runs while those
   diagnoses are under way; the inbox depth before and after shows they overlapped.

    .venv/bin/python bench/bench_intake.py [--seconds 10] [--connections 64] [--rate 500]
        [--storm-targets 500] [--workers N]

wrk measures latency from the request it sends (no correction for coordinated omission); at a
paced rate far below the server's capacity that is what a client sees.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
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
    args = ap.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: apt-get install wrk")

    with tempfile.TemporaryDirectory() as tmp:
        loop = asyncio.new_event_loop()
        prometheus = loop.run_until_complete(start_prometheus(tmp))
        bare_port, medic_port = free_port(), free_port()
        env = {
            **os.environ,
            "MEDIC_HOST": "127.0.0.1",
            "MEDIC_PORT": str(medic_port),
            "MEDIC_DATA_DIR": str(Path(tmp) / "data"),
            "MEDIC_LOG_LEVEL": "warning",
            "MEDIC_LOG_FORMAT": "json",
            "MEDIC_KUBE_MODE": "off",
        }
        if prometheus is not None:
            env["MEDIC_PROMETHEUS_URL"] = prometheus.url
        if args.workers:
            env["MEDIC_WORKERS"] = str(args.workers)
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
            bare = wrk(bare_url + "/api/v1/alerts", prefix="b", targets=1, **load)
            medic = wrk(medic_url + "/api/v1/alerts", prefix="m", targets=1, **load)
            settle(medic_url)
            paced = {
                "threads": args.threads,
                "connections": args.paced_connections,
                "seconds": args.seconds,
                "delay_ms": args.paced_connections / args.rate * 1000,
            }
            quiet = wrk(medic_url + "/api/v1/alerts", prefix="q", targets=1, **paced)
            settle(medic_url)
            # the storm: one alert for each of N targets (N incidents, N diagnoses), sent first
            # (set-up, not measured), then the paced load while they are being diagnosed
            fire_storm(medic_url, args.storm_targets)
            before = diagnosis_progress(medic_url)
            storm = wrk(medic_url + "/api/v1/alerts", prefix="p", targets=1, **paced)
            after = diagnosis_progress(medic_url)
        finally:
            for p in procs:
                p.terminate()
                try:
                    p.wait(30)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
            if prometheus is not None:
                loop.run_until_complete(prometheus.stop())
            loop.close()

    ratio = medic["rps"] / bare["rps"]
    print(
        f"wrk -t{args.threads} -c{args.connections} -d{args.seconds}s, {os.cpu_count()} cores, "
        f"diagnoses against {'a real Prometheus' if prometheus is not None else 'no backend'}"
    )
    print(f"  bare aiohttp handler      {bare['rps']:>9.0f} req/s   p99 {bare['p99_ms']:.1f} ms")
    print(
        f"  medic (durable accept)    {medic['rps']:>9.0f} req/s   p99 {medic['p99_ms']:.1f} ms"
        f"   non-2xx {medic['non_2xx']}"
    )
    print(f"  medic / bare throughput   {ratio:.2f}x (target >= 0.35x, stretch 0.5x)")
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
    print(
        json.dumps(
            {
                "bare": bare,
                "medic": medic,
                "ratio": round(ratio, 3),
                "paced_idle": quiet,
                "paced_storm": storm,
                "storm_progress": [before, after],
            }
        )
    )


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
