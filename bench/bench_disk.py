"""Disk use of the embedded backend across alert storms (issue 11.5): does the data dir plateau?

Each cycle is one storm: ``--alerts`` KubePodCrashLooping alerts (new pods, so new episodes and
dedup keys) over ``--targets`` Deployments, posted to a running Medic (embedded SQLite, the
real app on a real socket), drained, then resolved and drained again. Then the retention time
passes — the clock given to the purge is advanced by ``--advance`` (more than every retention
and the dedup TTL), instead of sleeping for a month — and the purge runs as its periodic task
would. The data dir's size (database, WAL and shared memory) and the row counts are measured
after each cycle.

Modes (``--modes``, comma separated; each runs in a fresh data dir):

* ``none``: no purge at all (Medic before retention: grows with every storm);
* ``purge-reuse``: the purge deletes, SQLite keeps the free pages for reuse (no vacuum);
* ``purge``: what Medic does: the purge, then the incremental vacuum gives the pages back;
* ``purge-vacuum``: the purge, then a full ``VACUUM`` (rewrites the file; blocks writes).

    .venv/bin/python bench/bench_disk.py [--cycles 4] [--alerts 20000] [--targets 50]
        [--advance 91] [--modes none,purge-reuse,purge,purge-vacuum] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.medic_app import RunningMedic, medic_settings, running_medic
from tests.payloads import alert, payload

from medic.app.backend_select import EmbeddedBackend
from medic.app.logging import configure_logging
from medic.clients.sqlite import SqliteDB
from medic.domain.incident import utcnow

MODES = ("none", "purge-reuse", "purge", "purge-vacuum")
MIB = 1024 * 1024


SAFE = "bcdfghjklmnpqrstvwxz2456789"  # the alphabet of pod-template hashes and pod suffixes


def safe(n: int, width: int) -> str:
    out = ""
    for _ in range(width):
        n, digit = divmod(n, len(SAFE))
        out += SAFE[digit]
    return out


def pod(cycle: int, i: int, targets: int) -> str:
    """A pod of Deployment ``svc-<i % targets>``: new in every cycle (new episodes)."""
    return f"svc-{i % targets:03d}-{safe(cycle, 8)}-{safe(i, 5)}"


def storm(cycle: int, alerts: int, targets: int, per_request: int, status: str) -> list[dict[str, Any]]:
    flat = [
        alert(
            "KubePodCrashLooping",
            status=status,
            startsAt=f"2026-11-{1 + cycle % 28:02d}T08:00:00Z",
            endsAt="0001-01-01T00:00:00Z" if status == "firing" else "2026-11-28T09:00:00Z",
            namespace="playcode",
            pod=pod(cycle, i, targets),
            container="app",
            severity="warning",
        )
        for i in range(alerts)
    ]
    return [payload(flat[i : i + per_request]) for i in range(0, len(flat), per_request)]


async def post_all(medic: RunningMedic, bodies: list[dict[str, Any]], concurrency: int = 8) -> None:
    queue = list(reversed(bodies))
    async with aiohttp.ClientSession() as session:

        async def sender() -> None:
            while queue:
                body = queue.pop()
                for _ in range(50):
                    async with session.post(f"{medic.url}/api/v1/alerts", json=body) as resp:
                        if resp.status == 200:
                            break
                        await asyncio.sleep(0.2)  # 503: stored nothing, Alertmanager would retry
                else:
                    raise RuntimeError("a delivery was refused 50 times")

        await asyncio.gather(*(sender() for _ in range(concurrency)))


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.iterdir() if p.is_file())


async def counts(backend: EmbeddedBackend) -> dict[str, int]:
    def count(*tables: str) -> Callable[[Any], dict[str, int]]:
        return lambda conn: {t: int(conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]) for t in tables}

    found = await backend.db.read(count("incidents", "incident_alerts", "audit", "kv"))
    return found | await backend.inbox.db.read(count("dedup", "inbox"))  # the inbox's own file


def files(backend: EmbeddedBackend) -> list[SqliteDB]:
    return list({id(db): db for db in (backend.db, backend.inbox.db)}.values())


def reclaimer(mode: str, db: SqliteDB) -> Callable[[], Awaitable[int]]:
    async def nothing() -> int:
        return 0

    async def full_vacuum() -> int:
        await db.read(lambda c: c.execute("VACUUM").fetchall())
        await db.read(lambda c: c.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall())
        return 0

    return {"purge-reuse": nothing, "purge-vacuum": full_vacuum}.get(mode, db.reclaim)


async def run_mode(mode: str, args: argparse.Namespace) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="medic-disk-") as tmp:
        settings = medic_settings(Path(tmp), workers=4, purge_interval="1000d")  # the bench purges
        data = settings.data_dir
        async with running_medic(settings) as medic:
            backend = medic.runtime.backend
            assert isinstance(backend, EmbeddedBackend)
            for db in files(backend):
                db.reclaim = reclaimer(mode, db)  # type: ignore[method-assign]
            rows.append({"cycle": 0, "mib": dir_bytes(data) / MIB, **await counts(backend)})
            clock = utcnow()
            for cycle in range(1, args.cycles + 1):
                started = time.monotonic()
                for status in ("firing", "resolved"):
                    await post_all(medic, storm(cycle, args.alerts, args.targets, args.per_request, status))
                    await medic.drain(timeout=args.alerts / 20)
                grown = dir_bytes(data) / MIB
                clock += timedelta(days=args.advance)
                purge_s = 0.0
                if mode != "none":
                    t0 = time.monotonic()
                    await backend.purge(backend.policy.cutoffs(clock))
                    purge_s = time.monotonic() - t0
                row = {
                    "cycle": cycle,
                    "peak_mib": round(grown, 1),
                    "mib": round(dir_bytes(data) / MIB, 1),
                    "storm_s": round(time.monotonic() - started - purge_s, 1),
                    "purge_s": round(purge_s, 2),
                    **await counts(backend),
                }
                rows.append(row)
                print(mode, json.dumps(row), flush=True)
    return {"mode": mode, "cycles": rows}


def table(results: list[dict[str, Any]]) -> str:
    out = [
        f"{'mode':13} {'cycle':>5} {'after storm':>12} {'after purge':>12} {'purge s':>8} "
        f"{'incidents':>9} {'alerts':>7} {'dedup':>7} {'audit':>6}"
    ]
    for res in results:
        for r in res["cycles"][1:]:
            out.append(
                f"{res['mode']:13} {r['cycle']:>5} {r['peak_mib']:>9.1f} MiB {r['mib']:>8.1f} MiB "
                f"{r['purge_s']:>8.2f} {r['incidents']:>9} {r['incident_alerts']:>7} {r['dedup']:>7} "
                f"{r['audit']:>6}"
            )
    return "\n".join(out)


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cycles", type=int, default=4)
    parser.add_argument("--alerts", type=int, default=20_000, help="alerts per storm")
    parser.add_argument("--targets", type=int, default=50)
    parser.add_argument("--per-request", type=int, default=100)
    parser.add_argument("--advance", type=float, default=91, help="days the clock moves between storms")
    parser.add_argument("--modes", default="none,purge-reuse,purge,purge-vacuum")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    configure_logging("console", "warning")
    modes = [m for m in args.modes.split(",") if m]
    unknown = sorted(set(modes) - set(MODES))
    if unknown:
        parser.error(f"unknown mode(s) {unknown}: choose from {', '.join(MODES)}")
    results = [await run_mode(mode, args) for mode in modes]
    print()
    print(f"{args.cycles} storms of {args.alerts} alerts over {args.targets} targets", end="")
    print(f"; clock +{args.advance:g} days each")
    print(table(results))
    if args.json:
        await asyncio.to_thread(Path(args.json).write_text, json.dumps(results, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
