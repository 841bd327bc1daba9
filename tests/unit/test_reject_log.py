"""Rejected webhook deliveries are logged at warning, at most one line per reason per interval,
the next line saying how many were left out; receiver and group key when the body was parsed."""

from __future__ import annotations

import asyncio
from typing import Any

from medic.intake.reject_log import RejectLog, begin_delivery, note_body


class Recorder:
    def __init__(self) -> None:
        self.lines: list[dict[str, Any]] = []

    def warning(self, event: str, **fields: Any) -> None:
        self.lines.append({"event": event, **fields})


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_one_line_per_reason_per_interval_with_the_suppressed_count() -> None:
    clock, rec = Clock(), Recorder()
    log = RejectLog(interval=10, clock=clock, logger=rec)
    assert log.rejected("auth", status=401)
    assert not log.rejected("auth", status=401)
    assert not log.rejected("auth", status=401)
    assert log.rejected("schema", status=400), "another reason has its own window"
    clock.now += 10
    assert log.rejected("auth", status=401)
    assert [(r["reason"], r.get("suppressed")) for r in rec.lines] == [
        ("auth", None),
        ("schema", None),
        ("auth", 2),
    ]
    assert all(r["event"] == "webhook delivery rejected" for r in rec.lines)


def test_fields_are_computed_only_for_lines_written() -> None:
    rec, calls = Recorder(), []
    log = RejectLog(interval=10, clock=Clock(), logger=rec)

    def detail() -> str:
        calls.append(1)
        return "alerts: Input should be a valid list"

    log.rejected("schema", detail=detail)
    log.rejected("schema", detail=detail)
    assert calls == [1] and rec.lines[0]["detail"] == "alerts: Input should be a valid list"


async def test_remote_receiver_and_group_key_of_the_request_being_handled() -> None:
    rec = Recorder()
    log = RejectLog(interval=0, clock=Clock(), logger=rec)

    async def request(remote: str, body: Any) -> None:
        begin_delivery(remote)
        await asyncio.sleep(0)  # another request runs meanwhile: each keeps its own fields
        note_body(body)
        log.rejected("schema")

    await asyncio.gather(
        request("10.0.0.1", {"receiver": "medic", "groupKey": '{}:{a="1"}'}),
        request("10.0.0.2", ["not", "an", "object"]),
        request("10.0.0.3", {"receiver": 5, "groupKey": "g" * 1000}),
    )
    by_remote = {r["remote"]: r for r in rec.lines}
    assert by_remote["10.0.0.1"]["receiver"] == "medic" and by_remote["10.0.0.1"]["group_key"] == '{}:{a="1"}'
    assert "receiver" not in by_remote["10.0.0.2"]
    assert "receiver" not in by_remote["10.0.0.3"], "only strings from the sender"
    assert len(by_remote["10.0.0.3"]["group_key"]) == 200
