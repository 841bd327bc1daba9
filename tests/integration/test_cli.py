"""The CLI: replay (in-process, never acts), incidents list/show, errors that name the file and line;
the conventions of amtool/promtool/kubectl: exit 0 success, 1 failure, 2 usage or configuration
error, ``-o json|yaml|text`` wherever data is printed, help on every option, no traceback on a
closed pipe, a progress line on a terminal only; the start and shutdown log lines of ``serve``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.server
import io
import json
import os
import pty
import re
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from medic import __version__
from medic.app.cli.main import build_parser, main
from medic.app.cli.output import Progress
from tests.integration.crashloop_world import crashloop_world
from tests.medic_app import medic_settings, running_medic
from tests.payloads import alert, payload
from tests.servers.playcode_series import latency_histogram
from tests.servers.process import free_port


def write_payload(tmp_path: Path, body: Any) -> Path:
    path = tmp_path / "payload.json"
    path.write_text(json.dumps(body, indent=2) if not isinstance(body, str) else body)
    return path


async def test_replay_prints_the_report_with_real_prometheus(
    tmp_path: Path,
    prometheus_factory: Any,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    prom = await prometheus_factory(latency_histogram(p99=0.08, spike_p99=4.0, spike_minutes=10))
    monkeypatch.setenv("MEDIC_KUBE_MODE", "off")
    path = write_payload(
        tmp_path, payload([alert("PlayCodeHighLatency", namespace="playcode", deployment="playcode-app")])
    )
    # the CLI runs its own event loop: run it in a thread from this async test
    code = await asyncio.to_thread(main, ["replay", str(path), "--prometheus-url", prom.url])
    out = capsys.readouterr().out
    assert code == 0
    assert "PlayCodeHighLatency on deployment/playcode/playcode-app" in out
    assert "p99 request latency is 4.00 s, above the critical threshold" in out


def test_replay_bad_files_name_file_and_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_payload(tmp_path, '{\n  "version": "4",\n  "alerts": [\n')
    assert main(["replay", str(path)]) == 1
    err = capsys.readouterr().err
    assert f"{path}:4:1: invalid JSON" in err
    path = write_payload(tmp_path, {**payload([alert("A")]), "version": "3"})
    assert main(["replay", str(path)]) == 1
    assert "version" in capsys.readouterr().err
    assert main(["replay", str(tmp_path / "missing.json")]) == 1
    assert "No such file" in capsys.readouterr().err


async def test_replay_never_acts_even_with_enforce(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "world").mkdir()
    async with crashloop_world(tmp_path / "world") as w:
        kubeconfig = tmp_path / "world" / "kubeconfig"
        monkeypatch.setenv("MEDIC_MODE", "enforce")
        monkeypatch.setenv("MEDIC_KUBE_MODE", "kubeconfig")
        monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
        path = write_payload(tmp_path, payload(w.crash_alerts()))
        code = await asyncio.to_thread(main, ["replay", str(path), "-o", "json"])
        assert code == 0
        (inc,) = json.loads(capsys.readouterr().out)["incidents"]
        assert inc["findings"][0]["code"] == "crashloop.regression"
        assert inc["actions"][0]["status"] == "planned"
        assert w.patches() == 0


async def test_incidents_list_and_show(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = medic_settings(tmp_path)
    async with running_medic(settings) as m:
        async with (
            aiohttp.ClientSession() as s,
            s.post(
                f"{m.url}/api/v1/alerts",
                json=payload([alert("PlayCodeHighLatency", namespace="playcode", deployment="playcode-app")]),
            ) as r,
        ):
            assert r.status == 200
        await m.drain()
        assert await asyncio.to_thread(main, ["incidents", "--url", m.url]) == 0
        out = capsys.readouterr().out
        assert "PlayCodeHighLatency on deployment/playcode/playcode-app" in out and "(1 of 1)" in out
        incident_id = out.splitlines()[1].split()[0]
        assert (
            await asyncio.to_thread(
                main, ["incidents", "show", incident_id, "--url", m.url, "--format", "md"]
            )
            == 0
        )
        assert f"`{incident_id}`" in capsys.readouterr().out
        assert await asyncio.to_thread(main, ["incidents", "show", "nope", "--url", m.url]) == 1
        assert "404" in capsys.readouterr().err
        assert await asyncio.to_thread(main, ["report", incident_id, "--url", m.url, "-o", "yaml"]) == 0
        assert yaml.safe_load(capsys.readouterr().out)["id"] == incident_id
        # the local store, read while the server runs (WAL)
        monkeypatch.setenv("MEDIC_DATA_DIR", str(settings.data_dir))
        assert await asyncio.to_thread(main, ["incidents", "--format", "json"]) == 0
        assert json.loads(capsys.readouterr().out)["total"] == 1
        assert await asyncio.to_thread(main, ["incidents", "-o", "yaml"]) == 0
        assert yaml.safe_load(capsys.readouterr().out)["total"] == 1
        assert await asyncio.to_thread(main, ["incidents", "show", "nope"]) == 1
        assert "no incident 'nope'" in capsys.readouterr().err


# --------------------------------------------------------------------------- conventions
MEDIC = [sys.executable, "-m", "medic"]


def medic_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEDIC_") and k != "KUBECONFIG"}
    env |= {"MEDIC_KUBE_MODE": "off", "MEDIC_DATA_DIR": str(tmp_path / "data")} | extra
    return env


def run_medic(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*MEDIC, *args],
        cwd=tmp_path,
        env=medic_env(tmp_path, **env),
        capture_output=True,
        text=True,
        timeout=120,
    )


@dataclass
class Ran:
    returncode: int
    stdout: str
    stderr: str


class InProcess:
    """``main()`` in this process with a clean MEDIC_* environment (faster than a subprocess;
    the subprocess tests below cover what only a real process shows: pipes, terminals, signals)."""

    def __init__(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
        self.tmp_path, self.monkeypatch, self.capsys = tmp_path, monkeypatch, capsys

    def __call__(self, *args: str, **env: str) -> Ran:
        for name in list(os.environ):
            if name.startswith("MEDIC_") or name == "KUBECONFIG":
                self.monkeypatch.delenv(name)
        for name, value in medic_env(self.tmp_path, **env).items():
            if name.startswith("MEDIC_"):
                self.monkeypatch.setenv(name, value)
        try:
            code = main(list(args))
        except SystemExit as exc:  # argparse's usage errors
            code = int(exc.code or 0)
        out = self.capsys.readouterr()
        return Ran(code, out.out, out.err)


@pytest.fixture
def medic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> InProcess:
    return InProcess(tmp_path, monkeypatch, capsys)


def _undocumented(parser: argparse.ArgumentParser, path: str) -> list[str]:
    missing = []
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        if isinstance(action, argparse._SubParsersAction):
            missing += [f"{path} {c.dest}" for c in action._choices_actions if not c.help]
            for name, sub in action.choices.items():
                missing += _undocumented(sub, f"{path} {name}")
            continue
        if not action.help:
            missing.append(f"{path} {(action.option_strings or [action.dest])[0]}")
    return missing


def test_every_command_option_and_positional_has_help() -> None:
    assert _undocumented(build_parser(), "medic") == []


def test_the_help_walker_finds_an_option_without_help() -> None:
    parser = build_parser()
    parser.add_argument("--undocumented")
    assert _undocumented(parser, "medic") == ["medic --undocumented"]


def _parsers(
    parser: argparse.ArgumentParser, path: str = "medic"
) -> list[tuple[str, argparse.ArgumentParser]]:
    found = [(path, parser)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found += _parsers(sub, f"{path} {name}")
    return found


def test_help_is_plain_text() -> None:
    """No reST markup (``literal``, `code`, :mod:`role`) in any command's --help."""
    for path, parser in _parsers(build_parser()):
        text = parser.format_help()
        assert "`" not in text and ":mod:" not in text and ":class:" not in text, (path, text)
    verify = dict(_parsers(build_parser()))["medic verify"].format_help()
    assert "With --url it asks a running Medic (POST /api/v1/verifications" in verify


def test_every_command_that_prints_data_takes_o_json_and_yaml() -> None:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    for name, parser in sub.choices.items():
        if name == "serve":
            continue
        (output,) = [a for a in parser._actions if "-o" in a.option_strings]
        assert set(output.choices or []) >= {"text", "json", "yaml"}, name


@pytest.mark.parametrize(
    ("args", "env", "code", "words"),
    [
        (["check"], {}, 0, "playbook(s): OK"),
        (["incidents", "--no-such-option"], {}, 2, "unrecognized arguments"),
        (["incidents", "show"], {}, 2, "incidents show needs an incident id"),
        (["check"], {"MEDIC_PORT": "0", "MEDIC_NAMESPACES": "Bad_ns"}, 2, "env MEDIC_PORT"),
        (["serve"], {"MEDIC_WEBHOOK_PASSWORD": "pw"}, 2, "is set without MEDIC_WEBHOOK_USERNAME"),
        (["check", "/no/such/rules.yaml"], {}, 1, "/no/such/rules.yaml: no such file or directory"),
        (["kill-switch", "status", "--url", "http://127.0.0.1:9"], {}, 2, "set MEDIC_ADMIN_TOKEN"),
        (
            ["kill-switch", "status", "--url", "http://127.0.0.1:9"],
            {"MEDIC_ADMIN_TOKEN": "admin-token-0123456789"},
            1,
            "http://127.0.0.1:9: Cannot connect",
        ),
        # one argparse type per kind of value, the same refusal (exit 2) in every command
        (["incidents", "--limit", "-5"], {}, 2, "argument --limit: '-5': must be 1 or more"),
        (["incidents", "--limit", "0"], {}, 2, "argument --limit: '0': must be 1 or more"),
        (["dead-letters", "list", "--limit", "0"], {}, 2, "argument --limit: '0': must be 1 or more"),
        (["incidents", "--url", "notaurl"], {}, 2, "argument --url: 'notaurl' is not an http(s) URL"),
        (["report", "x", "--url", "ftp://h/"], {}, 2, "argument --url: 'ftp://h/' is not an http(s) URL"),
        (["dead-letters", "list", "--url", "localhost:8080"], {}, 2, "is not an http(s) URL"),
        (["kill-switch", "status", "--url", "http://"], {}, 2, "is not an http(s) URL"),
        (["replay", "--since", "1d", "--url", "x"], {}, 2, "argument --url: 'x' is not an http(s) URL"),
        (["verify", "x", "-n", "playcode", "--url", "x"], {}, 2, "argument --url: 'x' is not an http(s)"),
        (["incidents", "--url", "http://h", "--timeout", "0"], {}, 2, "'0': must be more than zero"),
        (["incidents", "--url", "http://h", "--timeout", "soon"], {}, 2, "'soon' is not a duration"),
        (["verify", "x", "-n", "Play_Code"], {}, 2, "'Play_Code' is not a Kubernetes namespace name"),
        (["verify", "x", "-n", "playcode", "--revision", "0"], {}, 2, "--revision: '0': must be 1 or more"),
        (["replay", "p.json", "--prometheus-url", "prom:9090"], {}, 2, "'prom:9090' is not an http(s) URL"),
        (["check", "--bogus"], {}, 2, "usage: medic check"),
        # an option given to medic itself, before the command: the top level's error, not check's
        (["--bogus", "check"], {}, 2, "medic: error: unrecognized arguments: --bogus"),
        (["--bogus=1", "check", "-o", "json"], {}, 2, "medic: error: unrecognized arguments: --bogus=1"),
        # a duration must be finite, in every command that takes one
        (["incidents", "--url", "http://h", "--timeout", "nan"], {}, 2, "'nan' is not a finite duration"),
        (["approve", "x", "--url", "http://h", "--timeout", "inf"], {}, 2, "'inf' is not a finite duration"),
        (["dead-letters", "list", "--url", "http://h", "--timeout", "1e999"], {}, 2, "not a finite duration"),
        # a missing admin token is a usage error (exit 2) for every admin command alike
        (["dead-letters", "retry", "x", "--url", "http://127.0.0.1:9"], {}, 2, "set MEDIC_ADMIN_TOKEN"),
        (["dead-letters", "drop", "x", "--url", "http://127.0.0.1:9"], {}, 2, "set MEDIC_ADMIN_TOKEN"),
        (["approve", "x", "--url", "http://127.0.0.1:9"], {}, 2, "set MEDIC_ADMIN_TOKEN"),
        (["dead-letters", "list", "--bogus"], {}, 2, "medic dead-letters: error: unrecognized arguments"),
    ],
)
def test_exit_codes(medic: InProcess, args: list[str], env: dict[str, str], code: int, words: str) -> None:
    result = medic(*args, **env)
    assert result.returncode == code, result.stderr
    assert words in result.stdout + result.stderr


def test_bad_settings_are_all_reported_with_exit_2(medic: InProcess) -> None:
    result = medic("check", MEDIC_PORT="0", MEDIC_NAMESPACES="Bad_ns", MEDIC_WEBHOOK_TOKEN="")
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert [line.split(":")[1].strip() for line in lines] == [
        "env MEDIC_PORT",
        "env MEDIC_WEBHOOK_TOKEN",
        "env MEDIC_NAMESPACES",
    ], lines


@pytest.mark.parametrize("kind", ["under-a-file", "not-writable"])
@pytest.mark.parametrize("command", [["serve"], ["kill-switch", "status"]])
def test_a_data_dir_medic_cannot_write_is_a_config_error(
    tmp_path: Path, medic: InProcess, kind: str, command: list[str]
) -> None:
    # as root a chmod'ed dir stays writable: a path under a regular file, or /proc, cannot be written
    plain_file = tmp_path / "plain-file"
    plain_file.write_text("")
    data_dir = str(plain_file / "data") if kind == "under-a-file" else "/proc/self"
    env = {"MEDIC_DATA_DIR": data_dir, "MEDIC_PORT": str(free_port())}
    # serve in a real process: its exit status and stderr are what a pod's log shows
    result = run_medic(tmp_path, *command, **env) if command == ["serve"] else medic(*command, **env)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert data_dir in result.stderr and "MEDIC_DATA_DIR" in result.stderr


def test_output_formats(tmp_path: Path, medic: InProcess) -> None:
    as_json = json.loads(medic("check", "-o", "json").stdout)
    as_yaml = yaml.safe_load(medic("check", "-o", "yaml").stdout)
    assert as_json == as_yaml and as_json["ok"] is True and as_json["errors"] == []
    assert {r["name"] for r in as_json["rules"]} >= {"crashloop-rollback"}
    bad = tmp_path / "bad-rules.yaml"
    bad.write_text("- name: r\n  matchers: ['alertname=\"A\"']\n  playbook: nope\n")
    failed = medic("check", str(bad), "-o", "json")
    assert failed.returncode == 1
    (error,) = json.loads(failed.stdout)["errors"]
    assert error["file"] == str(bad) and "nope" in error["message"]

    assert medic("kill-switch", "on", "--reason", "test", "--by", "me").returncode == 0
    status = json.loads(medic("kill-switch", "status", "-o", "json").stdout)
    assert (status["enabled"], status["by"], status["reason"]) == (True, "me", "test")
    assert yaml.safe_load(medic("kill-switch", "status", "-o", "yaml").stdout) == status
    text = medic("kill-switch", "status").stdout
    assert text.startswith("kill switch ON")


def _replayable(tmp_path: Path) -> Path:
    return write_payload(
        tmp_path, payload([alert("PlayCodeHighLatency", namespace="playcode", deployment="playcode-app")])
    )


BAD_RULES = "- name: r\n  matchers: ['alertname=\"A\"']\n  playbook: nope\n"


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["check"], 0),
        (["check", "-o", "json"], 0),
        (["replay", "PAYLOAD"], 0),
        (["replay", "PAYLOAD", "-o", "json"], 0),
        (["check", "BAD", "-o", "json"], 1),  # the command's own status, not the pipe's
    ],
)
def test_a_closed_pipe_is_no_traceback(tmp_path: Path, args: list[str], code: int) -> None:
    """A reader gone before Medic writes: no error of the command, it exits with its own status
    (docs/cli.md); the same as when the reader goes after the write (test_replay_into_head)."""
    (tmp_path / "bad.yaml").write_text(BAD_RULES)
    named = {"PAYLOAD": str(_replayable(tmp_path)), "BAD": str(tmp_path / "bad.yaml")}
    args = [named.get(a, a) for a in args]
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before Medic writes a byte: every write gets EPIPE
    try:
        result = subprocess.run(
            [*MEDIC, *args],
            cwd=tmp_path,
            env=medic_env(tmp_path),
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
        )
    finally:
        os.close(write_end)
    assert result.returncode == code
    assert result.stderr == "", result.stderr


@pytest.mark.parametrize(("output", "head"), [("text", ["head", "-1"]), ("json", ["head", "-c", "10"])])
def test_replay_into_head(tmp_path: Path, output: str, head: list[str]) -> None:
    """``medic replay … | head``: Medic's own exit status (not the shell's, which is head's) is 0
    whether head left before or after the write."""
    path = _replayable(tmp_path)
    medic = subprocess.Popen(
        [*MEDIC, "replay", str(path), "-o", output],
        cwd=tmp_path,
        env=medic_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert medic.stdout is not None and medic.stderr is not None
    reader = subprocess.run(head, stdin=medic.stdout, capture_output=True, timeout=120)
    medic.stdout.close()  # head is gone: only it held the pipe's read end
    err = medic.stderr.read().decode()
    medic.stderr.close()
    assert medic.wait(timeout=120) == 0, err
    assert reader.returncode == 0
    first = reader.stdout.decode()
    assert first.startswith("#" if output == "text" else "{")
    assert len(first) == 10 if output == "json" else len(first.splitlines()) == 1
    assert "Traceback" not in err and "BrokenPipe" not in err


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


async def test_progress_is_drawn_on_a_terminal_and_erased() -> None:
    term = _Terminal()
    result = await Progress(term, interval=0.05).around("replaying", asyncio.sleep(0.3, "done"), budget=60)
    assert result == "done"
    text = term.getvalue()
    assert "\r\x1b[Kmedic: replaying 0s (up to 60s)" in text and text.count("medic: replaying") >= 3
    assert text.endswith("\r\x1b[K"), "the line is erased when the work ends"
    quiet = io.StringIO()  # not a terminal: nothing at all
    assert await Progress(quiet).around("replaying", asyncio.sleep(0.1, "done")) == "done"
    assert quiet.getvalue() == ""


def on_a_terminal(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], bytes]:
    """``medic ARGS`` with its stderr on a terminal (a pty), stdout piped: the result and what
    the terminal showed."""
    controller, terminal = pty.openpty()
    try:
        result = subprocess.run(
            [*MEDIC, *args],
            cwd=tmp_path,
            env=medic_env(tmp_path),
            stdout=subprocess.PIPE,
            stderr=terminal,
            text=True,
            timeout=120,
        )
    finally:
        os.close(terminal)
    seen = b""
    with contextlib.suppress(OSError):  # EIO once the terminal is drained
        while chunk := os.read(controller, 65536):
            seen += chunk
    os.close(controller)
    return result, seen


def test_replay_draws_progress_on_a_terminal_stderr_never_on_stdout(tmp_path: Path) -> None:
    path = _replayable(tmp_path)
    result, seen = on_a_terminal(tmp_path, "replay", str(path), "-o", "json")
    assert result.returncode == 0
    assert b"medic: replaying 1 alert(s), collectors running" in seen
    assert json.loads(result.stdout)["incidents"][0]["title"].startswith("PlayCodeHighLatency")


# --------------------------------------------------------------------------- serve: log lines
def _json_lines(text: str) -> list[dict[str, Any]]:
    out = []
    for line in text.splitlines():
        with contextlib.suppress(ValueError):
            record = json.loads(line)
            if isinstance(record, dict):
                out.append(record)
    return out


async def test_serve_logs_start_rejections_and_shutdown(tmp_path: Path) -> None:
    port = free_port()
    env = medic_env(
        tmp_path,
        MEDIC_HOST="127.0.0.1",
        MEDIC_PORT=str(port),
        MEDIC_LOG_FORMAT="json",
        MEDIC_WEBHOOK_TOKEN="webhook-token",
        MEDIC_WEBHOK_USERNAME="alertmanager",  # a typo: warned about, not silently ignored
    )
    proc = await asyncio.create_subprocess_exec(
        *MEDIC, "serve", cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    url = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as s:
            for _ in range(300):
                with contextlib.suppress(aiohttp.ClientError):
                    async with s.get(f"{url}/readyz") as r:
                        if r.status == 200:
                            break
                await asyncio.sleep(0.1)
            else:
                raise AssertionError("medic serve did not become ready")
            for _ in range(3):  # one line, the others counted as suppressed (same reason, within 10 s)
                async with s.post(f"{url}/api/v1/alerts", json=payload([alert("A")]), headers={}) as r:
                    assert r.status == 401
            bad = {**payload([alert("A")], receiver="playcode-medic"), "alerts": "not a list"}
            headers = {"Authorization": "Bearer webhook-token"}
            async with s.post(f"{url}/api/v1/alerts", json=bad, headers=headers) as r:
                assert r.status == 400
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), 60)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.communicate()
    stderr = err.decode()
    assert proc.returncode == 0, stderr
    records = _json_lines(stderr)
    events = [r["event"] for r in records]
    (started,) = [r for r in records if r["event"] == "medic started"]
    assert started["version"] == __version__ and started["listen"] == f"127.0.0.1:{port}"
    assert started["mode"] == "dry-run" and started["backend"] == "sqlite" and started["diagnoses"] == []
    rejected = [r for r in records if r["event"] == "webhook delivery rejected"]
    assert [r["reason"] for r in rejected] == ["auth", "schema"], rejected
    assert rejected[0]["level"] == "warning" and rejected[0]["remote"] == "127.0.0.1"
    assert rejected[0]["status"] == 401
    assert rejected[1]["receiver"] == "playcode-medic" and rejected[1]["group_key"] == '{}:{alertname="A"}'
    assert "alerts" in rejected[1]["detail"]
    assert events.index("medic stopping") < events.index("medic stopped")
    (typo,) = [r for r in records if r.get("variable") == "MEDIC_WEBHOK_USERNAME"]
    assert typo["level"] == "warning" and typo["did_you_mean"] == "MEDIC_WEBHOOK_USERNAME"


def test_docs_cli_page_names_every_command() -> None:
    page = (Path(__file__).resolve().parents[2] / "docs" / "cli.md").read_text(encoding="utf-8")
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    assert [name for name in sub.choices if f"`medic {name}" not in page] == []


# --------------------------------------------------------------------------- links in the Markdown
CLI_LINKS = {"MEDIC_GRAFANA_URL": "http://grafana.cli.example", "MEDIC_GRAFANA_LOKI_DATASOURCE": "loki"}
SERVER_LINKS = {"grafana_url": "http://grafana.server.example", "grafana_loki_datasource": "loki"}
SILENCE = "http://alertmanager.example/#/silences/new?filter="  # the payloads' externalURL


def _links(markdown: str) -> dict[str, str]:
    """The report's links line, ``- **Links**: [name](url) · …``, by name."""
    (line,) = [ln for ln in markdown.splitlines() if ln.startswith("- **Links**:")]
    return dict(re.findall(r"\[([^\]]+)\]\((\S+?)\)", line))


def test_replay_markdown_carries_the_links(tmp_path: Path, medic: InProcess) -> None:
    result = medic("replay", str(_replayable(tmp_path)), **CLI_LINKS)
    assert result.returncode == 0, result.stderr
    links = _links(result.stdout)
    assert links["Grafana: logs"].startswith("http://grafana.cli.example/explore?")
    assert links["Silence in Alertmanager"].startswith(SILENCE)


async def test_report_and_show_carry_the_links_local_and_remote(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Local: the links of the CLI's settings. --url: the server's Markdown, with its links."""
    settings = medic_settings(tmp_path, **SERVER_LINKS)
    async with running_medic(settings) as m:
        async with aiohttp.ClientSession() as s:
            async with s.post(
                f"{m.url}/api/v1/alerts", json=json.loads(_replayable(tmp_path).read_text())
            ) as r:
                assert r.status == 200
            await m.drain()
            async with s.get(f"{m.url}/api/v1/incidents") as r:
                (item,) = (await r.json())["items"]
            async with s.get(f"{m.url}/api/v1/incidents/{item['id']}", params={"format": "md"}) as r:
                served = await r.text()
        for name in [n for n in os.environ if n.startswith("MEDIC_")]:
            monkeypatch.delenv(name)
        for name, value in {**CLI_LINKS, "MEDIC_DATA_DIR": str(settings.data_dir)}.items():
            monkeypatch.setenv(name, value)
        for command in (["report", item["id"]], ["incidents", "show", item["id"]]):
            assert await asyncio.to_thread(main, command) == 0
            links = _links(capsys.readouterr().out)
            assert links["Grafana: logs"].startswith("http://grafana.cli.example/explore?"), command
            assert links["Silence in Alertmanager"].startswith(SILENCE), command
            assert await asyncio.to_thread(main, [*command, "--url", m.url]) == 0
            out = capsys.readouterr().out
            assert out == served + "\n", command  # what GET ?format=md answers, as it is
            assert _links(out)["Grafana: logs"].startswith("http://grafana.server.example/explore?")


# --------------------------------------------------------------------------- --url and --timeout
@pytest.fixture
def silent_server() -> Iterator[str]:
    """A TCP server on 127.0.0.1 that takes connections (the kernel's backlog completes the
    handshake and buffers the request) and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"


ADMIN = {"MEDIC_ADMIN_TOKEN": "admin-token-0123456789"}
URL_COMMANDS = [
    (["incidents"], {}),
    (["incidents", "show", "x"], {}),
    (["report", "x"], {}),
    (["report", "x", "-o", "json"], {}),
    (["kill-switch", "status"], ADMIN),
    (["kill-switch", "on"], ADMIN),
    (["approve", "x"], ADMIN),
    (["reject", "x"], ADMIN),
    (["dead-letters", "list"], {}),
    (["dead-letters", "retry", "x"], ADMIN),
    (["replay", "--since", "1d"], {}),
    (["verify", "deployment/app", "-n", "playcode", "--request-timeout", "0.5"], {}),
    (["verify", "deployment/app", "-n", "playcode", "--wait", "--request-timeout", "0.5"], {}),
]


def test_every_url_command_is_in_the_timeout_test() -> None:
    """A new command with --url must be added above (and use open_session)."""
    parsers = _parsers(build_parser())
    with_url = {path for path, p in parsers if any("--url" in a.option_strings for a in p._actions)}
    assert with_url == {f"medic {args[0]}" for args, _ in URL_COMMANDS}


@pytest.mark.parametrize(
    ("args", "env"), URL_COMMANDS, ids=lambda v: " ".join(v) if isinstance(v, list) else ""
)
def test_a_server_that_never_answers_times_out_naming_the_url(
    medic: InProcess, silent_server: str, args: list[str], env: dict[str, str]
) -> None:
    timeout = [] if any(a == "--request-timeout" for a in args) else ["--timeout", "0.5"]
    result = medic(*args, "--url", silent_server, *timeout, **env)
    assert result.returncode == 1, result.stderr
    flag = "--timeout" if timeout else "--request-timeout"
    assert result.stderr == f"medic: {silent_server}: no answer within 0.5s (raise {flag} to wait longer)\n"
    assert result.stdout == ""


def test_the_default_timeout_is_said_in_the_help() -> None:
    parsers = dict(_parsers(build_parser()))
    assert "(default 30s)" in " ".join(parsers["medic incidents"].format_help().split())
    assert "(default 10m: an approval waits" in " ".join(parsers["medic approve"].format_help().split())
    assert "--wait: give up after this long (default 2h)" in " ".join(
        parsers["medic verify"].format_help().split()
    )


def test_waiting_for_a_server_draws_progress_on_a_terminal(tmp_path: Path, silent_server: str) -> None:
    result, seen = on_a_terminal(tmp_path, "incidents", "--url", silent_server, "--timeout", "3s")
    assert result.returncode == 1 and result.stdout == ""
    # drawn from the first second on (how late the first draw comes depends on the machine's load)
    drawn = re.findall(rb"\r\x1b\[Kmedic: waiting for (\S+) (\d)s \(up to 3s\)", seen)
    assert drawn and {url for url, _ in drawn} == {silent_server.encode()}
    assert all(int(second) >= 1 for _, second in drawn), "not drawn before a second has passed"
    assert f"medic: {silent_server}: no answer within 3s".encode() in seen


async def test_a_quick_answer_draws_no_progress() -> None:
    term = _Terminal()
    assert await Progress(term).around("waiting", asyncio.sleep(0.05, "done"), after=5.0) == "done"
    assert term.getvalue() == ""


# --------------------------------------------------------------------------- stdout is data only
@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["verify", "deployment/x", "-n", "playcode", "-o", "json"], 2),
        (["incidents", "-o", "json"], 0),
        (["check", "-o", "json"], 0),
        (["kill-switch", "status", "-o", "json"], 0),
        (["replay", "PAYLOAD", "-o", "json"], 0),
        (["rules", "test", "alertname=KubePodCrashLooping", "namespace=playcode", "-o", "json"], 0),
    ],
)
def test_only_the_data_goes_to_stdout(tmp_path: Path, args: list[str], code: int) -> None:
    """Logs (e.g. "no Kubernetes configuration found") go to stderr; stdout parses as JSON, or
    is empty when the command had nothing to print (a configuration error)."""
    args = [str(_replayable(tmp_path)) if a == "PAYLOAD" else a for a in args]
    env = medic_env(tmp_path, HOME=str(tmp_path))
    del env["MEDIC_KUBE_MODE"]  # auto: looks for a cluster, finds none, logs that it found none
    if args[0] == "incidents":  # an embedded store to read: the kill switch's command makes it
        assert run_medic(tmp_path, "kill-switch", "status").returncode == 0
    result = subprocess.run(
        [*MEDIC, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == code, result.stderr
    if code == 0:
        json.loads(result.stdout)
    else:
        assert result.stdout == "" and result.stderr.startswith("medic: ")


PROXY_PAGES = {
    200: b"<html><body>Sign in to continue</body></html>",  # an SSO proxy's login page
    502: b"<html><head><title>502 Bad Gateway</title></head><body><center>nginx</center></body></html>",
}


@contextlib.contextmanager
def answering_server(status: int, content_type: str, body: bytes) -> Iterator[str]:
    """What stands where Medic should (a proxy, an ingress, a gateway): every request, whatever
    its method and path, gets this one answer."""

    class OneAnswer(http.server.BaseHTTPRequestHandler):
        def _answer(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_PUT = do_DELETE = _answer  # the names http.server calls

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), OneAnswer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("status", sorted(PROXY_PAGES))
@pytest.mark.parametrize(
    ("args", "env"),
    [
        *URL_COMMANDS,
        (["incidents", "show", "x", "-o", "json"], {}),
        (["incidents", "export", "x", "--as-test"], {}),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else "",
)
def test_a_page_that_is_not_medic_is_a_failure_not_a_traceback(
    medic: InProcess, args: list[str], env: dict[str, str], status: int
) -> None:
    """A proxy's login page (200) or an ingress's error page (502), HTML: exit 1 naming the URL and
    what came instead, never a traceback, nothing on stdout (not the page taken for a report)."""
    timeout = [] if "--request-timeout" in args else ["--timeout", "5s"]
    with answering_server(status, "text/html", PROXY_PAGES[status]) as url:
        result = medic(*args, "--url", url, *timeout, **env)
    assert result.returncode == 1, result
    assert result.stdout == ""
    said = rf"medic: {re.escape(url)}/api/v1/\S+: {status} not a Medic answer"
    assert re.match(said, result.stderr), result
    assert "Traceback" not in result.stderr


JSON_OF_ANOTHER_SHAPE = {
    "empty": b"{}",  # a gateway's own JSON, or another version of Medic
    "wrong fields": b'{"items": [{"id": 1}], "total": "x", "enabled": "maybe", "state": 7}',
}


@pytest.mark.parametrize("body", sorted(JSON_OF_ANOTHER_SHAPE))
@pytest.mark.parametrize(
    ("args", "env"),
    [
        *URL_COMMANDS,
        (["incidents", "show", "x", "-o", "json"], {}),
        (["incidents", "export", "x", "--as-test"], {}),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else "",
)
def test_json_of_another_shape_is_a_failure_not_a_traceback(
    medic: InProcess, args: list[str], env: dict[str, str], body: str
) -> None:
    """A 200 JSON answer that is not Medic's (``{}``, fields of the wrong type): exit 1 naming the
    URL, never a traceback, and never read as an empty or a successful answer."""
    timeout = [] if "--request-timeout" in args else ["--timeout", "5s"]
    with answering_server(200, "application/json", JSON_OF_ANOTHER_SHAPE[body]) as url:
        result = medic(*args, "--url", url, *timeout, **env)
    assert result.returncode == 1, result
    assert result.stderr.startswith(f"medic: {url}/api/v1/"), result
    assert "Traceback" not in result.stderr


def test_a_closed_stdout_is_no_traceback(tmp_path: Path) -> None:
    """``medic check >&-``: started with no stdout at all (sys.stdout is None), as a reader gone
    before the start: nothing printed, the command's own status (0, and 1 for bad rules)."""
    (tmp_path / "bad.yaml").write_text(BAD_RULES)
    for args, code in (
        (["check"], 0),
        (["check", "-o", "json"], 0),
        (["check", "bad.yaml", "-o", "json"], 1),
    ):
        result = subprocess.run(
            ["sh", "-c", 'exec "$@" >&-', "sh", *MEDIC, *args],
            cwd=tmp_path,
            env=medic_env(tmp_path),
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
        )
        assert (result.returncode, result.stderr) == (code, ""), (args, result.stderr)


def test_what_the_cli_prints_of_an_incident_is_redacted(tmp_path: Path) -> None:
    """replay prints the incident as the API shows it (so does a local ``incidents show``, through
    the same redacted view): a connection string an alert carries never reaches stdout, in text,
    JSON or YAML."""
    secret = "s3cr3t-pw"
    path = write_payload(
        tmp_path,
        payload(
            [
                alert(
                    "PlayCodeHighLatency",
                    namespace="playcode",
                    deployment="playcode-app",
                    description=f"mongo at mongodb://app:{secret}@mongodb-0:27017 is slow",
                    dsn=f"redis://:{secret}@redis:6379/0",
                )
            ]
        ),
    )
    for output in ("json", "yaml", "text"):
        ran = run_medic(tmp_path, "replay", str(path), "-o", output)
        assert ran.returncode == 0, ran.stderr
        assert secret not in ran.stdout, output
        assert "PlayCodeHighLatency" in ran.stdout
