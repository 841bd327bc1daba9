"""Redis collectors and analyzers against a real redis-server driven into the states on-call meets:
maxmemory with evictions or OOM refusals, too many clients, slow commands, AOF off or failing,
stopped, paused; plus a wire-level fake for a huge INFO. Steps run through the runner's run_step."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.exceptions import OutOfMemoryError, ResponseError

from medic.analysis.latency import latency
from medic.analysis.redis_health import redis_health
from medic.app.backends import Backends
from medic.app.catalogue import default_registry
from medic.app.settings import Settings
from medic.domain.evidence import Evidence, StepStatus
from medic.domain.incident import Finding, Target
from medic.playbooks.contract import AnalysisInput, StepContext
from medic.playbooks.runner import PlannedStep, run_step, run_steps
from tests.servers.fixtures import RedisServerFactory
from tests.servers.redis_server import RedisServer

pytestmark = pytest.mark.integration

REDIS = Target(kind="deployment", namespace="playcode", name="redis")
REGISTRY = default_registry()
PLAYBOOK = ("redis.ping", "redis.info", "redis.dbsize", "redis.slowlog")


def planned(name: str, params: dict[str, Any] | None = None, timeout: float = 5.0) -> PlannedStep:
    collector = REGISTRY.collectors[name]
    return PlannedStep(name, collector, collector.params.model_validate(params or {}), timeout)


@contextlib.asynccontextmanager
async def medic_for(url: str) -> AsyncIterator[Backends]:
    backends = await Backends.from_settings(Settings(target_redis_url=url).diagnosed)
    try:
        yield backends
    finally:
        await backends.close()


async def diagnose(url: str, *, timeout: float = 5.0) -> tuple[list[Evidence], list[Finding]]:
    """Run the redis-down playbook's steps concurrently and the redis analyzer over them."""
    async with medic_for(url) as backends:
        ctx = StepContext(REDIS, {"namespace": "playcode"}, [], backends, datetime.now(UTC), timeout)
        evidence = await run_steps(
            [planned(n, timeout=timeout) for n in PLAYBOOK], ctx, deadline=10, max_bytes=256 * 1024
        )
    inp = AnalysisInput(
        REDIS, {"namespace": "playcode"}, [], {e.step: e for e in evidence}, datetime.now(UTC)
    )
    return evidence, redis_health(inp)


def data(evidence: list[Evidence], step: str) -> Any:
    (ev,) = [e for e in evidence if e.step == step]
    assert ev.ok, ev.error
    return ev.data


@pytest.fixture
async def client() -> AsyncIterator[list[aioredis.Redis]]:
    clients: list[aioredis.Redis] = []
    yield clients
    for c in clients:
        await c.aclose()


def connect(server: RedisServer, clients: list[aioredis.Redis]) -> aioredis.Redis:
    c = aioredis.Redis.from_url(server.url)
    clients.append(c)
    return c


async def test_healthy_redis(redis_server: RedisServer, client: list[aioredis.Redis]) -> None:
    r = connect(redis_server, client)
    for i in range(10):
        await r.set(f"user:{i}", "x")
    evidence, findings = await diagnose(redis_server.url)
    assert data(evidence, "redis.ping")["pong"] is True
    assert data(evidence, "redis.ping")["latency_ms"]["median"] < 50
    info = data(evidence, "redis.info")
    assert info["server"]["redis_version"].startswith("7.")
    assert info["persistence"]["aof_enabled"] == 1 and info["persistence"]["aof_last_write_status"] == "ok"
    assert info["memory"]["maxmemory"] == 0 and info["memory"]["used_ratio"] is None
    assert info["keyspace"]["db0"]["keys"] == 10
    assert data(evidence, "redis.dbsize") == {"db": 0, "keys": 10}
    assert findings == []


async def test_maxmemory_with_evictions(
    redis_server_factory: RedisServerFactory, client: list[aioredis.Redis]
) -> None:
    server = await redis_server_factory(maxmemory="2mb", maxmemory_policy="allkeys-lru")
    r = connect(server, client)
    for i in range(300):
        await r.set(f"session:{i}", "v" * 20_000)
    evidence, findings = await diagnose(server.url)
    info = data(evidence, "redis.info")
    assert info["memory"]["maxmemory"] == 2 * 1024 * 1024
    assert info["memory"]["maxmemory_policy"] == "allkeys-lru"
    assert info["stats"]["evicted_keys"] > 0
    assert data(evidence, "redis.dbsize")["keys"] < 300
    (f,) = findings
    assert f.code == "redis.evicting"
    assert f"evicted {info['stats']['evicted_keys']} keys" in f.summary and "allkeys-lru" in f.summary
    assert f.next_steps[0] == "kubectl exec -it deployment/redis -n playcode -- redis-cli info memory"
    # the same evidence names Redis as a cause of latency
    inp = AnalysisInput(REDIS, {}, [], {e.step: e for e in evidence}, datetime.now(UTC))
    assert [x.code for x in latency(inp)] == ["latency.redis_evicting"]


async def test_noeviction_at_maxmemory_refuses_writes(
    redis_server_factory: RedisServerFactory, client: list[aioredis.Redis]
) -> None:
    server = await redis_server_factory(maxmemory="2mb", maxmemory_policy="noeviction")
    r = connect(server, client)
    refused = 0
    for i in range(300):
        try:
            await r.set(f"k:{i}", "v" * 20_000)
        except OutOfMemoryError:
            refused += 1
    assert refused > 0
    evidence, findings = await diagnose(server.url)
    assert data(evidence, "redis.info")["errorstats"]["OOM"] == refused
    (f,) = findings
    assert f.code == "redis.maxmemory_oom" and f.severity == "critical"
    assert f"({refused} so far)" in f.summary


async def test_too_many_clients(redis_server_factory: RedisServerFactory) -> None:
    server = await redis_server_factory(extra_args=["--maxclients", "12"])
    conns = []
    rejected = 0
    try:
        for _ in range(20):
            reader, writer = await asyncio.open_connection(server.host, server.port)
            conns.append(writer)
            writer.write(b"PING\r\n")
            await writer.drain()
            answer = await asyncio.wait_for(reader.readline(), 2)
            rejected += answer.startswith(b"-ERR max number of clients")
    finally:
        for writer in conns:
            writer.close()
    assert rejected == 8
    await asyncio.sleep(0.2)  # let Redis notice the closed connections
    evidence, findings = await diagnose(server.url)
    assert data(evidence, "redis.info")["stats"]["rejected_connections"] == 8
    assert data(evidence, "redis.info")["clients"]["maxclients"] == 12
    (f,) = findings
    assert f.code == "redis.rejected_connections" and "rejected 8 connections" in f.summary


async def test_slow_command_in_the_slowlog(redis_server: RedisServer, client: list[aioredis.Redis]) -> None:
    r = connect(redis_server, client)
    await r.config_set("slowlog-log-slower-than", 5000)  # 5 ms
    await r.set("session:8f14e45fceea167a5a36dedd4bea2543", "password=hunter2")
    await r.eval("local i = 0 while i < 8000000 do i = i + 1 end return i", 0)
    evidence, findings = await diagnose(redis_server.url)
    slowlog = data(evidence, "redis.slowlog")
    assert slowlog["total"] >= 1
    entry = slowlog["entries"][0]
    assert entry["command"] == "EVAL" and entry["duration_ms"] >= 10
    assert "hunter2" not in str(evidence)
    (f,) = findings
    assert f.code == "redis.slow_commands" and "EVAL" in f.summary


async def test_slowlog_shows_key_patterns_not_values(
    redis_server: RedisServer, client: list[aioredis.Redis]
) -> None:
    r = connect(redis_server, client)
    await r.config_set("slowlog-log-slower-than", 0)
    await r.set("session:8f14e45fceea167a5a36dedd4bea2543", "password=hunter2")
    await r.config_set("slowlog-log-slower-than", 10_000_000)  # Medic's own commands stay out
    evidence, _ = await diagnose(redis_server.url)
    entries = data(evidence, "redis.slowlog")["entries"]
    (set_entry,) = [e for e in entries if e["command"] == "SET"]
    assert set_entry["key_pattern"] == "session:<hex>" and set_entry["args"] == 3
    assert "hunter2" not in "".join(e.model_dump_json() for e in evidence)


async def test_aof_off_then_on(
    redis_server_factory: RedisServerFactory, client: list[aioredis.Redis]
) -> None:
    server = await redis_server_factory(appendonly=False)
    _, findings = await diagnose(server.url)
    assert [f.code for f in findings] == ["redis.aof_disabled"]
    r = connect(server, client)
    await r.config_set("appendonly", "yes")
    for _ in range(50):  # enabling AOF starts a rewrite; wait until it is done
        info = await r.info("persistence")
        if info["aof_enabled"] == 1 and info["aof_rewrite_in_progress"] == 0:
            break
        await asyncio.sleep(0.05)
    evidence, findings = await diagnose(server.url)
    assert data(evidence, "redis.info")["persistence"]["aof_enabled"] == 1
    assert findings == []


async def test_failed_aof_rewrite(redis_server: RedisServer, client: list[aioredis.Redis]) -> None:
    r = connect(redis_server, client)
    await r.set("a", "b")
    aof_dir = redis_server.dir / "appendonlydir"
    shutil.rmtree(aof_dir)
    aof_dir.write_text("not a directory")  # the rewrite cannot create its files
    with pytest.raises(ResponseError):
        await r.bgrewriteaof()
    evidence, findings = await diagnose(redis_server.url)
    assert data(evidence, "redis.info")["persistence"]["aof_last_bgrewrite_status"] == "err"
    (f,) = findings
    assert f.code == "redis.aof_rewrite_failed" and f.severity == "warning"
    assert f.next_steps[0] == "kubectl exec -it deployment/redis -n playcode -- redis-cli info persistence"


async def test_stopped_redis_is_a_fast_error(redis_server: RedisServer) -> None:
    evidence, _ = await diagnose(redis_server.url)
    assert all(e.ok for e in evidence)
    await redis_server.stop()
    t0 = time.perf_counter()
    evidence, findings = await diagnose(redis_server.url, timeout=15)
    assert time.perf_counter() - t0 < 1.0
    assert {e.status for e in evidence} == {StepStatus.ERROR}
    assert all((e.error or "").startswith("StepError: Redis unreachable") for e in evidence)
    (f,) = findings
    assert f.code == "redis.unreachable" and f.severity == "critical"
    assert f.evidence == ["redis.ping"]


async def test_paused_redis_times_out(redis_server: RedisServer, client: list[aioredis.Redis]) -> None:
    await connect(redis_server, client).execute_command("CLIENT", "PAUSE", 3000, "ALL")
    t0 = time.perf_counter()
    evidence, findings = await diagnose(redis_server.url, timeout=0.5)
    assert time.perf_counter() - t0 < 1.5
    assert {e.status for e in evidence} == {StepStatus.TIMEOUT}
    assert [f.code for f in findings] == ["redis.unreachable"]


async def test_password_protected_redis(redis_server: RedisServer, client: list[aioredis.Redis]) -> None:
    server = redis_server
    await connect(server, client).config_set("requirepass", "S3cretRedisPw")
    good = f"redis://:S3cretRedisPw@{server.host}:{server.port}/0"
    bad = f"redis://:WrongPw123@{server.host}:{server.port}/0"
    evidence, findings = await diagnose(good)
    assert all(e.ok for e in evidence) and findings == []
    evidence, findings = await diagnose(bad)
    # Redis answered (-WRONGPASS): PING's data says so, the other steps could not run
    assert {e.status for e in evidence if e.step != "redis.ping"} == {StepStatus.ERROR}
    assert [f.code for f in findings] == ["redis.auth_refused"]
    text = "".join(e.model_dump_json() for e in evidence) + "".join(f.model_dump_json() for f in findings)
    assert "WrongPw123" not in text and "S3cretRedisPw" not in text


# ------------------------------------------------------------------------ a wire-level fake Redis


class HugeInfoRedis:
    """Answers INFO with a multi-megabyte bulk string (bad bytes included), everything else +OK."""

    def __init__(self, info: bytes) -> None:
        self.info = info
        self.server: asyncio.Server | None = None
        self.port = 0

    async def __aenter__(self) -> HugeInfoRedis:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                header = await reader.readline()
                if not header.startswith(b"*"):
                    return
                args = []
                for _ in range(int(header[1:])):
                    size = int((await reader.readline())[1:])
                    args.append((await reader.readexactly(size + 2))[:-2])
                if args[0].upper() == b"INFO":
                    writer.write(b"$%d\r\n%s\r\n" % (len(self.info), self.info))
                else:
                    writer.write(b"+OK\r\n")
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


async def test_huge_info_is_parsed_and_bounded() -> None:
    info = (
        b"# Memory\r\nused_memory:1000\r\nmaxmemory:0\r\nmaxmemory_policy:noeviction\r\n"
        + b"# Errorstats\r\n"
        + b"".join(b"errorstat_E%d:count=%d\r\n" % (i, i) for i in range(150_000))
        + b"# Junk\r\n\xff\xfe\x80:\xc3\r\n"
        + b"x" * 1_000_000
        + b"\r\n"
    )
    assert len(info) > 4_000_000
    async with HugeInfoRedis(info) as fake, medic_for(f"redis://127.0.0.1:{fake.port}/0") as backends:
        ctx = StepContext(REDIS, {}, [], backends, datetime.now(UTC), 10)
        ev = await run_step(planned("redis.info", timeout=10), ctx, 256 * 1024)
    assert ev.ok, ev.error
    assert ev.data["info_bytes"] == len(info)
    assert ev.data["memory"]["used_memory"] == 1000
    assert len(ev.data["errorstats"]) == 10
    assert len(ev.model_dump_json()) < 16 * 1024


# ------------------------------------------------------------------------ error replies (issue 12.4)


def codes(findings: list[Finding]) -> list[str]:
    return [f.code for f in findings]


async def test_failed_snapshot_misconf_is_reachable_but_refusing_writes(
    redis_server_factory: RedisServerFactory, client: list[aioredis.Redis], tmp_path: Any
) -> None:
    """stop-writes-on-bgsave-error: after a failed BGSAVE, PING and writes answer -MISCONF."""
    server = await redis_server_factory(appendonly=False, extra_args=["--enable-protected-configs", "yes"])
    r = connect(server, client)
    gone = tmp_path / "gone"
    gone.mkdir()
    await r.config_set("save", "3600 1")
    await r.config_set("dir", str(gone))
    gone.rmdir()  # the snapshot cannot create its temp file
    await r.set("a", "b")
    await r.bgsave()
    for _ in range(100):
        if (await r.info("persistence"))["rdb_bgsave_in_progress"] == 0:
            break
        await asyncio.sleep(0.05)
    with pytest.raises(ResponseError, match="MISCONF"):
        await r.ping()
    evidence, findings = await diagnose(server.url)
    assert data(evidence, "redis.ping")["reply_error"]["code"] == "MISCONF"
    assert data(evidence, "redis.ping")["pong"] is False
    assert "redis.unreachable" not in codes(findings)
    assert [f for f in findings if f.severity == "critical"] == [
        f for f in findings if f.code == "redis.rdb_save_failed"
    ]
    (f,) = [f for f in findings if f.code == "redis.rdb_save_failed"]
    assert "MISCONF" in f.summary and "refuses writes" in f.summary
    assert "redis.writes_refused_misconf" not in codes(findings)  # one story, told once
    await r.config_set("save", "")  # or the server's stop tries the snapshot again and waits to be killed


async def test_long_script_busy_is_reachable_but_blocked(
    redis_server: RedisServer, client: list[aioredis.Redis]
) -> None:
    r = connect(redis_server, client)
    await r.config_set("busy-reply-threshold", 100)
    blocker = connect(redis_server, client)
    script = asyncio.create_task(
        blocker.eval("local i = 0 while true do i = i + 1 end return i", 0)  # runs until killed
    )
    try:
        await asyncio.sleep(0.4)
        evidence, findings = await diagnose(redis_server.url)
    finally:
        killer = aioredis.Redis.from_url(redis_server.url)
        await killer.script_kill()
        await killer.aclose()
        with contextlib.suppress(ResponseError):
            await script
    assert data(evidence, "redis.ping")["reply_error"]["code"] == "BUSY"
    assert codes(findings) == ["redis.busy_script"]
    (f,) = findings
    assert f.severity == "critical" and "Lua script" in f.summary
    assert f.next_steps[0] == "kubectl exec -it deployment/redis -n playcode -- redis-cli script kill"


async def test_password_required_is_noauth_not_unreachable(
    redis_server: RedisServer, client: list[aioredis.Redis]
) -> None:
    await connect(redis_server, client).config_set("requirepass", "S3cretRedisPw")
    evidence, findings = await diagnose(redis_server.url)  # no password in the URL
    assert data(evidence, "redis.ping")["reply_error"]["code"] == "NOAUTH"
    assert codes(findings) == ["redis.auth_refused"]
    bad = f"redis://:WrongPw123@{redis_server.host}:{redis_server.port}/0"
    evidence, findings = await diagnose(bad)
    assert data(evidence, "redis.ping")["reply_error"]["code"] == "WRONGPASS"
    assert codes(findings) == ["redis.auth_refused"]
    assert "WrongPw123" not in "".join(f.model_dump_json() for f in findings)


async def test_oom_reply_is_the_memory_finding_once(
    redis_server_factory: RedisServerFactory, client: list[aioredis.Redis]
) -> None:
    server = await redis_server_factory(maxmemory="2mb", maxmemory_policy="noeviction")
    r = connect(server, client)
    with contextlib.suppress(OutOfMemoryError):
        for i in range(300):
            await r.set(f"k:{i}", "v" * 20_000)
    _, findings = await diagnose(server.url)
    assert codes(findings) == ["redis.maxmemory_oom"]


async def test_loading_dataset_is_reachable_but_not_ready(
    redis_server_factory: RedisServerFactory, client: list[aioredis.Redis]
) -> None:
    """DEBUG RELOAD with key-load-delay: Redis answers -LOADING while it loads its dataset."""
    server = await redis_server_factory(appendonly=False, extra_args=["--enable-debug-command", "yes"])
    r = connect(server, client)
    await r.execute_command("DEBUG", "POPULATE", 20000)
    await r.slowlog_reset()  # a slow machine logs the setup's own POPULATE: not part of the scene
    await r.config_set("key-load-delay", 200)  # µs per key: about 4 s of loading
    await r.config_set("loading-process-events-interval-bytes", 1024)  # answer others meanwhile
    reload = asyncio.create_task(connect(server, client).execute_command("DEBUG", "RELOAD"))
    try:
        for _ in range(50):
            if (await connect(server, client).info("persistence")).get("loading") == 1:
                break
            await asyncio.sleep(0.05)
        evidence, findings = await diagnose(server.url)
    finally:
        reload.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await reload
    assert data(evidence, "redis.ping")["reply_error"]["code"] == "LOADING"
    assert codes(findings) == ["redis.loading", "redis.aof_disabled"]  # once, and not "unreachable"
    assert findings[0].severity == "warning" and "loading its dataset" in findings[0].summary
