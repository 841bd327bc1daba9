"""``medic test``, ``medic rules test``, ``medic replay --since`` and ``incidents export --as-test``:
rules, playbooks and guards tried offline (no collector runs, nothing acts). The deciding is
:mod:`medic.app.testing`; this module reads files and stores and prints."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from medic.app.cli.output import EXIT_FAILURE, EXIT_USAGE, emit
from medic.domain.errors import ConfigError, ConfigErrors, MedicError, UsageError

if TYPE_CHECKING:  # keeps the CLI's start-up imports small
    from medic.app.config import Config
    from medic.app.testing.cases import Result
    from medic.domain.incident import Incident, Target
    from medic.incidents.views import IncidentView


# --------------------------------------------------------------------------- medic test
def _test_files(paths: list[Path]) -> list[Path]:
    files: list[Path] = []
    for p in paths:
        if not p.exists():
            raise UsageError(f"{p}: no such file or directory")
        if p.is_dir():
            files += sorted(
                f
                for f in p.rglob("*")
                if f.suffix in (".yaml", ".yml")
                and f.is_file()
                and not any(part.startswith(".") for part in f.relative_to(p).parts)
            )
        else:
            files.append(p)
    return files


def _config_loader() -> Any:
    from medic.app.catalogue import default_registry
    from medic.app.config import load_config

    registry = default_registry()
    cache: dict[tuple[Path, Path], Config] = {}

    def load(rules: Path, playbooks: Path) -> Config:
        key = (rules.resolve(), playbooks.resolve())
        if key not in cache:
            cache[key] = load_config([rules], [playbooks], registry)
        return cache[key]

    return registry, load


def _policy(settings: Any, mode: str = "dry-run") -> Any:
    from medic.app.testing.evaluate import Policy

    return Policy(
        mode=mode,
        namespaces=tuple(settings.remediation.namespaces),
        global_budget_count=settings.remediation.global_budget_count,
        global_budget_window=timedelta(seconds=settings.remediation.global_budget_window_seconds),
        flap_window=timedelta(seconds=settings.remediation.flap_window_seconds),
    )


def _quiet() -> None:
    """An analyzer that fails shows as an ``analyzer.error`` finding; its log would only be noise."""
    from medic.app.logging import configure_logging

    configure_logging("console", "critical")


def cmd_test(args: argparse.Namespace) -> int:
    from medic.app.settings import load_settings

    _quiet()
    from medic.app.testing.cases import Defaults, run_file

    settings = load_settings()
    paths = [Path(p) for p in args.paths] or [settings.rules.rules_dir / "tests"]
    files = _test_files(paths)
    if not files:
        raise UsageError(f"no test files (*.yaml) in {', '.join(map(str, paths))}")
    registry, load = _config_loader()
    defaults = Defaults(settings.rules.rules_dir, settings.rules.playbooks_dir, _policy(settings))
    results: list[Result] = []
    errors: list[ConfigError] = []
    for file in files:
        try:
            results += run_file(file, load, registry, defaults)
        except ConfigErrors as exc:
            errors += exc.errors
        except ConfigError as exc:
            errors.append(exc)
    failed = [r for r in results if not r.passed]
    doc = {
        "ok": not failed and not errors,
        "passed": len(results) - len(failed),
        "failed": len(failed),
        "errors": [{"file": e.file, "line": e.line, "field": e.field, "message": e.message} for e in errors],
        "tests": [r.document() for r in results],
    }
    emit(args, doc, lambda: _test_text(results))
    if errors and args.output == "text":
        for err in errors:
            print(f"medic: {err}", file=sys.stderr)
    return EXIT_USAGE if errors else EXIT_FAILURE if failed else 0


def _test_text(results: list[Result]) -> str:
    lines: list[str] = []
    for r in results:
        where = f"{r.file}:{r.line}" if r.line else r.file
        if r.passed:
            lines.append(f"PASSED  {r.name}  ({where})")
            continue
        lines.append(f"FAILED  {r.name}  ({where})")
        for d in r.differences:
            lines.append(f"    {d.field}:")
            lines.append(f"      - expected: {_shown(d.expected)}")
            lines.append(f"      + got:      {_shown(d.got)}")
    failed = sum(not r.passed for r in results)
    lines.append(f"{len(results) - failed} passed, {failed} failed")
    return "\n".join(lines)


def _shown(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, list):
        return "[" + ", ".join(map(str, value)) + "]"
    return str(value)


# --------------------------------------------------------------------------- medic rules test
def _labels(pairs: list[str]) -> dict[str, str]:
    labels: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise UsageError(f"{pair!r}: give labels as name=value")
        labels[name] = value.strip('"')
    return labels


def cmd_rules_test(args: argparse.Namespace) -> int:
    from medic.app.settings import load_settings
    from medic.rules.routing import route_steps
    from medic.rules.targets import target_from_labels

    labels = _labels(args.labels)
    settings = load_settings()
    rules_dir = Path(args.rules) if args.rules else settings.rules.rules_dir
    playbooks_dir = Path(args.playbooks) if args.playbooks else settings.rules.playbooks_dir
    _, load = _config_loader()
    config = load(rules_dir, playbooks_dir)
    steps = route_steps(labels, config.rules)  # as the service routes
    checked = [
        {"rule": st.rule.name, "matches": st.matched, "failed": str(st.failed) if st.failed else None}
        for st in steps
    ]
    match = next((st.rule for st in steps if st.matched), None)
    doc: dict[str, Any] = {"labels": labels, "rule": None, "checked": checked}
    if match is not None:
        playbook = config.playbook_of(match)
        kind = playbook.playbook.target if playbook else "none"
        target = target_from_labels(kind, labels)
        doc |= {
            "rule": match.name,
            "file": config.rule_files.get(match.name),
            "matchers": [str(m) for m in match.parsed_matchers],
            "playbook": match.playbook,
            "target_kind": kind,
            "target": str(target) if target else None,
            "target_inferred": bool(target and target.inferred),
            "remediation": match.remediation.action if match.remediation else None,
            "mode": match.remediation.mode if match.remediation else None,
        }
    emit(args, doc, lambda: _rules_test_text(doc))
    return 0 if match is not None else EXIT_FAILURE


def _rules_test_text(doc: dict[str, Any]) -> str:
    if doc["rule"] is None:
        lines = ["no rule matches: recorded without a playbook"]
        lines += [f"  {c['rule']}: {c['failed']} does not match" for c in doc["checked"]]
        return "\n".join(lines)
    lines = [
        f"rule:      {doc['rule']}  ({doc['file']}, first match)",
        f"matched:   {', '.join(doc['matchers'])}",
        f"playbook:  {doc['playbook'] or '-'}",
    ]
    if doc["target"]:
        how = " (inferred from the pod name)" if doc["target_inferred"] else ""
        lines.append(f"target:    {doc['target']}{how}")
    else:
        lines.append(f"target:    none resolved from these labels (playbook target: {doc['target_kind']})")
    if doc["remediation"]:
        lines.append(f"action:    {doc['remediation']} (mode {doc['mode']})")
    return "\n".join(lines)


# --------------------------------------------------------------------------- stored incidents
@dataclass
class Stored:
    view: IncidentView
    others: list[Incident]


class _Source:
    """Stored incidents from a running Medic (``--url``) or a store (``--data-dir`` / configured)."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args

    @asynccontextmanager
    async def open(self) -> AsyncIterator[Any]:
        if self.args.url:
            from medic.app.cli.remote import open_session, read_headers

            async with open_session(self.args, read_headers()) as session:
                yield _Remote(session, self.args.url.rstrip("/"))
            return
        from medic.app.backend_select import open_incident_reader
        from medic.app.settings import load_settings

        overrides: dict[str, Any] = {}
        if getattr(self.args, "data_dir", None):
            overrides = {"data_dir": Path(self.args.data_dir), "mongo_url": None}
        async with open_incident_reader(load_settings(**overrides)) as store:
            yield _Local(store)


class _Local:
    def __init__(self, store: Any) -> None:
        self.store = store

    async def view(self, incident_id: str) -> IncidentView | None:
        from medic.incidents.views import incident_view

        view: IncidentView | None = await incident_view(self.store, incident_id)
        return view

    async def since(self, start: datetime, target: Target | None = None) -> list[Incident]:
        from medic.incidents.base import IncidentQuery

        out: list[Incident] = []
        offset = 0
        while True:
            items, _ = await self.store.query(IncidentQuery(limit=200, offset=offset))
            out += [
                i
                for i in items
                if i.created_at >= start
                and (target is None or (i.target is not None and i.target.key == target.key))
            ]
            if len(items) < 200 or (items and items[-1].created_at < start):
                return out
            offset += 200


class _Remote:
    def __init__(self, session: Any, base: str) -> None:
        self.session, self.base = session, base

    async def _get(self, path: str, **params: str) -> dict[str, Any] | None:
        """The answer's JSON object; None for a 404 (no such incident). A page that is not
        Medic's (a proxy's error, a login page) is a failure naming the URL, never a traceback."""
        from medic.app.cli.remote import answer_json

        url = f"{self.base}{path}"
        async with self.session.get(url, params=params) as resp:
            body = await answer_json(resp, url, ok=(200, 404))
            return None if resp.status == 404 else body

    async def view(self, incident_id: str) -> IncidentView | None:
        from medic.app.cli.remote import answer_as
        from medic.incidents.views import IncidentView

        path = f"/api/v1/incidents/{incident_id}"
        body = await self._get(path)
        return answer_as(IncidentView.from_document, body, f"{self.base}{path}") if body is not None else None

    async def since(self, start: datetime, target: Target | None = None) -> list[Incident]:
        out: list[Incident] = []
        offset = 0
        wanted = target.key if target is not None else None
        while True:
            page = await self._get("/api/v1/incidents", limit="500", offset=str(offset))
            items = page["items"] if page is not None else []
            for item in items:
                if wanted is not None and _key(item.get("target")) != wanted:
                    continue
                if _time(item["created_at"], self.base) >= start:
                    view = await self.view(item["id"])
                    if view is not None:
                        out.append(view.incident)
            if len(items) < 500 or _time(items[-1]["created_at"], self.base) < start:
                return out
            offset += 500


def _time(value: Any, url: str) -> datetime:
    """An answer's timestamp; one that is not (another version's answer) is a failure naming the URL."""
    try:
        return datetime.fromisoformat(str(value))
    except ValueError:
        raise MedicError(f"{url}: not a Medic answer of this version: created_at {value!r}") from None


def _key(target: Any) -> str | None:
    """A target's key from an incident document (the ledger's and the guards' identity of it)."""
    from medic.domain.incident import Target

    return Target.model_validate(target).key if isinstance(target, dict) else None


# --------------------------------------------------------------------------- incidents export --as-test
async def _export(args: argparse.Namespace) -> dict[str, Any]:
    from medic.app.settings import load_settings
    from medic.app.testing.evaluate import history_span
    from medic.app.testing.fixtures import test_document

    settings = load_settings()
    _, load = _config_loader()
    span = history_span(load(settings.rules.rules_dir, settings.rules.playbooks_dir), _policy(settings))
    async with _Source(args).open() as source:
        view = await source.view(args.id)
        if view is None:
            raise MedicError(f"no incident {args.id!r}")
        # earlier actions, as far back as the guards look: on the target (cooldown, its budget,
        # flap) and on any other (the global budget)
        window = view.incident.created_at - span
        others = await source.since(window) if view.incident.target else []
    return test_document(view, others)


def cmd_export(args: argparse.Namespace) -> int:
    if not args.id:
        raise UsageError("incidents export needs an incident id")
    if not args.as_test:
        raise UsageError("incidents export writes a test file: add --as-test")
    doc = asyncio.run(_export(args))
    text = "# medic test file exported from a stored incident (redacted); run: medic test FILE\n"
    text += yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
        print(f"wrote {args.out}", file=sys.stderr)
    else:
        print(text, end="")
    return 0


# --------------------------------------------------------------------------- replay --since
def _since(value: str) -> timedelta:
    from medic.domain.durations import parse_duration

    try:
        return parse_duration(value)
    except (ValueError, TypeError) as exc:
        raise UsageError(f"--since {value!r}: {exc}") from exc


async def _replay_since(args: argparse.Namespace) -> dict[str, Any]:
    from medic.app.settings import load_settings
    from medic.app.testing.cases import case_from_fields
    from medic.app.testing.evaluate import evaluate, history_span
    from medic.app.testing.fixtures import case_fields, expected_status, first_action, global_mode, refused_by

    settings = load_settings()
    registry, load = _config_loader()
    config = load(
        Path(args.rules) if args.rules else settings.rules.rules_dir,
        Path(args.playbooks) if args.playbooks else settings.rules.playbooks_dir,
    )
    start = datetime.now(UTC) - _since(args.since)
    async with _Source(args).open() as source:
        # the incidents before the first one, as far back as the guards look, give its history
        known = await source.since(start - history_span(config, _policy(settings)))
        incidents = [i for i in known if i.created_at >= start]
        rows = []
        for incident in sorted(incidents, key=lambda i: i.created_at):
            view = await source.view(incident.id)
            if view is None:
                continue
            fields = case_fields(view, known)
            mode = args.mode or global_mode(incident)
            case = case_from_fields(fields, config, registry)
            # the kill switch is state, not configuration: as it was at the decision
            policy = replace(_policy(settings, mode), kill_switch=bool(fields.get("kill_switch")))
            after = evaluate(case, config, registry, policy)
            record = first_action(incident)
            before_action = _action_text(
                record.action if record else None, expected_status(record), refused_by(record)
            )
            after_action = _action_text(after.action, after.status, after.refused_by)
            before = {
                "rule": incident.rule,
                "top_finding": incident.findings[0].code if incident.findings else None,
                "action": before_action,
            }
            now = {"rule": after.rule, "top_finding": after.top_finding, "action": after_action}
            if incident.rule is not None and after.rule is None:
                change = "no longer matched"
            else:
                change = "changed" if before != now else "unchanged"
            rows.append({"incident": incident.id, "before": before, "after": now, "change": change})
    summary = {k: sum(r["change"] == k for r in rows) for k in ("changed", "unchanged", "no longer matched")}
    return {"since": start.isoformat(), "incidents": rows, "summary": summary}


def _action_text(name: str | None, status: str, refusals: list[str]) -> str:
    if status == "none":
        return "none"
    why = f" ({refusals[0].removeprefix('precondition:')})" if status == "refused" and refusals else ""
    return f"{name} {status}{why}"


def _arrow(before: Any, after: Any) -> str:
    b, a = before or "-", after or "-"
    return f"{b} → {a}" if b != a else str(b)


def _replay_text(doc: dict[str, Any]) -> str:
    lines = [f"{'INCIDENT':32} {'RULE':36} {'TOP FINDING':44} ACTION"]
    for r in doc["incidents"]:
        b, a = r["before"], r["after"]
        lines.append(
            f"{r['incident']:32} {_arrow(b['rule'], a['rule']):36} "
            f"{_arrow(b['top_finding'], a['top_finding']):44} {_arrow(b['action'], a['action'])}"
        )
    s = doc["summary"]
    lines.append(
        f"{len(doc['incidents'])} incident(s) since {doc['since']}: {s['changed']} changed, "
        f"{s['unchanged']} unchanged, {s['no longer matched']} no longer matched"
    )
    return "\n".join(lines)


def cmd_replay_since(args: argparse.Namespace) -> int:
    _quiet()
    doc = asyncio.run(_replay_since(args))
    emit(args, doc, lambda: _replay_text(doc))
    return 0


def add_rules_parser(sub: Any) -> None:
    from medic.app.cli.output import add_output_option

    p = sub.add_parser("rules", help="rules test: which rule alerts with these labels go to, and the target")
    p.add_argument("action", choices=["test"], help="test: route labels like `amtool config routes test`")
    p.add_argument("labels", nargs="+", help="alert labels as name=value (alertname=X namespace=Y pod=Z)")
    p.add_argument("--rules", help="rules directory (default MEDIC_RULES_DIR)")
    p.add_argument("--playbooks", help="playbooks directory (default MEDIC_PLAYBOOKS_DIR)")
    add_output_option(p, "the rule, its matchers and the target")
    p.set_defaults(fn=cmd_rules_test)


def add_test_parser(sub: Any) -> None:
    from medic.app.cli.output import add_output_option

    p = sub.add_parser("test", help="run rule tests (YAML): exit 0 all passed, 1 any failed")
    p.add_argument("paths", nargs="*", help="test files or directories (default: tests/ of MEDIC_RULES_DIR)")
    add_output_option(p, "PASSED/FAILED per test with what differs")
    p.set_defaults(fn=cmd_test)
