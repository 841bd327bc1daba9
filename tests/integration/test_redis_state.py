"""Redis coordination against a real Redis (AOF on), what only this backend has: the same fencing
token for a re-entrant holder, a budget refusal leaving no key behind, the pipeline's
cross-replica key lock, the CLI's kill switch. What every coordination backend does is in
tests/contract/test_coordination_contract.py."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from redis.asyncio import Redis

from medic.app.backend_select import open_backend
from medic.app.settings import load_settings
from medic.clients.availability import Availability
from medic.clients.redis import connect
from medic.coordination.keylock import RedisKeyLocker, fence_token
from medic.coordination.redis import RedisRemediationState
from medic.coordination.redis_keys import RedisKeys
from medic.domain.actions import ActionLimit, ActionMark, BudgetExhausted
from medic.domain.errors import BackendUnavailable, ConfigError
from tests.servers.redis_server import RedisServer

pytestmark = pytest.mark.integration

KEYS = RedisKeys()
TARGET = "deployment/playcode/playcode-app"


@pytest.fixture
async def clients(redis_server: RedisServer) -> AsyncIterator[list[Redis]]:
    """Two clients: two replicas."""
    made = [connect(redis_server.url), connect(redis_server.url)]
    yield made
    for c in made:
        await c.aclose()


@pytest.fixture
def replicas(clients: list[Redis]) -> list[RedisRemediationState]:
    return [RedisRemediationState(c, KEYS) for c in clients]


def mark(key: str, at: datetime, target: str = TARGET, status: str = "started") -> ActionMark:
    return ActionMark(key, target, "rollback", "inc-1", at, status, {"from_revision": 2})


async def test_locks_are_fenced_owned_and_expire(replicas: list[RedisRemediationState]) -> None:
    a, b = replicas
    token = await a.acquire_fenced("target:x", "a", ttl=0.3)
    assert token is not None
    assert await b.acquire_fenced("target:x", "b", ttl=5) is None
    assert await a.acquire_fenced("target:x", "a", ttl=0.3) == token  # re-entrant, same token
    await b.release_lock("target:x", "b")  # not the owner: no effect
    assert not await b.acquire_lock("target:x", "b", ttl=5)
    assert await a.renew_lock("target:x", "a", ttl=0.3)
    await asyncio.sleep(0.4)  # a stopped renewing: expired
    assert not await a.renew_lock("target:x", "a", ttl=0.3)
    newer = await b.acquire_fenced("target:x", "b", ttl=5)
    assert newer is not None and newer > token
    await b.release_lock("target:x", "b")
    assert await a.acquire_lock("target:x", "a", ttl=5)


async def test_budgets_hold_across_replicas_acting_at_once(replicas: list[RedisRemediationState]) -> None:
    """begin_action checks the budgets and records the mark in one script: 24 actions begun at
    once by two replicas on 12 targets never exceed the global budget (3 per hour) nor a
    target's (1 per hour), and a refusal records nothing."""
    now = datetime.now(UTC)
    limits = (
        ActionLimit("budget", 1, timedelta(hours=1), per_target=True),
        ActionLimit("global_budget", 3, timedelta(hours=1), per_target=False),
    )
    targets = [f"deployment/playcode/svc-{i}" for i in range(12)]

    async def begin(i: int) -> str:
        target = targets[i % len(targets)]
        try:
            fresh = await replicas[i % 2].begin_action(
                mark(f"rollback|{target}|{i}", now, target=target), limits
            )
        except BudgetExhausted as exc:
            return exc.limit.name
        return "begun" if fresh else "duplicate"

    outcomes = await asyncio.gather(*(begin(i) for i in range(24)))
    assert outcomes.count("begun") == 3, outcomes
    assert set(outcomes) == {"begun", "budget", "global_budget"}
    assert await replicas[0].count_actions(now - timedelta(hours=1)) == 3
    begun = [i for i, o in enumerate(outcomes) if o == "begun"]
    assert len({targets[i % len(targets)] for i in begun}) == 3  # one per target
    # nothing was recorded for a refusal: its key is free, and a begun key is still a duplicate
    refused = next(i for i, o in enumerate(outcomes) if o != "begun")
    assert not await replicas[1].client.exists(KEYS.action(f"rollback|{targets[refused % 12]}|{refused}"))
    first = begun[0]
    again = mark(f"rollback|{targets[first % 12]}|{first}", now, target=targets[first % 12])
    assert await replicas[1].begin_action(again, limits) is False  # not refused: already begun
    # a skipped action frees its share of the budget
    await replicas[0].finish_action(again.idempotency_key, "skipped", {})
    busy = {targets[i % 12] for i in begun[1:]}
    free = next(t for t in targets if t not in busy)
    assert await replicas[1].begin_action(mark("rollback|late", now, target=free), limits)


async def test_the_pipeline_lock_serialises_replicas_and_fences_writes(
    replicas: list[RedisRemediationState],
) -> None:
    lockers = [RedisKeyLocker(r, f"replica-{i}", ttl=1.0) for i, r in enumerate(replicas)]
    inside = 0
    most = 0
    tokens: list[int | None] = []

    async def work(locker: RedisKeyLocker) -> None:
        nonlocal inside, most
        async with locker.hold("rule|deployment/playcode/app"):
            inside += 1
            most = max(most, inside)
            tokens.append(fence_token.get())
            await asyncio.sleep(0.05)
            inside -= 1

    await asyncio.gather(*(work(lockers[i % 2]) for i in range(6)))
    assert most == 1
    assert all(t is not None for t in tokens) and tokens == sorted(tokens)  # type: ignore[type-var]
    assert fence_token.get() is None


async def test_a_held_lock_is_renewed_beyond_its_ttl(replicas: list[RedisRemediationState]) -> None:
    holder = RedisKeyLocker(replicas[0], "slow", ttl=0.3)
    other = replicas[1]
    async with holder.hold("k"):
        await asyncio.sleep(0.7)  # longer than the ttl: renewed meanwhile
        assert await other.acquire_fenced("incident:k", "other", ttl=1) is None
    assert await other.acquire_fenced("incident:k", "other", ttl=1) is not None


async def test_lock_falls_back_to_local_when_redis_is_down(redis_server: RedisServer) -> None:
    up = Availability("Medic's Redis")
    client = connect(redis_server.url)
    state = RedisRemediationState(client, KEYS, availability=up)
    await redis_server.stop()
    locker = RedisKeyLocker(state, "r", ttl=1)
    async with locker.hold("k"):
        assert fence_token.get() is None  # no token: local only
    assert not up.up
    with pytest.raises(BackendUnavailable):  # the executor's guard reads this as "no coordination"
        await state.kill_switch()
    await client.aclose()


async def test_the_cli_kill_switch_uses_medics_redis(redis_server: RedisServer, tmp_path: Path) -> None:
    """``kubectl exec ... medic kill-switch on`` in a replica flips the switch every replica reads."""
    medic = Path(sys.executable).with_name("medic")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEDIC_")}
    env |= {
        "MEDIC_REDIS_URL": redis_server.url,
        "MEDIC_MONGO_URL": "mongodb://127.0.0.1:1/",
        "MEDIC_DATA_DIR": str(tmp_path),
    }
    proc = await asyncio.create_subprocess_exec(
        str(medic), "kill-switch", "on", "--reason", "incident 123", env=env, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await proc.communicate()
    assert proc.returncode == 0 and b"ON" in out
    client = connect(redis_server.url)
    ks = await RedisRemediationState(client, KEYS).kill_switch()
    await client.aclose()
    assert ks.enabled and ks.reason == "incident 123"
    assert not (tmp_path / "medic.sqlite3").exists(), "not written to a replica-local store"


@pytest.mark.parametrize("given", ["redis_url", "mongo_url"])
async def test_half_a_production_backend_is_refused(tmp_path: Path, given: str) -> None:
    settings = load_settings(
        data_dir=tmp_path, **{given: "redis://x" if given == "redis_url" else "mongodb://x"}
    )
    with pytest.raises(ConfigError, match="go together"):
        await open_backend(settings)
