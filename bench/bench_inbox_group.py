"""The embedded inbox's group write (``medic.inbox.sqlite``) while the event loop's thread is busy.

The intake stores concurrent deliveries as one group, written by the store's own thread. Every
step of a SQLite statement lets go of the GIL and has to take it back from the event loop's thread,
which, when busy, lets go of it only at its next I/O or after the switch interval (5 ms). So a
group's write costs as many handovers as it has statement steps, whatever the SQL costs. This
script writes groups of deliveries (a real file, ``synchronous=FULL``) from the store's thread,
once with the main thread idle and once with it running Python without pause (an event loop under
load, at its worst), and prints per group size: the statements SQLite ran, and the wall time of
a group write, and of a claim + ack of 32 items (medians of ``--groups``).

    .venv/bin/python bench/bench_inbox_group.py [--sizes 1,8,32,64] [--groups 40]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.payloads import alert, payload

from medic.clients.sqlite import SqliteDB
from medic.inbox.sqlite import SqliteInbox

BODY = json.dumps(payload([alert("PlayCodeHighLatency", namespace="playcode", deployment="bench")]))


class Spinner:
    """Python running without pause in another thread: the event loop at its busiest."""

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._spin, daemon=True)

    def _spin(self) -> None:
        n = 0
        while not self._stop.is_set():
            for i in range(200):
                n += i

    def __enter__(self) -> Spinner:
        self._thread.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self._stop.set()
        self._thread.join()


async def measure(size: int, groups: int, data_dir: Path) -> dict[str, float]:
    db = SqliteDB(data_dir / f"inbox-{size}.sqlite3")
    await db.open()
    inbox = SqliteInbox(db, dedup_ttl=3600)
    statements: list[str] = []
    try:
        writes: list[float] = []
        claims: list[float] = []
        for g in range(groups):
            now = datetime.now(UTC)
            db.conn.set_trace_callback(statements.append if g == 0 else None)
            start = time.perf_counter()
            await asyncio.gather(*(inbox.accept(BODY, [f"g{g}-{n}"], now) for n in range(size)))
            writes.append(time.perf_counter() - start)
        db.conn.set_trace_callback(None)
        for g in range(groups):
            await asyncio.gather(*(inbox.accept(BODY, [f"c{g}-{n}"], datetime.now(UTC)) for n in range(32)))
            start = time.perf_counter()
            await inbox.ack_many([i.id for i in await inbox.claim("bench", 32)])
            claims.append(time.perf_counter() - start)
        return {
            "statements": len(statements),
            "write_ms": round(statistics.median(writes) * 1000, 2),
            "claim_ack_32_ms": round(statistics.median(claims) * 1000, 2),
        }
    finally:
        await db.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1,8,32,64", help="deliveries per group, comma-separated")
    ap.add_argument("--groups", type=int, default=40, help="groups written per size and condition")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    results: dict[str, dict[int, dict[str, float]]] = {"idle": {}, "busy": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for condition in ("idle", "busy"):
            for size in sizes:
                folder = Path(tmp) / f"{condition}-{size}"
                folder.mkdir()
                with Spinner() if condition == "busy" else contextlib.nullcontext():
                    results[condition][size] = asyncio.run(measure(size, args.groups, folder))
    print(f"{'group':>6} {'statements':>10} {'write idle':>11} {'write busy':>11}")
    for size in sizes:
        idle, busy = results["idle"][size], results["busy"][size]
        print(f"{size:>6} {idle['statements']:>10} {idle['write_ms']:>9.2f}ms {busy['write_ms']:>9.2f}ms")
    idle, busy = results["idle"][sizes[-1]], results["busy"][sizes[-1]]
    idle_ms, busy_ms = idle["claim_ack_32_ms"], busy["claim_ack_32_ms"]
    print(f"claim + ack of 32 items: idle {idle_ms:.2f}ms, busy {busy_ms:.2f}ms")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
