"""The data of the ``mongo.*`` collectors (issue 16.3). Pure pydantic: every key is always there
(None when unknown), so a stored bundle reads the same whatever the server answered."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MongoOp(_Out):
    """One ``currentOp`` entry; commands are shapes (values replaced by ``?``), never values."""

    opid: Any
    ns: str
    op: str | None
    secs_running: int | None
    microsecs_running: int | None
    plan_summary: str | None
    collscan: bool
    client: str | None
    app_name: str | None
    desc: str | None
    waiting_for_lock: bool
    num_yields: int | None
    internal: bool  # admin/local/config or no client: the server's own work
    command: dict[str, Any] | None
    originating_command: dict[str, Any] | None


class CurrentOpOutput(_Out):
    min_secs: int
    total: int
    app_ops: int
    shown: int
    capped: bool
    collscans: int
    waiting_for_lock: int
    max_secs_running: int
    by_ns: dict[str, int]
    ops: list[MongoOp]


class RsMember(_Out):
    # Defaults only for bundles written by hand (`medic test` files): the collector sets every field.
    id: int | None = None
    name: str  # host:port, e.g. mongodb-1.mongodb-headless.playcode.svc.cluster.local:27017
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


class RsStatusOutput(_Out):
    replica_set: bool  # False: a standalone mongod (``note`` says so), the rest empty
    note: str | None = None
    set: str | None = None
    my_state: int | None = None
    term: int | None = None
    primary: str | None = None
    has_primary: bool = False
    members_total: int = 0
    unhealthy: list[str] = []
    max_lag_seconds: float | None = None
    lag_reference: str | None = None
    majority: int | None = None
    members: list[RsMember] = []


class ServerStatusOutput(_Out):
    host: Any
    version: Any
    uptime_seconds: float | None
    connections: dict[str, Any]
    opcounters: dict[str, int | None]
    memory: dict[str, int | None]
    wiredtiger_cache: dict[str, Any]
    lock_queue: dict[str, int | None]
    repl: dict[str, Any] | None


class DbStatsOutput(_Out):
    db: Any
    collections: int | None
    objects: int | None
    data_size: int | None
    storage_size: int | None
    index_size: int | None
    total_size: int | None
    fs_used_size: int | None
    fs_total_size: int | None
    fs_used_ratio: float | None


class ProfilerOutput(_Out):
    db: str
    profiling_level: int | None
    slowms: int | None
    enabled: bool | None
    since: str
    min_millis: int
    shown: int
    capped: bool
    collscans: int
    entries: list[dict[str, Any]]
