"""The Redis inbox against a real Redis (AOF on): dedup, leases, takeover of a dead consumer's
work, dead letters, back-pressure, a Redis restart."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from redis.asyncio import Redis

from medic.clients.availability import Availability
from medic.clients.redis import connect
from medic.coordination.redis_keys import GROUP, RedisKeys
from medic.domain.errors import BackendUnavailable, StoreError
from medic.inbox.redis import MAX_DELIVERIES, RedisInbox
from tests.servers.process import free_port
from tests.servers.redis_server import RedisServer

pytestmark = pytest.mark.integration

KEYS = RedisKeys()


@pytest.fixture
async def client(redis_server: RedisServer) -> AsyncIterator[Redis]:
    redis = connect(redis_server.url)
    yield redis
    await redis.aclose()


@pytest.fixture
def inbox_for(client: Redis) -> Callable[..., RedisInbox]:
    def make(**kw: Any) -> RedisInbox:
        options: dict[str, Any] = {"dedup_ttl": 3600, "lease_seconds": 0.4, "queue_max": 1000} | kw
        return RedisInbox(client, KEYS, **options)

    return make


def now() -> datetime:
    return datetime.now(UTC)


async def test_accept_deduplicates_episodes_atomically(
    client: Redis, inbox_for: Callable[..., RedisInbox]
) -> None:
    inbox = inbox_for()
    await inbox.setup()
    await inbox.setup()
    first = await inbox.accept({"n": 1}, ["a", "b", "a"], now())
    assert first.item_id and first.new_episodes == ["a", "b"] and first.duplicates == 1
    again = await inbox.accept({"n": 2}, ["a", "b"], now())
    assert again.item_id is None and again.duplicates == 2
    partly = await inbox.accept({"n": 3}, ["b", "c"], now())
    assert partly.new_episodes == ["c"] and partly.duplicates == 1
    assert await inbox.depth() == 2
    assert 0 < await client.pttl(KEYS.dedup("a")) <= 3600_000
    (item, other) = await inbox.claim("w1", 10)
    assert item.payload == {"n": 1} and item.new_episodes == ["a", "b"] and item.attempts == 1
    assert other.new_episodes == ["c"]


async def test_a_full_inbox_refuses_and_leaves_nothing_behind(inbox_for: Callable[..., RedisInbox]) -> None:
    inbox = inbox_for(queue_max=2)
    await inbox.setup()
    await inbox.accept({}, ["e1"], now())
    await inbox.accept({}, ["e2"], now())
    with pytest.raises(StoreError, match="full"):
        await inbox.accept({}, ["e3"], now())
    items = await inbox.claim("w", 10)
    await inbox.ack_many([i.id for i in items])
    assert await inbox.depth() == 0
    retried = await inbox.accept({}, ["e3"], now())  # the refused episode was not marked as seen
    assert retried.new_episodes == ["e3"]


async def test_a_dead_consumers_work_is_taken_over_after_its_lease(
    inbox_for: Callable[..., RedisInbox],
) -> None:
    replica_a, replica_b = inbox_for(), inbox_for()
    await replica_a.setup()
    await replica_a.accept({"x": 1}, ["e"], now())
    (held,) = await replica_a.claim("a-1", 10)
    assert await replica_b.claim("b-1", 10) == []  # leased to a
    await asyncio.sleep(0.25)
    assert await replica_a.renew() == 1  # a is alive: it renews
    await asyncio.sleep(0.25)
    replica_b._next_autoclaim = 0
    assert await replica_b.claim("b-1", 10) == []  # still a's after 0.5 s thanks to the renewal
    await asyncio.sleep(0.5)  # a "died": no renewal for longer than the lease
    replica_b._next_autoclaim = 0
    (taken,) = await replica_b.claim("b-1", 10)
    assert taken.id == held.id and taken.attempts == 2
    assert await replica_a.renew() == 0  # a learns it lost it
    await replica_b.ack_many([taken.id])
    assert await replica_b.depth() == 0


async def test_failed_items_come_back_then_go_to_the_dead_letters(
    client: Redis, inbox_for: Callable[..., RedisInbox]
) -> None:
    inbox = inbox_for(lease_seconds=0.2, retry_delay=0.1)
    await inbox.setup()
    await inbox.accept({"poison": True}, ["p"], now())
    seen = []
    for _ in range(40):
        inbox._next_autoclaim = 0
        for item in await inbox.claim("w", 10):
            seen.append(item.attempts)
            await inbox.release(item.id, f"boom {item.attempts}")
        if await inbox.dead_letters():
            break
        await asyncio.sleep(0.1)
    assert seen == list(range(1, MAX_DELIVERIES + 1))
    assert await inbox.depth() == 0
    ((_, dead),) = await client.xrange(KEYS.dead)
    assert dead["error"] == f"boom {MAX_DELIVERIES}" and dead["payload"] == '{"poison":true}'


async def test_hand_back_on_shutdown_is_immediate_and_not_an_attempt(
    inbox_for: Callable[..., RedisInbox],
) -> None:
    leaving, staying = inbox_for(lease_seconds=30), inbox_for(lease_seconds=30)
    await leaving.setup()
    await leaving.accept({}, ["e"], now())
    (item,) = await leaving.claim("leaving-0", 1)
    assert await leaving.hand_back() == 1
    (again,) = await staying.claim("staying-0", 1)  # no 30 s wait
    assert again.id == item.id and again.attempts == 2


async def test_accepted_work_survives_a_redis_crash(
    redis_server: RedisServer, inbox_for: Callable[..., RedisInbox]
) -> None:
    up = Availability("Medic's Redis")
    inbox = inbox_for(availability=up)
    await inbox.setup()
    for i in range(5):
        await inbox.accept({"i": i}, [f"e{i}"], now())
    claimed = await inbox.claim("w", 2)
    await redis_server.kill()  # SIGKILL: AOF (everysec) data is in the page cache
    with pytest.raises(BackendUnavailable):
        await inbox.depth()
    assert not up.up
    with pytest.raises(BackendUnavailable):  # fails fast while known down
        await inbox.claim("w", 1)
    await redis_server.start()
    up.mark_up()
    assert await inbox.depth() == 5
    rest = await inbox.claim("w", 10)
    assert len(rest) == 3 and not {i.id for i in rest} & {i.id for i in claimed}
    await inbox.ack_many([i.id for i in claimed + rest])
    assert (await inbox.accept({}, ["e0"], now())).duplicates == 1  # the dedup keys survived too


async def test_lost_consumer_group_is_recreated(client: Redis, inbox_for: Callable[..., RedisInbox]) -> None:
    inbox = inbox_for()
    await inbox.setup()
    await client.flushall()  # e.g. a Redis without persistence restarted
    await inbox.accept({}, ["e"], now())
    (item,) = await inbox.claim("w", 1)
    assert item.new_episodes == ["e"]


async def test_unreachable_redis_fails_fast() -> None:
    redis = connect(f"redis://127.0.0.1:{free_port()}/0")
    inbox = RedisInbox(redis, KEYS, dedup_ttl=60, lease_seconds=1, queue_max=10)
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(BackendUnavailable):
        await inbox.accept({}, ["e"], now())
    assert loop.time() - started < 2
    await redis.aclose()


async def test_consumers_of_dead_processes_are_forgotten(
    client: Redis, inbox_for: Callable[..., RedisInbox]
) -> None:
    inbox = inbox_for()
    await inbox.setup()
    await inbox.accept({}, ["e1"], now())
    await inbox.accept({}, ["e2"], now())
    (done,) = await inbox.claim("gone-1", 1)
    await inbox.ack_many([done.id])
    await inbox.claim("holding-1", 1)  # still holds an entry: kept until it is taken over
    await asyncio.sleep(0.2)
    assert await inbox.forget_idle_consumers(idle_seconds=0.1) == 1
    names = {c["name"] for c in await client.xinfo_consumers(KEYS.inbox, GROUP)}
    assert names == {"holding-1"}


SECRET_BODY = {
    "alerts": [{"labels": {"alertname": "A", "dsn": "postgres://app:hunter2-very-secret@db/app"}}],
    "note": "token=ghp_abcdefghijklmnopqrstuvwxyz0123456789",
}


async def test_dead_letters_are_stored_redacted_on_every_path(
    client: Redis, inbox_for: Callable[..., RedisInbox]
) -> None:
    inbox = inbox_for(lease_seconds=0.2, retry_delay=0.1)
    await inbox.setup()
    # released as dead by a worker
    await inbox.accept(SECRET_BODY, ["s1"], now())
    (item,) = await inbox.claim("w", 10)
    await inbox.release(item.id, "boom: password=hunter2-very-secret", episodes=["s1"], dead=True)
    # its consumer kept dying with it (never released): dead-lettered at a later claim
    await inbox.accept(SECRET_BODY, ["s2"], now())
    for _ in range(60):
        inbox._next_autoclaim = 0
        await inbox.claim("w", 10)  # claimed and never finished
        if await inbox.dead_letters() == 2:
            break
        await asyncio.sleep(0.25)
    dead = await client.xrange(KEYS.dead)
    assert len(dead) == 2 and await inbox.depth() == 0
    for _, record in dead:
        stored = " ".join(record.values())
        assert "hunter2" not in stored and "ghp_abcdefghij" not in stored, record
        assert "[REDACTED]" in record["payload"]
    assert not await client.exists(KEYS.dedup("s1")) and not await client.exists(KEYS.dedup("s2"))
    letters, total = await inbox.list_dead_letters()
    assert total == 2 and {tuple(d.episodes) for d in letters} == {("s1",), ("s2",)}
