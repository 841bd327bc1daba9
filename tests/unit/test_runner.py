"""The runner: concurrency, per-step timeouts, the global deadline, and never raising."""

import asyncio
import time
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

from medic.app.backends import Backends
from medic.app.settings import Settings
from medic.domain.errors import NotConfigured, StepError
from medic.domain.evidence import StepStatus
from medic.playbooks.contract import CollectorDef, NoParams, StepContext
from medic.playbooks.runner import PlannedStep, run_steps


def ctx() -> StepContext:
    return StepContext(
        target=None,
        labels={},
        alerts=[],
        backends=Backends(Settings().diagnosed),
        now=datetime.now(UTC),
        timeout=5,
    )


class Data(BaseModel):
    """A test collector's output model: whatever it was given."""

    model_config = ConfigDict(extra="allow")


def step(name: str, fn: Any, timeout: float = 5.0) -> PlannedStep:
    return PlannedStep(name, CollectorDef(name, fn, NoParams, "", Data), NoParams(), timeout)


def sleeper(seconds: float, result: dict[str, Any] | None = None) -> Any:
    async def fn(_: StepContext, __: NoParams) -> Data:
        await asyncio.sleep(seconds)
        return Data(**(result if result is not None else {"done": True}))

    return fn


async def test_collectors_run_concurrently() -> None:
    t0 = time.perf_counter()
    ev = await run_steps(
        [step("a", sleeper(0.3)), step("b", sleeper(0.3)), step("c", sleeper(0.3))],
        ctx(),
        deadline=10,
        max_bytes=10_000,
    )
    elapsed = time.perf_counter() - t0
    assert [e.status for e in ev] == [StepStatus.OK] * 3
    assert elapsed < 0.6  # sequential would take 0.9 s


async def test_each_step_has_its_own_timeout_and_errors_become_statuses() -> None:
    async def boom(_: StepContext, __: BaseModel) -> Any:
        raise ValueError("backend said no")

    async def unconfigured(_: StepContext, __: BaseModel) -> Any:
        raise NotConfigured("Loki is not configured")

    async def refused(_: StepContext, __: BaseModel) -> Any:
        raise StepError("connection refused")

    ev = await run_steps(
        [
            step("slow", sleeper(5), timeout=0.1),
            step("boom", boom),
            step("nc", unconfigured),
            step("refused", refused),
            step("fine", sleeper(0.01, {"x": 1})),
        ],
        ctx(),
        deadline=10,
        max_bytes=10_000,
    )
    by = {e.step: e for e in ev}
    assert by["slow"].status is StepStatus.TIMEOUT and "0.1s" in (by["slow"].error or "")
    assert by["slow"].duration_ms < 1000
    assert by["boom"].status is StepStatus.ERROR and by["boom"].error == "ValueError: backend said no"
    assert by["nc"].status is StepStatus.NOT_CONFIGURED
    assert by["refused"].status is StepStatus.ERROR
    assert by["fine"].ok and by["fine"].data == {"x": 1}


async def test_global_deadline_bounds_the_whole_run() -> None:
    t0 = time.perf_counter()
    ev = await run_steps(
        [step("slow", sleeper(5), timeout=30), step("fast", sleeper(0.01))],
        ctx(),
        deadline=0.2,
        max_bytes=10_000,
    )
    assert time.perf_counter() - t0 < 1.0
    assert ev[0].status is StepStatus.TIMEOUT
    assert ev[1].ok


async def test_evidence_is_redacted_and_capped() -> None:
    data = {
        "uri": "mongodb://app:hunter2@mongodb-0:27017/userdb",
        "env": [{"name": "DB_PASSWORD", "value": "hunter2"}, {"name": "LOG_LEVEL", "value": "info"}],
        "lines": ["x" * 100] * 1000,
    }
    (ev,) = await run_steps([step("s", sleeper(0, data))], ctx(), deadline=5, max_bytes=4096)
    text = ev.model_dump_json()
    assert "hunter2" not in text
    assert "info" in text
    assert ev.truncated
    assert len(text) < 4096 * 2


async def test_cancellation_from_outside_propagates() -> None:
    task = asyncio.create_task(run_steps([step("s", sleeper(5))], ctx(), deadline=10, max_bytes=100))
    await asyncio.sleep(0.05)
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass
    else:  # pragma: no cover
        raise AssertionError("run_steps swallowed a cancellation")


async def test_what_is_stored_is_the_output_models_json_dump() -> None:
    """A collector returns its output model; the runner stores ``model_dump(mode="json")``:
    datetimes as ISO text, tuples as lists, fields by name, plain JSON the analyzers re-read."""

    class Out(BaseModel):
        at: datetime
        point: tuple[float, float]
        nested: Data

    at = datetime(2026, 12, 2, 5, 0, tzinfo=UTC)

    async def fn(_: StepContext, __: NoParams) -> Out:
        return Out(at=at, point=(1.0, 2.5), nested=Data(k="v"))

    (ev,) = await run_steps(
        [PlannedStep("s", CollectorDef("s", fn, NoParams, "", Out), NoParams(), 5.0)],
        ctx(),
        deadline=5,
        max_bytes=10_000,
    )
    assert ev.ok
    assert ev.data == {"at": "2026-12-02T05:00:00Z", "point": [1.0, 2.5], "nested": {"k": "v"}}
    assert Out.model_validate(ev.data) == Out(at=at, point=(1.0, 2.5), nested=Data(k="v"))
