"""Run a playbook's collectors concurrently, each under its own timeout, inside a global deadline.

Never raises for a step: every step becomes an Evidence with a status. Redaction and the size cap
are applied here, once, for every collector.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import structlog

from medic.domain.errors import NotConfigured, StepTimeout
from medic.domain.evidence import Evidence, StepStatus, cap_size
from medic.domain.redact import redact, redact_async
from medic.playbooks.contract import CollectorDef, StepContext

log = structlog.get_logger("medic.runner")


@dataclass(frozen=True)
class PlannedStep:
    step_id: str
    collector: CollectorDef[Any, Any]
    params: Any  # an instance of collector.params
    timeout: float


StepObserver = Callable[[Evidence], None]


async def run_step(step: PlannedStep, ctx: StepContext, max_bytes: int) -> Evidence:
    started = datetime.now(UTC)
    t0 = time.perf_counter()
    status = StepStatus.OK
    data: Any = None
    error: str | None = None
    try:
        async with asyncio.timeout(step.timeout):
            output = await step.collector.fn(replace(ctx, timeout=step.timeout), step.params)
        data = output.model_dump(mode="json")  # an instance of collector.output, stored as JSON
    except NotConfigured as exc:
        status, error = StepStatus.NOT_CONFIGURED, str(exc)
    except (TimeoutError, StepTimeout):
        status, error = StepStatus.TIMEOUT, f"no answer within {step.timeout:g}s"
    except Exception as exc:  # a collector bug or backend failure is evidence, not a crash
        status, error = StepStatus.ERROR, f"{type(exc).__name__}: {exc}".strip()
    truncated = False
    if data is not None:
        data, truncated = cap_size(await redact_async(data), max_bytes)  # large: off the loop
    return Evidence(
        step=step.step_id,
        collector=step.collector.name,
        status=status,
        started_at=started,
        duration_ms=round((time.perf_counter() - t0) * 1000, 3),
        data=data,
        error=redact(error) if error else None,
        truncated=truncated,
    )


async def run_steps(
    steps: list[PlannedStep],
    ctx: StepContext,
    *,
    deadline: float,
    max_bytes: int,
    observe: StepObserver | None = None,
) -> list[Evidence]:
    """Run every step concurrently; those unfinished at ``deadline`` seconds are timed out."""
    if not steps:
        return []
    t0 = time.monotonic()
    bounded = [replace(s, timeout=min(s.timeout, deadline)) for s in steps]
    tasks = [asyncio.create_task(run_step(s, ctx, max_bytes)) for s in bounded]
    try:
        done, pending = await asyncio.wait(tasks, timeout=deadline)
    except asyncio.CancelledError:
        for task in tasks:
            task.cancel()
        raise
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.gather(*pending, return_exceptions=True)
    results: list[Evidence] = []
    for step, task in zip(bounded, tasks, strict=True):
        if task in done and not task.cancelled() and task.exception() is None:
            ev = task.result()
        else:
            ev = Evidence(
                step=step.step_id,
                collector=step.collector.name,
                status=StepStatus.TIMEOUT,
                duration_ms=round((time.monotonic() - t0) * 1000, 3),
                error=f"playbook deadline of {deadline:g}s reached",
            )
        if observe:
            observe(ev)
        results.append(ev)
    return results
