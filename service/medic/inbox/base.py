"""The state interfaces every backend implements."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from medic.domain.alert import Alert
from medic.domain.redact import redact, redact_text


@dataclass(frozen=True)
class InboxItem:
    """One accepted webhook delivery: the payload and which of its alert episodes are new."""

    id: str
    payload: dict[str, Any]
    new_episodes: list[str]
    received_at: datetime
    attempts: int = 0


@dataclass(frozen=True)
class AcceptResult:
    item_id: str | None  # None when every episode was a duplicate (nothing to process)
    new_episodes: list[str] = field(default_factory=list)
    duplicates: int = 0


@dataclass(frozen=True)
class DeadLetter:
    """A delivery that could not be processed: kept, visible, and retried or dropped by a human.

    ``episodes`` are the alert episodes that failed (its other alerts were processed); they were
    released from deduplication when it was dead-lettered, so a re-send is processed again."""

    id: str
    payload: dict[str, Any]
    episodes: list[str]
    received_at: datetime
    dead_at: datetime | None
    attempts: int
    error: str


Payload = Mapping[str, Any] | str  # a delivery, or its JSON text as received (stored as is)


def kept_delivery(body: str) -> str:
    """A delivery's JSON text as a dead letter keeps it: redacted (a backup of Medic's data is no
    secret dump, docs/security.md), each alert's identity pinned as its fingerprint first, so that
    a retry still finds the episodes that failed (a fingerprint-less alert's identity hashes its
    raw labels). Text that is not a JSON object is scrubbed as text."""
    try:
        payload = json.loads(body)
    except ValueError:
        return redact_text(body)
    if not isinstance(payload, dict):
        return redact_text(body)
    alerts = payload.get("alerts")
    for raw in alerts if isinstance(alerts, list) else []:
        if isinstance(raw, dict) and not raw.get("fingerprint"):
            with contextlib.suppress(ValueError):  # not an alert Medic can process: nothing to pin
                raw["fingerprint"] = Alert.model_validate(raw).identity
    return payload_json(redact(payload))


def payload_json(payload: Payload) -> str:
    """The delivery as the JSON text an inbox stores: the intake hands over the body it
    received and validated, so an accepted delivery is not serialized a second time."""
    return payload if isinstance(payload, str) else json.dumps(payload, separators=(",", ":"))


class Inbox(Protocol):
    """Durable hand-off between intake and workers: at-least-once, deduplicated by episode."""

    async def accept(self, payload: Payload, episodes: list[str], received_at: datetime) -> AcceptResult:
        """Durably store the delivery (or recognise it as a duplicate). Raises StoreError."""
        ...

    async def claim(self, consumer: str, limit: int) -> list[InboxItem]:
        """Lease up to ``limit`` items; an item whose lease ran out is handed out again."""
        ...

    async def ack_many(self, item_ids: list[str]) -> None:
        """The items are fully processed: drop them."""
        ...

    async def release(
        self, item_id: str, error: str, *, episodes: list[str] | None = None, dead: bool = False
    ) -> None:
        """Processing failed: hand it out again later, or dead-letter it (``dead``, or after
        many tries). ``episodes`` narrows the item to the alert episodes that failed (the others
        are done). A dead-lettered item's episodes are released from deduplication."""
        ...

    async def depth(self) -> int: ...

    async def dead_letters(self) -> int: ...

    async def list_dead_letters(self, limit: int = 100, offset: int = 0) -> tuple[list[DeadLetter], int]:
        """A page of dead letters, newest first, and how many there are."""
        ...

    async def retry_dead_letter(self, item_id: str) -> bool:
        """Put a dead letter back in the queue (attempts reset); False if there is no such one."""
        ...

    async def drop_dead_letter(self, item_id: str) -> bool:
        """Delete a dead letter for good; False if there is no such one."""
        ...

    async def ping(self) -> None: ...
