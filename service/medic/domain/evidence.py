"""What a step (collector or action) yields: a status, never an exception."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field


class StepStatus(StrEnum):
    OK = "ok"
    ERROR = "error"
    TIMEOUT = "timeout"
    SKIPPED = "skipped"
    NOT_CONFIGURED = "not_configured"


class Evidence(BaseModel):
    """The outcome of one collector run."""

    step: str  # unique id within the playbook run, e.g. "prometheus.query" or "prometheus.query#2"
    collector: str
    status: StepStatus
    started_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    duration_ms: float = 0.0
    data: Any = None
    error: str | None = None
    truncated: bool = False

    @property
    def ok(self) -> bool:
        return self.status is StepStatus.OK


def cap_size(data: Any, max_bytes: int) -> tuple[Any, bool]:
    """Bound the JSON size of ``data``: lists are trimmed from the end, long strings cut.

    Returns (data, truncated). Pure; used by the runner on every evidence.
    """
    encoded = json.dumps(data, default=str)
    if len(encoded) <= max_bytes:
        return data, False
    return _shrink(data, max_bytes), True


def _shrink(data: Any, budget: int) -> Any:
    if isinstance(data, str):
        return data[: max(budget - 20, 0)] + "…[truncated]" if len(data) > budget else data
    if isinstance(data, list):
        out: list[Any] = []
        used = 2
        for item in data:
            size = len(json.dumps(item, default=str)) + 1
            if used + size > budget:
                remaining = budget - used
                if remaining > 64 and isinstance(item, (str, dict, list)):
                    out.append(_shrink(item, remaining))
                break
            out.append(item)
            used += size
        return out
    if isinstance(data, dict):
        result: dict[str, Any] = {}
        share = max(budget // max(len(data), 1), 64)
        for key, item in data.items():
            size = len(json.dumps(item, default=str))
            result[key] = item if size <= share else _shrink(item, share)
        return result
    return data
