"""Alert-controlled text can never become structure in the Markdown report or the Slack message.

The report is parsed with a CommonMark parser (markdown-it-py, with GFM tables): an incident
whose every alert-controlled field holds an injection (newlines and Unicode line separators
followed by headings, list items, table rows, HTML, links, code fences) must give exactly the
document structure of the same incident with plain words in those fields. The same for Slack:
the same number of lines in every block, no mention, no link but ours.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import pytest
from markdown_it import MarkdownIt
from markdown_it.token import Token

from medic.domain.evidence import Evidence, StepStatus
from medic.domain.incident import (
    ActionRecord,
    ActionStatus,
    Finding,
    GuardDecision,
    Incident,
    IncidentAlert,
    Phase,
    Target,
)
from medic.incidents.report.escape import (
    fold,
    md_code,
    md_fence,
    md_html,
    md_link,
    md_text,
    slack_link,
    slack_text,
)
from medic.incidents.report.links import LinkSettings
from medic.incidents.report.markdown import render_markdown
from medic.incidents.report.oncall import oncall
from medic.incidents.views import IncidentView
from medic.notify.events import Event, EventKind, Links, snapshot
from medic.notify.slack import first_message, update_message

T0 = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)
FORGED = "rollback: succeeded, approved by alice"
SEPARATORS = ["\n", "\r\n", "\r", "\u2028", "\u2029", "\x85", "\v", "\f", "\x1c", "\x1e"]
INJECTIONS = [
    *(f"x{sep}\n## Actions{sep}- **{FORGED}**{sep}# Forged" for sep in SEPARATORS),
    f"x\n\n1. {FORGED}\n2) two\n> quoted\n===\n---",
    "<details><summary>forged</summary><script>alert(1)</script><img src=x onerror=alert(2)>",
    "| forged | cell |\n|---|---|\n| a | b |",
    "`code` ``` fence ```` x\n```\n# inside a fence",
    "[click](https://evil.example) ![img](https://evil.example/x.png) <https://evil.example>",
    "*bold* _it_ ~~strike~~ **strong** __strong__ &lt;entity&gt; &amp; \\",
    "trailing backslash escapes our pipe \\",
    "# heading",
    "- bullet",
    "+ plus",
    "12. ordered",
    "   - indented",
    "\t- tab",
    "\u202eevil-rtl override\u202c",
]
ALLOWED_HTML = {"<details><summary>", "</summary>", "</details>"}


def incident(text: Callable[[str], str]) -> IncidentView:
    """An incident whose every field that alerts control (and every field derived from them)
    is ``text(slot)``; the rest is fixed."""
    target = Target(kind="deployment", namespace="playcode", name=text("target"))
    evidence = [
        Evidence(
            step="k8s.pod_logs",
            collector="k8s.pod_logs",
            status=StepStatus.OK,
            started_at=T0,
            duration_ms=12.0,
            data={"logs": [{"pod": text("pod"), "lines": [text("log line"), "```", text("log 2")]}]},
        ),
        Evidence(
            step="loki.query",
            collector="loki.query",
            status=StepStatus.TIMEOUT,
            started_at=T0,
            duration_ms=5000.0,
            error=text("loki error"),
        ),
        Evidence(
            step="k8s.events",
            collector="k8s.events",
            status=StepStatus.ERROR,
            started_at=T0,
            duration_ms=3.0,
            error=text("events error"),
        ),
    ]
    inc = Incident(
        id="inc-20261126-080000-0badc0de",
        key="k",
        rule="crashloop-rollback",
        playbook="crashloop",
        phase=Phase.DIAGNOSED,
        severity="critical",
        title=f"{text('alertname')} on deployment/playcode/{text('target')}",
        target=target,
        alerts_total=1,
        alerts_firing=1,
        labels={"alertname": text("alertname"), "namespace": "playcode", "pod": text("pod")},
        evidence=evidence,
        findings=[
            Finding(
                analyzer="crashloop",
                code="crashloop.regression",
                severity="critical",
                summary=f"revision 2 of {text('target')} crash-loops: {text('log line')}",
                evidence=["k8s.pod_logs"],
                next_steps=[f"kubectl logs {text('pod')} -n playcode --previous"],
            ),
            Finding(
                analyzer="coverage",
                code="coverage.incomplete",
                severity="info",
                summary=f"2 of 3 checks gave no data: loki.query (timeout: {text('loki error')})",
                evidence=["loki.query", "k8s.events"],
            ),
        ],
        actions=[
            ActionRecord(
                action="rollback",
                use="k8s.rollback_deployment",
                target=target,
                mode="approve",
                status=ActionStatus.AWAITING_APPROVAL,
                guards=[GuardDecision(guard="scope", allowed=True, reason=text("guard reason"))],
                reason=text("action reason"),
                approved_by=text("approver"),
                at=T0,
            )
        ],
        created_at=T0,
        updated_at=T0,
    )
    inc.note("decision", text("decision"), T0)
    inc.note("notify", text("notify outcome"), T0)
    alert = IncidentAlert(
        identity="fp",
        status="firing",
        labels=dict(inc.labels),
        annotations={
            "summary": text("summary"),
            "description": text("description"),
            "runbook_url": "https://runbooks.example/crashloop",
        },
        startsAt=T0,
        generatorURL="http://prometheus.example/graph?g0.expr=up",
        alertmanager_url="http://alertmanager.example:9093",
    )
    return IncidentView(inc, [alert])


def plain(slot: str) -> str:
    return "plain words"


def hostile(injection: str) -> Callable[[str], str]:
    return lambda slot: f"{slot} {injection}"


LINKS = LinkSettings(
    grafana_url="https://grafana.example",
    grafana_loki_datasource="loki-uid",
    prometheus_url="https://prometheus.example",
    alertmanager_url="http://am.example",
)
MD = MarkdownIt("commonmark").enable("table").enable("strikethrough")


def shape(tokens: list[Token]) -> list[Any]:
    """The document's structure: block tokens and the inline tokens within, text merged."""
    out: list[Any] = []
    for t in tokens:
        out.append((t.type, t.tag, t.level, t.content if t.type == "html_block" else None))
        kids: list[str] = []
        for child in t.children or []:
            if child.type == "text" and kids and kids[-1] == "text":
                continue
            kids.append(child.type if child.type != "html_inline" else f"html:{child.content}")
        if kids:
            out.append(tuple(kids))
    return out


def headings(tokens: list[Token]) -> list[str]:
    return [tokens[i + 1].content for i, t in enumerate(tokens) if t.type == "heading_open"]


def report(view: IncidentView) -> str:
    return render_markdown(view, LINKS, T0 + timedelta(minutes=5))


def test_plain_report_has_the_expected_sections() -> None:
    tokens = MD.parse(report(incident(plain)))
    assert headings(tokens)[1:] == [
        "From the alerts",
        "Findings",
        "Actions",
        "What was checked",
        "Alerts",
        "Timeline",
    ]


@pytest.mark.parametrize("injection", INJECTIONS)
def test_injection_changes_no_structure_of_the_report(injection: str) -> None:
    benign, evil = report(incident(plain)), report(incident(hostile(injection)))
    tokens = MD.parse(evil)
    assert shape(tokens) == shape(MD.parse(benign))
    assert headings(tokens)[1:] == headings(MD.parse(benign))[1:]
    items = [t for t in tokens if t.type == "inline" and FORGED in t.content]
    assert all(not t.content.startswith(("**" + FORGED, FORGED)) for t in items)
    html = MD.render(evil)
    assert "<script" not in html and "<img" not in html
    assert {urlsplit(h).hostname for h in re.findall(r'href="([^"]*)"', html)} == {
        "runbooks.example",
        "prometheus.example",
        "grafana.example",
        "alertmanager.example",
    }
    assert html.count("<h1>") == 1 and html.count("<h2>") == 6


def test_forged_section_from_an_alert_name_is_text() -> None:
    """The issue's case: a newline and a heading in the alert name."""
    name = (
        "KubePodCrashLooping\n\n## Actions\n- **rollback** on deployment/x: **succeeded**, approved by alice"
    )
    view = incident(lambda slot: name if slot == "alertname" else "ok")
    text = report(view)
    tokens = MD.parse(text)
    assert headings(tokens).count("Actions") == 1
    items = [tokens[i + 2].content for i, t in enumerate(tokens) if t.type == "list_item_open"]
    assert items and not [i for i in items if i.startswith("**rollback** on deployment/x")]
    assert sum("approved by alice" in t.content for t in tokens if t.type == "inline") == 2  # h1, table cell
    assert "\n## Actions\n- **rollback** on deployment/x" not in text


def test_report_shows_the_alerts_words_links_and_short_coverage() -> None:
    text = report(incident(plain))
    assert "- **Summary**: plain words" in text and "- **Description**: plain words" in text
    assert "- **Runbook**: [https://runbooks.example/crashloop](https://runbooks.example/crashloop)" in text
    assert "[Silence in Alertmanager](http://alertmanager.example:9093/#/silences/new?filter=" in text
    assert "[Grafana: logs](https://grafana.example/explore?" in text
    assert "**2 of 3 checks gave no data** `coverage.incomplete`" in text
    assert "   - `loki.query` timeout: plain words" in text
    assert "   - `k8s.events` error: plain words" in text


# ------------------------------------------------------------------ Slack
def slack(view: IncidentView) -> dict[str, Any]:
    shown = view.redacted()
    event = Event(EventKind.DIAGNOSED, snapshot(shown.incident), T0)
    return first_message(
        event, Links("https://medic.example/i", {0: "https://medic.example/a"}, oncall(shown, LINKS, T0))
    )


def _texts(msg: dict[str, Any]) -> list[str]:
    out = [msg["text"]]
    for block in msg["blocks"]:
        if "text" in block:
            out.append(block["text"]["text"])
        out += [f["text"] for f in block.get("fields", [])]
        out += [e["text"] for e in block.get("elements", [])]
    return out


@pytest.mark.parametrize(
    "injection", [*INJECTIONS, "<!channel> <@U123> <https://evil.example|click> <!here>"]
)
def test_injection_changes_no_line_of_the_slack_message(injection: str) -> None:
    benign, evil = slack(incident(plain)), slack(incident(hostile(injection)))
    assert [b["type"] for b in evil["blocks"]] == [b["type"] for b in benign["blocks"]]
    for good, bad in zip(_texts(benign), _texts(evil), strict=True):
        assert bad.count("\n") == good.count("\n")
        assert len(re.findall(r"<[^>]*>", bad)) == len(re.findall(r"<[^>]*>", good))  # no mention, no link
    assert not re.search(r"[\r\v\f\x85\u2028\u2029]", json.dumps(evil, ensure_ascii=False))


def test_slack_shows_summary_runbook_links_and_short_coverage() -> None:
    msg = slack(incident(plain))
    said = msg["blocks"][2]["text"]["text"]
    assert "*Summary*: plain words" in said and "*Description*: plain words" in said
    assert "*Runbook*: <https://runbooks.example/crashloop|https://runbooks.example/crashloop>" in said
    findings = msg["blocks"][3]["text"]["text"]
    assert "2 of 3 checks gave no data `coverage.incomplete`" in findings
    assert "• `loki.query` timeout: plain words" in findings
    assert "2 of 3 checks gave no data: loki.query" not in findings  # not the one long line
    links = msg["blocks"][-1]["elements"][1]["text"]
    assert "|Silence in Alertmanager>" in links and "<https://prometheus.example/graph?" in links


def test_slack_update_is_one_line_whatever_the_reason() -> None:
    view = incident(hostile(INJECTIONS[0]))
    event = Event(EventKind.ACTION, snapshot(view.incident), T0, action_index=0)
    text = update_message(event, Links("https://m/i"))["blocks"][0]["text"]["text"]
    assert text.count("\n") == 1  # the "Update on" line and the status line


# ------------------------------------------------------------------ the helpers
@pytest.mark.parametrize("sep", [*SEPARATORS, "\t", "\x00", "\u2066"])
def test_fold_makes_one_line(sep: str) -> None:
    assert fold(f"a{sep}b") == "a b"
    assert "\n" not in md_text(f"a{sep}# b") and "\n" not in md_code(f"a{sep}b")


def test_md_text_escapes_markup_and_html() -> None:
    assert (
        md_text("a *b* _c_ `d` [e](f) | ~g~ \\ #")
        == "a \\*b\\* \\_c\\_ \\`d\\` \\[e\\](f) \\| \\~g\\~ \\\\ \\#"
    )
    assert md_text("<b>&amp;</b>") == "&lt;b&gt;&amp;amp;&lt;/b&gt;"
    assert md_text("- item") == "\\- item" and md_text("3. x") == "3\\. x" and md_text("3) x") == "3\\) x"
    assert md_text("playcode-app 1.2") == "playcode-app 1.2"  # readable where nothing is at stake


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("plain", "`plain`"),
        ("a`b", "``a`b``"),
        ("```", "```` ``` ````"),
        ("`x", "`` `x ``"),
        ("x | y", "`x | y`"),
    ],
)
def test_md_code_fence_is_longer_than_any_backtick_run(text: str, code: str) -> None:
    assert md_code(text) == code
    (span,) = [c for c in MD.parseInline(code)[0].children or [] if c.type == "code_inline"]
    assert span.content == text


def test_md_code_in_a_table_cell_keeps_the_pipe() -> None:
    table = f"| a |\n|---|\n| {md_code('x | y', table=True)} |"
    assert "<code>x | y</code>" in MD.render(table)


def test_fence_html_and_links() -> None:
    block = md_fence("```\n# not a heading", "json")
    assert block[0] == "````json" and block[-1] == "````"
    assert md_html('<b a="1">x\ny') == "&lt;b a=&quot;1&quot;&gt;x y"
    assert (
        md_link("[x]", "https://e.example/a b(c)<d>|")
        == "[\\[x\\]](https://e.example/a%20b%28c%29%3Cd%3E%7C)"
    )
    assert slack_text("<!channel> & co") == "&lt;!channel&gt; &amp; co"
    assert slack_link("https://e.example/a|b>c", "x|<y>") == "<https://e.example/a%7Cb%3Ec|x|&lt;y&gt;>"
