"""The one contract every coordination backend passes (``medic.coordination.base.RemediationState``
and ``medic.coordination.marks.Marks``), run against the embedded SQLite state (a file in
tmp_path) and the Redis state (a real Redis, AOF on), each seen by two replicas (two clients of
one Redis; two state objects on one SQLite file, as a replica's intake and diagnosis processes):

* the kill switch: off until set, then what was set (by, reason, when), read by every replica;
* per-target locks: one holder, re-entrant for it, released only by it, expiring after its ttl;
  fenced locks: a token that only grows, renewal only by the holder;
* the action ledger: an idempotency key is begun at most once (also when replicas race: a
  guarded re-attempt claims nothing twice), the last action on a target, counts over a window
  (per target and on all), skipped actions counting for nothing, ``actions_since`` oldest first;
* budgets checked where the action is recorded: replicas acting at once never exceed a budget,
  a refusal records nothing and says which limit and how much of it was used;
* durable marks: claimed once (concurrent claimants: one wins, the others read its value),
  ``get``/``put``, prefixes kept apart.

And what the executor relies on when Medic's Redis is down: every operation fails fast with
:class:`~medic.domain.errors.BackendUnavailable` (the guards read it as "no coordination": no
automatic action), never with another error, never with an answer.

What only one backend has (SQLite: one process per data dir, freeing the locks of dead local
processes, the purge; Redis: key names, the pipeline's key locker) stays in
tests/integration/test_sqlite_state.py and test_redis_state.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import pytest

from medic.clients.availability import Availability
from medic.clients.redis import connect
from medic.clients.sqlite import SqliteDB
from medic.coordination.base import RemediationState
from medic.coordination.keylock import FencedLocks
from medic.coordination.marks import Marks, SqliteMarks
from medic.coordination.redis import RedisMarks, RedisRemediationState
from medic.coordination.redis_keys import RedisKeys
from medic.coordination.sqlite import SqliteRemediationState
from medic.domain.actions import ActionLimit, ActionMark, BudgetExhausted
from medic.domain.errors import BackendUnavailable
from tests.servers.fixtures import RedisServerFactory
from tests.servers.process import free_port

pytestmark = pytest.mark.integration

BACKENDS = ["sqlite", "redis"]
TARGET = "deployment/playcode/playcode-app"
OTHER = "deployment/playcode/other"


class State(RemediationState, FencedLocks, Protocol):
    """The state's full public interface: the executor's protocol and the key locker's."""


@dataclass
class Replica:
    state: State
    marks: Callable[[str], Marks]


@dataclass
class Coordination:
    name: str
    a: Replica
    b: Replica


@pytest.fixture(params=BACKENDS)
async def backend(
    request: pytest.FixtureRequest, tmp_path: Path, redis_server_factory: RedisServerFactory
) -> AsyncIterator[Coordination]:
    name: str = request.param
    if name == "sqlite":
        db = SqliteDB(tmp_path / "medic.sqlite3")
        await db.open()

        def sqlite_replica() -> Replica:
            return Replica(SqliteRemediationState(db), lambda prefix: SqliteMarks(db, prefix))

        yield Coordination(name, sqlite_replica(), sqlite_replica())
        await db.close()
        return
    server = await redis_server_factory()
    keys = RedisKeys()
    clients = [connect(server.url), connect(server.url)]

    def redis_replica(i: int) -> Replica:
        client = clients[i]
        return Replica(RedisRemediationState(client, keys), lambda prefix: RedisMarks(client, keys, prefix))

    yield Coordination(name, redis_replica(0), redis_replica(1))
    for client in clients:
        await client.aclose()


def mark(key: str, at: datetime, target: str = TARGET, status: str = "started", **detail: Any) -> ActionMark:
    return ActionMark(key, target, "rollback", "inc-1", at, status, dict(detail))


def close_to(a: datetime, b: datetime) -> bool:
    return abs(a - b) < timedelta(milliseconds=1)


# ---------------------------------------------------------------- kill switch


async def test_kill_switch_is_off_until_set_and_every_replica_reads_it(backend: Coordination) -> None:
    a, b = backend.a.state, backend.b.state
    assert not (await a.kill_switch()).enabled
    before = datetime.now(UTC)
    set_on = await a.set_kill_switch(True, "alice", "deploy freeze")
    assert set_on.enabled and set_on.by == "alice" and set_on.reason == "deploy freeze"
    seen = await b.kill_switch()
    assert (seen.enabled, seen.by, seen.reason) == (True, "alice", "deploy freeze")
    assert seen.at is not None and before - timedelta(seconds=1) <= seen.at <= datetime.now(UTC)
    assert set_on.at is not None and close_to(seen.at, set_on.at)
    await b.set_kill_switch(False, "bob", "freeze over")
    off = await a.kill_switch()
    assert (off.enabled, off.by, off.reason) == (False, "bob", "freeze over")


# ---------------------------------------------------------------- locks


async def test_a_lock_has_one_holder_released_only_by_it(backend: Coordination) -> None:
    a, b = backend.a.state, backend.b.state
    assert await a.acquire_lock("target:x", "a", ttl=60)
    assert not await b.acquire_lock("target:x", "b", ttl=60)
    assert await a.acquire_lock("target:x", "a", ttl=60)  # re-entrant for its holder
    await b.release_lock("target:x", "b")  # not the holder: no effect
    assert not await b.acquire_lock("target:x", "b", ttl=60)
    assert await b.acquire_lock("target:y", "b", ttl=60)  # locks are per key
    await a.release_lock("target:x", "a")
    assert await b.acquire_lock("target:x", "b", ttl=60)
    assert not await a.acquire_lock("target:x", "a", ttl=60)


async def test_only_one_of_many_racing_owners_gets_a_lock(backend: Coordination) -> None:
    replicas = (backend.a.state, backend.b.state)
    got = await asyncio.gather(
        *(replicas[i % 2].acquire_lock("target:x", f"o{i}", ttl=60) for i in range(10))
    )
    assert got.count(True) == 1


async def test_a_lock_expires_after_its_ttl_and_its_old_holder_cannot_renew_it(backend: Coordination) -> None:
    a, b = backend.a.state, backend.b.state
    assert await a.acquire_lock("target:x", "a", ttl=0.2)
    assert not await b.acquire_lock("target:x", "b", ttl=60)
    await asyncio.sleep(0.35)
    assert await b.acquire_lock("target:x", "b", ttl=60)  # expired: free for another
    assert not await a.renew_lock("target:x", "a", ttl=60)
    await a.release_lock("target:x", "a")  # the old holder's release frees nothing
    assert not await a.acquire_lock("target:x", "a", ttl=60)


async def test_fenced_tokens_only_grow_and_renewal_is_the_holders(backend: Coordination) -> None:
    a, b = backend.a.state, backend.b.state
    first = await a.acquire_fenced("incident:k", "a", ttl=60)
    assert first is not None
    assert await b.acquire_fenced("incident:k", "b", ttl=60) is None
    again = await a.acquire_fenced("incident:k", "a", ttl=60)  # re-entrant: never an older token
    assert again is not None and again >= first
    other = await b.acquire_fenced("incident:other", "b", ttl=60)
    assert other is not None and other > first  # tokens grow across every lock
    assert await a.renew_lock("incident:k", "a", ttl=60)
    assert not await b.renew_lock("incident:k", "b", ttl=60)
    await a.release_lock("incident:k", "a")
    assert not await a.renew_lock("incident:k", "a", ttl=60)  # released: nothing to renew
    taken = await b.acquire_fenced("incident:k", "b", ttl=60)
    assert taken is not None and taken > max(again, other)


# ---------------------------------------------------------------- the action ledger


async def test_an_idempotency_key_is_begun_once_even_when_replicas_race(backend: Coordination) -> None:
    """A guarded re-attempt (a retry after a crash, the same action from two replicas) claims
    nothing a second time."""
    replicas = (backend.a.state, backend.b.state)
    now = datetime.now(UTC)
    results = await asyncio.gather(
        *(replicas[i % 2].begin_action(mark("rollback|x|2->1", now)) for i in range(10))
    )
    assert results.count(True) == 1
    assert await replicas[1].begin_action(mark("rollback|x|2->1", now)) is False
    await replicas[0].finish_action("rollback|x|2->1", "failed", {})
    assert await replicas[1].begin_action(mark("rollback|x|2->1", now)) is False  # finished: still taken
    assert await replicas[0].count_actions(now - timedelta(hours=1), TARGET) == 1


async def test_last_action_is_the_latest_begun_on_the_target_as_finished(backend: Coordination) -> None:
    a, b = backend.a.state, backend.b.state
    now = datetime.now(UTC)
    assert await b.last_action(TARGET) is None
    assert await a.begin_action(mark("k1", now - timedelta(hours=3), from_revision=1))
    assert await a.begin_action(mark("k2", now - timedelta(minutes=20), from_revision=2))
    assert await a.begin_action(mark("k3", now - timedelta(minutes=5), target=OTHER))
    last = await b.last_action(TARGET)
    assert last is not None and last.idempotency_key == "k2"
    assert (last.target, last.action, last.incident_id, last.status) == (
        TARGET,
        "rollback",
        "inc-1",
        "started",
    )
    assert last.detail == {"from_revision": 2} and close_to(last.at, now - timedelta(minutes=20))
    await a.finish_action("k2", "succeeded", {"verify": "rolled out"})
    last = await b.last_action(TARGET)
    assert last is not None and (last.status, last.detail) == ("succeeded", {"verify": "rolled out"})
    await a.finish_action("k2", "skipped", {"error": "conflict"})  # a skip is no action
    last = await b.last_action(TARGET)
    assert last is not None and last.idempotency_key == "k1"
    await a.finish_action("unknown", "failed", {})  # nothing to finish: no error
    assert await b.last_action("deployment/playcode/never") is None


async def test_counts_over_a_window_per_target_and_on_all(backend: Coordination) -> None:
    a, b = backend.a.state, backend.b.state
    now = datetime.now(UTC)
    await a.begin_action(mark("k1", now - timedelta(hours=3)))
    await a.begin_action(mark("k2", now - timedelta(minutes=20)))
    await a.begin_action(mark("k3", now - timedelta(minutes=5), target=OTHER))
    await a.begin_action(mark("k4", now - timedelta(minutes=1), status="skipped"))  # begun as skipped
    assert await b.count_actions(now - timedelta(hours=1), TARGET) == 1
    assert await b.count_actions(now - timedelta(hours=4), TARGET) == 2
    assert await b.count_actions(now - timedelta(hours=1)) == 2
    assert await b.count_actions(now - timedelta(hours=4)) == 3
    assert await b.count_actions(now) == 0
    await a.finish_action("k2", "skipped", {})
    assert await b.count_actions(now - timedelta(hours=4), TARGET) == 1


async def test_actions_since_lists_the_ledger_oldest_first(backend: Coordination) -> None:
    a, b = backend.a.state, backend.b.state
    now = datetime.now(UTC)
    await a.begin_action(mark("late", now - timedelta(minutes=1), target=OTHER))
    await a.begin_action(mark("early", now - timedelta(minutes=30), n=1))
    await a.begin_action(mark("old", now - timedelta(days=2)))
    await a.begin_action(mark("skip", now - timedelta(minutes=10), status="skipped"))
    await a.finish_action("early", "succeeded", {"n": 2})
    found = await b.actions_since(now - timedelta(hours=1))
    assert [m.idempotency_key for m in found] == ["early", "late"]
    assert (found[0].status, found[0].detail, found[0].target) == ("succeeded", {"n": 2}, TARGET)
    assert await b.actions_since(now) == []


# ---------------------------------------------------------------- budgets


LIMITS = (
    ActionLimit("budget", 1, timedelta(hours=1), per_target=True),
    ActionLimit("global_budget", 3, timedelta(hours=1), per_target=False),
)


async def test_budgets_hold_when_replicas_act_at_once(backend: Coordination) -> None:
    replicas = (backend.a.state, backend.b.state)
    now = datetime.now(UTC)
    targets = [f"deployment/playcode/svc-{i}" for i in range(12)]

    async def begin(i: int) -> str:
        target = targets[i % len(targets)]
        try:
            fresh = await replicas[i % 2].begin_action(mark(f"k{i}", now, target=target), LIMITS)
        except BudgetExhausted as exc:
            assert exc.used >= exc.limit.count
            return exc.limit.name
        return "begun" if fresh else "duplicate"

    outcomes = await asyncio.gather(*(begin(i) for i in range(24)))
    assert outcomes.count("begun") == 3 and set(outcomes) == {"begun", "budget", "global_budget"}, outcomes
    begun = [i for i, o in enumerate(outcomes) if o == "begun"]
    assert len({targets[i % 12] for i in begun}) == 3  # one per target
    assert await replicas[0].count_actions(now - timedelta(hours=1)) == 3
    # a refusal recorded nothing: its key is still free once there is room again
    refused = next(i for i, o in enumerate(outcomes) if o == "global_budget")
    await replicas[1].finish_action(f"k{begun[0]}", "skipped", {})  # a skip gives its share back
    assert await replicas[0].begin_action(mark(f"k{refused}", now, target=targets[refused % 12]), LIMITS)
    # an already begun key is a duplicate, not a refusal
    assert (
        await replicas[1].begin_action(mark(f"k{begun[1]}", now, target=targets[begun[1] % 12]), LIMITS)
        is False
    )


async def test_a_refusal_names_the_limit_and_its_use(backend: Coordination) -> None:
    state = backend.a.state
    now = datetime.now(UTC)
    assert await state.begin_action(mark("k1", now - timedelta(minutes=30)), LIMITS)
    with pytest.raises(BudgetExhausted) as refused:
        await state.begin_action(mark("k2", now), LIMITS)
    assert (refused.value.limit, refused.value.used) == (LIMITS[0], 1)
    assert await state.last_action(TARGET) is not None
    assert (await state.last_action(TARGET)).idempotency_key == "k1"  # type: ignore[union-attr]
    # outside the window the budget is free again
    assert await state.begin_action(mark("k3", now + timedelta(hours=1)), LIMITS)
    assert await state.begin_action(mark("k4", now, status="skipped"), LIMITS)  # a skip needs no budget


# ---------------------------------------------------------------- marks


async def test_a_mark_is_claimed_once(backend: Coordination) -> None:
    one, two = backend.a.marks("notify:"), backend.b.marks("notify:")
    claims = await asyncio.gather(
        *((one if i % 2 else two).claim("inc-1|oncall|opened", f"v{i}") for i in range(8))
    )
    winners = [i for i, c in enumerate(claims) if c is None]
    assert len(winners) == 1
    assert set(claims) == {None, f"v{winners[0]}"}  # the others read the winner's value
    assert await two.get("inc-1|oncall|opened") == f"v{winners[0]}"


async def test_marks_get_put_and_prefixes(backend: Coordination) -> None:
    notify, approvals = backend.a.marks("notify:"), backend.b.marks("approval:")
    assert await notify.get("k") is None
    await notify.put("k", "one")
    assert await backend.b.marks("notify:").get("k") == "one"
    assert await approvals.get("k") is None  # another prefix: another mark
    assert await approvals.claim("k", "two") is None
    await notify.put("k", "three")  # put overwrites
    assert (await notify.get("k"), await approvals.get("k")) == ("three", "two")


# ---------------------------------------------------------------- Medic's Redis down


def operations(state: RedisRemediationState, marks: RedisMarks) -> dict[str, Callable[[], Awaitable[Any]]]:
    now = datetime.now(UTC)
    return {
        "kill_switch": state.kill_switch,
        "set_kill_switch": lambda: state.set_kill_switch(True, "alice", "freeze"),
        "acquire_lock": lambda: state.acquire_lock("t", "a", 60),
        "acquire_fenced": lambda: state.acquire_fenced("t", "a", 60),
        "renew_lock": lambda: state.renew_lock("t", "a", 60),
        "release_lock": lambda: state.release_lock("t", "a"),
        "begin_action": lambda: state.begin_action(mark("k", now), LIMITS),
        "finish_action": lambda: state.finish_action("k", "succeeded", {}),
        "last_action": lambda: state.last_action(TARGET),
        "count_actions": lambda: state.count_actions(now),
        "actions_since": lambda: state.actions_since(now),
        "claim": lambda: marks.claim("k", "v"),
        "get": lambda: marks.get("k"),
        "put": lambda: marks.put("k", "v"),
    }


async def test_while_redis_is_down_every_operation_fails_fast_as_unavailable() -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    client = connect(url, timeout=0.5)
    up = Availability("Medic's Redis")
    keys = RedisKeys()
    state = RedisRemediationState(client, keys, availability=up)
    marks = RedisMarks(client, keys, "notify:", availability=up)
    try:
        ops = operations(state, marks)
        for name, op in ops.items():  # the first call finds it down, the others fail fast
            with pytest.raises(BackendUnavailable):
                await asyncio.wait_for(op(), 5.0)
            assert not up.up, name
        fresh = RedisRemediationState(client, keys, availability=Availability("Medic's Redis"))
        fresh_marks = RedisMarks(client, keys, "notify:")
        for op in operations(fresh, fresh_marks).values():  # no breaker yet: each call tries
            with pytest.raises(BackendUnavailable):
                await asyncio.wait_for(op(), 5.0)
    finally:
        await client.aclose()
