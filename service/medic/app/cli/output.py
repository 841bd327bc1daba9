"""What every ``medic`` command that prints data shares: ``-o text|json|yaml``, a progress line,
and the exit codes (amtool/promtool/kubectl conventions).

* :func:`add_output_option` adds ``-o/--output`` (``--format`` kept as an alias; ``md`` and
  ``table`` mean ``text``); :func:`emit` prints the data in the chosen format. ``json`` and
  ``yaml`` print the same document, on stdout only: nothing else is ever written there.
* :class:`Progress`: a line on stderr, redrawn in place while something slow runs, only when
  stderr is a terminal (a script's stderr stays clean, stdout is never touched).
* Exit codes: :data:`EXIT_OK` success, :data:`EXIT_FAILURE` the command ran and failed (unknown
  incident, a check that found errors, a server that refused), :data:`EXIT_USAGE` the command
  line or Medic's configuration is wrong.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TextIO, TypeVar

import yaml

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2

OUTPUT_FORMATS = ("text", "json", "yaml")
_ALIASES = {"md": "text", "markdown": "text", "table": "text"}

T = TypeVar("T")


def _output_format(value: str) -> str:
    return _ALIASES.get(value, value)


def add_output_option(parser: argparse.ArgumentParser, text: str = "human-readable") -> None:
    """``-o/--output text|json|yaml`` (default text); ``text`` is described by ``text``."""
    parser.add_argument(
        "-o",
        "--output",
        "--format",
        dest="output",
        type=_output_format,
        choices=OUTPUT_FORMATS,
        default="text",
        help=f"output format: text ({text}), json or yaml (default: text)",
    )


_MARKUP = re.compile(r":[a-z]+:`~?([^`]*)`|``([^`]*)``|`([^`]*)`")


def plain_text(text: str) -> str:
    """``text`` without its reST markup (``literal``, `code`, :mod:`role`): help is plain text."""
    return _MARKUP.sub(lambda m: next(g for g in m.groups() if g is not None), text)


class PlainHelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions keep their lines (a module docstring's paragraphs); help loses its markup."""

    def _format_text(self, text: str) -> str:
        return super()._format_text(plain_text(text))

    def _expand_help(self, action: argparse.Action) -> str:
        return plain_text(super()._expand_help(action))


class CommandParser(argparse.ArgumentParser):
    """``medic``'s parser, and (``add_subparsers`` makes its own kind) every subcommand's:
    plain help text (:class:`PlainHelpFormatter`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", PlainHelpFormatter)
        super().__init__(*args, **kwargs)


def plain(data: Any) -> Any:
    """JSON-compatible data (datetimes and paths as strings), for both json and yaml."""
    return json.loads(json.dumps(data, default=str))


def emit(
    args: argparse.Namespace, data: Any, text: Callable[[], str] | str, stream: TextIO | None = None
) -> None:
    """Print ``data`` as JSON or YAML, or ``text`` (a string or a function making it).

    No stdout at all (``medic check >&-``: ``sys.stdout`` is None) is a reader that left before
    the start: nothing is printed and the command exits with its own status, as on a closed pipe.
    """
    out = stream or sys.stdout
    if out is None:
        return
    fmt = getattr(args, "output", "text")
    if fmt == "json":
        document = printable(json.dumps(plain(data), indent=2, ensure_ascii=False)) + "\n"
    elif fmt == "yaml":
        document = printable(yaml.safe_dump(plain(data), sort_keys=False, allow_unicode=True))
    else:
        document = printable(text() if callable(text) else text) + "\n"
    try:
        out.write(document)
        out.flush()  # a reader that left shows here, whatever the size of the output
    except BrokenPipeError:
        if out is not sys.stdout:
            raise
        stdout_closed()


def stdout_closed() -> None:
    """The reader of stdout went away (``medic … | head -1``): not an error of the command.

    What the Python docs recommend: stdout is pointed at /dev/null, so that what is still
    buffered, and the interpreter's final flush, do not fail again; the command goes on and
    exits with its own status, whether the reader left before or after the output was written.
    """
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def printable(text: str) -> str:
    """``text`` with what UTF-8 cannot encode (a lone surrogate, as in a dead letter's alert)
    written as its escape, so that printing it never fails."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


class Progress:
    """``medic: <label> 12s (up to 60s)`` on stderr, redrawn twice a second, erased at the end."""

    def __init__(self, stream: TextIO | None = None, *, interval: float = 0.5) -> None:
        self.stream = stream or sys.stderr
        self.interval = interval
        try:
            self.enabled = self.stream.isatty()
        except (AttributeError, ValueError):
            self.enabled = False

    async def around(
        self, label: str, work: Awaitable[T], *, budget: float | None = None, after: float = 0.0
    ) -> T:
        """``work``'s result, with the line drawn while it runs (from ``after`` seconds on)."""
        async with self.showing(label, budget=budget, after=after):
            return await work

    @contextlib.asynccontextmanager
    async def showing(
        self, label: str, *, budget: float | None = None, after: float = 0.0
    ) -> AsyncIterator[None]:
        """The line, drawn while the block runs once it has run ``after`` seconds, then erased."""
        if not self.enabled:
            yield
            return
        started = time.monotonic()
        drawn: list[bool] = []
        ticker = asyncio.create_task(self._tick(label, started, budget, after, drawn))
        try:
            yield
        finally:
            ticker.cancel()
            if drawn:
                self._write("\r\x1b[K")

    async def _tick(
        self, label: str, started: float, budget: float | None, after: float, drawn: list[bool]
    ) -> None:
        await asyncio.sleep(after)
        drawn.append(True)
        while True:
            elapsed = time.monotonic() - started
            limit = f" (up to {budget:.0f}s)" if budget else ""
            self._write(f"\r\x1b[Kmedic: {label} {elapsed:.0f}s{limit}")
            await asyncio.sleep(self.interval)

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):  # a closed terminal must not fail the command
            self.enabled = False
