"""An alert storm against a Medic cluster: time to drain, peak memory per replica, incidents and
actions counted.

N ``medic serve`` replicas (separate processes) share a real Redis (AOF on) and the MongoDB fake,
behind a round-robin balancer, against the fake kube-apiserver where every target is a
Deployment whose new revision crash-loops (mode enforce: each one should be rolled back once).
The storm is ``--alerts`` KubePodCrashLooping alerts spread over ``--targets`` Deployments,
``--per-request`` alerts to a notification, sent as fast as the replicas accept them.

    .venv/bin/python bench/bench_storm.py [--alerts 5000] [--targets 50] [--replicas 3]

Drained = every delivery processed (the Redis stream is empty) and every target's incident
diagnosed with its remediation decided. The fakes and the load run in this one process, on the
same machine as the replicas: the times are upper bounds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.e2e.ha_cluster import (
    bad_replicaset,
    crash_alert,
    crashlooping_deployments,
    medic_cluster,
    patches_of,
    peak_rss_kib,
    pod_names,
    post,
    wait_for,
)
from tests.fakes.kube_apiserver import FakeKubeApiserver
from tests.payloads import payload
from tests.servers.redis_server import RedisServer


def storm(kube: FakeKubeApiserver, names: list[str], alerts: int, per_request: int) -> list[dict[str, Any]]:
    per_target = -(-alerts // len(names))
    pods = {name: pod_names(bad_replicaset(kube, name), per_target) for name in names}
    flat = [crash_alert(name, pods[name][i]) for i in range(per_target) for name in names][:alerts]
    return [payload(flat[i : i + per_request]) for i in range(0, len(flat), per_request)]


def rss_mib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) // 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


async def run(args: argparse.Namespace) -> dict[str, Any]:
    names = [f"svc-{i:03d}" for i in range(args.targets)]
    redis = RedisServer(appendonly=True)
    await redis.start()
    try:
        async with FakeKubeApiserver(token="medic-sa-token") as kube:
            crashlooping_deployments(kube, names, replicas=1)
            bodies = storm(kube, names, args.alerts, args.per_request)
            kube.clear_requests()
            with tempfile.TemporaryDirectory() as tmp:
                async with medic_cluster(
                    Path(tmp),
                    redis,
                    replicas=args.replicas,
                    kube=kube,
                    MEDIC_MODE="enforce",
                    MEDIC_GLOBAL_BUDGET_COUNT=str(args.targets * 2),
                    MEDIC_LEASE_SECONDS="10",
                    MEDIC_LOG_LEVEL="warning",
                ) as cluster:
                    idle = [rss_mib(r.proc.pid) for r in cluster.live() if r.proc.pid]
                    started = time.monotonic()
                    connector = aiohttp.TCPConnector(limit=args.concurrency)
                    async with aiohttp.ClientSession(connector=connector) as session:
                        answers = await asyncio.gather(*(post(cluster.url, b, session) for b in bodies))
                    sent = time.monotonic() - started

                    async def drained() -> list[dict[str, Any]] | None:
                        if await cluster.backlog():
                            return None
                        items = await cluster.incidents(limit="500")
                        done = [i for i in items if i["phase"] == "diagnosed" and i["actions"]]
                        return items if len(done) >= args.targets else None

                    items = await wait_for(drained, within=600, what="the storm drained")
                    drain = time.monotonic() - started
                    peaks = [peak_rss_kib(r.proc.pid) // 1024 for r in cluster.live() if r.proc.pid]
                    actions = Counter(a["status"] for i in items for a in i["actions"])
                    rollbacks = [patches_of(kube, name) for name in names]
                    dedup = await cluster.metric("medic_alerts_deduplicated_total")
    finally:
        await redis.close()
    return {
        "alerts": args.alerts,
        "targets": args.targets,
        "replicas": args.replicas,
        "requests": len(bodies),
        "accepted_new_alerts": sum(a["new"] for a in answers),
        "send_seconds": round(sent, 2),
        "drain_seconds": round(drain, 2),
        "incidents": len(items),
        "alerts_in_incidents": sum(i["alerts"] for i in items),
        "actions": dict(actions),
        "rollbacks_per_target_max": max(rollbacks),
        "rollbacks_total": sum(rollbacks),
        "kube_requests_total": len(kube.requests),
        "deduplicated": dedup,
        "idle_rss_mib_per_replica": idle,
        "peak_rss_mib_per_replica": peaks,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--alerts", type=int, default=5000)
    ap.add_argument("--targets", type=int, default=50)
    ap.add_argument("--replicas", type=int, default=3)
    ap.add_argument("--per-request", type=int, default=20)
    ap.add_argument("--concurrency", type=int, default=32)
    args = ap.parse_args()
    result = asyncio.run(run(args))
    print(f"{os.cpu_count()} cores")
    print(
        f"storm of {result['alerts']} alerts over {result['targets']} targets, "
        f"{result['replicas']} replicas: "
        f"sent in {result['send_seconds']}s, drained in {result['drain_seconds']}s; "
        f"{result['incidents']} incidents, actions {result['actions']}, "
        f"rollbacks per target <= {result['rollbacks_per_target_max']}, "
        f"peak RSS per replica {result['peak_rss_mib_per_replica']} MiB "
        f"(idle {result['idle_rss_mib_per_replica']})"
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
