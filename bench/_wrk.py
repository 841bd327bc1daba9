"""HTTP load from ``wrk`` (Debian package), a native generator that does not saturate before the
server does, shared by the intake benchmarks: a bare aiohttp handler to compare against, a Lua
script that sends Alertmanager deliveries with a new fingerprint every time, and wrk's report
parsed into numbers."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import tempfile
import time
import urllib.request
from typing import Any

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
# spread over TARGETS Deployments; DELAY_MS > 0 paces every connection: a fixed wait after each
# answer (connections that start together stay in step: bursts of one request per connection),
# or with POISSON a random wait of that mean (exponential: independent arrivals at the same rate).
WRK_SCRIPT = """
local counter, thread_id = 0, 0
local next_id = 0
function setup(thread)
  next_id = next_id + 1
  thread:set("thread_id", next_id)
end
function init(args)
  math.randomseed(os.time() * 100 + thread_id)
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
  local target = DEPLOYMENT
  if TARGETS > 1 then target = DEPLOYMENT .. "-" .. (counter % TARGETS) end
  local body = string.format(template, target, PREFIX .. thread_id .. "x" .. counter)
  return wrk.format("POST", "/api/v1/alerts", {["Content-Type"] = "application/json"}, body)
end
function delay()
  if POISSON and DELAY_MS > 0 then return -DELAY_MS * math.log(1 - math.random()) end
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
    url: str,
    *,
    threads: int,
    connections: int,
    seconds: int,
    prefix: str,
    targets: int,
    delay_ms: float = 0,
    poisson: bool = False,
    deployment: str = "playcode-app",
) -> dict[str, Any]:
    """Run wrk once; requests/s, latency percentiles (ms) and non-2xx count from its report.
    The alerts name ``deployment`` (or ``deployment-<n>`` for ``targets`` > 1)."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as fh:
        settings = {
            "TARGETS": targets,
            "PREFIX": f'"{prefix}"',
            "DELAY_MS": delay_ms,
            "POISSON": "true" if poisson else "false",
            "DEPLOYMENT": f'"{deployment}"',
        }
        fh.write("".join(f"{name} = {value}\n" for name, value in settings.items()) + WRK_SCRIPT)
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
