"""Incident pages, the pure parts: read access, sparklines, view building and the templates'
escaping of hostile alert content (the browser test checks the same in a real Chromium)."""

from __future__ import annotations

import re

from medic.app.http.web.access import ReadAccess
from medic.app.http.web.render import render
from medic.app.http.web.sparkline import sparkline
from medic.app.http.web.views import awaiting, evidence_view, finding_views, page_query, pretty, safe_url
from medic.domain.incident import ActionStatus, Finding
from medic.incidents.report.links import LinkSettings
from medic.incidents.report.oncall import oncall
from medic.incidents.views import IncidentView
from medic.notify.events import snapshot
from tests.e2e.pages_incidents import (
    IMG_ANNOTATION,
    LOG_SCRIPT,
    PLANTED,
    SCRIPT_LABEL,
    T0,
    hostile_alert,
    hostile_incident,
)

TOKEN = "read-token-0123456789"
LINKS = LinkSettings(prometheus_url="https://prometheus.example", alertmanager_url="https://am.example")


# ------------------------------------------------------------------ access
def test_open_without_configuration() -> None:
    viewer = ReadAccess().check({}, {})
    assert viewer is not None and viewer.via == "open"


def test_read_token_by_bearer_cookie_or_query_once() -> None:
    access = ReadAccess(read_token=TOKEN, admin_token="admin-token-0123456789")
    assert access.check({}, {}) is None
    assert access.check({"Authorization": "Bearer nope"}, {}) is None
    assert access.check({"Authorization": f"Bearer {TOKEN}"}, {}).via == "bearer"  # type: ignore[union-attr]
    assert access.check({"Authorization": "Bearer admin-token-0123456789"}, {}) is not None
    assert access.check({}, {"medic_read": access.cookie_value}).via == "cookie"  # type: ignore[union-attr]
    assert access.check({}, {"medic_read": TOKEN}) is None  # the cookie never holds the token itself
    assert access.check({}, {}, TOKEN).via == "query"  # type: ignore[union-attr]
    assert access.check({}, {}, "wrong") is None
    assert ReadAccess(read_token="another-token-0123").cookie_value != access.cookie_value


def test_auth_proxy_header_names_the_viewer() -> None:
    access = ReadAccess(proxy_header="X-Forwarded-User")
    assert access.required and access.check({}, {}) is None
    viewer = access.check({"X-Forwarded-User": " alice@playcode.gg "}, {})
    assert viewer is not None and viewer.via == "proxy" and viewer.identity == "alice@playcode.gg"
    assert access.check({"X-Forwarded-User": "  "}, {}) is None


# ------------------------------------------------------------------ sparklines
def test_sparkline_scales_breaks_on_gaps_and_marks_thresholds() -> None:
    spark = sparkline(
        [[0, 0.0], [30, 1.0], [60, None], [90, 2.0], [120, 4.0]], width=100, height=20, crit=3.0
    )
    assert (spark.low, spark.high, spark.first, spark.last) == (0.0, 4.0, 0.0, 4.0)
    polylines = re.findall(r'points="([^"]+)"', spark.svg)
    assert polylines == ["3.0,17.0 26.5,13.5", "73.5,10.0 97.0,3.0"]
    assert 'stroke="#dc2626"' in spark.svg  # the crit line, inside the range
    assert spark.svg.startswith("<svg") and "<script" not in spark.svg


def test_sparkline_edge_cases() -> None:
    assert sparkline([]).last is None and "no data" in sparkline([]).svg
    flat = sparkline([[0, 5], [60, 5]], height=20)
    assert 'points="3.0,10.0' in flat.svg
    single = sparkline([[0, float("nan")], [60, 1.5], [90, "x"]])
    assert single.last == 1.5 and "<circle" in single.svg and "<polyline" not in single.svg


# ------------------------------------------------------------------ views
def test_views_rank_findings_link_evidence_and_keep_logs() -> None:
    inc = snapshot(hostile_incident(ActionStatus.AWAITING_APPROVAL))
    findings = finding_views(inc)
    assert [f.code for f in findings] == ["crashloop.regression", "coverage.unchecked"]
    assert findings[0].evidence == [
        ("k8s.pod_logs", "ev-k8s-pod-logs"),
        ("prometheus.query", "ev-prometheus-query"),
    ]
    assert findings[0].next_steps[0] == "kubectl rollout undo deployment/playcode-app -n playcode"
    logs, prom, loki = (evidence_view(e) for e in inc.evidence)
    assert logs.logs[0].lines[2] == LOG_SCRIPT
    assert "hunter2-planted" not in str(logs.logs)  # the page renders the redacted incident
    assert prom.queries[0].series[0].last == 0.31 and str(prom.queries[0].series[0].spark).startswith("<svg")
    assert loki.status == "timeout" and loki.error == "no answer within 5s"
    assert awaiting(inc) == [0]


def test_only_http_links_from_alerts() -> None:
    assert safe_url("https://prometheus.example/graph?g0.expr=up") is not None
    assert safe_url("javascript:alert(1)") is None
    assert safe_url("data:text/html,<script>") is None
    assert safe_url("//evil.example") is None


def test_helpers() -> None:
    assert page_query({"status": "open", "rule": ""}, page=2) == "status=open&page=2"
    assert pretty({"a": "x" * 50}, limit=20).endswith("the JSON export has it all)")


# ------------------------------------------------------------------ templates
def test_detail_page_escapes_everything_from_alerts() -> None:
    shown = IncidentView(hostile_incident(ActionStatus.AWAITING_APPROVAL), [hostile_alert()]).redacted()
    inc = shown.incident
    html, headers = render(
        "detail.html",
        inc=inc,
        alerts=shown.alerts,
        more_alerts=0,
        findings=finding_views(inc),
        evidence=[evidence_view(e) for e in inc.evidence],
        awaiting=awaiting(inc),
        approve_paths={0: "/incidents/x/approve?approval=abc"},
        decision="",
        pretty=pretty,
        safe_url=safe_url,
        oncall=oncall(shown, LINKS, T0),
        verification=None,
    )
    for hostile in (SCRIPT_LABEL, IMG_ANNOTATION, LOG_SCRIPT):
        assert hostile not in html
    assert "&lt;script&gt;window.__pwned = 1&lt;/script&gt;" in html
    assert "javascript:" not in html
    assert not [s for s in PLANTED if s in html]
    assert html.count("<script") == 1  # ours, with the CSP nonce
    nonce = re.search(r'<script nonce="([^"]+)"', html)
    assert nonce and f"'nonce-{nonce.group(1)}'" in headers["Content-Security-Policy"]
    assert headers["Referrer-Policy"] == "no-referrer"
    assert 'data-copy="kubectl rollout undo deployment/playcode-app -n playcode"' in html
    assert 'href="/incidents/x/approve?approval=abc"' in html
    assert 'href="/api/v1/incidents/inc-20261126-080000-0badc0de?format=md"' in html


def test_detail_page_shows_the_alerts_words_links_and_one_line_per_gap() -> None:
    alert = hostile_alert().model_copy(
        update={
            "annotations": {
                "summary": f"5xx above 5% {SCRIPT_LABEL}",
                "description": "line one\nline two",
                "runbook_url": "https://runbooks.example/crashloop",
            },
            "generatorURL": "http://prometheus:9090/graph?g0.expr=up%3D%3D0",
        }
    )
    inc = hostile_incident()
    inc.findings.append(
        Finding(
            analyzer="coverage",
            code="coverage.incomplete",
            severity="info",
            summary="1 of 3 checks gave no data: loki.query (timeout: no answer within 5s)",
            evidence=["loki.query"],
        )
    )
    shown = IncidentView(inc, [alert]).redacted()
    html, _ = render(
        "detail.html",
        inc=shown.incident,
        alerts=shown.alerts,
        more_alerts=0,
        findings=finding_views(shown.incident),
        evidence=[evidence_view(e) for e in shown.incident.evidence],
        awaiting=[],
        approve_paths={},
        decision="",
        pretty=pretty,
        safe_url=safe_url,
        oncall=oncall(shown, LINKS, T0),
        verification=None,
    )
    assert "<strong>5xx above 5% &lt;script&gt;window.__pwned = 1&lt;/script&gt;</strong>" in html
    assert '<a href="https://runbooks.example/crashloop" rel="noopener noreferrer">' in html
    assert 'href="https://prometheus.example/graph?g0.expr=up%3D%3D0&amp;' in html
    assert 'href="https://am.example/#/silences/new?filter=%7B' in html
    gaps = re.search(r'<ul class="gaps">(.*?)</ul>', html, re.S)
    assert gaps is not None and gaps.group(1).count("<li>") == 1
    assert '<a href="#ev-loki-query"><code>loki.query</code></a>' in gaps.group(1)
    assert "no answer within 5s" in gaps.group(1)
    assert "1 of 3 checks gave no data</strong>" in html
    assert "1 of 3 checks gave no data: loki.query" not in html
