"""The data of the ``redis.*`` collectors (issue 16.3): what they store and their analyzers read.

Pure pydantic, no I/O: the analyzers validate stored evidence with these models (offline too)
instead of reading untyped dicts.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ReplyError(_Out):
    """Redis answered, with an error reply (``-MISCONF …``, ``-LOADING …``, ``-NOAUTH …``): it is
    reachable but refuses the command."""

    code: str  # the reply's first word: MISCONF, LOADING, BUSY, OOM, NOAUTH, WRONGPASS, READONLY…
    message: str  # the rest of the reply, secrets redacted, at most 300 characters


class Latency(_Out):
    min: float
    median: float
    max: float


class PingOutput(_Out):
    pong: bool  # False when Redis answered with an error (``reply_error``)
    samples: int
    latency_ms: Latency | None
    reply_error: ReplyError | None = None  # absent from bundles stored before it existed


class InfoOutput(_Out):
    """INFO parsed to numbers (see ``medic.collectors.redis.summarize_info``), by section."""

    server: dict[str, Any]
    clients: dict[str, Any]
    memory: dict[str, Any]
    persistence: dict[str, Any]
    stats: dict[str, Any]
    replication: dict[str, Any]
    cpu: dict[str, Any]
    errorstats: dict[str, int]
    keyspace: dict[str, dict[str, Any]]
    info_bytes: int


class DbsizeOutput(_Out):
    db: int
    keys: int


class SlowlogEntry(_Out):
    id: int | None
    started_at: str
    duration_ms: float
    command: str
    key_pattern: str | None
    args: int
    client: str | None
    client_name: str | None


class SlowlogOutput(_Out):
    total: int
    shown: int
    capped: bool
    slowest_ms: float | None
    entries: list[SlowlogEntry]
