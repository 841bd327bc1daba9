"""Links on-call follows from an incident: explore views over its time range, a prefilled silence.

Pure URL building, no I/O. Every link needs its base URL configured (``MEDIC_GRAFANA_URL``,
``MEDIC_PROMETHEUS_EXTERNAL_URL``/``MEDIC_PROMETHEUS_URL``, ``MEDIC_ALERTMANAGER_URL`` or the
``externalURL`` Alertmanager sends); without it there is no link. A link never carries a secret:
base URLs lose their user:password, query and fragment, and every query or label value put in a
link comes from the redacted incident. Every value is percent-encoded as a whole (a hostile label
value cannot add a parameter or end the silence filter early).

- Prometheus: ``/graph`` with one panel per expression (``g0.expr``, ``g0.range_input``,
  ``g0.end_input`` in UTC; no end for an open incident, so the graph runs to now).
- Grafana Explore (``/explore?schemaVersion=1&panes=...``): the same expressions on the Prometheus
  data source, or the LogQL of the playbook on the Loki data source, from/to in epoch ms
  (``now`` for an open incident).
- Alertmanager: ``#/silences/new?filter={name="value",...}``: the labels the incident's alerts
  share, as equality matchers quoted like Alertmanager's own parser reads them.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol
from urllib.parse import parse_qs, quote, urlencode, urlsplit, urlunsplit

LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
MAX_EXPRS = 5  # panels in one Prometheus or Grafana link
DEFAULT_MARGIN = timedelta(minutes=15)


class LinkSource(Protocol):
    """What the links read of Medic's settings (:class:`medic.app.settings.Settings` has it)."""

    @property
    def grafana_url(self) -> str | None: ...
    @property
    def grafana_prometheus_datasource(self) -> str | None: ...
    @property
    def grafana_loki_datasource(self) -> str | None: ...
    @property
    def prometheus_external_url(self) -> str | None: ...
    @property
    def prometheus_url(self) -> str | None: ...
    @property
    def alertmanager_url(self) -> str | None: ...
    @property
    def link_margin(self) -> timedelta: ...


@dataclass(frozen=True)
class LinkSettings:
    """Base URLs of the tools on-call uses; empty: that link is not made."""

    grafana_url: str = ""
    grafana_prometheus_datasource: str = ""  # data source uid for Explore of metrics
    grafana_loki_datasource: str = ""  # data source uid for Explore of logs
    prometheus_url: str = ""  # Prometheus' own UI, as a browser reaches it
    alertmanager_url: str = ""  # used when the alerts carry no externalURL
    margin: timedelta = DEFAULT_MARGIN  # before the first alert (and after the resolution)

    @classmethod
    def from_settings(cls, s: LinkSource) -> LinkSettings:
        return cls(
            grafana_url=s.grafana_url or "",
            grafana_prometheus_datasource=s.grafana_prometheus_datasource or "",
            grafana_loki_datasource=s.grafana_loki_datasource or "",
            prometheus_url=s.prometheus_external_url or s.prometheus_url or "",
            alertmanager_url=s.alertmanager_url or "",
            margin=s.link_margin,
        )


@dataclass(frozen=True)
class TimeRange:
    start: datetime
    end: datetime | None  # None: still open, up to now

    @classmethod
    def around(cls, first: datetime, resolved: datetime | None, margin: timedelta) -> TimeRange:
        return cls(first - margin, resolved + margin if resolved else None)

    def seconds(self, now: datetime) -> int:
        return max(60, math.ceil(((self.end or now) - self.start).total_seconds()))


@dataclass(frozen=True)
class Link:
    name: str  # what the link opens, e.g. "Prometheus" or "Silence in Alertmanager"
    url: str


def base_url(url: str | None) -> str | None:
    """An http(s) base URL without credentials, query or fragment; None if unusable."""
    if not url:
        return None
    try:
        parts = urlsplit(url.strip())
        host, port = parts.hostname, parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not host:
        return None
    netloc = f"[{host}]" if ":" in host else host
    if port is not None:
        netloc += f":{port}"
    return urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))


def _duration(seconds: int) -> str:
    """Prometheus' UI duration: ``1h35m``."""
    minutes = max(1, math.ceil(seconds / 60))
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    text = (f"{days}d" if days else "") + (f"{hours}h" if hours else "") + (f"{minutes}m" if minutes else "")
    return text or "1m"


def _query(params: Iterable[tuple[str, str]]) -> str:
    return urlencode(list(params), quote_via=quote, safe="")


def prometheus_graph(base: str | None, exprs: Iterable[str], span: TimeRange, now: datetime) -> str | None:
    """Prometheus' graph page with one panel per expression over the incident's range."""
    root = base_url(base)
    exprs = _distinct(exprs)[:MAX_EXPRS]
    if root is None or not exprs:
        return None
    params: list[tuple[str, str]] = []
    for i, expr in enumerate(exprs):
        params += [
            (f"g{i}.expr", expr),
            (f"g{i}.tab", "0"),
            (f"g{i}.range_input", _duration(span.seconds(now))),
        ]
        if span.end is not None:
            params.append((f"g{i}.end_input", f"{span.end:%Y-%m-%d %H:%M:%S}"))
    return f"{root}/graph?{_query(params)}"


def grafana_explore(
    base: str | None, datasource_uid: str, ds_type: str, exprs: Iterable[str], span: TimeRange
) -> str | None:
    """Grafana Explore (URL schema 1) on one data source, one query per expression."""
    root = base_url(base)
    exprs = _distinct(exprs)[:MAX_EXPRS]
    if root is None or not datasource_uid or not exprs:
        return None
    datasource = {"type": ds_type, "uid": datasource_uid}
    pane: dict[str, Any] = {
        "datasource": datasource_uid,
        "queries": [
            {"refId": chr(ord("A") + i), "expr": expr, "datasource": datasource}
            for i, expr in enumerate(exprs)
        ],
        "range": {
            "from": str(int(span.start.timestamp() * 1000)),
            "to": str(int(span.end.timestamp() * 1000)) if span.end else "now",
        },
    }
    panes = json.dumps({"medic": pane}, separators=(",", ":"), ensure_ascii=False)
    return f"{root}/explore?{_query([('schemaVersion', '1'), ('panes', panes)])}"


def matcher_value(value: str) -> str:
    """A label value as a double-quoted matcher value (Alertmanager's and PromQL's syntax)."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def matchers(labels: Mapping[str, str]) -> str:
    """``{a="x",b="y"}`` in label name order; names that are not label names are left out."""
    inner = ",".join(f"{k}={matcher_value(v)}" for k, v in sorted(labels.items()) if LABEL_NAME.match(k))
    return "{" + inner + "}"


def silence_url(base: str | None, labels: Mapping[str, str]) -> str | None:
    """Alertmanager's new-silence form prefilled with equality matchers for ``labels``."""
    root = base_url(base)
    usable = {k: v for k, v in labels.items() if LABEL_NAME.match(k)}
    if root is None or not usable:
        return None
    return f"{root}/#/silences/new?filter={quote(matchers(usable), safe='')}"


def logql_selector(labels: Mapping[str, str]) -> str | None:
    """A LogQL stream selector for the given labels (None without any usable label)."""
    usable = {k: v for k, v in labels.items() if LABEL_NAME.match(k) and v}
    return matchers(usable) if usable else None


def alert_expression(generator_url: str) -> str | None:
    """The PromQL expression of a Prometheus alert, from its generatorURL (``g0.expr``)."""
    try:
        query = parse_qs(urlsplit(generator_url).query)
    except ValueError:
        return None
    values = query.get("g0.expr") or []
    return values[0].strip() or None if values else None


def _distinct(values: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(v for v in values if v and v.strip()))
