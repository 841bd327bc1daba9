"""Links on-call follows (medic.incidents.report.links, medic.incidents.report.oncall): exact
URLs, hostile values encoded so that they decode to themselves, no secret in any link, each link
only when configured."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from medic.app.settings import load_settings
from medic.domain.incident import IncidentAlert
from medic.incidents.report.links import (
    LinkSettings,
    TimeRange,
    alert_expression,
    base_url,
    grafana_explore,
    matchers,
    prometheus_graph,
    silence_url,
)
from medic.incidents.report.oncall import oncall
from medic.incidents.views import IncidentView
from tests.e2e.pages_incidents import PLANTED, hostile_alert, hostile_incident

T0 = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)
HOSTILE_VALUES = [
    'a"b\\c',
    'x",evil="1',
    "x}",
    "line1\nline2",
    '&filter={alertname="other"}#frag',
    "100% %2F+plus ?q",
    "ünï cødé 🚨",
    "\\",
    " spaced ",
]


def parse_matchers(text: str) -> dict[str, str]:
    """Alertmanager's reading of ``{name="value",...}`` (pkg/labels: \\\\, \\" and \\n escapes)."""
    assert text.startswith("{") and text.endswith("}"), text
    out: dict[str, str] = {}
    for m in re.finditer(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(,|$)', text[1:-1]):
        out[m.group(1)] = re.sub(r"\\(.)", lambda e: {"n": "\n"}.get(e.group(1), e.group(1)), m.group(2))
    assert matchers(out) == text, "every matcher was read"
    return out


@pytest.mark.parametrize("value", HOSTILE_VALUES)
def test_silence_filter_reads_back_exactly(value: str) -> None:
    labels = {"alertname": "KubePodCrashLooping", "pod": value, "namespace": "playcode"}
    url = silence_url("http://alertmanager.example:9093/", labels)
    assert url is not None
    root, fragment = url.split("#", 1)
    assert root == "http://alertmanager.example:9093/"
    path, query = fragment.split("?", 1)
    assert path == "/silences/new" and "#" not in query and "&" not in query
    (filt,) = parse_qs(query, strict_parsing=True)["filter"]
    assert parse_matchers(filt) == labels


def test_silence_leaves_out_what_is_not_a_label_name() -> None:
    url = silence_url("http://am", {"alertname": "X", "bad name": "y", "0x": "z"})
    assert url is not None and unquote(url.split("filter=")[1]) == '{alertname="X"}'
    assert silence_url("http://am", {"bad name": "y"}) is None
    assert silence_url(None, {"alertname": "X"}) is None and silence_url("", {"alertname": "X"}) is None


@pytest.mark.parametrize(
    ("url", "base"),
    [
        ("https://prom.example/", "https://prom.example"),
        ("http://admin:s3cr3t-planted@prom:9090/sub/?token=planted-token-123#x", "http://prom:9090/sub"),
        ("http://[::1]:9090", "http://[::1]:9090"),
        ("javascript:alert(1)", None),
        ("ftp://prom", None),
        ("//prom.example", None),
        ("http://", None),
        ("http://prom:99999", None),
        ("", None),
    ],
)
def test_base_urls_lose_credentials_query_and_fragment(url: str, base: str | None) -> None:
    assert base_url(url) == base


@pytest.mark.parametrize(
    "expr", ['sum(rate(http_requests_total{status_code=~"5.."}[5m])) > 0.05 & # +', "up"]
)
def test_prometheus_graph_over_the_incident(expr: str) -> None:
    resolved = TimeRange.around(T0, T0 + timedelta(minutes=40), timedelta(minutes=10))
    url = prometheus_graph("https://prom.example/", [expr, expr, "up"], resolved, T0)
    assert url is not None and url.startswith("https://prom.example/graph?")
    q = parse_qs(urlsplit(url).query, strict_parsing=True)
    assert q["g0.expr"] == [expr] and q["g0.tab"] == ["0"]
    assert q["g0.range_input"] == ["1h"] and q["g0.end_input"] == ["2026-11-26 08:50:00"]
    assert ("g1.expr" in q) == (expr != "up")  # distinct expressions only
    still_open = TimeRange.around(T0, None, timedelta(minutes=10))
    q = parse_qs(
        urlsplit(prometheus_graph("https://p", [expr], still_open, T0 + timedelta(hours=2)) or "").query
    )
    assert q["g0.range_input"] == ["2h10m"] and "g0.end_input" not in q  # up to now
    assert prometheus_graph("", [expr], resolved, T0) is None
    assert prometheus_graph("https://p", [], resolved, T0) is None


def test_grafana_explore_panes() -> None:
    span = TimeRange.around(T0, T0 + timedelta(minutes=30), timedelta(minutes=15))
    logql = '{namespace="playcode"} |= "err\\"or" != `x`'
    url = grafana_explore("https://grafana.example/", "loki-uid", "loki", [logql], span)
    assert url is not None and url.startswith("https://grafana.example/explore?")
    q = parse_qs(urlsplit(url).query, strict_parsing=True)
    assert q["schemaVersion"] == ["1"]
    (pane,) = json.loads(q["panes"][0]).values()
    assert pane["datasource"] == "loki-uid"
    assert pane["queries"] == [
        {"refId": "A", "expr": logql, "datasource": {"type": "loki", "uid": "loki-uid"}}
    ]
    assert pane["range"] == {
        "from": str(int((T0 - timedelta(minutes=15)).timestamp() * 1000)),
        "to": str(int((T0 + timedelta(minutes=45)).timestamp() * 1000)),
    }
    open_span = TimeRange.around(T0, None, timedelta(minutes=15))
    q = parse_qs(urlsplit(grafana_explore("https://g", "u", "prometheus", ["up"], open_span) or "").query)
    assert json.loads(q["panes"][0])["medic"]["range"]["to"] == "now"
    assert grafana_explore("https://g", "", "loki", [logql], span) is None  # no data source uid


def test_alert_expression_from_generator_url() -> None:
    url = "http://prometheus:9090/graph?g0.expr=rate%28x%5B5m%5D%29+%3E+1&g0.tab=1"
    assert alert_expression(url) == "rate(x[5m]) > 1"
    assert alert_expression("javascript:alert(1)") is None
    assert alert_expression("") is None


LINKS = LinkSettings(
    grafana_url="https://grafana.example",
    grafana_prometheus_datasource="prom-uid",
    grafana_loki_datasource="loki-uid",
    prometheus_url="http://admin:s3cr3t-planted@prometheus.example:9090",
    alertmanager_url="http://alertmanager.example",
)


def test_no_link_carries_a_secret() -> None:
    """The hostile incident plants secrets in labels, annotations, log lines, reasons: none
    reaches a link, encoded or not; a redacted label is left out of the silence."""
    alert = hostile_alert().model_copy(
        update={"generatorURL": "http://p/graph?g0.expr=" + "up%7Bpassword%3D%22hunter2-planted%22%7D"}
    )
    view = IncidentView(hostile_incident(), [alert]).redacted()
    ctx = oncall(view, LINKS, T0)
    assert [x.name for x in ctx.links] == [
        "Prometheus",
        "Grafana: metrics",
        "Grafana: logs",
        "Silence in Alertmanager",
    ]
    for link in ctx.links:
        text = unquote(unquote(link.url))
        assert not [s for s in PLANTED if s in text], link
        assert "s3cr3t" not in text and "admin:" not in text
    silence = next(x.url for x in ctx.links if x.name.startswith("Silence"))
    filt = parse_matchers(unquote(silence.split("filter=")[1]))
    assert "password" not in filt and filt["alertname"] == "KubePodCrashLooping"


def test_each_link_only_when_configured_and_externalurl_wins() -> None:
    view = IncidentView(hostile_incident(), [hostile_alert()]).redacted()
    assert oncall(view, None, T0).links == []
    assert oncall(view, LinkSettings(), T0).links == []
    only_am = oncall(view, LinkSettings(alertmanager_url="http://am.example"), T0).links
    assert [x.url.split("#")[0] for x in only_am] == ["http://am.example/"]
    sent = hostile_alert().model_copy(update={"alertmanager_url": "http://am-0.example:9093/am"})
    view = IncidentView(hostile_incident(), [sent]).redacted()
    (silence,) = oncall(view, LinkSettings(alertmanager_url="http://am.example"), T0).links
    assert silence.url.startswith("http://am-0.example:9093/am/#/silences/new?filter=")


def test_alerts_words_distinct_and_cut() -> None:
    def alert(i: int, summary: str, runbook: str = "") -> IncidentAlert:
        return IncidentAlert(
            identity=f"a{i}",
            status="firing",
            labels={"alertname": "X", "pod": f"p{i}"},
            annotations={"summary": summary, "description": "d" * 2000, "runbook_url": runbook},
            startsAt=T0,
        )

    alerts = [
        alert(0, "pod p0 down", "https://runbooks.example/x"),
        alert(1, "pod p1 down", "javascript:alert(1)"),
        alert(2, "pod p0 down", "https://runbooks.example/x"),
        alert(3, "pod p3 down", "https://runbooks.example/y"),
        alert(4, "pod p4 down"),
        alert(5, "  "),
    ]
    ctx = oncall(IncidentView(hostile_incident(), alerts).redacted(), None, T0)
    assert ctx.summaries.values == ["pod p0 down", "pod p1 down", "pod p3 down"] and ctx.summaries.more == 1
    assert ctx.runbooks.values == ["https://runbooks.example/x", "https://runbooks.example/y"]
    assert len(ctx.descriptions.values) == 1 and len(ctx.descriptions.values[0]) == 600


def test_link_settings_from_medic_settings() -> None:
    s = load_settings(
        prometheus_url="http://prometheus.monitoring:9090",
        grafana_url="https://grafana.example/",
        grafana_loki_datasource="loki",
        alertmanager_url="https://alertmanager.example",
        link_margin="5m",
    )
    links = LinkSettings.from_settings(s)
    assert links.prometheus_url == "http://prometheus.monitoring:9090"  # the collector's by default
    assert links.grafana_url == "https://grafana.example" and links.margin == timedelta(minutes=5)
    external = load_settings(
        prometheus_url="http://prometheus.monitoring:9090", prometheus_external_url="https://prom.example"
    )
    assert LinkSettings.from_settings(external).prometheus_url == "https://prom.example"
