"""A deploy verification as on-call reads it (issue 13): the text cells, the sparkline with its
baseline, the incident page's section, the list page, the Markdown report's table, the Slack line
and the webhook field; hostile names and reasons stay text everywhere."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta

import pytest

from medic.app.http.web.render import render
from medic.app.http.web.sparkline import sparkline
from medic.app.http.web.views import (
    awaiting,
    evidence_view,
    finding_views,
    pretty,
    safe_url,
    verification_view,
)
from medic.domain.incident import Incident, Phase
from medic.domain.verification import Pair, PodsSample, RolloutSample, Sample, Verification
from medic.incidents.report.links import LinkSettings
from medic.incidents.report.markdown import render_markdown
from medic.incidents.report.oncall import oncall
from medic.incidents.report.verification import gaps, headline, sample_rows, series
from medic.incidents.views import IncidentView
from medic.notify.events import Event, EventKind, Links, MessageKind, snapshot, update_line
from medic.notify.slack import first_message
from medic.notify.webhook import NotificationV1, notification
from tests.e2e.pages_incidents import PLANTED, SCRIPT_LABEL, SLACK_PING, T0
from tests.unit.test_markdown_escape import INJECTIONS, MD, incident, plain, shape

GAP = "prometheus.revision_compare: error (connection refused)"


def verification(text: Callable[[str], str] = plain, state: str = "failed") -> Verification:
    """Three samples: the first without Prometheus (None), the second without the new revision's
    error-log rate, the third failing; every name and reason is ``text(slot)``."""
    samples = [
        Sample(
            at=T0,
            elapsed_s=0.0,
            rollout=RolloutSample(desired=3, updated=1, current_revision=5),
            pods=PodsSample(total=3, ready=1),
            error_logs_per_minute=Pair(new=2.0, baseline=1.0),
            gaps=[GAP],
        ),
        Sample(
            at=T0 + timedelta(seconds=60),
            elapsed_s=60.0,
            pods=PodsSample(total=3, ready=3, restarts=1, waiting={"CrashLoopBackOff": 1}),
            requests=Pair(new=150.0, baseline=9000.0),
            error_ratio_5xx=Pair(new=0.02, baseline=0.005),
            latency_p99=Pair(new=0.3, baseline=0.2),
            error_logs_per_minute=Pair(new=None, baseline=1.0),
            alerts_firing=[text("alertname")],
            gaps=[GAP, text("gap")],
        ),
        Sample(
            at=T0 + timedelta(seconds=120),
            elapsed_s=120.4,
            pods=PodsSample(total=3, ready=3, restarts=2),
            requests=Pair(new=400.0, baseline=9000.0),
            error_ratio_5xx=Pair(new=0.31, baseline=0.005),
            latency_p99=Pair(new=1.5, baseline=0.2),
            error_logs_per_minute=Pair(new=6.0, baseline=1.0),
        ),
    ]
    return Verification(
        namespace="playcode",
        deployment=text("deployment"),
        revision=5,
        baseline_revision=4,
        replicaset=text("replicaset"),
        baseline_replicaset="playcode-app-6c8f",
        trigger=text("trigger"),
        started_at=T0,
        window_s=600,
        interval_s=60,
        ends_at=T0 + timedelta(minutes=10),
        next_at=T0 + timedelta(minutes=3),
        state=state,  # type: ignore[arg-type]
        reason=text("reason") if state != "verifying" else "",
        finished_at=T0 + timedelta(seconds=120) if state != "verifying" else None,
        samples=samples,
    )


def hostile(slot: str) -> str:
    return f"{slot} {SCRIPT_LABEL} {SLACK_PING} token=planted-token-123"


# ------------------------------------------------------------------ text
def test_sample_rows_say_what_each_interval_measured() -> None:
    rows = sample_rows(verification())
    assert [r.offset for r in rows] == ["+0s", "+1m", "+2m"]
    first, second, third = rows
    assert (first.pods, first.restarts, first.requests) == ("1/3", "0", "n/a")
    assert (first.error_ratio_5xx, first.latency_p99) == ("n/a", "n/a")  # not measured: no Prometheus
    assert first.error_logs_per_minute == "2.0 vs 1.0" and first.alerts == "—"
    assert second.pods == "3/3 (CrashLoopBackOff 1)" and second.restarts == "1"
    assert second.error_ratio_5xx == "2.0 % vs 0.5 %" and second.latency_p99 == "300 ms vs 200 ms"
    assert second.error_logs_per_minute == "n/a vs 1.0" and second.alerts == "plain words"
    assert (third.requests, third.error_ratio_5xx, third.latency_p99) == (
        "400",
        "31.0 % vs 0.5 %",
        "1.50 s vs 200 ms",
    )


def test_headline_gaps_and_series() -> None:
    v = verification()
    assert headline(v) == (
        "failed: deployment/playcode/plain words revision 5 against revision 4 — plain words"
    )
    assert headline(v.model_copy(update={"baseline_revision": None, "reason": ""})) == (
        "failed: deployment/playcode/plain words revision 5 (no older revision: absolute thresholds only)"
    )
    assert gaps(v) == [GAP, "plain words"]  # each once, in the order met
    ratio, p99, logs = series(v)
    assert ratio.points == [[0.0, None], [60.0, 0.02], [120.4, 0.31]] and ratio.baseline == 0.005
    assert p99.last == 1.5 and logs.points[1] == [60.0, None] and logs.last == 6.0


# ------------------------------------------------------------------ sparkline
def coords(svg: str) -> list[tuple[float, float]]:
    runs = re.findall(r'points="([^"]+)"', svg)
    dots = re.findall(r'<circle cx="([\d.]+)" cy="([\d.]+)"', svg)
    pts = [tuple(float(c) for c in p.split(",")) for run in runs for p in run.split()]
    return [(float(x), float(y)) for x, y in pts] + [(float(x), float(y)) for x, y in dots]


def baseline_y(svg: str) -> float:
    m = re.search(r'<line class="baseline" x1="0" x2="(\d+)" y1="([\d.]+)" y2="([\d.]+)"', svg)
    assert m is not None and m.group(2) == m.group(3), svg  # flat, across the box
    assert 'stroke-dasharray="4 3"' in svg
    return float(m.group(2))


def test_sparkline_points_are_scaled_into_the_box() -> None:
    spark = sparkline([[0, 0.5], [60, 2.0], [120, 1.0]], width=100, height=40, baseline=0.0)
    pts = coords(spark.svg)
    assert pts == [(3.0, 28.5), (50.0, 3.0), (97.0, 20.0)]  # y: 3 + (2 - v) / 2 * 34
    assert all(0 <= x <= 100 and 0 <= y <= 40 for x, y in pts)
    assert baseline_y(spark.svg) == 37.0  # the baseline widened the range down to 0: the bottom
    assert (spark.low, spark.high, spark.last) == (0.5, 2.0, 1.0)  # the values' own, not the baseline's
    assert 'aria-label="min 0.5, max 2, last 1, baseline 0"' in spark.svg


def test_sparkline_skips_none_values() -> None:
    spark = sparkline([[0, None], [60, 1.0], [120, None], [180, 3.0], [240, 2.0]], width=100, height=40)
    # the time axis still spans the window (0 to 240 s); 1.0 stands alone between two gaps: a dot
    assert re.findall(r'points="([^"]+)"', spark.svg) == ["73.5,3.0 97.0,20.0"]
    assert re.findall(r'<circle cx="([\d.]+)" cy="([\d.]+)"', spark.svg) == [("26.5", "37.0")]
    assert "None" not in spark.svg and "nan" not in spark.svg


def test_sparkline_single_point_and_all_equal_values() -> None:
    single = sparkline([[0, 0.3]], width=100, height=40, baseline=0.2)
    assert "<polyline" not in single.svg and coords(single.svg) == [(3.0, 3.0)]
    assert baseline_y(single.svg) == 37.0
    flat = sparkline([[0, 2.0], [60, 2.0], [120, 2.0]], width=100, height=40)
    assert {y for _, y in coords(flat.svg)} == {20.0}  # the middle, no division by zero
    same = sparkline([[0, 2.0], [60, 2.0]], width=100, height=40, baseline=2.0)
    assert baseline_y(same.svg) == 20.0 and {y for _, y in coords(same.svg)} == {20.0}
    nothing = sparkline([[0, None]], baseline=1.0)
    assert "no data" in nothing.svg and nothing.last is None


# ------------------------------------------------------------------ the incident page
def verification_incident(text: Callable[[str], str] = plain, state: str = "failed") -> IncidentView:
    view = incident(text)
    inc = view.incident
    inc.verification = verification(text, state)
    inc.phase = Phase.VERIFYING if state == "verifying" else Phase.DIAGNOSED
    return view


def detail(view: IncidentView) -> str:
    shown = view.redacted()
    inc = shown.incident
    html, headers = render(
        "detail.html",
        inc=inc,
        alerts=shown.alerts,
        more_alerts=0,
        findings=finding_views(inc),
        evidence=[evidence_view(e) for e in inc.evidence],
        awaiting=awaiting(inc),
        approve_paths={},
        decision="",
        pretty=pretty,
        safe_url=safe_url,
        oncall=oncall(shown, None, T0),
        verification=verification_view(inc.verification),
    )
    assert "img-src data:" in headers["Content-Security-Policy"]  # the CSP is unchanged
    return html


def section(html: str) -> str:
    m = re.search(r'<h2 id="verification">Deploy verification</h2>(.*?)\n<h2>', html, re.S)
    assert m is not None
    return m.group(1)


def test_page_shows_the_verdict_a_row_per_sample_and_a_sparkline_per_measurement() -> None:
    part = section(detail(verification_incident()))
    assert '<span class="st st-failed">failed</span>' in part
    assert "revision 5 against revision 4" in part
    assert "2026-11-26 08:00:00 UTC → 2026-11-26 08:10:00 UTC" in part
    rows = re.findall(r"<tr><td>(.*?)</tr>", re.sub(r"\s+", " ", part))
    assert len(rows) == 3
    assert "<td>31.0 % vs 0.5 %</td><td>1.50 s vs 200 ms</td><td>6.0 vs 1.0</td>" in rows[2]
    assert "<td>n/a</td><td>n/a</td>" in rows[0]
    assert part.count('<svg class="spark"') == 3 and part.count('class="baseline"') == 3
    assert '5xx ratio <span class="muted">last 31.0 % · baseline 0.5 % (dashed)' in part
    assert f"<li>{GAP}</li>" in part


def test_page_escapes_a_hostile_deployment_name_and_reason() -> None:
    html = detail(verification_incident(hostile))
    part = section(html)
    assert SCRIPT_LABEL not in html and html.count("<script") == 1  # only ours, by nonce
    assert "deployment &lt;script&gt;window.__pwned = 1&lt;/script&gt;" in part
    assert "reason &lt;script&gt;" in part and "alertname &lt;script&gt;" in part
    assert not [s for s in PLANTED if s in html]  # the page shows the redacted incident


def test_page_of_a_window_without_samples_yet() -> None:
    view = verification_incident(state="verifying")
    assert view.incident.verification is not None
    view.incident.verification.samples = []
    part = section(detail(view))
    assert '<span class="st st-verifying">verifying</span>' in part and "No sample yet" in part
    assert "<svg" not in part


def test_list_page_shows_the_verifying_phase_and_the_verdict() -> None:
    items = [verification_incident(state=s).redacted().incident for s in ("verifying", "passed")]
    plain_inc = incident(plain).incident
    html, _ = render(
        "list.html",
        items=[*items, plain_inc],
        total=3,
        offset=0,
        filters={"status": "", "namespace": "", "rule": ""},
        namespaces=["playcode"],
        rules=["deploy-verify"],
        prev_query=None,
        next_query=None,
    )
    rows = re.findall(r"<tr>(.*?)</tr>", html, re.S)[1:]
    assert len(rows) == 3
    assert '<span class="muted">verifying</span></td>' in rows[0]  # still running: the phase says it
    assert '<span class="st st-passed">verification passed</span>' in rows[1]
    assert "verification" not in rows[2]


# ------------------------------------------------------------------ the Markdown report
def report(view: IncidentView) -> str:
    return render_markdown(view, LinkSettings(), T0 + timedelta(minutes=5))


def test_report_has_the_verdict_and_the_samples_table() -> None:
    md = report(verification_incident())
    assert "\n## Deploy verification\n" in md
    assert (
        "- **State**: failed: deployment/playcode/plain words revision 5 against revision 4 — plain words"
        in md
    )
    assert "- **Window**: 10m from 2026-11-26 08:00:00 UTC to 2026-11-26 08:10:00 UTC, every 1m" in md
    table = [line for line in md.splitlines() if line.startswith("| +")]
    assert table == [
        "| +0s (08:00:00) | 1/3 | 0 | n/a | n/a | n/a | 2.0 vs 1.0 | — |",
        "| +1m (08:01:00) | 3/3 (CrashLoopBackOff 1) | 1 | 150 | 2.0 % vs 0.5 % | 300 ms vs 200 ms "
        "| n/a vs 1.0 | plain words |",
        "| +2m (08:02:00) | 3/3 | 2 | 400 | 31.0 % vs 0.5 % | 1.50 s vs 200 ms | 6.0 vs 1.0 | — |",
    ]
    tokens = MD.parse(md)
    heads = [tokens[i + 1].content for i, t in enumerate(tokens) if t.type == "heading_open"]
    assert heads[1:3] == ["From the alerts", "Deploy verification"]
    assert sum(1 for t in tokens if t.type == "tr_open") >= 4  # the header and three samples


@pytest.mark.parametrize("injection", INJECTIONS)
def test_hostile_verification_text_changes_no_structure_of_the_report(injection: str) -> None:
    def text(slot: str) -> str:
        return f"{slot} {injection}"

    benign, evil = report(verification_incident()), report(verification_incident(text))
    assert shape(MD.parse(evil)) == shape(MD.parse(benign))
    html = MD.render(evil)
    assert "<script" not in html and "<img" not in html


# ------------------------------------------------------------------ notifications
def verification_event(kind: EventKind = EventKind.DIAGNOSED, text: Callable[[str], str] = plain) -> Event:
    inc: Incident = verification_incident(text).incident
    return Event(kind, snapshot(inc), T0)


def test_slack_says_the_verdict_in_one_short_line() -> None:
    msg = first_message(verification_event(text=hostile), Links("https://m/incidents/i"))
    (line,) = [
        b["text"]["text"]
        for b in msg["blocks"]
        if b["type"] == "section" and "text" in b and b["text"]["text"].startswith("*Deploy verification*")
    ]
    assert "\n" not in line and len(line) < 500
    assert line.startswith("*Deploy verification* :x: failed: deployment/playcode/deployment ")
    assert "revision 5 against revision 4 — reason" in line
    assert "<!channel>" not in line and "&lt;!channel&gt;" in line  # no mention, no disguised link
    assert "&lt;script&gt;" in line and not [s for s in PLANTED if s in str(msg)]
    assert "samples" not in line and "+1m" not in str(msg)  # the table stays on the page


def test_update_lines_of_a_verification() -> None:
    passed = verification_event(EventKind.RESOLVED)
    v = passed.incident.verification
    assert v is not None
    v.state = "passed"
    passed.incident.resolved_at = passed.incident.created_at + timedelta(minutes=10)
    assert update_line(passed) == "resolved after 10 min: verification passed (revision 5)"
    v.state = "failed"
    assert update_line(passed) == (
        "resolved after 10 min: the Deployment left revision 5, whose verification failed"
    )


def test_webhook_carries_the_verdict() -> None:
    body = notification(verification_event(text=hostile), MessageKind.FIRST, Links(), T0)
    v = body.incident.verification
    assert v is not None and (v.state, v.revision, v.baseline_revision, v.samples) == ("failed", 5, 4, 3)
    assert v.summary.startswith("failed: deployment/playcode/deployment <script>")  # JSON: data, as is
    assert "\n" not in v.summary and not [s for s in PLANTED if s in body.model_dump_json()]
    assert NotificationV1.model_validate(body.model_dump(mode="json", by_alias=True)) == body
    plain_body = notification(
        Event(EventKind.DIAGNOSED, snapshot(incident(plain).incident), T0), MessageKind.FIRST, Links(), T0
    )
    assert plain_body.incident.verification is None
