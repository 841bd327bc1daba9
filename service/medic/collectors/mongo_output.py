"""The data of the ``mongo.*`` collectors (issue 16.3): what they store and their analyzers read.

Pure pydantic. The collectors set every key (None when unknown), so a stored bundle reads the same
whatever the server answered. Every field also has a default and unknown keys are ignored, so a
bundle written by hand (a ``medic test`` file giving only the fields that matter) still reads. A
model dumps the fields it was given and no others, so what a collector stores, and what a
finding's details repeat, keeps its shape. serverStatus is open-ended: its connection and cache
figures type the fields Medic reads and keep the others as they are.
"""

from __future__ import annotations

from pydantic import (
    ConfigDict,
    Field,
    JsonValue,
)

from medic.collectors.output_base import AsGiven


class _Open(AsGiven):
    """Figures of an open-ended reply: the fields Medic reads are declared, the rest pass through."""

    model_config = ConfigDict(extra="allow", frozen=True)


# A command with its values replaced by ``?`` (``medic.collectors.mongo.command_shape``).
CommandShape = dict[str, JsonValue]


class MongoOp(AsGiven):
    """One ``currentOp`` entry; commands are shapes (values replaced by ``?``), never values."""

    opid: int | str | None = None  # an int; "shard:opid" through mongos
    ns: str | None = None
    op: str | None = None
    secs_running: int | None = None
    microsecs_running: int | None = None
    plan_summary: str | None = None
    collscan: bool = False
    client: str | None = None
    app_name: str | None = None
    desc: str | None = None
    waiting_for_lock: bool = False
    num_yields: int | None = None
    internal: bool = False  # admin/local/config or no client: the server's own work
    command: CommandShape | None = None
    originating_command: CommandShape | None = None


class CurrentOpOutput(AsGiven):
    min_secs: int = 3
    total: int = 0
    app_ops: int = 0
    shown: int = 0
    capped: bool = False
    collscans: int = 0
    waiting_for_lock: int = 0
    max_secs_running: int = 0
    by_ns: dict[str, int] = Field(default_factory=dict)
    ops: list[MongoOp] = Field(default_factory=list)


class RsMember(AsGiven):
    id: int | None = None
    name: str = ""  # host:port, e.g. mongodb-1.mongodb-headless.playcode.svc.cluster.local:27017
    state: str = ""
    state_code: int | None = None
    health: float | None = None
    healthy: bool = True
    self: bool = False  # the member Medic is connected to
    uptime_seconds: int | None = None
    optime_date: str | None = None
    sync_source: str | None = None
    ping_ms: int | None = None
    last_heartbeat_message: str | None = None
    lag_seconds: float | None = None


class RsStatusOutput(AsGiven):
    replica_set: bool = True  # False: a standalone mongod (``note`` says so), the rest empty
    note: str | None = None
    set: str | None = None
    my_state: int | None = None
    term: int | None = None
    primary: str | None = None
    has_primary: bool | None = None  # None: not said (a bundle written by hand)
    members_total: int = 0
    unhealthy: list[str] = Field(default_factory=list)
    max_lag_seconds: float | None = None
    lag_reference: str | None = None
    majority: int | None = None
    members: list[RsMember] = Field(default_factory=list)


class Connections(_Open):
    current: int | None = None
    available: int | None = None
    used_ratio: float | None = None  # current / (current + available)


class WiredTigerCache(_Open):
    used_ratio: float | None = None  # bytes in the cache / maximum configured
    dirty_ratio: float | None = None  # tracked dirty bytes / maximum configured


class Repl(AsGiven):
    set: str | None = None
    is_writable_primary: bool | None = None
    primary: str | None = None
    me: str | None = None


class ServerStatusOutput(AsGiven):
    host: str | None = None
    version: str | None = None
    uptime_seconds: float | None = None
    connections: Connections = Connections()
    opcounters: dict[str, int | None] = Field(default_factory=dict)
    memory: dict[str, int | None] = Field(default_factory=dict)
    wiredtiger_cache: WiredTigerCache = WiredTigerCache()
    lock_queue: dict[str, int | None] = Field(default_factory=dict)
    repl: Repl | None = None


class DbStatsOutput(AsGiven):
    db: str | None = None
    collections: int | None = None
    objects: int | None = None
    data_size: int | None = None
    storage_size: int | None = None
    index_size: int | None = None
    total_size: int | None = None
    fs_used_size: int | None = None
    fs_total_size: int | None = None
    fs_used_ratio: float | None = None


class ProfileEntry(AsGiven):
    """One ``system.profile`` document, its command a shape."""

    ts: str | None = None
    ns: str | None = None
    op: str | None = None
    millis: int | None = None
    plan_summary: str | None = None
    collscan: bool = False
    keys_examined: int | None = None
    docs_examined: int | None = None
    nreturned: int | None = None
    app_name: str | None = None
    client: str | None = None
    command: CommandShape | None = None


class ProfilerOutput(AsGiven):
    db: str = ""
    profiling_level: int | None = None
    slowms: int | None = None
    enabled: bool | None = None
    since: str = ""
    min_millis: int = 0
    shown: int = 0
    capped: bool = False
    collscans: int = 0
    entries: list[ProfileEntry] = Field(default_factory=list)
