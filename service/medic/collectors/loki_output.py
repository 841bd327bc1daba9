"""The data of ``loki.query`` (issue 16.3): log lines grouped by message pattern. Pure pydantic."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LogPattern(_Out):
    pattern: str  # the message with its variable parts masked (<n>, <ip>, <uuid>…)
    count: int
    distinct: int
    level: str | None
    first_seen: str
    last_seen: str
    pods: list[str]
    sample: str  # one line of the group, redacted


class LokiQueryOutput(_Out):
    query: str  # the named query
    description: str
    logql: str
    since: str
    start: str
    end: str
    limit: int
    limit_reached: bool
    lines: int
    distinct_lines: int
    complete: bool  # false when the step's deadline stopped the grouping
    patterns_total: int
    capped: bool
    patterns: list[LogPattern]
