"""The data of ``loki.query`` (issue 16.3): log lines grouped by message pattern. Pure pydantic."""

from __future__ import annotations

from pydantic import Field

from medic.collectors.output_base import Out


# Defaults only for bundles written by hand (`medic test` files): the collector sets every field.
class LogPattern(Out):
    pattern: str = ""  # the message with its variable parts masked (<n>, <ip>, <uuid>…)
    count: int = 0
    distinct: int = 1
    level: str | None = None
    first_seen: str = ""
    last_seen: str = ""
    pods: list[str] = Field(default_factory=list)
    sample: str = ""  # one line of the group, redacted


class LokiQueryOutput(Out):
    query: str = ""  # the named query
    description: str = ""
    logql: str = ""
    since: str = ""
    start: str = ""
    end: str = ""
    limit: int = 0
    limit_reached: bool = False
    lines: int = 0
    distinct_lines: int = 0
    complete: bool = True  # false when the step's deadline stopped the grouping
    patterns_total: int = 0
    capped: bool = False
    patterns: list[LogPattern] = Field(default_factory=list)
