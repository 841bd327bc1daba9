"""The dispatcher: the pipeline's one notification hook, off the worker's path.

``submit`` takes a snapshot of the incident and returns at once; a background task redacts it
(in a thread when large), routes the event (rule ``notify`` lists, ``all_rules``, minimum
severity, subscribed events), deduplicates it per incident, channel and event in the state store,
delivers to each channel concurrently with bounded retries, and records every outcome on the
incident's timeline (and failures in ``medic_notifications_failed_total``). Events of one
incident are handled in the order they were submitted, so an update never overtakes the first
message.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import Any

import aiohttp
import structlog

from medic.coordination.marks import Marks
from medic.domain.incident import ActionStatus, Incident, TimelineEntry, utcnow
from medic.domain.redact import redact_async
from medic.incidents.journal import IncidentJournal
from medic.incidents.report.links import LinkSettings
from medic.incidents.report.oncall import OnCall, oncall
from medic.incidents.views import IncidentView, first_alerts
from medic.notify.base import Notifier
from medic.notify.config import ChannelConfig, ChannelSecrets, GrafanaChannel, SlackChannel, WebhookChannel
from medic.notify.delivery import Outcome
from medic.notify.events import Event, EventKind, Links, MessageKind, route
from medic.notify.grafana import GrafanaNotifier
from medic.notify.slack import SlackNotifier
from medic.notify.webhook import WebhookNotifier
from medic.telemetry.metrics import Metrics

log = structlog.get_logger("medic.notify")

# The approval page of an incident's action (index) — None when no link can be made.
ApprovalLink = Callable[[Incident, int], Awaitable[str | None]]
ONCALL_ALERTS = 20  # alerts whose summary/description/runbook a message may quote


def build_notifiers(
    channels: Mapping[str, ChannelConfig], secrets: Mapping[str, ChannelSecrets]
) -> dict[str, Notifier]:
    """A notifier per channel, with the channel's secrets as ``Settings.tokens.notifiers`` has them."""
    out: dict[str, Notifier] = {}
    for name, cfg in channels.items():
        if isinstance(cfg, SlackChannel):
            out[name] = SlackNotifier(name, cfg, secrets[name])
        elif isinstance(cfg, WebhookChannel):
            out[name] = WebhookNotifier(name, cfg, secrets[name])
        elif isinstance(cfg, GrafanaChannel):
            out[name] = GrafanaNotifier(name, cfg, secrets[name])
    return out


def outcome_entry(
    channel: Notifier, event: Event, kind: MessageKind, outcome: Outcome, at: datetime
) -> TimelineEntry:
    what = f"{event.kind.value} ({kind.value} message)"
    tries = f"{outcome.attempts} attempt{'s' if outcome.attempts != 1 else ''}"
    if outcome.ok:
        message = f"{channel.name} ({channel.type}): {what} delivered after {tries}"
    else:
        message = f"{channel.name} ({channel.type}): {what} NOT delivered after {tries}: {outcome.error}"
    return TimelineEntry(
        at=at,
        kind="notify",
        message=message,
        data={
            "channel": channel.name,
            "type": channel.type,
            "event": event.kind.value,
            "key": event.key,
            "delivered": outcome.ok,
            "attempts": outcome.attempts,
            "status": outcome.status,
            "delivery_id": event.id,
        },
    )


class NotifyDispatcher:
    def __init__(
        self,
        *,
        notifiers: Mapping[str, Notifier],
        rule_notify: Mapping[str, list[str]],
        marks: Marks,
        journal: IncidentJournal,
        metrics: Metrics,
        public_url: str = "",
        approval_link: ApprovalLink | None = None,
        clock: Callable[[], datetime] = utcnow,
        link_settings: LinkSettings | None = None,
    ) -> None:
        self.notifiers = dict(notifiers)
        self.rule_notify = dict(rule_notify)
        self.marks = marks
        self.journal = journal
        self.metrics = metrics
        self.public_url = public_url.rstrip("/")
        self.approval_link = approval_link
        self.clock = clock
        self.link_settings = link_settings
        self._tasks: set[asyncio.Task[None]] = set()
        self._order: dict[str, tuple[asyncio.Lock, int]] = {}  # per incident: FIFO lock, pending
        self._session: aiohttp.ClientSession | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.notifiers)

    @property
    def pending(self) -> int:
        """Events queued or being delivered."""
        return len(self._tasks)

    # ------------------------------------------------------------------ the hook
    def submit(self, incident: Incident, kind: EventKind | str, *, action_index: int | None = None) -> None:
        """Queue an event about ``incident`` (as it is now); returns at once, never raises."""
        if not self.notifiers:
            return
        try:
            doc = incident.model_dump(mode="json")  # as it is now; redacted in _run, off the loop
            queued = (EventKind(kind), doc, self.clock(), action_index)
            lock, pending = self._order.get(incident.id, (asyncio.Lock(), 0))
            task = asyncio.get_running_loop().create_task(self._run(*queued, lock))
            self._order[incident.id] = (lock, pending + 1)
        except Exception:  # the pipeline must go on whatever happens here
            log.exception("could not queue a notification", incident_id=incident.id)
            return
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self, timeout: float = 30.0) -> None:
        """Wait for every queued event to be handled (tests, shutdown)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self._tasks:
            left = deadline - loop.time()
            if left <= 0:
                raise TimeoutError(f"{len(self._tasks)} notification(s) still pending")
            await asyncio.wait(set(self._tasks), timeout=left)

    async def close(self, grace: float = 10.0) -> None:
        """Let pending deliveries finish for up to ``grace`` seconds, then stop them."""
        with contextlib.suppress(TimeoutError):
            await self.drain(grace)
        pending = list(self._tasks)
        for task in pending:
            task.cancel()
        if pending:
            log.warning("notifications abandoned at shutdown", count=len(pending))
            await asyncio.gather(*pending, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None

    # ------------------------------------------------------------------ the work
    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
        return self._session

    async def links(self, incident: Incident) -> Links:
        url = f"{self.public_url}/incidents/{incident.id}" if self.public_url else None
        approve: dict[int, str] = {}
        if self.approval_link is not None:
            for i, a in enumerate(incident.actions):
                if a.status is ActionStatus.AWAITING_APPROVAL:
                    link = await self.approval_link(incident, i)
                    if link:
                        approve[i] = link
        return Links(url, approve, await self.oncall(incident))

    async def oncall(self, incident: Incident) -> OnCall:
        """The alerts' own words, links and coverage gaps (from the redacted first alerts); the
        alerts unreadable (store down) leaves the message without them, never unsent."""
        try:
            alerts = await first_alerts(self.journal.store, incident.id, ONCALL_ALERTS)
        except Exception as exc:
            log.warning(
                "notification without the alerts' annotations",
                incident_id=incident.id,
                error=type(exc).__name__,
            )
            alerts = []
        view = await IncidentView(incident, alerts).redacted_async()  # large: off the loop
        return oncall(view, self.link_settings, self.clock())

    async def _run(
        self,
        kind: EventKind,
        doc: dict[str, Any],
        at: datetime,
        action_index: int | None,
        order: asyncio.Lock,
    ) -> None:
        incident_id = str(doc.get("id"))
        event: Event | None = None
        try:
            async with order:
                # the redacted snapshot what leaves Medic is built from (a large one: in a thread)
                event = Event(kind, Incident.model_validate(await redact_async(doc)), at, action_index)
                inc = event.incident
                rule_notify = self.rule_notify.get(inc.rule or "", [])
                names = route(event, rule_notify, {n: c.config for n, c in self.notifiers.items()})
                if not names:
                    return
                links = await self.links(inc)
                results = await asyncio.gather(
                    *(self._deliver(self.notifiers[n], event, links) for n in names)
                )
                entries = [e for e in results if e is not None]
                if entries:
                    await self._record(inc.id, entries)
        except Exception:
            log.exception(
                "notification failed unexpectedly",
                incident_id=incident_id,
                notify_event=event.key if event is not None else kind.value,
            )
        finally:
            lock, pending = self._order.get(incident_id, (order, 1))
            if pending <= 1:
                self._order.pop(incident_id, None)
            else:
                self._order[incident_id] = (lock, pending - 1)

    async def _deliver(self, channel: Notifier, event: Event, links: Links) -> TimelineEntry | None:
        try:
            return await self._deliver_once(channel, event, links)
        except Exception as exc:  # e.g. the state store is down: the miss is recorded all the same
            log.exception("notification failed", incident_id=event.incident.id, notifier=channel.name)
            self.metrics.notifications_failed.labels(notifier=channel.name).inc()
            outcome = Outcome(ok=False, attempts=0, error=f"not attempted: {type(exc).__name__}: {exc}")
            return outcome_entry(channel, event, MessageKind.FIRST, outcome, self.clock())

    async def _deliver_once(self, channel: Notifier, event: Event, links: Links) -> TimelineEntry | None:
        inc = event.incident
        first_key = f"{inc.id}|{channel.name}|first"
        kind = channel.plan(event, await self.marks.get(first_key) is not None)
        if kind is None:
            return None
        # claimed before sending: one message per incident, channel and event, ever
        if await self.marks.claim(f"{inc.id}|{channel.name}|{event.key}", event.id) is not None:
            return None
        outcome = await channel.send(self._client(), event, kind, links, self.clock())
        if outcome is None:  # the channel has nothing to say about this event
            return None
        if outcome.ok:
            self.metrics.notifications_sent.labels(notifier=channel.name).inc()
            if kind is MessageKind.FIRST:
                await self.marks.put(first_key, event.id)
        else:
            self.metrics.notifications_failed.labels(notifier=channel.name).inc()
            log.warning(
                "notification not delivered",
                incident_id=inc.id,
                notifier=channel.name,
                notify_event=event.key,
                error=outcome.error,
                attempts=outcome.attempts,
            )
        return outcome_entry(channel, event, kind, outcome, self.clock())

    async def _record(self, incident_id: str, entries: list[TimelineEntry]) -> None:
        async def add(incident: Incident) -> None:
            incident.timeline.extend(entries)

        try:
            await self.journal.update(incident_id, add)
        except Exception:  # the outcome is still in the log and the metrics
            log.exception("could not record notification outcomes", incident_id=incident_id)
