"""Notifications from the running pipeline: a crash-looping rollout is rolled back and on-call
gets one message per incident and channel, then updates; a dead receiver never delays the
diagnosis, and its failure is on the incident's timeline and in the metrics."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from medic.app.settings import channel_secrets
from medic.clients.sqlite import SqliteDB
from medic.coordination.marks import SqliteMarks
from medic.incidents.journal import IncidentJournal
from medic.incidents.sqlite import SqliteIncidentStore
from medic.notify.config import SlackChannel
from medic.notify.dispatcher import NotifyDispatcher, build_notifiers
from medic.telemetry.metrics import Metrics
from tests.e2e.pages_incidents import hostile_incident
from tests.e2e.pages_receivers import Receiver, receiver
from tests.integration.crashloop_world import World, crashloop_world

pytestmark = pytest.mark.integration

SECRET = "pipeline-webhook-secret-0123"
FAST = {"attempts": 3, "backoff": "10ms", "max_backoff": "50ms", "timeout": "500ms"}


def channels(slack: Receiver, hook: Receiver, grafana: Receiver) -> dict[str, Any]:
    return {
        "oncall": {"type": "slack", "url": slack.url + "/services/T/B/slack-secret-path", **FAST},
        "bridge": {"type": "webhook", "url": hook.url + "/in", "secret": SECRET, "all_rules": True, **FAST},
        "dashboards": {
            "type": "grafana",
            "url": grafana.url,
            "token": "glsa-token-0123456789",
            "all_rules": True,
            **FAST,
        },
        "critical-only": {
            "type": "webhook",
            "url": hook.url + "/critical",
            "secret": SECRET,
            "all_rules": True,
            "min_severity": "critical",
            "events": ["resolved"],
            **FAST,
        },
    }


def notify_entries(inc: dict[str, Any]) -> list[dict[str, Any]]:
    return [t for t in inc["timeline"] if t["kind"] == "notify"]


async def metrics(w: World) -> str:
    async with aiohttp.ClientSession() as s, s.get(f"{w.medic.url}/metrics") as r:
        return await r.text()


async def test_one_message_per_incident_then_updates(tmp_path: Path) -> None:
    async with (
        receiver() as slack,
        receiver() as hook,
        receiver() as grafana,
        crashloop_world(
            tmp_path, notifiers=channels(slack, hook, grafana), public_url="https://medic.example"
        ) as w,
    ):
        dispatcher = w.medic.runtime.dispatcher
        pods = w.crashing_pods()
        alerts = w.crash_alerts(pods)
        await w.post(alerts)
        inc = await w.diagnosed()
        await dispatcher.drain()
        assert inc["actions"][0]["status"] == "succeeded" and w.patches() == 1

        # one first message each; Grafana marks the rollback on the dashboards
        [first] = slack.json()
        assert "crashloop.regression" in str(first["blocks"])
        assert f"<https://medic.example/incidents/{inc['id']}|Open the incident>" in str(first["blocks"])
        assert [(b["event"], b["message"]) for b in hook.json() if b] == [("diagnosed", "first")]
        [mark] = grafana.json()
        assert mark["tags"] == ["medic", "crashloop-rollback", "playcode", "rollback", "succeeded"]

        # the same episode again, and the same event again: nothing new is sent
        await w.post(alerts)
        stored = await w.medic.runtime.store.get(inc["id"])
        assert stored is not None
        dispatcher.submit(stored, "diagnosed")
        await w.medic.drain()
        await dispatcher.drain()
        assert (len(slack.requests), len(hook.requests), len(grafana.requests)) == (1, 1, 1)

        # resolution: one short update each, a region on the dashboards
        await w.post(w.crash_alerts(pods, status="resolved"))
        await w.medic.drain()
        await dispatcher.drain()
        update = slack.json()[1]
        assert len(update["blocks"]) == 1 and "resolved after" in update["text"]
        assert [(b["event"], b["message"]) for b in hook.json()[1:]] == [
            ("resolved", "update"),
            ("resolved", "first"),  # critical-only: subscribed to resolutions alone
        ]
        assert "timeEnd" in grafana.json()[1]

        final = await w.incident(inc["id"])
        entries = notify_entries(final)
        assert len(entries) == 7 and all(e["data"]["delivered"] for e in entries), entries
        everything = slack.text() + hook.text() + grafana.text()
        assert "hunter2-secret" not in everything and "slack-secret-path" not in everything
        assert 'medic_notifications_sent_total{notifier="oncall"} 2.0' in await metrics(w)


async def test_a_dead_receiver_never_delays_the_diagnosis_and_is_recorded(tmp_path: Path) -> None:
    async with receiver() as slack, receiver() as hook, receiver() as grafana:
        slack.fail_always = (503, 0.4)  # slow and failing: ~3 x 0.4 s of retries
        config = channels(slack, hook, grafana)
        async with crashloop_world(tmp_path, notifiers=config, public_url="https://medic.example") as w:
            started = time.monotonic()
            await w.post(w.crash_alerts())
            inc = await w.diagnosed()
            assert w.medic.runtime.dispatcher.pending > 0, "the worker went on while notifications retry"
            await w.medic.runtime.dispatcher.drain()
            assert time.monotonic() - started > 1.0
            assert len(slack.requests) == 3
            final = await w.incident(inc["id"])
            failed = [e for e in notify_entries(final) if not e["data"]["delivered"]]
            assert len(failed) == 1
            assert failed[0]["message"] == (
                "oncall (slack): diagnosed (first message) NOT delivered after 3 attempts: HTTP 503"
            )
            text = await metrics(w)
            assert 'medic_notifications_failed_total{notifier="oncall"} 1.0' in text
            assert 'medic_notifications_sent_total{notifier="bridge"} 1.0' in text


async def test_a_broken_state_store_is_recorded_not_raised(tmp_path: Path) -> None:
    db, broken_db = SqliteDB(tmp_path / "medic.sqlite3"), SqliteDB(tmp_path / "never-opened.sqlite3")
    await db.open()
    store = SqliteIncidentStore(db)
    inc = hostile_incident()
    await store.save(inc)
    metrics = Metrics()
    try:
        async with receiver() as rec:
            slack = SlackChannel(type="slack", url=rec.url)
            dispatcher = NotifyDispatcher(
                notifiers=build_notifiers({"oncall": slack}, {"oncall": channel_secrets(slack)}),
                rule_notify={"crashloop-rollback": ["oncall"]},
                marks=SqliteMarks(broken_db),  # every dedupe mark fails
                journal=IncidentJournal(store),
                metrics=metrics,
            )
            dispatcher.submit(inc, "diagnosed")  # returns at once
            await dispatcher.close()
        assert rec.requests == []  # no dedupe possible: better not sent than sent twice
        stored = await store.get(inc.id)
        assert stored is not None
        [entry] = [t for t in stored.timeline if t.kind == "notify"]
        assert "NOT delivered" in entry.message and "not attempted: StoreError" in entry.message
        failed = metrics.registry.get_sample_value("medic_notifications_failed_total", {"notifier": "oncall"})
        assert failed == 1
    finally:
        await db.close()
        await broken_db.close()
