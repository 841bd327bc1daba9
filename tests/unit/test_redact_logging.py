"""Logs carry no secret: Medic's events and the libraries' (stdlib logging), values, keys and the
exception text; a JSON log stays JSON."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
import structlog

from medic.app.logging import MAX_VALUE_CHARS, configure_logging
from tests.secrets_corpus import PLANTED, planted_secrets


def _configured(fmt: str) -> io.StringIO:
    """Medic's logging as ``medic serve`` sets it up, its output captured."""
    configure_logging(fmt, "debug")
    out = io.StringIO()
    (handler,) = logging.getLogger().handlers
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(out)
    return out


@pytest.fixture
def json_logs() -> Iterator[io.StringIO]:
    yield _configured("json")
    structlog.reset_defaults()
    logging.getLogger().handlers[:] = []


def _lines(out: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.getvalue().splitlines() if line.strip()]


def test_event_values_keys_and_exception_text_are_redacted(json_logs: io.StringIO) -> None:
    log = structlog.get_logger("medic.test")
    texts = {f"v{i}": p.text for i, p in enumerate(PLANTED)}
    log.warning("delivery", **texts, **{"Bearer keyname-Zq97secretvalue": 1})
    try:
        raise ConnectionError(" / ".join(p.text for p in PLANTED))
    except ConnectionError:
        log.exception("collector failed", url=PLANTED[0].text)
    lines = _lines(json_logs)
    assert [line["event"] for line in lines] == ["delivery", "collector failed"]
    assert "ConnectionError" in str(lines[1]["exception"])  # the traceback is kept, scrubbed
    out = json.dumps(lines)
    leaked = [s for s in planted_secrets() if s in out]
    assert leaked == []


def test_library_logs_and_their_tracebacks_are_redacted(json_logs: io.StringIO) -> None:
    lib = logging.getLogger("aiohttp.client")
    lib.error("connect to %s failed", PLANTED[0].text)
    try:
        raise ValueError(PLANTED[3].text)
    except ValueError:
        lib.exception("request failed")
    lines = _lines(json_logs)
    assert len(lines) == 2 and "ValueError" in str(lines[1]["exception"])
    out = json.dumps(lines)
    assert PLANTED[0].secret not in out and PLANTED[3].secret not in out


def test_console_logs_are_redacted_too() -> None:
    out = _configured("console")
    try:
        try:
            raise RuntimeError(PLANTED[1].text)
        except RuntimeError:
            structlog.get_logger("medic.test").exception("failed", cookie=PLANTED[6].text)
        err = out.getvalue()
        assert "RuntimeError" in err and "failed" in err
        assert PLANTED[1].secret not in err and PLANTED[6].secret not in err
    finally:
        structlog.reset_defaults()
        logging.getLogger().handlers[:] = []


def test_a_huge_value_is_cut_and_a_secret_across_the_cut_still_redacted(json_logs: io.StringIO) -> None:
    """A sender's 1 MiB group key costs logging a bounded time; a secret that straddles the cut is
    still seen whole by the redaction."""
    head = "x" * (MAX_VALUE_CHARS - 12)
    structlog.get_logger("medic.test").warning(
        "big", group_key=head + " password=hunter2-across " + "y" * 2**20
    )
    (line,) = _lines(json_logs)
    value = str(line["group_key"])
    assert "hunter2" not in value and value.startswith(head + " password=")
    assert len(value) < MAX_VALUE_CHARS + 100 and value.endswith("chars, cut]")


def test_a_lone_surrogate_a_sender_wrote_is_logged_escaped_never_fails() -> None:
    from medic.app.logging import redact_event
    from medic.intake.reject_log import begin_delivery, note_body

    event = redact_event(None, "warning", {"event": "webhook delivery rejected", "group_key": "g\ud800"})
    assert event["group_key"] == "g\\ud800"
    event["group_key"].encode("utf-8")  # printable: a stream would not raise on it
    begin_delivery("127.0.0.1")
    note_body({"receiver": "r\udfff", "groupKey": "{}:x"})
    from medic.intake.reject_log import _delivery

    fields = _delivery.get()
    assert fields is not None and fields["receiver"] == "r\\udfff"
