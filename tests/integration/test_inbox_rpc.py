"""The diagnosis process's inbox (medic.inbox.rpc): the intake's SQLite inbox served on a Unix
socket. The worker's calls do what they do on the inbox itself; an intake that is gone is an
unavailable backend (the worker waits), never lost work."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiohttp import web

from medic.clients.sqlite import SqliteDB
from medic.domain.errors import BackendUnavailable, StoreError
from medic.inbox.rpc import RemoteInbox, inbox_app
from medic.inbox.sqlite import SqliteInbox


async def test_claim_ack_release_through_the_socket(tmp_path: Path) -> None:
    db = SqliteDB(tmp_path / "inbox.sqlite3")
    await db.open()
    inbox = SqliteInbox(db, dedup_ttl=3600)
    runner = web.AppRunner(inbox_app(inbox))
    await runner.setup()
    sock = tmp_path / "inbox.sock"
    await web.UnixSite(runner, str(sock)).start()
    remote = RemoteInbox(sock)
    try:
        payload = {"alerts": [{"labels": {"alertname": "A", "note": 'é \\ " ünïcode'}}], "n": 1}
        first = await inbox.accept(payload, ["e1", "e2"], datetime.now(UTC))
        await inbox.accept({"n": 2}, ["e3"], datetime.now(UTC))
        items = await remote.claim("child-0", 10)
        assert [i.id for i in items] == [first.item_id, str(int(first.item_id or 0) + 1)]
        assert items[0].payload == payload and items[0].new_episodes == ["e1", "e2"]
        assert items[0].attempts == 1 and items[0].received_at.tzinfo is not None
        assert await remote.claim("child-0", 10) == []  # leased
        await remote.ack_many([items[1].id])
        await remote.release(items[0].id, "boom", episodes=["e2"], dead=True)
        assert await remote.depth() == 0 and await remote.dead_letters() == 1
        letters, _ = await inbox.list_dead_letters()
        assert letters[0].episodes == ["e2"]
        assert (await inbox.accept({"n": 3}, ["e2"], datetime.now(UTC))).new_episodes == ["e2"]  # released
        with pytest.raises(StoreError):
            await remote.accept({}, ["x"], datetime.now(UTC))  # the intake accepts, not the child
    finally:
        await runner.cleanup()
    with pytest.raises(BackendUnavailable):  # the intake is gone
        await remote.claim("child-0", 10)
    await remote.close()
    await db.close()


async def test_a_flooded_intake_puts_claims_off_and_the_worker_waits(tmp_path: Path) -> None:
    import time

    from medic.app.claim_gate import ClaimGate, LoopLoad

    db = SqliteDB(tmp_path / "inbox.sqlite3")
    await db.open()
    inbox = SqliteInbox(db, dedup_ttl=3600)
    load = LoopLoad()
    deferred: list[bool] = []
    gate = ClaimGate(load, on_defer=lambda: deferred.append(True))
    runner = web.AppRunner(inbox_app(inbox, gate))
    await runner.setup()
    sock = tmp_path / "inbox.sock"
    await web.UnixSite(runner, str(sock)).start()
    remote = RemoteInbox(sock)
    try:
        await inbox.accept({"n": 1}, ["e1"], datetime.now(UTC))
        load.busy = 0.9  # flooded
        started = time.monotonic()
        assert await remote.claim("child-0", 10) == []  # put off: nothing leased, the worker waited
        assert time.monotonic() - started >= 0.2 and deferred == [True]
        assert await inbox.depth() == 1
        load.busy = 0.1
        assert [i.payload for i in await remote.claim("child-0", 10)] == [{"n": 1}]
    finally:
        await runner.cleanup()
        await remote.close()
        await db.close()


@contextlib.asynccontextmanager
async def stand_in(
    tmp_path: Path, answer: Callable[[web.Request], Awaitable[web.Response]]
) -> AsyncIterator[RemoteInbox]:
    """A RemoteInbox whose socket is served by ``answer`` instead of the intake."""
    app = web.Application()
    app.router.add_route("*", "/{path:.*}", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    sock = tmp_path / "inbox.sock"
    await web.UnixSite(runner, str(sock)).start()
    remote = RemoteInbox(sock)
    try:
        yield remote
    finally:
        await remote.close()
        await runner.cleanup()


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (200, b"[]"),  # JSON, but not an object
        (200, b'"ok"'),
        (200, b"null"),
        (200, b"<html>not the intake</html>"),  # something else listens on the socket
        (200, b'{"items": [{"id": "1"}]}'),  # an object, not the answer (an item without its fields)
        (200, b'{"items": 3, "depth": "many"}'),
        (503, b"[1, 2]"),  # a refusal that is not an object either
        (500, b'"boom"'),
    ],
)
async def test_an_answer_that_is_not_the_intakes_is_an_unavailable_backend(
    tmp_path: Path, status: int, body: bytes
) -> None:
    """Before: ``data.get`` on a list or a string raised AttributeError out of the worker's call."""

    async def answer(_: web.Request) -> web.Response:
        return web.Response(status=status, body=body, content_type="application/json")

    async with stand_in(tmp_path, answer) as remote:
        calls = (
            remote.claim("child-0", 10),
            remote.ack_many(["1"]),
            remote.release("1", "boom"),
            remote.depth(),
            remote.dead_letters(),
            remote.ping(),
        )
        for call in calls:
            if status == 500:  # a refusal of the intake's own (its store failed), as before
                with pytest.raises(StoreError, match="inbox: HTTP 500"):
                    await call
            elif status == 200 and body.startswith(b"{"):
                # an object: ack and release need nothing of it; what reads fields refuses it
                if call.__qualname__.startswith(("RemoteInbox.ack", "RemoteInbox.release")):
                    await call
                    continue
                with pytest.raises(BackendUnavailable, match=r"answered (GET|POST) /"):
                    await call
            else:
                with pytest.raises(BackendUnavailable):
                    await call


async def test_the_intakes_refusals_keep_their_reason(tmp_path: Path) -> None:
    async def answer(request: web.Request) -> web.Response:
        if request.path == "/claim":
            return web.json_response({"error": "database is locked", "unavailable": True}, status=503)
        return web.json_response({"error": "disk I/O error"}, status=500)

    async with stand_in(tmp_path, answer) as remote:
        with pytest.raises(BackendUnavailable, match="database is locked"):
            await remote.claim("child-0", 1)
        with pytest.raises(StoreError, match="inbox: disk I/O error"):
            await remote.ack_many(["1"])
