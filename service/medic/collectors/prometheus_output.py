"""The data of ``prometheus.query`` (issue 16.3): one result per named query. Pure pydantic.

Every field has a default and unknown keys are ignored, so a bundle written by hand (a rule
test's ``{name, value, series: []}``) still reads; the collector sets every field."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from medic.collectors.output_base import Out


class SeriesValue(Out):
    labels: dict[str, str] = Field(default_factory=dict)
    value: float | None = None  # None: NaN, ±Inf or not a number


class SeriesRange(Out):
    labels: dict[str, str] = Field(default_factory=dict)
    points: list[tuple[float, float | None]] = Field(default_factory=list)  # [unix seconds, value]


class QueryResult(Out):
    name: str = ""
    expr: str = ""  # as sent (placeholders filled), or the template when it could not be filled
    unit: str = ""
    description: str = ""
    warn: float | None = None
    crit: float | None = None
    compare: Literal["above", "below"] = "above"
    series: list[SeriesValue] = Field(default_factory=list)
    value: float | None = None  # the highest series value (lowest for compare "below")
    range: list[SeriesRange] | None = None  # None when no range was asked for or the query failed
    error: str | None = None  # why this query gave nothing; the others still count


class PrometheusQueryOutput(Out):
    queries: list[QueryResult] = Field(default_factory=list)
