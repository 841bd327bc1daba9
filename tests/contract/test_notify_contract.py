"""The one contract every notifier passes, against real local HTTP receivers (aiohttp on
127.0.0.1): one request per send, a body its receiver accepts, bounded retries on 5xx, 429 and
timeouts, no retry on other 4xx, an outcome instead of an exception, and no secret in any body.
Every notifier is built as Medic builds it: a channel validated by ``Settings``, its secrets from
``Settings.tokens``, the notifier from ``notify.dispatcher.build_notifiers``."""

from __future__ import annotations

import json
import time
import typing
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest

from medic.app.settings import Settings
from medic.domain.incident import ActionStatus
from medic.notify.base import Notifier
from medic.notify.config import ChannelConfig
from medic.notify.dispatcher import build_notifiers
from medic.notify.events import Event, EventKind, Links, MessageKind, snapshot
from medic.notify.webhook import NotificationV1, verify_signature
from tests.e2e.pages_incidents import T0, hostile_incident, leaked
from tests.e2e.pages_receivers import receiver

pytestmark = pytest.mark.integration

WEBHOOK_SECRET = "webhook-signing-secret-0123456789"
GRAFANA_TOKEN = "glsa_grafana-token-0123456789"
SLACK_PATH = "/services/T000/B000/slack-url-secret-part"
FAST = {"attempts": 3, "backoff": "10ms", "max_backoff": "50ms", "timeout": "300ms"}


# ---------------------------------------------------------------- receiver-side checks
def slack_check(path: str, headers: dict[str, str], body: bytes) -> int:
    data = json.loads(body)
    ok = path == SLACK_PATH and isinstance(data.get("text"), str) and isinstance(data.get("blocks"), list)
    for block in data.get("blocks", []):
        ok = ok and block.get("type") in ("header", "section", "context", "actions", "divider")
        text = block.get("text", {}).get("text", "")
        ok = ok and len(text) <= 3000
    return 200 if ok else 400  # Slack answers 400 invalid_blocks


def webhook_check(path: str, headers: dict[str, str], body: bytes) -> int:
    if not verify_signature(
        WEBHOOK_SECRET, headers.get("X-Medic-Timestamp"), body, headers.get("X-Medic-Signature"), time.time()
    ):
        return 401
    NotificationV1.model_validate_json(body)  # the documented schema, strictly (extra=forbid)
    return 200


def grafana_check(path: str, headers: dict[str, str], body: bytes) -> int:
    if headers.get("Authorization") != f"Bearer {GRAFANA_TOKEN}":
        return 401
    data = json.loads(body)
    if path != "/api/annotations" or not isinstance(data.get("time"), int) or "medic" not in data["tags"]:
        return 400
    return 200


def channel(kind: str, url: str) -> tuple[str, dict[str, Any]]:
    """A channel of the kind as an operator configures it (``MEDIC_NOTIFIERS``): name, settings."""
    channels = {
        "slack": ("oncall", {"url": url + SLACK_PATH}),
        "webhook": ("pager-bridge", {"url": url + "/medic", "secret": WEBHOOK_SECRET}),
        "grafana": ("dashboards", {"url": url, "token": GRAFANA_TOKEN}),
    }
    name, fields = channels[kind]  # a kind without a case fails here, never falls through
    return name, {"type": kind, **fields}


def make(kind: str, url: str, **overrides: Any) -> Notifier:
    """The channel's notifier built as Medic builds it (``app.runtime``): the settings validate
    the channel, ``Settings.tokens`` unwraps its secrets, ``build_notifiers`` makes the notifier."""
    name, fields = channel(kind, url)
    settings = Settings(notifiers={name: {**fields, **FAST, **overrides}})
    built = build_notifiers(settings.notify.notifiers, settings.tokens.notifiers)
    assert list(built) == [name], f"build_notifiers built {list(built)} for a {kind} channel"
    assert built[name].type == kind
    return built[name]


CHECKS = {"slack": slack_check, "webhook": webhook_check, "grafana": grafana_check}
KINDS = list(CHECKS)
OWN_SECRETS = (WEBHOOK_SECRET, GRAFANA_TOKEN, "slack-url-secret-part")


def action_event() -> Event:
    """An event every notifier speaks about: a rollback that ran (Grafana annotates it)."""
    return Event(EventKind.ACTION, snapshot(hostile_incident(ActionStatus.SUCCEEDED)), T0, action_index=0)


def channel_kinds() -> set[str]:
    """The ``type`` of every channel the settings accept (the ``ChannelConfig`` union)."""
    union, *_ = typing.get_args(ChannelConfig)  # Annotated[Slack | Webhook | Grafana, discriminator]
    kinds: set[str] = set()
    for channel in typing.get_args(union):
        kinds.update(typing.get_args(channel.model_fields["type"].annotation))
    return kinds


def test_every_channel_kind_of_the_settings_has_a_contract_case() -> None:
    """A new channel type in the config union without a case here fails: it passes the contract
    before it ships."""
    assert channel_kinds() == set(KINDS)


LINKS = Links("https://medic.example/incidents/inc-1", {})


async def send(n: Notifier, event: Event | None = None) -> Any:
    async with aiohttp.ClientSession() as session:
        return await n.send(session, event or action_event(), MessageKind.FIRST, LINKS, datetime.now(UTC))


@pytest.mark.parametrize("kind", KINDS)
async def test_delivers_one_accepted_request_without_secrets(kind: str) -> None:
    async with receiver(CHECKS[kind]) as rec:
        outcome = await send(make(kind, rec.url))
        assert outcome is not None and outcome.ok, outcome
        assert outcome.attempts == 1 and outcome.status == 200
        assert len(rec.requests) == 1
        body = rec.requests[0][2].decode()
        assert leaked(body, OWN_SECRETS) == []
        assert "<script>" not in body  # hostile markup travels escaped or not at all


@pytest.mark.parametrize("kind", KINDS)
async def test_5xx_is_retried_with_the_same_body(kind: str) -> None:
    async with receiver(CHECKS[kind]) as rec:
        rec.script = [(503, 0, {}), (502, 0, {})]
        outcome = await send(make(kind, rec.url))
        assert outcome.ok and outcome.attempts == 3
        assert len({body for _, _, body in rec.requests}) == 1


@pytest.mark.parametrize("kind", KINDS)
async def test_gives_up_after_the_bounded_attempts_and_says_why(kind: str) -> None:
    async with receiver(CHECKS[kind]) as rec:
        rec.script = [(500, 0, {})] * 10
        started = time.monotonic()
        outcome = await send(make(kind, rec.url))
        assert not outcome.ok and outcome.attempts == 3 and outcome.status == 500
        assert outcome.error == "HTTP 500" and outcome.response == "upstream says no"
        assert len(rec.requests) == 3
        assert time.monotonic() - started < 2


@pytest.mark.parametrize("kind", KINDS)
async def test_a_slow_receiver_times_out_and_is_retried(kind: str) -> None:
    async with receiver(CHECKS[kind]) as rec:
        rec.script = [(200, 1.0, {})]
        outcome = await send(make(kind, rec.url))
        assert outcome.ok and outcome.attempts == 2


@pytest.mark.parametrize("kind", KINDS)
async def test_4xx_is_not_retried_but_429_is(kind: str) -> None:
    async with receiver(CHECKS[kind]) as rec:
        rec.script = [(404, 0, {})]
        outcome = await send(make(kind, rec.url))
        assert not outcome.ok and outcome.attempts == 1 and outcome.status == 404
        rec.script = [(429, 0, {"Retry-After": "0"})]
        outcome = await send(make(kind, rec.url))
        assert outcome.ok and outcome.attempts == 2


@pytest.mark.parametrize("kind", KINDS)
async def test_unreachable_receiver_is_an_outcome_not_an_exception(kind: str) -> None:
    async with receiver() as rec:
        url = rec.url
    outcome = await send(make(kind, url, attempts=2))
    assert not outcome.ok and outcome.attempts == 2 and outcome.status is None
    assert outcome.error.startswith("connection failed")
    assert "127.0.0.1" not in outcome.error and "slack-url-secret-part" not in outcome.error


# ---------------------------------------------------------------- notifier-specific
async def test_webhook_signature_binds_body_and_timestamp() -> None:
    async with receiver() as rec:
        await send(make("webhook", rec.url))
        _, headers, body = rec.requests[0]
    ts, sig = headers["X-Medic-Timestamp"], headers["X-Medic-Signature"]
    now = int(ts)
    assert sig.startswith("sha256=")
    assert verify_signature(WEBHOOK_SECRET, ts, body, sig, now)
    assert not verify_signature("another-secret-0123456789", ts, body, sig, now)
    assert not verify_signature(WEBHOOK_SECRET, ts, body.replace(b"succeeded", b"failed"), sig, now)
    assert not verify_signature(WEBHOOK_SECRET, str(now + 1), body, sig, now)
    assert not verify_signature(WEBHOOK_SECRET, ts, body, sig, now + 3600)  # a replay an hour later
    data = json.loads(body)
    assert data["schema"] == "medic.notification/v1" and data["event"] == "action"
    assert headers["X-Medic-Delivery"] == data["delivery_id"]
    assert headers["X-Medic-Event"] == "incident.action"


async def test_grafana_annotates_taken_actions_and_resolution_only() -> None:
    async with receiver(grafana_check) as rec:
        n = make("grafana", rec.url)
        proposal = Event(EventKind.DIAGNOSED, snapshot(hostile_incident(ActionStatus.AWAITING_APPROVAL)), T0)
        assert await send(n, proposal) is None  # nothing changed on the graphs: nothing sent
        assert await send(n) is not None
        resolved = hostile_incident(ActionStatus.SUCCEEDED)
        resolved.status, resolved.resolved_at = "resolved", T0 + timedelta(minutes=12)
        assert (await send(n, Event(EventKind.RESOLVED, snapshot(resolved), T0))).ok
    first, region = (json.loads(body) for _, _, body in rec.requests)
    assert first["tags"] == ["medic", "crashloop-rollback", "playcode", "rollback", "succeeded"]
    assert first["time"] == int((T0 + timedelta(minutes=1)).timestamp() * 1000)
    assert region["timeEnd"] - region["time"] == 12 * 60 * 1000 and "resolved" in region["tags"]
