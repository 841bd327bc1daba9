"""Structured logging with structlog: JSON in production, readable on a terminal.

Every line logged while an incident is handled carries ``incident_id`` (bound with
``structlog.contextvars.bound_contextvars``). Secrets are scrubbed from every event, Medic's and
the libraries' (stdlib logging) alike: every value and key, and the exception and stack text, which
are formatted first so that redaction sees them (an error message can quote a connection string).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

from medic.domain.redact import redact

MAX_VALUE_CHARS = 16 * 1024  # a logged text is cut to this (a sender's 1 MiB group key too)
_MARGIN = 4 * 1024  # redacted with the cut, so a secret across the cut is still recognised


def _bounded(value: Any) -> Any:
    if isinstance(value, str) and len(value) > MAX_VALUE_CHARS + _MARGIN:
        return value[: MAX_VALUE_CHARS + _MARGIN]
    return value


def redact_event(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: the event with secrets scrubbed from its keys and values (after
    ``format_exc_info``, so a traceback is text by then and scrubbed too). Long texts are cut
    first, so that logging costs the event loop a bounded time whatever a sender wrote."""
    event: dict[str, Any] = redact({k: _bounded(v) for k, v in event_dict.items()})
    for key, value in event.items():
        if isinstance(value, str) and len(value) > MAX_VALUE_CHARS:
            event[key] = f"{value[:MAX_VALUE_CHARS]}… [{len(event_dict.get(key, value))} chars, cut]"
        if isinstance(event[key], str) and not event[key].isascii():
            # text UTF-8 cannot encode (a sender's lone surrogate) is shown escaped: a log line
            # must never fail, nor turn the request that logged it into an error
            event[key] = event[key].encode("utf-8", "backslashreplace").decode("utf-8")
    return event


def configure_logging(fmt: str = "auto", level: str = "info") -> None:
    """Configure structlog and the stdlib root logger (aiohttp, kubernetes) to one format."""
    json_output = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,  # exceptions as text, before redaction reads them
        redact_event,
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if json_output
        else structlog.dev.ConsoleRenderer(
            colors=sys.stderr.isatty(), exception_formatter=structlog.dev.plain_traceback
        )
    )
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        # below-level calls are no-ops decided when the logger is made, not per call (a debug line
        # on the webhook's path cost 4 % of the intake's CPU through filter_by_level)
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)
