"""``medic dead-letters list|retry|drop``: the deliveries Medic could not process.

With ``--url`` it calls a running Medic's API (``MEDIC_READ_TOKEN`` to list, ``MEDIC_ADMIN_TOKEN``
to retry or drop); without it, it opens the configured inbox itself (Medic's Redis when
``MEDIC_REDIS_URL`` is set, else the embedded SQLite file under ``MEDIC_DATA_DIR``).
Exit 0 done, 1 no such dead letter or the server refused, 2 usage or configuration error.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator
from typing import Any

from medic.app.cli.output import EXIT_OK, EXIT_USAGE, add_output_option, emit
from medic.app.cli.remote import OK, add_url_option, answer_json, open_session, positive_int
from medic.domain.errors import ConfigError, MedicError, UsageError
from medic.inbox.base import Inbox


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "dead-letters",
        help="list, retry or drop deliveries that could not be processed",
        description=__doc__,
    )
    p.add_argument(
        "action",
        choices=["list", "retry", "drop"],
        help="list them, put one back in the queue (retry), or delete one for good (drop)",
    )
    p.add_argument("id", nargs="?", help="the dead letter's id (retry and drop)")
    add_url_option(p, "a running Medic, e.g. http://127.0.0.1:8080; default: the configured inbox")
    p.add_argument("--limit", type=positive_int, default=100, help="how many to list (1-500, default 100)")
    add_output_option(p, "a table")
    p.set_defaults(fn=cmd_dead_letters)


def cmd_dead_letters(args: argparse.Namespace) -> int:
    if args.action in ("retry", "drop") and not args.id:
        print(f"medic dead-letters {args.action}: needs the dead letter's id", file=sys.stderr)
        return EXIT_USAGE
    if args.limit > 500:
        print("medic dead-letters: --limit must be from 1 to 500", file=sys.stderr)
        return EXIT_USAGE
    run = _remote(args) if args.url else _local(args)
    found, result = asyncio.run(run)
    if not found:  # an unknown id is a failure on stderr, as an unknown incident is
        raise MedicError(f"no dead letter {args.id!r}")
    emit(args, result, lambda: _text(result))
    return EXIT_OK


def _text(result: dict[str, Any]) -> str:
    if "items" not in result:
        return f"dead letter {result['id']}: {result['status']}"
    lines = [f"{'ID':22} {'DEAD AT':26} {'TRIES':5} {'ALERTS':6} ERROR"]
    for item in result["items"]:
        names = ",".join(sorted({a["alertname"] for a in item["alerts"]}))[:40]
        error = " ".join(str(item["error"]).split())[:80]
        lines.append(f"{item['id']:22} {item['dead_at'] or '-':26} {item['attempts']:<5} {names:6} {error}")
    lines.append(f"({len(result['items'])} of {result['total']})")
    return "\n".join(lines)


async def _local(args: argparse.Namespace) -> tuple[bool, dict[str, Any]]:
    from medic.app.http.dead_letters import dead_letter_json

    async with _configured_inbox() as inbox:
        if args.action == "list":
            letters, total = await inbox.list_dead_letters(args.limit, 0)
            return True, {"items": [dead_letter_json(d) for d in letters], "total": total}
        done = await (inbox.retry_dead_letter if args.action == "retry" else inbox.drop_dead_letter)(args.id)
        status = ("queued" if args.action == "retry" else "dropped") if done else "not found"
        return done, {"id": args.id, "status": status}


@contextlib.asynccontextmanager
async def _configured_inbox() -> AsyncIterator[Inbox]:
    from medic.app.settings import load_settings

    settings = load_settings()
    inbox, redis_url = settings.inbox, settings.tokens.redis_url
    if redis_url is not None:
        from medic.clients.redis import connect
        from medic.coordination.redis_keys import RedisKeys
        from medic.inbox.redis import RedisInbox

        client = connect(redis_url)
        try:
            yield RedisInbox(
                client,
                RedisKeys(),
                dedup_ttl=inbox.dedup_ttl_seconds,
                lease_seconds=inbox.lease_seconds,
                queue_max=inbox.queue_max,
            )
        finally:
            await client.aclose()
        return
    from medic.clients.sqlite import SqliteDB
    from medic.inbox.sqlite import SqliteInbox

    if not inbox.inbox_path.exists():
        raise ConfigError(f"no local inbox at {inbox.inbox_path} (set MEDIC_DATA_DIR, or use --url)")
    db = SqliteDB(inbox.inbox_path)
    await db.open()
    try:
        yield SqliteInbox(db, dedup_ttl=inbox.dedup_ttl_seconds)
    finally:
        await db.close()


async def _remote(args: argparse.Namespace) -> tuple[bool, dict[str, Any]]:
    base = f"{args.url}/api/v1/dead-letters"
    if args.action == "list":
        token = os.environ.get("MEDIC_READ_TOKEN") or os.environ.get("MEDIC_ADMIN_TOKEN", "")
        method, url, params = "GET", base, {"limit": str(args.limit)}
    else:
        token = os.environ.get("MEDIC_ADMIN_TOKEN", "")
        if not token:
            raise UsageError("set MEDIC_ADMIN_TOKEN to retry or drop dead letters of a running Medic")
        url = f"{base}/{args.id}/retry" if args.action == "retry" else f"{base}/{args.id}"
        method, params = ("POST" if args.action == "retry" else "DELETE"), {}
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with open_session(args, headers) as session, session.request(method, url, params=params) as resp:
        body = await answer_json(resp, url, ok=(*OK, 404))
        if resp.status == 404:  # Medic's problem answer, not a proxy's page
            return False, {"id": args.id, "status": "not found"}
        return True, body
