"""The data of ``prometheus.query`` (issue 16.3): one result per named query. Pure pydantic.

Every field has a default and unknown keys are ignored, so a bundle written by hand (a rule
test's ``{name, value, series: []}``) still reads; the collector sets every field."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict


class _Out(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class SeriesValue(_Out):
    labels: dict[str, str] = {}
    value: float | None = None  # None: NaN, ±Inf or not a number


class SeriesRange(_Out):
    labels: dict[str, str] = {}
    points: list[tuple[float, float | None]] = []  # [unix seconds, value]


class QueryResult(_Out):
    name: str = ""
    expr: str = ""  # as sent (placeholders filled), or the template when it could not be filled
    unit: str = ""
    description: str = ""
    warn: float | None = None
    crit: float | None = None
    compare: Literal["above", "below"] = "above"
    series: list[SeriesValue] = []
    value: float | None = None  # the highest series value (lowest for compare "below")
    range: list[SeriesRange] | None = None  # None when no range was asked for or the query failed
    error: str | None = None  # why this query gave nothing; the others still count


class PrometheusQueryOutput(_Out):
    queries: list[QueryResult] = []
