"""The data of the ``redis.*`` collectors (issue 16.3): what they store and their analyzers read.

Pure pydantic, no I/O: the analyzers validate stored evidence with these models (offline too)
instead of reading untyped dicts. Every field has a default and unknown keys are ignored, so a
bundle written by hand (a ``medic test`` file giving only the fields that matter) or stored before
a field existed still reads; the collectors set every field. A model dumps the fields it was given
and no others, so what a collector stores, and what a finding's details repeat, keeps its shape.
INFO is open-ended: a section types the fields Medic reads and keeps the others it stores as they
are.
"""

from __future__ import annotations

from pydantic import ConfigDict, Field

from medic.collectors.output_base import AsGiven


class _Section(AsGiven):
    """An INFO section: the fields Medic reads are declared, the rest pass through as stored."""

    model_config = ConfigDict(extra="allow", frozen=True)


class ReplyError(AsGiven):
    """Redis answered, with an error reply (``-MISCONF …``, ``-LOADING …``, ``-NOAUTH …``): it is
    reachable but refuses the command."""

    # The reply's first word: MISCONF, LOADING, BUSY, OOM, NOAUTH, WRONGPASS, READONLY… (ERR: generic)
    code: str = "ERR"
    message: str = ""  # the rest of the reply, secrets redacted, at most 300 characters


class Latency(AsGiven):
    min: float | None = None
    median: float | None = None
    max: float | None = None


class PingOutput(AsGiven):
    pong: bool = True  # False when Redis answered with an error (``reply_error``)
    samples: int = 0
    latency_ms: Latency | None = None
    reply_error: ReplyError | None = None  # absent from bundles stored before it existed


class Clients(_Section):
    connected_clients: int | None = None
    maxclients: int | None = None
    used_ratio: float | None = None  # connected / maxclients


class Memory(_Section):
    used_memory: int | None = None
    maxmemory: int | None = None  # 0: no limit
    maxmemory_policy: str | None = None
    used_ratio: float | None = None  # used / maxmemory, None without a limit


class Persistence(_Section):
    loading: int | None = None
    aof_enabled: int | None = None
    aof_last_write_status: str | None = None  # ok / err
    aof_last_bgrewrite_status: str | None = None
    aof_rewrites_consecutive_failures: int | None = None
    rdb_last_bgsave_status: str | None = None
    aof_delayed_fsync: int | None = None


class Stats(_Section):
    evicted_keys: int | None = None
    rejected_connections: int | None = None


class Replication(_Section):
    role: str | None = None  # master / slave
    master_link_status: str | None = None  # up / down, on a replica


class InfoOutput(AsGiven):
    """INFO parsed to numbers (see ``medic.collectors.redis.summarize_info``), by section."""

    server: _Section = _Section()
    clients: Clients = Clients()
    memory: Memory = Memory()
    persistence: Persistence = Persistence()
    stats: Stats = Stats()
    replication: Replication = Replication()
    cpu: _Section = _Section()
    errorstats: dict[str, int] = Field(default_factory=dict)  # error code -> replies, most first
    keyspace: dict[str, dict[str, int | float | str]] = Field(default_factory=dict)  # db0 -> keys=…
    info_bytes: int = 0


class DbsizeOutput(AsGiven):
    db: int = 0
    keys: int = 0


class SlowlogEntry(AsGiven):
    id: int | None = None
    started_at: str = ""
    duration_ms: float = 0.0
    command: str = ""
    key_pattern: str | None = None
    args: int = 0
    client: str | None = None
    client_name: str | None = None


class SlowlogOutput(AsGiven):
    total: int = 0
    shown: int = 0
    capped: bool = False
    slowest_ms: float | None = None
    entries: list[SlowlogEntry] = Field(default_factory=list)
