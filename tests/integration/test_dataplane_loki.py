"""``loki.query`` against the fake Loki query API: the LogQL sent (escaping, bounds, limit), the
grouping of what comes back, bad lines, slow and failing Loki, and the websocket analyzer on top."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from medic.analysis.websocket import websocket
from medic.app.backends import Backends
from medic.app.catalogue import default_registry
from medic.app.settings import Settings
from medic.collectors.loki import mask_variables
from medic.domain.evidence import Evidence, StepStatus
from medic.domain.incident import Target
from medic.playbooks.contract import AnalysisInput, StepContext
from medic.playbooks.runner import PlannedStep, run_step
from tests.fakes.loki import FakeLoki, now_ns
from tests.fakes.mongo_server import dead_port

pytestmark = pytest.mark.integration

APP = Target(kind="deployment", namespace="playcode", name="playcode-app")
LABELS = {"namespace": "playcode", "container": "playcode-app", "pod": "playcode-app-7d9f8b6c5d-x2k9p"}
OTHER = {"namespace": "playcode", "container": "redis", "pod": "redis-6d4cf56db6-k9x2p"}
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiI0MjQyIn0.c2lnbmF0dXJlX3ZhbHVl"
COLLECTOR = default_registry().collectors["loki.query"]
SEC = 1_000_000_000


@pytest.fixture
async def loki() -> AsyncIterator[FakeLoki]:
    async with FakeLoki() as fake:
        yield fake


@pytest.fixture
async def backends(loki: FakeLoki) -> AsyncIterator[Backends]:
    b = await Backends.from_settings(Settings(loki_url=loki.url).diagnosed)
    try:
        yield b
    finally:
        await b.close()


async def query(
    backends: Backends,
    params: dict[str, Any],
    *,
    timeout: float = 5.0,
    target: Target | None = APP,
    step: str = "loki.query",
) -> Evidence:
    ctx = StepContext(target, {"namespace": "playcode"}, [], backends, datetime.now(UTC), timeout)
    planned = PlannedStep(step, COLLECTOR, COLLECTOR.params.model_validate(params), timeout)
    return await run_step(planned, ctx, 256 * 1024)


async def test_the_query_sent(loki: FakeLoki, backends: Backends) -> None:
    before = time.time_ns()
    ev = await query(backends, {"query": "app_errors", "since": "15m", "limit": 200})
    after = time.time_ns()
    assert ev.ok, ev.error
    (sent,) = loki.queries
    assert sent.path == "/loki/api/v1/query_range"
    assert sent.query == '{namespace="playcode", container="playcode-app"} | json | level="error"'
    assert sent.params["limit"] == "200" and sent.params["direction"] == "backward"
    end, start = int(sent.params["end"]), int(sent.params["start"])
    assert before - SEC <= end <= after and end - start == 15 * 60 * SEC
    assert ev.data["logql"] == sent.query and ev.data["lines"] == 0 and ev.data["patterns"] == []


async def test_escaping_of_filters_reaches_loki_intact(loki: FakeLoki, backends: Backends) -> None:
    ts = now_ns() - SEC
    loki.push(LABELS, [(ts, 'user said "hi" \\ bye'), (ts + 1, "user said hi")])
    ev = await query(
        backends, {"query": "app_error_text", "contains": ['said "hi" \\ bye'], "container": "playcode-app"}
    )
    assert ev.ok, ev.error
    assert loki.queries[-1].query == (
        '{namespace="playcode", container="playcode-app"} |= "error" |= "said \\"hi\\" \\\\ bye"'
    )
    assert ev.data["lines"] == 0  # the fake parsed it: no "error" in those lines, and no 400
    loki.push(LABELS, [(ts + 2, 'error: user said "hi" \\ bye')])
    ev = await query(backends, {"query": "app_error_text", "contains": ['said "hi" \\ bye']})
    assert ev.data["lines"] == 1


async def test_lines_are_grouped_by_pattern(loki: FakeLoki, backends: Backends) -> None:
    base = now_ns() - 600 * SEC
    loki.push(
        LABELS,
        [
            (
                base + i * SEC,
                json.dumps({"level": "error", "msg": f"user {1000 + i} not found", "res_status": 404}),
            )
            for i in range(30)
        ],
    )
    loki.push(
        {**LABELS, "pod": "playcode-app-7d9f8b6c5d-q8m4z"},
        [
            (
                base + (40 + i) * SEC,
                json.dumps(
                    {
                        "level": "error",
                        "msg": "redis adapter error",
                        "err": {"message": "connect ECONNREFUSED 10.0.0.5:6379"},
                    }
                ),
            )
            for i in range(5)
        ],
    )
    loki.push(LABELS, [(base + 50 * SEC, json.dumps({"level": "info", "msg": "user 1 not found"}))])
    loki.push(OTHER, [(base + 60 * SEC, json.dumps({"level": "error", "msg": "not the app"}))])
    ev = await query(backends, {"query": "app_errors"})
    assert ev.ok, ev.error
    data = ev.data
    assert data["lines"] == 35 and data["patterns_total"] == 2 and not data["limit_reached"]
    first, second = data["patterns"]
    assert first["pattern"] == "user <n> not found status=404" and first["count"] == 30
    assert first["level"] == "error" and first["pods"] == ["playcode-app-7d9f8b6c5d-x2k9p"]
    assert first["first_seen"] == datetime.fromtimestamp(base / 1e9, UTC).isoformat()
    assert first["last_seen"] == datetime.fromtimestamp((base + 29 * SEC) / 1e9, UTC).isoformat()
    assert second["pattern"] == "redis adapter error: connect ECONNREFUSED <ip>" and second["count"] == 5


async def test_limit_and_time_bounds(loki: FakeLoki, backends: Backends) -> None:
    now = now_ns()
    loki.push(LABELS, [(now - (i + 1) * SEC // 10, f"error number {i}") for i in range(2000)])
    loki.push(LABELS, [(now - 3 * 3600 * SEC, "error from long ago")])
    ev = await query(backends, {"query": "app_error_text", "limit": 100, "since": "1h"})
    assert ev.data["lines"] == 100 and ev.data["limit_reached"] is True
    assert ev.data["patterns"][0]["pattern"] == "error number <n>"
    assert "long ago" not in ev.model_dump_json()


async def test_non_utf8_lines_are_tolerated(loki: FakeLoki, backends: Backends) -> None:
    ts = now_ns() - SEC
    loki.push(LABELS, [(ts, b"socket \xff\xfe error \xc3"), (ts + 1, b"\x80\x81 socket hang up")])
    ev = await query(backends, {"query": "socket"})
    assert ev.ok, ev.error
    assert ev.data["lines"] == 2
    assert any("\ufffd" in p["sample"] for p in ev.data["patterns"])


async def test_secrets_in_lines_never_reach_the_evidence(loki: FakeLoki, backends: Backends) -> None:
    ts = now_ns() - SEC
    loki.push(
        LABELS,
        [
            (ts, f"error: socket auth failed for token={JWT}"),
            (ts + 1, f"error: socket upgrade with Authorization: Bearer {JWT}"),
            (ts + 2, '{"level":"error","msg":"socket login","password":"hunter2","apiKey":"AKIA1234567890"}'),
            (ts + 3, "error: socket to mongodb://playcode:S3cretPw@mongodb-0:27017/userdb"),
        ],
    )
    ev = await query(backends, {"query": "socket"})
    text = ev.model_dump_json()
    assert ev.data["lines"] == 4
    for secret in (JWT, "hunter2", "AKIA1234567890", "S3cretPw"):
        assert secret not in text and mask_variables(secret) not in text


async def test_loki_errors_and_slowness(loki: FakeLoki, backends: Backends) -> None:
    loki.fail_next(400, body="parse error at line 1, col 2: syntax error")
    ev = await query(backends, {"query": "socket"})
    assert ev.status is StepStatus.ERROR
    assert ev.error == "StepError: Loki answered HTTP 400: parse error at line 1, col 2: syntax error"
    loki.fail_next(503)
    assert (await query(backends, {"query": "socket"})).status is StepStatus.ERROR
    loki.delay(5)
    t0 = time.perf_counter()
    ev = await query(backends, {"query": "socket"}, timeout=0.5)
    assert ev.status is StepStatus.TIMEOUT and time.perf_counter() - t0 < 1.5


async def test_unreachable_and_not_configured() -> None:
    down = await Backends.from_settings(Settings(loki_url=f"http://127.0.0.1:{dead_port()}").diagnosed)
    try:
        ev = await query(down, {"query": "socket"})
    finally:
        await down.close()
    assert ev.status is StepStatus.ERROR and (ev.error or "").startswith("StepError: Loki unreachable")
    none = await Backends.from_settings(Settings().diagnosed)
    assert (await query(none, {"query": "socket"})).status is StepStatus.NOT_CONFIGURED


async def test_a_target_without_names_cannot_query(backends: Backends) -> None:
    ctx = StepContext(None, {}, [], backends, datetime.now(UTC), 5)
    planned = PlannedStep("loki.query", COLLECTOR, COLLECTOR.params.model_validate({"query": "socket"}), 5)
    ev = await run_step(planned, ctx, 256 * 1024)
    assert ev.status is StepStatus.ERROR and "needs $container" in (ev.error or "")


async def test_websocket_analyzer_on_redis_adapter_lines(loki: FakeLoki, backends: Backends) -> None:
    ts = now_ns() - 120 * SEC
    loki.push(
        LABELS,
        [
            (
                ts + i * SEC,
                json.dumps(
                    {"level": "error", "msg": "Redis adapter error", "err": "connect ETIMEDOUT 10.0.3.7:6379"}
                ),
            )
            for i in range(12)
        ],
    )
    loki.push(LABELS, [(ts, json.dumps({"level": "info", "msg": "redis adapter ready"}))])
    ev = await query(backends, {"query": "redis_adapter", "since": "30m"}, step="loki.redis_adapter")
    inp = AnalysisInput(APP, {}, [], {ev.step: ev}, datetime.now(UTC) + timedelta(seconds=1))
    (f,) = websocket(inp)
    assert f.code == "websocket.redis_adapter_errors"
    assert f.summary.startswith("12 socket.io Redis adapter error lines in the last 30m")
    assert "Redis adapter error: connect ETIMEDOUT <ip> (x12)" in f.summary
    assert f.evidence == ["loki.redis_adapter"]


async def test_pathological_lines_are_bounded_and_the_loop_stays_responsive(
    loki: FakeLoki, backends: Backends
) -> None:
    ts = now_ns() - 60 * SEC
    # Long unbroken words: the worst case for regex-based redaction.
    loki.push(LABELS, [(ts + i, f"socket {i} " + "Z" * 5000) for i in range(300)])
    gaps: list[float] = []

    async def ticker() -> None:
        last = time.perf_counter()
        while True:
            await asyncio.sleep(0.01)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    tick = asyncio.create_task(ticker())
    t0 = time.perf_counter()
    try:
        ev = await query(backends, {"query": "socket", "limit": 300}, timeout=2.0)
    finally:
        tick.cancel()
    assert time.perf_counter() - t0 < 2.5
    assert ev.ok, ev.error  # what was grouped within the budget, flagged when not all of it
    assert ev.data["lines"] == 300
    assert ev.data["complete"] is (sum(p["count"] for p in ev.data["patterns"]) == 300)
    assert all(len(p["sample"]) <= 500 for p in ev.data["patterns"])
    assert max(gaps) < 0.5, f"the event loop stalled for {max(gaps):.2f}s"
