"""The state interfaces every backend implements."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol


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


class Inbox(Protocol):
    """Durable hand-off between intake and workers: at-least-once, deduplicated by episode."""

    async def accept(
        self, payload: dict[str, Any], episodes: list[str], received_at: datetime
    ) -> AcceptResult:
        """Durably store the delivery (or recognise it as a duplicate). Raises StoreError."""
        ...

    async def claim(self, consumer: str, limit: int) -> list[InboxItem]:
        """Lease up to ``limit`` items; an item whose lease ran out is handed out again."""
        ...

    async def ack_many(self, item_ids: list[str]) -> None:
        """The items are fully processed: drop them."""
        ...

    async def release(self, item_id: str, error: str) -> None:
        """Processing failed: hand it out again later (or dead-letter it after many tries)."""
        ...

    async def depth(self) -> int: ...

    async def dead_letters(self) -> int: ...

    async def ping(self) -> None: ...
