"""The one contract every inbox backend passes (``medic.inbox.base.Inbox``), run against the
embedded SQLite inbox, the diagnosis process's view of it (``sqlite-rpc``: the worker's calls
through :class:`medic.inbox.rpc.RemoteInbox` to the intake's ``inbox_app`` on a Unix socket, as
the embedded setup runs them), the Redis inbox (a real Redis) and the fail-safe inbox both while
its Redis answers and while it does not (then everything goes through the local spool): accept and
dedup, claim and lease, re-claim after the lease, ack, release with a retry delay,
dead-lettering after the maximum attempts or at once (``dead=True``) with ``episodes`` narrowing
the item, the dead letters' episodes released from dedup, and list / retry / drop of dead letters.

What only one backend has (Redis: renewal, hand-back on shutdown, a full stream, a crash; SQLite:
restart recovery, dedup TTL purge; the fail-safe inbox: forwarding the spool) stays in
tests/integration."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiohttp import web

import medic.inbox.sqlite as sqlite_state
from medic.clients.availability import Availability
from medic.clients.redis import connect
from medic.clients.sqlite import SqliteDB
from medic.coordination.redis_keys import RedisKeys
from medic.domain.errors import BackendUnavailable, StoreError
from medic.inbox.base import Inbox, InboxItem
from medic.inbox.failsafe import FailSafeInbox
from medic.inbox.redis import MAX_DELIVERIES, RedisInbox
from medic.inbox.rpc import RemoteInbox, inbox_app
from medic.inbox.spool import LocalSpool
from medic.inbox.sqlite import MAX_ATTEMPTS, SqliteInbox
from tests.servers.fixtures import RedisServerFactory
from tests.servers.process import free_port

pytestmark = pytest.mark.integration

LEASE = 0.6  # seconds an item stays with the consumer that claimed it
RETRY_DELAY = 0.3  # seconds before a released item is handed out again
BACKENDS = ["sqlite", "sqlite-rpc", "redis", "failsafe", "failsafe-spooling"]
# What RemoteInbox does not offer, by design: the intake process accepts deliveries and serves the
# dead letters (the HTTP API) from the SQLite inbox it owns; the diagnosis process only claims,
# acknowledges, releases and counts. The suite does those through ``InboxUnderTest.intake``.
INTAKE_ONLY = ("accept", "list_dead_letters", "retry_dead_letter", "drop_dead_letter")


def test_every_backend_gives_up_after_the_same_number_of_attempts() -> None:
    assert MAX_ATTEMPTS == MAX_DELIVERIES == 5


@dataclass
class InboxUnderTest:
    name: str
    inbox: Inbox  # the worker's side: claim, ack, release, depth, dead letters counted, ping
    intake: Inbox  # accept and the dead letters: the same inbox, but the intake's own over RPC


def now() -> datetime:
    return datetime.now(UTC)


@pytest.fixture(params=BACKENDS)
async def backend(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    redis_server_factory: RedisServerFactory,
) -> AsyncIterator[InboxUnderTest]:
    name: str = request.param
    # The embedded inbox's retry delay is a module constant (the Redis inbox takes it as a parameter).
    monkeypatch.setattr(sqlite_state, "RETRY_DELAY", RETRY_DELAY)
    if name in ("sqlite", "sqlite-rpc"):
        db = SqliteDB(tmp_path / "medic.sqlite3")
        await db.open()
        local = SqliteInbox(db, dedup_ttl=3600, lease_seconds=LEASE)
        if name == "sqlite":
            yield InboxUnderTest(name, local, local)
        else:
            async with served(local, tmp_path / "inbox.sock") as remote:
                yield InboxUnderTest(name, remote, local)
        await db.close()
        return
    if name == "failsafe-spooling":
        url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there: Redis is down
    else:
        url = (await redis_server_factory()).url
    client = connect(url, timeout=0.5)
    availability = Availability("Medic's Redis")
    redis = RedisInbox(
        client,
        RedisKeys(),
        dedup_ttl=3600,
        lease_seconds=LEASE,
        queue_max=1000,
        availability=availability,
        retry_delay=RETRY_DELAY,
    )
    if name == "redis":
        await redis.setup()
        yield InboxUnderTest(name, redis, redis)
    else:
        if name == "failsafe":
            await redis.setup()
        spool = LocalSpool(tmp_path / "spool.sqlite3", dedup_ttl=3600, lease_seconds=LEASE)
        await spool.open()
        inbox = FailSafeInbox(redis, spool, availability, spool_max=1000)
        await inbox.open()
        yield InboxUnderTest(name, inbox, inbox)
        await spool.close()
    await client.aclose()


@contextlib.asynccontextmanager
async def served(inbox: SqliteInbox, sock: Path) -> AsyncIterator[RemoteInbox]:
    """The intake's inbox served on a Unix socket as ``WorkerProcess.start`` serves it, and the
    diagnosis process's client of it."""
    runner = web.AppRunner(inbox_app(inbox), access_log=None)
    await runner.setup()
    await web.UnixSite(runner, str(sock)).start()
    remote = RemoteInbox(sock)
    try:
        yield remote
    finally:
        await remote.close()
        await runner.cleanup()


async def test_the_worker_side_refuses_what_the_intake_keeps(backend: InboxUnderTest) -> None:
    """The RPC client does not accept nor serve dead letters (``INTAKE_ONLY``): it says so, it
    does not pretend (the other backends are their own intake)."""
    if backend.inbox is backend.intake:
        pytest.skip(f"{backend.name}: one inbox does both sides")
    calls = {
        "accept": backend.inbox.accept({"n": 1}, ["e"], now()),
        "list_dead_letters": backend.inbox.list_dead_letters(),
        "retry_dead_letter": backend.inbox.retry_dead_letter("1"),
        "drop_dead_letter": backend.inbox.drop_dead_letter("1"),
    }
    assert tuple(calls) == INTAKE_ONLY
    for call in calls.values():
        with pytest.raises(StoreError, match="intake"):
            await call
    assert await backend.intake.depth() == 0


async def claim_within(inbox: Inbox, consumer: str, seconds: float, limit: int = 10) -> list[InboxItem]:
    """Claim until something is handed out (a lease or a retry delay runs out meanwhile)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while True:
        items = await inbox.claim(consumer, limit)
        if items or loop.time() >= deadline:
            return items
        await asyncio.sleep(0.05)


# ---------------------------------------------------------------- accept, dedup, claim, ack


async def test_accept_deduplicates_by_episode(backend: InboxUnderTest) -> None:
    inbox = backend.inbox
    first = await backend.intake.accept({"n": 1}, ["a", "b", "a"], now())
    assert first.item_id and first.new_episodes == ["a", "b"] and first.duplicates == 1
    again = await backend.intake.accept({"n": 2}, ["a", "b"], now())
    assert again.item_id is None and again.new_episodes == [] and again.duplicates == 2
    partly = await backend.intake.accept('{"n":3}', ["b", "c"], now())  # the body as received
    assert partly.item_id and partly.new_episodes == ["c"] and partly.duplicates == 1
    assert await inbox.depth() == 2
    one, three = await inbox.claim("w1", 10)
    assert (one.payload, one.new_episodes, one.attempts) == ({"n": 1}, ["a", "b"], 1)
    assert (three.payload, three.new_episodes, three.attempts) == ({"n": 3}, ["c"], 1)
    assert one.received_at.tzinfo is not None


async def test_concurrent_accepts_of_one_episode_store_it_once(backend: InboxUnderTest) -> None:
    """Alertmanager HA: every replica sends the same notification at once."""
    if backend.name == "sqlite-rpc":
        pytest.skip("accepting is the intake's own SQLite inbox (case sqlite); RemoteInbox does not accept")
    inbox = backend.inbox
    intake = backend.intake
    results = await asyncio.gather(*(intake.accept({"from": i}, ["e1", "e2"], now()) for i in range(5)))
    stored = [r for r in results if r.item_id is not None]
    assert len(stored) == 1 and stored[0].new_episodes == ["e1", "e2"]
    assert sum(r.duplicates for r in results) == 8
    assert await inbox.depth() == 1


async def test_each_item_goes_to_one_consumer_and_ack_removes_it(backend: InboxUnderTest) -> None:
    inbox = backend.inbox
    for i in range(5):
        await backend.intake.accept({"i": i}, [f"e{i}"], now())
    a, b = await asyncio.gather(inbox.claim("w1", 3), inbox.claim("w2", 3))
    assert len(a) + len(b) == 5
    assert not {i.id for i in a} & {i.id for i in b}
    assert await inbox.claim("w3", 10) == []  # all leased
    await inbox.ack_many([i.id for i in a + b])
    assert await inbox.depth() == 0 and await inbox.dead_letters() == 0
    await asyncio.sleep(LEASE + 0.2)
    assert await inbox.claim("w3", 10) == []  # acknowledged: never handed out again
    await inbox.ping()


async def test_an_item_whose_lease_ran_out_is_claimed_again(backend: InboxUnderTest) -> None:
    inbox = backend.inbox
    await backend.intake.accept({"x": 1}, ["e"], now())
    (held,) = await inbox.claim("crashed", 1)
    assert await inbox.claim("other", 1) == []  # leased
    (again,) = await claim_within(inbox, "other", LEASE * 5, 1)
    assert again.id == held.id and again.attempts == 2 and again.payload == {"x": 1}
    await inbox.ack_many([again.id])
    assert await inbox.depth() == 0


async def test_a_released_item_comes_back_after_the_retry_delay(backend: InboxUnderTest) -> None:
    inbox = backend.inbox
    await backend.intake.accept({"x": 1}, ["e"], now())
    (item,) = await inbox.claim("w", 1)
    await inbox.release(item.id, "boom")
    assert await inbox.claim("w", 1) == []  # not at once: the retry delay first
    assert await inbox.depth() == 1 and await inbox.dead_letters() == 0
    (again,) = await claim_within(inbox, "w", LEASE * 5, 1)
    assert again.id == item.id and again.attempts == 2


# ---------------------------------------------------------------- dead letters


async def test_dead_lettered_after_the_maximum_attempts(backend: InboxUnderTest) -> None:
    inbox = backend.inbox
    received = now()
    await backend.intake.accept({"poison": True}, ["p"], received)
    seen = []
    for _ in range(MAX_ATTEMPTS):
        (item,) = await claim_within(inbox, "w", LEASE * 5, 1)
        seen.append(item.attempts)
        await inbox.release(item.id, f"boom {item.attempts}")
    assert seen == list(range(1, MAX_ATTEMPTS + 1))
    assert await inbox.depth() == 0 and await inbox.dead_letters() == 1
    assert await claim_within(inbox, "w", RETRY_DELAY * 3) == []
    (dead,), total = await backend.intake.list_dead_letters()
    assert total == 1
    assert dead.payload == {"poison": True} and dead.episodes == ["p"]
    assert dead.error == f"boom {MAX_ATTEMPTS}" and dead.attempts == MAX_ATTEMPTS
    assert dead.dead_at is not None and dead.received_at == received
    assert (await backend.intake.accept({"poison": True}, ["p"], now())).new_episodes == ["p"]  # released


async def test_release_dead_narrowed_to_the_failed_episodes_releases_only_those(
    backend: InboxUnderTest,
) -> None:
    inbox = backend.inbox
    await backend.intake.accept({"alerts": 3}, ["a", "b", "c"], now())
    (item,) = await inbox.claim("w", 1)
    await inbox.release(item.id, "alert b is unprocessable", episodes=["b"], dead=True)
    assert await inbox.depth() == 0 and await inbox.dead_letters() == 1
    (dead,), _ = await backend.intake.list_dead_letters()
    assert dead.episodes == ["b"] and dead.error == "alert b is unprocessable"
    assert dead.payload == {"alerts": 3} and dead.attempts == 1
    resent = await backend.intake.accept({"alerts": 3}, ["a", "b", "c"], now())
    assert resent.new_episodes == ["b"] and resent.duplicates == 2  # a and c were processed


async def test_narrowed_release_then_dead_letter_keeps_the_last_failed_episodes(
    backend: InboxUnderTest,
) -> None:
    inbox = backend.inbox
    await backend.intake.accept({"alerts": 2}, ["a", "b"], now())
    (item,) = await inbox.claim("w", 1)
    await inbox.release(item.id, "b failed", episodes=["b"])
    (again,) = await claim_within(inbox, "w", LEASE * 5, 1)
    assert again.id == item.id and "b" in again.new_episodes  # (Redis cannot narrow in place)
    await inbox.release(again.id, "b failed again", episodes=["b"], dead=True)
    (dead,), _ = await backend.intake.list_dead_letters()
    assert dead.episodes == ["b"] and dead.error == "b failed again"
    assert (await backend.intake.accept({}, ["a", "b"], now())).new_episodes == ["b"]


async def dead_letters_of(backend: InboxUnderTest, n: int) -> None:
    for i in range(n):
        await backend.intake.accept({"n": i}, [f"e{i}"], now())
        (item,) = await backend.inbox.claim("w", 1)
        await backend.inbox.release(item.id, f"failed {i}", dead=True)


async def test_dead_letters_are_listed_newest_first_in_pages(backend: InboxUnderTest) -> None:
    await dead_letters_of(backend, 3)
    page, total = await backend.intake.list_dead_letters(limit=2)
    assert total == 3 and [d.payload["n"] for d in page] == [2, 1]
    rest, total = await backend.intake.list_dead_letters(limit=2, offset=2)
    assert total == 3 and [d.payload["n"] for d in rest] == [0]
    assert len({d.id for d in page + rest}) == 3
    assert (await backend.intake.list_dead_letters(limit=2, offset=3)) == ([], 3)
    json.dumps([d.error for d in page + rest])


async def test_a_retried_dead_letter_is_processed_again_from_its_first_attempt(
    backend: InboxUnderTest,
) -> None:
    inbox = backend.inbox
    await dead_letters_of(backend, 2)
    (newest, oldest), _ = await backend.intake.list_dead_letters()
    assert await backend.intake.retry_dead_letter(oldest.id)
    assert not await backend.intake.retry_dead_letter(oldest.id)  # no longer a dead letter
    assert await inbox.dead_letters() == 1 and await inbox.depth() == 1
    (item,) = await inbox.claim("w", 10)
    assert item.payload == {"n": 0} and item.new_episodes == ["e0"] and item.attempts == 1
    await inbox.ack_many([item.id])
    (left,), total = await backend.intake.list_dead_letters()
    assert total == 1 and left.id == newest.id


async def test_a_dropped_dead_letter_is_gone(backend: InboxUnderTest) -> None:
    inbox = backend.inbox
    await dead_letters_of(backend, 2)
    (newest, oldest), _ = await backend.intake.list_dead_letters()
    assert await backend.intake.drop_dead_letter(newest.id)
    assert not await backend.intake.drop_dead_letter(newest.id)
    assert not await backend.intake.retry_dead_letter(newest.id)
    assert [d.id for d in (await backend.intake.list_dead_letters())[0]] == [oldest.id]
    assert await inbox.depth() == 0 and await inbox.claim("w", 10) == []


@pytest.mark.parametrize("unknown", ["", "nope", "999999", "1-1", "spool:42", "../x"])
async def test_unknown_dead_letter_ids_are_no_such_one(backend: InboxUnderTest, unknown: str) -> None:
    inbox = backend.inbox
    await dead_letters_of(backend, 1)
    if backend.name == "failsafe-spooling" and unknown == "1-1":
        # a Redis dead letter's id while Redis is down: nobody can tell, so no false "no such one"
        with pytest.raises(BackendUnavailable):
            await backend.intake.retry_dead_letter(unknown)
        with pytest.raises(BackendUnavailable):
            await backend.intake.drop_dead_letter(unknown)
    else:
        assert not await backend.intake.retry_dead_letter(unknown)
        assert not await backend.intake.drop_dead_letter(unknown)
    assert await inbox.dead_letters() == 1


async def test_a_live_item_is_not_a_dead_letter(backend: InboxUnderTest) -> None:
    inbox = backend.inbox
    accepted = await backend.intake.accept({}, ["e"], now())
    (item,) = await inbox.claim("w", 1)
    assert item.id == accepted.item_id
    assert not await backend.intake.retry_dead_letter(item.id)
    assert not await backend.intake.drop_dead_letter(item.id)
    assert await inbox.depth() == 1
