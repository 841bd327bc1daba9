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
import json
import sys
import time
from collections.abc import Awaitable, Callable
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


def plain(data: Any) -> Any:
    """JSON-compatible data (datetimes and paths as strings), for both json and yaml."""
    return json.loads(json.dumps(data, default=str))


def emit(
    args: argparse.Namespace, data: Any, text: Callable[[], str] | str, stream: TextIO | None = None
) -> None:
    """Print ``data`` as JSON or YAML, or ``text`` (a string or a function making it)."""
    out = stream or sys.stdout
    fmt = getattr(args, "output", "text")
    if fmt == "json":
        print(printable(json.dumps(plain(data), indent=2, ensure_ascii=False)), file=out)
    elif fmt == "yaml":
        dumped = yaml.safe_dump(plain(data), sort_keys=False, allow_unicode=True)
        print(printable(dumped), end="", file=out)
    else:
        print(printable(text() if callable(text) else text), file=out)


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

    async def around(self, label: str, work: Awaitable[T], *, budget: float | None = None) -> T:
        if not self.enabled:
            return await work
        started = time.monotonic()
        ticker = asyncio.create_task(self._tick(label, started, budget))
        try:
            return await work
        finally:
            ticker.cancel()
            self._write("\r\x1b[K")

    async def _tick(self, label: str, started: float, budget: float | None) -> None:
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
