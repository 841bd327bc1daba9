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
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

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

# One Alertmanager v4 delivery per request, a new fingerprint each time (thread id + counter),
# spread over TARGETS Deployments; DELAY_MS > 0 paces every connection.
WRK_SCRIPT = """
local counter, thread_id = 0, 0
local next_id = 0
function setup(thread)
  next_id = next_id + 1
  thread:set("thread_id", next_id)
end
local template = '{"version":"4","groupKey":"{}:{alertname=\\\\"PlayCodeHighLatency\\\\"}",' ..
  '"truncatedAlerts":0,"status":"firing","receiver":"medic","groupLabels":{},"commonLabels":{},' ..
  '"commonAnnotations":{},"externalURL":"http://alertmanager.example","alerts":[{"status":"firing",' ..
  '"labels":{"alertname":"PlayCodeHighLatency","namespace":"playcode","deployment":"%s"},' ..
  '"annotations":{"summary":"p99 over 2s"},"startsAt":"2026-11-26T08:00:00Z",' ..
  '"endsAt":"0001-01-01T00:00:00Z","generatorURL":"http://prometheus.example/graph",' ..
  '"fingerprint":"%s"}]}'
function request()
  counter = counter + 1
  local target = "playcode-app"
  if TARGETS > 1 then target = "playcode-app-" .. (counter % TARGETS) end
  local body = string.format(template, target, PREFIX .. thread_id .. "x" .. counter)
  return wrk.format("POST", "/api/v1/alerts", {["Content-Type"] = "application/json"}, body)
end
function delay()
  return DELAY_MS
end
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, within: float = 30) -> None:
    end = time.time() + within
    while time.time() < end:
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer 200 within {within}s")


def wrk(
    url: str, *, threads: int, connections: int, seconds: int, prefix: str, targets: int, delay_ms: float = 0
) -> dict[str, Any]:
    """Run wrk once; requests/s, latency percentiles (ms) and non-2xx count from its report."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as fh:
        fh.write(f'TARGETS = {targets}\nPREFIX = "{prefix}"\nDELAY_MS = {delay_ms}\n' + WRK_SCRIPT)
        script = fh.name
    try:
        out = subprocess.run(
            ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", script, url],
            capture_output=True,
            text=True,
            timeout=seconds + 60,
            check=True,
        ).stdout
    finally:
        os.unlink(script)
    return parse_wrk(out)


def _ms(value: str, unit: str) -> float:
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def parse_wrk(out: str) -> dict[str, Any]:
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    pct = {p: _ms(v, u) for p, v, u in re.findall(r"^\s+(50|75|90|99)%\s+([\d.]+)(us|ms|s|m)\s*$", out, re.M)}
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    return {
        "rps": round(rps, 1),
        "requests": total,
        "p50_ms": pct.get("50"),
        "p99_ms": pct.get("99"),
        "non_2xx": int(bad.group(1)) if bad else 0,
        "socket_errors": errors.group(1).strip() if errors else "",
    }


def inbox_depth(medic_url: str) -> int:
    with urllib.request.urlopen(f"{medic_url}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    match = re.search(r"^medic_queue_depth ([\d.e+]+)$", text, re.M)
    return int(float(match.group(1))) if match else -1


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
            # the storm: one new incident (and its diagnosis) per target, then the paced load
            storm_load = {"threads": args.threads, "connections": 32, "seconds": 2}
            storm_fire = wrk(
                medic_url + "/api/v1/alerts", prefix="s", targets=args.storm_targets, **storm_load
            )
            depth_before = inbox_depth(medic_url)
            storm = wrk(medic_url + "/api/v1/alerts", prefix="p", targets=1, **paced)
            depth_after = inbox_depth(medic_url)
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
        f"({storm['rps']:.0f} req/s served; {storm_fire['requests']} storm alerts over "
        f"{args.storm_targets} targets; inbox depth {depth_before} -> {depth_after}) (target p99 < 20 ms)"
    )
    print(
        json.dumps(
            {
                "bare": bare,
                "medic": medic,
                "ratio": round(ratio, 3),
                "paced_idle": quiet,
                "storm_fire": storm_fire,
                "paced_storm": storm,
                "inbox_depth": [depth_before, depth_after],
            }
        )
    )


def settle(medic_url: str, within: float = 120) -> None:
    """Wait for Medic's inbox to drain, so one run's backlog does not weigh on the next."""
    end = time.time() + within
    while time.time() < end and inbox_depth(medic_url) > 0:
        time.sleep(0.5)


if __name__ == "__main__":
    main()
