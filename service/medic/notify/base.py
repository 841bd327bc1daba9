"""The one notifier interface: build a request from an event (pure), then deliver it."""

from __future__ import annotations

from abc import ABC, abstractmethod
from datetime import datetime

import aiohttp

from medic.notify.config import ChannelBase, ChannelSecrets
from medic.notify.delivery import Outcome, Outgoing, deliver
from medic.notify.events import Event, Links, MessageKind, plan_message


class Notifier(ABC):
    """A named channel. ``build`` is pure and returns None when the channel has nothing to say
    about an event (e.g. Grafana about a diagnosis without action); ``send`` never raises.
    ``secrets``: the channel's secret settings as text (``Settings.tokens.notifiers``)."""

    type: str = ""

    def __init__(self, name: str, config: ChannelBase, secrets: ChannelSecrets) -> None:
        self.name = name
        self.config = config
        self.secrets = secrets

    def plan(self, event: Event, first_sent: bool) -> MessageKind | None:
        """What this channel sends for the event (a first message, an update, or nothing)."""
        return plan_message(event, first_sent, list(self.config.events))

    @abstractmethod
    def build(self, event: Event, kind: MessageKind, links: Links, now: datetime) -> Outgoing | None: ...

    async def send(
        self,
        session: aiohttp.ClientSession,
        event: Event,
        kind: MessageKind,
        links: Links,
        now: datetime,
    ) -> Outcome | None:
        try:
            out = self.build(event, kind, links, now)
        except Exception as exc:  # a rendering bug is a failed delivery, not a crash
            return Outcome(ok=False, attempts=0, error=f"could not build the message: {type(exc).__name__}")
        if out is None:
            return None
        return await deliver(session, out, self.config)
