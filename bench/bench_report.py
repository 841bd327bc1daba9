"""Cost of what on-call sees: the Markdown report, the Slack message and the on-call context (the
alerts' words, links, coverage gaps) of an incident with 100 alerts, plain and hostile text.

Built on every page view, every ``?format=md`` and every notification, so it must stay cheap; the
hostile variant (every alert-controlled field full of Markdown, HTML and line separators) shows
that escaping costs about the same as plain text.

    .venv/bin/python bench/bench_report.py [--alerts 100] [--repeat 200]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.unit.test_markdown_escape import INJECTIONS, LINKS, T0, hostile, incident, plain

from medic.incidents.report.markdown import render_markdown
from medic.incidents.report.oncall import oncall
from medic.incidents.views import IncidentView
from medic.notify.events import Event, EventKind, Links
from medic.notify.slack import first_message


def view_with(alerts: int, text: Callable[[str], str]) -> IncidentView:
    base = incident(text)
    one = base.alerts[0]
    many = [
        one.model_copy(
            update={
                "identity": f"a{i}",
                "labels": {**one.labels, "pod": f"{text('pod')}-{i}"},
                "annotations": {**one.annotations, "summary": f"{text('summary')} {i % 7}"},
            }
        )
        for i in range(alerts)
    ]
    return IncidentView(base.incident, many).redacted()


def timed(fn: Callable[[], object], repeat: int) -> float:
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - start) / repeat * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alerts", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=200)
    args = parser.parse_args()
    print(f"{'text':8} {'markdown ms':>12} {'oncall ms':>10} {'slack ms':>9} {'report KB':>10}")
    for name, text in (("plain", plain), ("hostile", hostile("\n".join(INJECTIONS)))):
        view = view_with(args.alerts, text)
        ctx = oncall(view, LINKS, T0)
        event = Event(EventKind.DIAGNOSED, view.incident, T0)
        md = render_markdown(view, LINKS, T0)
        links = Links("https://m/i", {}, ctx)
        print(
            f"{name:8} {timed(lambda v=view: render_markdown(v, LINKS, T0), args.repeat):12.2f}"
            f" {timed(lambda v=view: oncall(v, LINKS, T0), args.repeat):10.2f}"
            f" {timed(lambda e=event, ln=links: first_message(e, ln), args.repeat):9.2f}"
            f" {len(md.encode()) / 1024:10.1f}"
        )


if __name__ == "__main__":
    main()
