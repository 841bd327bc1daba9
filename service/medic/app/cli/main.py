"""The ``medic`` command: serve, check, replay, incidents, report, approve/reject, kill-switch,
dead-letters, test, rules, verify.

Exit 0 success, 1 failure (a check that finds errors, an unknown incident, a refusal), 2 usage
or configuration error (see :mod:`medic.app.cli.output`, which also holds ``-o`` and the progress line).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
from collections.abc import Awaitable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import structlog

from medic import __version__
from medic.app.cli.dead_letters import add_parser as add_dead_letters_parser
from medic.app.cli.output import (
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_USAGE,
    CommandParser,
    Progress,
    add_output_option,
    emit,
    stdout_closed,
)
from medic.app.cli.remote import (
    KillSwitchAnswer,
    add_url_option,
    answer_as,
    answer_json,
    answer_text,
    http_url,
    open_session,
    positive_int,
)
from medic.app.cli.remote import read_headers as _read_headers
from medic.app.cli.test_cmd import add_rules_parser, add_test_parser
from medic.app.cli.verify import add_parser as add_verify_parser
from medic.domain.errors import ConfigError, ConfigErrors, MedicError, UsageError

if TYPE_CHECKING:  # the CLI's start-up imports stay small
    from medic.app.settings import Settings
    from medic.incidents.views import IncidentView

T = TypeVar("T")
DECIDE_TIMEOUT = 600.0  # seconds: approve --url answers once the action is verified (a rollout)


def _fail(message: str, code: int = EXIT_FAILURE) -> int:
    print(f"medic: {message}", file=sys.stderr)
    return code


# --------------------------------------------------------------------------- serve
def cmd_serve(args: argparse.Namespace) -> int:
    from aiohttp import web

    from medic.app.claim_gate import metered_event_loop
    from medic.app.logging import configure_logging
    from medic.app.runtime import create_app
    from medic.app.settings import load_settings, unknown_env

    overrides: dict[str, Any] = {}
    if args.host:
        overrides["host"] = args.host
    if args.port is not None:
        overrides["port"] = args.port
    settings = load_settings(**overrides)
    configure_logging(settings.logging.log_format, settings.logging.log_level)
    for name, close in unknown_env():
        structlog.get_logger("medic.app.settings").warning(
            "environment variable is not a Medic setting: ignored", variable=name, did_you_mean=close
        )
    web.run_app(
        create_app(settings),
        loop=metered_event_loop(),  # its utilization decides when diagnosis waits (claim_gate)
        host=settings.http.host,
        port=settings.http.port,
        print=None,
        access_log=None,
        shutdown_timeout=15,
    )
    return 0


# --------------------------------------------------------------------------- check
def _looks_like_playbook(path: Path) -> bool:
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except Exception:
        return "playbook" in path.parent.name
    items = data.get("playbooks", [data]) if isinstance(data, dict) else data
    if isinstance(items, list):
        for item in items:
            if isinstance(item, dict) and {"collect", "analyze", "actions", "target"} & item.keys():
                return True
            if isinstance(item, dict) and "matchers" in item:
                return False
    return "playbook" in path.parent.name


def _expand(paths: list[Path]) -> list[Path]:
    files: list[Path] = []
    for p in paths:
        if p.is_dir():
            # skip hidden parts: a ConfigMap volume keeps its real files under ``..<timestamp>/``
            files += sorted(
                f
                for f in p.rglob("*")
                if f.suffix in (".yaml", ".yml")
                and f.is_file()
                and not any(part.startswith(".") for part in f.relative_to(p).parts)
                and "tests" not in f.relative_to(p).parts[:-1]  # `medic test` files, not rules
            )
        else:
            files.append(p)
    return files


def _error_json(err: ConfigError) -> dict[str, Any]:
    return {"file": err.file, "line": err.line, "rule": err.rule, "field": err.field, "message": err.message}


def cmd_check(args: argparse.Namespace) -> int:
    from medic.app.catalogue import default_registry
    from medic.app.config import load_config
    from medic.app.settings import load_settings

    errors: list[ConfigError] = []
    if args.paths:
        errors += [
            ConfigError("no such file or directory", file=p) for p in args.paths if not Path(p).exists()
        ]
        files = _expand([Path(p) for p in args.paths if Path(p).exists()])
        playbooks = [f for f in files if _looks_like_playbook(f)]
        rules = [f for f in files if f not in playbooks]
        if rules and not playbooks:
            playbooks = [load_settings().rules.playbooks_dir]
    else:
        dirs = load_settings().rules
        rules, playbooks = [dirs.rules_dir], [dirs.playbooks_dir]
    config = None
    if not errors:
        try:
            config = load_config(rules, playbooks, default_registry())
        except ConfigErrors as exc:
            errors = exc.errors
        except ConfigError as exc:
            errors = [exc]
    result: dict[str, Any] = {"ok": not errors, "playbooks": [], "rules": [], "errors": []}
    if config is not None:
        result["playbooks"] = [
            {
                "name": name,
                "file": str(pb.file),
                "collectors": len(pb.steps),
                "analyzers": len(pb.analyzers),
                "actions": list(pb.actions),
            }
            for name, pb in sorted(config.playbooks.items())
        ]
        result["rules"] = [{"name": r.name, "file": str(config.rule_files[r.name])} for r in config.rules]
    result["errors"] = [_error_json(e) for e in errors]
    if errors and args.output == "text":  # promtool's shape: what failed on stderr
        for err in errors:
            print(f"  FAILED: {err}", file=sys.stderr)
        print(f"{len(errors)} error(s)", file=sys.stderr)
    else:
        emit(args, result, lambda: _check_text(result))
    return EXIT_FAILURE if errors else 0


def _check_text(result: dict[str, Any]) -> str:
    lines = [
        f"Checking playbook {pb['name']!r} ({pb['file']})  SUCCESS: {pb['collectors']} collectors, "
        f"{pb['analyzers']} analyzers, actions: {', '.join(pb['actions']) or 'none'}"
        for pb in result["playbooks"]
    ]
    lines += [f"Checking rule {r['name']!r} ({r['file']})  SUCCESS" for r in result["rules"]]
    lines.append(f"{len(result['rules'])} rule(s), {len(result['playbooks'])} playbook(s): OK")
    return "\n".join(lines)


# --------------------------------------------------------------------------- replay
def _read_payload(path: str) -> dict[str, Any]:
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise MedicError(f"{path}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise MedicError(f"{path}: not UTF-8 text") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise MedicError(f"{path}:{exc.lineno}:{exc.colno}: invalid JSON: {exc.msg}") from exc
    if not isinstance(data, dict):
        raise MedicError(f"{path}:1: the payload must be a JSON object")
    return data


async def _replay(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from medic.app.runtime import Runtime
    from medic.app.settings import load_settings
    from medic.inbox.base import InboxItem
    from medic.incidents.views import incident_view
    from medic.intake.handlers import validation_problem
    from medic.intake.model import WebhookPayload

    raw = _read_payload(args.payload)
    try:
        payload = WebhookPayload.model_validate(raw)
    except ValidationError as exc:
        body = json.loads(validation_problem(exc).text or "{}")
        return _fail(f"{args.payload}: {body.get('detail', body.get('title'))}")
    progress = Progress()
    with tempfile.TemporaryDirectory(prefix="medic-replay-") as tmp:
        # a throw-away embedded store, never the production backends
        overrides: dict[str, Any] = {"data_dir": Path(tmp), "mode": "dry-run"}
        overrides |= {"redis_url": None, "mongo_url": None}
        if args.prometheus_url:
            overrides["prometheus_url"] = args.prometheus_url
        settings = load_settings(**overrides)
        runtime = await Runtime.open(settings)
        try:
            item = InboxItem(
                id="replay",
                payload=raw,
                new_episodes=[a.episode_key for a in payload.alerts],
                received_at=datetime.now(UTC),
            )
            label = f"replaying {len(payload.alerts)} alert(s), collectors running"
            touched = await progress.around(
                label, runtime.pipeline.process(item), budget=settings.pipeline.playbook_deadline_seconds
            )
            views = [
                view
                for incident_id in dict.fromkeys(touched)
                if (view := await incident_view(runtime.store, incident_id)) is not None
            ]
        finally:
            await runtime.close()
    emit(
        args,
        {"incidents": [view.redacted().document() for view in views]},  # as the API shows it
        lambda: "\n\n---\n\n".join(incident_markdown(view, settings) for view in views),
    )
    return 0


def incident_markdown(view: IncidentView, settings: Settings) -> str:
    """An incident's Markdown report with the links on-call follows, built as the server builds
    them for ``GET /api/v1/incidents/ID?format=md`` (explore views, the silence), from the
    redacted view as there."""
    from medic.incidents.report.links import LinkSettings
    from medic.incidents.report.markdown import render_markdown

    return render_markdown(view.redacted(), LinkSettings.from_settings(settings.links))


def cmd_replay(args: argparse.Namespace) -> int:
    since_only = [
        f"--{name.replace('_', '-')}"
        for name in ("rules", "playbooks", "mode", "url", "data_dir")
        if getattr(args, name)
    ]
    if args.since and args.payload:
        raise UsageError("replay takes a payload file or --since, not both")
    if args.since:  # counterfactual: stored incidents re-decided under a candidate configuration
        from medic.app.cli.test_cmd import cmd_replay_since

        return cmd_replay_since(args)
    if since_only:
        raise UsageError(f"{', '.join(since_only)}: only with --since (stored incidents)")
    if not args.payload:
        raise UsageError("replay needs a webhook payload file, or --since to replay stored incidents")
    return asyncio.run(_replay(args))


# --------------------------------------------------------------------------- incidents
async def _incidents_local(args: argparse.Namespace) -> Any:
    """From the configured backend's store: MongoDB with the production backends, else SQLite."""
    from medic.app.backend_select import open_incident_reader
    from medic.app.http.api import incident_summary
    from medic.app.settings import load_settings
    from medic.incidents.base import IncidentQuery
    from medic.incidents.views import incident_view

    settings = load_settings()
    async with open_incident_reader(settings) as store:
        if args.action == "show":
            view = await incident_view(store, args.id)
            if view is None:
                raise MedicError(f"no incident {args.id!r}")
            return view.redacted().document(), lambda: incident_markdown(view, settings)
        items, total = await store.query(IncidentQuery(status=args.status, limit=args.limit))
        listed = {"items": [incident_summary(i) for i in items], "total": total}
        return listed, lambda: _incident_table(listed)


async def _incidents_remote(args: argparse.Namespace) -> Any:
    from medic.incidents.views import IncidentView

    async with open_session(args, _read_headers()) as session:
        if args.action == "show":
            url = f"{args.url}/api/v1/incidents/{args.id}"
            if args.output == "text":  # the server's Markdown: its link settings are the right ones
                async with session.get(url, params={"format": "md"}) as resp:
                    return None, await answer_text(resp, url, "text/markdown")
            async with session.get(url) as resp:
                doc = await answer_json(resp, url, ok=(200,))
                return answer_as(IncidentView.from_document, doc, url).document(), ""
        url = f"{args.url}/api/v1/incidents"
        params = {"limit": str(args.limit)} | ({"status": args.status} if args.status else {})
        async with session.get(url, params=params) as resp:
            listed = await answer_json(resp, url, ok=(200,))
        return listed, lambda: _incident_table(listed)


def cmd_incidents(args: argparse.Namespace) -> int:
    if args.action == "export":
        from medic.app.cli.test_cmd import cmd_export

        return cmd_export(args)
    if args.action == "show" and not args.id:
        raise UsageError("incidents show needs an incident id")
    data, text = asyncio.run(_incidents_remote(args) if args.url else _incidents_local(args))
    emit(args, data, text)
    return 0


def _incident_table(result: dict[str, Any]) -> str:
    lines = [f"{'ID':32} {'STATUS':9} {'SEV':8} {'FIRING':6} TITLE"]
    for item in result["items"]:
        lines.append(
            f"{item['id']:32} {item['status']:9} {item['severity']:8} {item['firing']:<6} {item['title']}"
        )
    lines.append(f"({len(result['items'])} of {result['total']})")
    return "\n".join(lines)


# --------------------------------------------------------------------------- on-call
def cmd_report(args: argparse.Namespace) -> int:
    """An incident's report: ``incidents show`` with Markdown as its text form."""
    args.action = "show"
    return cmd_incidents(args)


async def _decide_remote(args: argparse.Namespace, decision: str) -> dict[str, Any]:
    token = os.environ.get("MEDIC_ADMIN_TOKEN", "")
    if not token:
        raise UsageError("set MEDIC_ADMIN_TOKEN to approve or reject through a running Medic")
    verb = "approve" if decision == "approved" else "reject"
    url = f"{args.url}/api/v1/incidents/{args.id}/{verb}"
    body = {"by": args.by, "action": args.action, "reason": args.reason}
    headers = {"Authorization": f"Bearer {token}"}
    async with (  # the command draws its own progress line
        open_session(args, headers, progress=False) as session,
        session.post(url, json=body) as resp,
    ):
        return await answer_json(resp, url, ok=(200,))


async def _decide_local(args: argparse.Namespace, decision: str) -> dict[str, Any]:
    from medic.app.approvals import Decision
    from medic.app.runtime import Runtime
    from medic.app.settings import load_settings

    try:
        runtime = await Runtime.open(load_settings())
    except ConfigError as exc:
        hint = "to decide through the running Medic use --url and MEDIC_ADMIN_TOKEN"
        raise ConfigError(f"{exc} — {hint}") from exc
    try:
        verdict: Decision = "approved" if decision == "approved" else "rejected"
        outcome = await runtime.approvals.decide(
            args.id, verdict, by=args.by, via="cli", action=args.action, reason=args.reason
        )
        record = outcome.record.model_dump(mode="json")
        return {"decision": outcome.decision, "by": outcome.by, "action": record}
    finally:
        await runtime.close()


async def _with_progress(label: str, work: Awaitable[T]) -> T:
    return await Progress().around(label, work)


def cmd_decide(args: argparse.Namespace) -> int:
    decision = "approved" if args.command == "approve" else "rejected"
    work = _decide_remote(args, decision) if args.url else _decide_local(args, decision)
    # an approval runs the action and waits for its verification (a rollout: up to minutes)
    label = f"{args.command} {args.id}: guards, action, verification"
    result = asyncio.run(_with_progress(label, work))
    action = result["action"]
    what = f"{action['action']} {action['status']} — {action['reason']}"
    emit(args, result, f"{result['decision']} by {result['by']}: {what}")
    if decision == "approved" and action["status"] not in ("succeeded", "planned", "skipped"):
        return EXIT_FAILURE
    return 0


# --------------------------------------------------------------------------- kill switch
async def _kill_switch(args: argparse.Namespace) -> dict[str, Any]:
    from medic.app.http.admin import kill_switch_json

    enabled = {"on": True, "off": False}.get(args.state)
    if args.url:
        token = os.environ.get("MEDIC_ADMIN_TOKEN", "")
        if not token:
            raise UsageError("set MEDIC_ADMIN_TOKEN to use the admin API of a running Medic")
        url = f"{args.url}/api/v1/admin/kill-switch"
        headers = {"Authorization": f"Bearer {token}"}
        async with open_session(args, headers) as session:
            if enabled is None:
                resp_ctx = session.get(url)
            else:
                resp_ctx = session.put(url, json={"enabled": enabled, "reason": args.reason, "by": args.by})
            async with resp_ctx as resp:
                return await answer_json(resp, url, ok=(200,), shape=KillSwitchAnswer)
    from medic.app.settings import ensure_data_dir, load_settings
    from medic.clients.sqlite import SqliteDB
    from medic.coordination.base import RemediationState
    from medic.coordination.sqlite import SqliteRemediationState

    async def flip(state: RemediationState) -> dict[str, Any]:
        if enabled is None:
            return kill_switch_json(await state.kill_switch())
        return kill_switch_json(await state.set_kill_switch(enabled, args.by, args.reason))

    settings = load_settings()
    redis_url = settings.tokens.redis_url
    if redis_url is not None:  # the production backend: the switch lives in Medic's Redis
        from medic.clients.redis import connect
        from medic.coordination.redis import RedisRemediationState
        from medic.coordination.redis_keys import RedisKeys

        client = connect(redis_url)
        try:
            return await flip(RedisRemediationState(client, RedisKeys()))
        finally:
            await client.aclose()
    ensure_data_dir(settings.inbox.data_dir)
    db = SqliteDB(settings.inbox.db_path)
    await db.open()
    try:
        return await flip(SqliteRemediationState(db))
    finally:
        await db.close()


def cmd_kill_switch(args: argparse.Namespace) -> int:
    result = asyncio.run(_kill_switch(args))
    state = "ON: no automatic action will run" if result["enabled"] else "off"
    by = f" (by {result['by']}: {result['reason']})" if result.get("by") else ""
    emit(args, result, f"kill switch {state}{by}")
    return 0


# --------------------------------------------------------------------------- main
_Subcommands = argparse._SubParsersAction  # the type of ArgumentParser.add_subparsers()


def _add_serve(sub: _Subcommands[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("serve", help="run the webhook service (settings from MEDIC_* env vars)")
    p.add_argument("--host", help="listen address (overrides MEDIC_HOST)")
    p.add_argument("--port", type=int, help="listen port (overrides MEDIC_PORT)")
    p.set_defaults(fn=cmd_serve)


def _add_check(sub: _Subcommands[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("check", help="validate rules and playbooks (exit 1 on error)")
    p.add_argument("paths", nargs="*", help="files or directories (default: the configured dirs)")
    add_output_option(p, "one line per rule and playbook")
    p.set_defaults(fn=cmd_check)


def _add_replay(sub: _Subcommands[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("replay", help="run a webhook payload through the pipeline; never acts")
    p.add_argument("payload", nargs="?", help="an Alertmanager webhook JSON file, or - for stdin")
    p.add_argument("--since", help="re-decide the incidents stored in this window (e.g. 7d) instead")
    p.add_argument("--rules", help="--since: candidate rules directory (default MEDIC_RULES_DIR)")
    p.add_argument("--playbooks", help="--since: candidate playbooks directory (default MEDIC_PLAYBOOKS_DIR)")
    p.add_argument(
        "--mode", choices=["off", "dry-run", "enforce"], help="--since: global mode to decide under"
    )
    add_url_option(p, "--since: a running Medic's incidents (uses MEDIC_READ_TOKEN)")
    p.add_argument("--data-dir", help="--since: the embedded store in this data dir")
    p.add_argument(
        "--prometheus-url",
        type=http_url,
        help="a Prometheus the collectors query (overrides MEDIC_PROMETHEUS_URL)",
    )
    add_output_option(p, "the incidents' Markdown reports")
    p.set_defaults(fn=cmd_replay)


def _add_incidents(sub: _Subcommands[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("incidents", help="list or show incidents (running instance or local store)")
    p.add_argument(
        "action",
        nargs="?",
        choices=["list", "show", "export"],
        default="list",
        help="list (default), show one, or export one --as-test",
    )
    p.add_argument("id", nargs="?", help="the incident id (show)")
    add_url_option(p, "a running Medic, e.g. http://127.0.0.1:8080 (uses MEDIC_READ_TOKEN)")
    p.add_argument("--status", choices=["open", "resolved"], help="only open or only resolved incidents")
    p.add_argument("--limit", type=positive_int, default=50, help="how many to list (default 50)")
    p.add_argument("--as-test", action="store_true", help="export: as a `medic test` file (YAML)")
    p.add_argument("--out", help="export: write to this file (default stdout)")
    add_output_option(p, "a table; Markdown for show")
    p.set_defaults(fn=cmd_incidents)


def _add_report(sub: _Subcommands[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("report", help="print an incident's report (Markdown bundle)")
    p.add_argument("id", help="the incident id")
    add_url_option(p, "a running Medic (uses MEDIC_READ_TOKEN); default: the local store")
    add_output_option(p, "Markdown")
    p.set_defaults(fn=cmd_report)


def _add_decide(sub: _Subcommands[argparse.ArgumentParser]) -> None:
    for name, what in (
        ("approve", "approve a proposal: guards re-checked, then it acts"),
        ("reject", "reject a proposal: it is closed, nothing runs"),
    ):
        p = sub.add_parser(name, help=what)
        p.add_argument("id", help="the incident id")
        p.add_argument("--action", help="the proposal's action (needed when several await)")
        p.add_argument(
            "--by", default=os.environ.get("USER", "cli"), help="who decides (audited; default $USER)"
        )
        p.add_argument("--reason", default="", help="why (audited)")
        add_url_option(
            p,
            "a running Medic (uses MEDIC_ADMIN_TOKEN); default: the local store",
            default=DECIDE_TIMEOUT,
            why=": an approval waits for the action's verification",
        )
        add_output_option(p, "one line")
        p.set_defaults(fn=cmd_decide)


def _add_kill_switch(sub: _Subcommands[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("kill-switch", help="stop (on) or allow (off) every automatic action")
    p.add_argument("state", choices=["on", "off", "status"], help="on, off, or status to only show it")
    p.add_argument("--reason", default="", help="why (audited)")
    p.add_argument(
        "--by", default=os.environ.get("USER", "cli"), help="who flips it (audited; default $USER)"
    )
    add_url_option(p, "a running Medic (uses MEDIC_ADMIN_TOKEN); default: the local store")
    add_output_option(p, "one line")
    p.set_defaults(fn=cmd_kill_switch)


def build_parser() -> argparse.ArgumentParser:
    parser = CommandParser(  # plain help text, for every subcommand too
        prog="medic",
        description="PlayCode Medic: automated first responder",
        epilog="Exit status: 0 success, 1 failure, 2 usage or configuration error.",
    )
    parser.add_argument(
        "--version", action="version", version=f"medic {__version__}", help="print the version"
    )
    sub: _Subcommands[argparse.ArgumentParser] = parser.add_subparsers(  # type: ignore[assignment]
        dest="command", required=True, metavar="COMMAND", help="what to do"
    )  # of CommandParsers (add_subparsers makes the parent's kind)
    # one function per subcommand (group), in the order `medic --help` lists them
    _add_serve(sub)
    _add_check(sub)
    _add_replay(sub)
    _add_incidents(sub)
    _add_report(sub)
    _add_decide(sub)
    _add_kill_switch(sub)
    add_dead_letters_parser(sub)
    add_test_parser(sub)
    add_rules_parser(sub)
    add_verify_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = parse_args(build_parser(), argv)  # a usage error exits 2 here
    if args.command != "serve":  # serve logs as its settings say; the others keep stdout for data
        from medic.app.logging import configure_logging

        configure_logging("console", "warning")
    try:
        code = _run(args)
        if sys.stdout is not None:  # None: started with stdout closed (`>&-`), nothing to flush
            sys.stdout.flush()  # a closed pipe shows here, not at interpreter exit
        return code
    except BrokenPipeError:
        # the reader went away (`medic ... | head -1`) during a write that is not emit()'s
        # (emit goes on and the command returns its own status): not an error of the command
        stdout_closed()
        return EXIT_OK


def parse_args(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """``parser.parse_args``, but an unknown option is reported with the usage of the command
    it was given to: ``medic check --bogus`` shows check's usage, ``medic --bogus check`` the
    top level's (medic's own options take no value: the first word that is not one is the command)."""
    args, extra = parser.parse_known_args(argv)
    if not extra:
        return args
    words = sys.argv[1:] if argv is None else argv
    at = next((i for i, word in enumerate(words) if not word.startswith("-")), len(words))
    before = [word for word in extra if word in words[:at]]
    if before:
        parser.error(f"unrecognized arguments: {' '.join(before)}")
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    command: argparse.ArgumentParser = commands.choices.get(args.command, parser)
    command.error(f"unrecognized arguments: {' '.join(extra)}")
    return args  # not reached: error() exits 2


def _run(args: argparse.Namespace) -> int:
    try:
        return int(args.fn(args))
    except ConfigErrors as exc:
        for err in exc.errors:
            print(f"medic: {err}", file=sys.stderr)
        return EXIT_USAGE
    except (ConfigError, UsageError) as exc:
        return _fail(str(exc), EXIT_USAGE)
    except MedicError as exc:
        return _fail(str(exc))
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        import aiohttp

        if isinstance(exc, aiohttp.ClientError):  # --url: Medic not reachable, or not Medic
            return _fail(f"{getattr(args, 'url', '') or 'server'}: {exc or type(exc).__name__}")
        raise


if __name__ == "__main__":
    sys.exit(main())
