"""MongoDB collectors (runbook 3.2 and 3.3): what ``mongosh`` shows a human, as capped data.

``mongo.current_op``    operations running for >= N seconds (``db.currentOp({secs_running: {$gte: 3}})``)
``mongo.rs_status``     replica set members, states, health, optime lag, whether a primary exists
``mongo.server_status`` connections, opcounters, memory, WiredTiger cache pressure
``mongo.db_stats``      data/storage/index size and the filesystem of /data/db (fsUsedSize/fsTotalSize)
``mongo.profiler``      recent slow queries from ``system.profile`` when profiling is on

The connection string comes from ``MEDIC_TARGET_MONGO_URL`` and never appears in evidence or logs.
Query and filter *values* are replaced by ``?`` (field names and operators are kept): an op's filter
is what a user typed or what the app sent about a user, not something on-call needs verbatim.
Diagnostic commands read with ``primaryPreferred``, so a replica set that lost its primary can still
be examined through a secondary.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any, TypeVar

from bson import Decimal128, Int64, ObjectId, Timestamp
from pydantic import BaseModel, ConfigDict, Field, field_validator
from pymongo.errors import OperationFailure, PyMongoError

from medic.collectors.mongo_output import (
    CurrentOpOutput,
    DbStatsOutput,
    ProfilerOutput,
    RsStatusOutput,
    ServerStatusOutput,
)
from medic.domain.durations import Duration
from medic.domain.errors import NotConfigured, StepError
from medic.domain.redact import redact_text
from medic.playbooks.contract import CollectorDef, NoParams, StepContext
from medic.playbooks.ports import MongoApi

M = TypeVar("M", bound=BaseModel)

# Database names: letters, digits, '_' and '-' (what mongod accepts minus the exotic characters).
_DB_NAME = re.compile(r"^[A-Za-z0-9_\-]{1,63}$")
_HEALTHY_STATES = frozenset({"PRIMARY", "SECONDARY", "ARBITER"})
_INTERNAL_DBS = ("admin.", "local.", "config.")
_MAX_SHAPE_KEYS = 30
_MAX_SHAPE_DEPTH = 6
_MAX_MEMBERS = 50
# Options and specs whose numbers are not data about anyone (``limit: 1``, ``sort: {ts: -1}``).
_KEEP_NUMBERS = frozenset(
    {"limit", "skip", "batchSize", "ntoreturn", "maxTimeMS", "sort", "hint", "projection", "key"}
)


def jsonable(value: Any, depth: int = 0) -> Any:
    """BSON values as JSON-able data: numbers, strings, ISO dates, lists and dicts."""
    if depth > 12:
        return "…"
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, Int64 | int):
        return int(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Decimal128):
        return float(value.to_decimal())
    if isinstance(value, dt.datetime):
        return (value if value.tzinfo else value.replace(tzinfo=dt.UTC)).isoformat()
    if isinstance(value, Timestamp):
        return {"t": value.time, "i": value.inc}
    if isinstance(value, ObjectId):
        return str(value)
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    if isinstance(value, Mapping):
        return {str(k): jsonable(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v, depth + 1) for v in value]
    return str(value)


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, Decimal128):
        value = value.to_decimal()
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _int(value: Any) -> int | None:
    number = _num(value)
    return int(number) if number is not None else None


def _ratio(part: float | None, whole: float | None) -> float | None:
    if part is None or not whole:
        return None
    return round(part / whole, 4)


def shape(value: Any, *, keep_numbers: bool = False, depth: int = 0) -> Any:
    """The structure of a query with its values replaced by ``?``: field names and operators stay."""
    if depth >= _MAX_SHAPE_DEPTH:
        return "…"
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for i, (key, item) in enumerate(value.items()):
            if i >= _MAX_SHAPE_KEYS:
                out["…"] = f"{len(value) - _MAX_SHAPE_KEYS} more"
                break
            out[str(key)] = shape(item, keep_numbers=keep_numbers, depth=depth + 1)
        return out
    if isinstance(value, list | tuple):
        items = [shape(v, keep_numbers=keep_numbers, depth=depth + 1) for v in value[:3]]
        return [*items, "…"] if len(value) > 3 else items
    if keep_numbers and isinstance(value, int | float | Int64) and not isinstance(value, bool):
        return jsonable(value)
    return "?"


def command_shape(command: Any) -> dict[str, Any] | None:
    """A command with its values redacted: ``{find: "users", filter: {email: "?"}, limit: 1}``.

    The command name's argument (the collection) and ``$db`` are kept, numbers of paging options
    and index/sort specs are kept, every other value becomes ``?``.
    """
    if not isinstance(command, Mapping) or not command:
        return None
    out: dict[str, Any] = {}
    for i, (key, value) in enumerate(command.items()):
        if i >= _MAX_SHAPE_KEYS:
            out["…"] = f"{len(command) - _MAX_SHAPE_KEYS} more"
            break
        if (i == 0 or key == "$db") and isinstance(value, str):
            out[key] = value
        elif key in _KEEP_NUMBERS:
            out[key] = shape(value, keep_numbers=True)
        else:
            out[key] = shape(value)
    return out


def _db_name(value: str) -> str:
    if not _DB_NAME.match(value):
        raise ValueError(f"{value!r} is not a database name (letters, digits, '_' and '-')")
    return value


def _backend(ctx: StepContext) -> MongoApi:
    backend = ctx.backends.mongo
    if backend is None:
        raise NotConfigured("the MongoDB to diagnose is not configured (set MEDIC_TARGET_MONGO_URL)")
    return backend


def step_error(what: str, exc: PyMongoError) -> StepError:
    """A pymongo error as a StepError whose message holds no connection string."""
    if isinstance(exc, OperationFailure):
        details = exc.details or {}
        name = details.get("codeName") or f"code {exc.code}"
        message = redact_text(str(details.get("errmsg") or exc))[:300]
        return StepError(f"{what} failed: {name}: {message}")
    # ServerSelectionTimeoutError ends with the whole topology description: keep the reason.
    reason = redact_text(str(exc)).split(", Timeout:")[0][:300]
    return StepError(f"MongoDB unreachable ({what}): {type(exc).__name__}: {reason}")


async def _command(ctx: StepContext, db: str, command: dict[str, Any]) -> dict[str, Any]:
    try:
        return await _backend(ctx).command(db, command)
    except PyMongoError as exc:
        raise step_error(next(iter(command)), exc) from None


class CurrentOpParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    min_secs: int = Field(3, ge=0, le=86_400, description="only ops running at least this long")
    max_ops: int = Field(50, ge=1, le=1000, description="cap on the ops reported (longest first)")


def summarize_op(op: Mapping[str, Any]) -> dict[str, Any]:
    plan = op.get("planSummary")
    ns = str(op.get("ns") or "")
    originating = op.get("originatingCommand") or (op.get("cursor") or {}).get("originatingCommand")
    out: dict[str, Any] = {
        "opid": jsonable(op.get("opid")),
        "ns": ns,
        "op": op.get("op"),
        "secs_running": _int(op.get("secs_running")),
        "microsecs_running": _int(op.get("microsecs_running")),
        "plan_summary": str(plan)[:200] if plan is not None else None,
        "collscan": isinstance(plan, str) and "COLLSCAN" in plan,
        "client": op.get("client") or op.get("client_s"),
        "app_name": op.get("appName"),
        "desc": op.get("desc"),
        "waiting_for_lock": bool(op.get("waitingForLock")),
        "num_yields": _int(op.get("numYields")),
        "internal": ns.startswith(_INTERNAL_DBS) or not (op.get("client") or op.get("client_s")),
        "command": command_shape(op.get("command")),
        "originating_command": command_shape(originating) if originating is not None else None,
    }
    return out


def summarize_current_op(reply: Mapping[str, Any], params: CurrentOpParams) -> dict[str, Any]:
    """Pure: a ``currentOp`` reply -> the longest ops (capped) and counts over all of them."""
    # The server applies the filter; applying it again keeps the summary right when it did not.
    inprog = [
        op
        for op in reply.get("inprog", [])
        if isinstance(op, Mapping) and (_num(op.get("secs_running")) or 0) >= params.min_secs
    ]
    inprog.sort(
        key=lambda op: _num(op.get("microsecs_running")) or (_num(op.get("secs_running")) or 0) * 1e6,
        reverse=True,
    )
    ops = [summarize_op(op) for op in inprog]
    app_ops = [o for o in ops if not o["internal"]]
    by_ns = Counter(o["ns"] for o in app_ops)
    return {
        "min_secs": params.min_secs,
        "total": len(ops),
        "app_ops": len(app_ops),
        "shown": min(len(ops), params.max_ops),
        "capped": len(ops) > params.max_ops,
        "collscans": sum(1 for o in app_ops if o["collscan"]),
        "waiting_for_lock": sum(1 for o in app_ops if o["waiting_for_lock"]),
        "max_secs_running": max((o["secs_running"] or 0 for o in app_ops), default=0),
        "by_ns": dict(by_ns.most_common(20)),
        "ops": ops[: params.max_ops],
    }


async def current_op(ctx: StepContext, params: CurrentOpParams) -> CurrentOpOutput:
    reply = await _command(
        ctx, "admin", {"currentOp": 1, "active": True, "secs_running": {"$gte": params.min_secs}}
    )
    return _as(CurrentOpOutput, summarize_current_op(reply, params))


def _aware(value: object) -> dt.datetime | None:
    if not isinstance(value, dt.datetime):
        return None
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def summarize_rs_status(reply: Mapping[str, Any]) -> dict[str, Any]:
    """Pure: a ``replSetGetStatus`` reply -> members, health, primary, optime lag."""
    raw = [m for m in reply.get("members", []) if isinstance(m, Mapping)]
    members: list[dict[str, Any]] = []
    for m in raw[:_MAX_MEMBERS]:
        state = str(m.get("stateStr", ""))
        health = _num(m.get("health"))
        members.append(
            {
                "id": _int(m.get("_id")),
                "name": str(m.get("name", "")),
                "state": state,
                "state_code": _int(m.get("state")),
                "health": health,
                "healthy": health == 1 and state in _HEALTHY_STATES,
                "self": bool(m.get("self")),
                "uptime_seconds": _int(m.get("uptime")),
                "optime_date": jsonable(_aware(m.get("optimeDate"))),
                "sync_source": m.get("syncSourceHost") or None,
                "ping_ms": _int(m.get("pingMs")),
                "last_heartbeat_message": str(m.get("lastHeartbeatMessage") or "")[:300] or None,
                "_optime": _aware(m.get("optimeDate")),
            }
        )
    primary = next((m for m in members if m["state"] == "PRIMARY" and m["health"] == 1), None)
    reference = (
        primary["_optime"]
        if primary
        else max(
            (m["_optime"] for m in members if m["healthy"] and m["_optime"] and m["_optime"].year > 1970),
            default=None,
        )
    )
    for m in members:
        optime = m.pop("_optime")
        lag = None
        if reference and optime and m["healthy"] and m["state"] != "ARBITER":
            lag = max((reference - optime).total_seconds(), 0.0)
        m["lag_seconds"] = lag
    lags = [m["lag_seconds"] for m in members if m["lag_seconds"] is not None]
    return {
        "replica_set": True,
        "note": None,
        "set": reply.get("set"),
        "my_state": _int(reply.get("myState")),
        "term": _int(reply.get("term")),
        "primary": primary["name"] if primary else None,
        "has_primary": primary is not None,
        "members_total": len(raw),
        "unhealthy": [m["name"] for m in members if not m["healthy"]],
        "max_lag_seconds": max(lags) if lags else None,
        "lag_reference": "primary" if primary else "most recent healthy member",
        "majority": _int(reply.get("majorityVoteCount")),
        "members": members,
    }


async def rs_status(ctx: StepContext, params: NoParams) -> RsStatusOutput:
    try:
        reply = await _backend(ctx).command("admin", {"replSetGetStatus": 1})
    except OperationFailure as exc:
        if exc.code == 76:  # NoReplicationEnabled: a standalone server is a state, not an error
            return _as(RsStatusOutput, STANDALONE)
        raise step_error("replSetGetStatus", exc) from None
    except PyMongoError as exc:
        raise step_error("replSetGetStatus", exc) from None
    return _as(RsStatusOutput, summarize_rs_status(reply))


STANDALONE: dict[str, Any] = {
    "replica_set": False,
    "note": "mongod is not running with --replSet",
    "set": None,
    "my_state": None,
    "term": None,
    "primary": None,
    "has_primary": False,
    "members_total": 0,
    "unhealthy": [],
    "max_lag_seconds": None,
    "lag_reference": None,
    "majority": None,
    "members": [],
}


def _as(model: type[M], data: dict[str, Any]) -> M:
    """``data`` checked against the collector's output model (the runner stores its JSON)."""
    return model.model_validate(data)


def summarize_server_status(reply: Mapping[str, Any]) -> dict[str, Any]:
    """Pure: a ``serverStatus`` reply -> connections, opcounters, memory, WiredTiger cache."""
    conns = reply.get("connections") or {}
    current, available = _num(conns.get("current")), _num(conns.get("available"))
    cache = (reply.get("wiredTiger") or {}).get("cache") or {}
    used = _num(cache.get("bytes currently in the cache"))
    limit = _num(cache.get("maximum bytes configured"))
    dirty = _num(cache.get("tracked dirty bytes in the cache"))
    mem = reply.get("mem") or {}
    queue = (reply.get("globalLock") or {}).get("currentQueue") or {}
    repl = reply.get("repl") or {}
    return {
        "host": reply.get("host"),
        "version": reply.get("version"),
        "uptime_seconds": _num(reply.get("uptime")),
        "connections": {
            "current": _int(current),
            "available": _int(available),
            "total_created": _int(conns.get("totalCreated")),
            "active": _int(conns.get("active")),
            "used_ratio": _ratio(current, (current or 0) + (available or 0)),
        },
        "opcounters": {k: _int(v) for k, v in (reply.get("opcounters") or {}).items()},
        "memory": {"resident_mb": _int(mem.get("resident")), "virtual_mb": _int(mem.get("virtual"))},
        "wiredtiger_cache": {
            "used_bytes": _int(used),
            "max_bytes": _int(limit),
            "dirty_bytes": _int(dirty),
            "used_ratio": _ratio(used, limit),
            "dirty_ratio": _ratio(dirty, limit),
        },
        "lock_queue": {k: _int(queue.get(k)) for k in ("total", "readers", "writers")},
        "repl": {
            "set": repl.get("setName"),
            "is_writable_primary": repl.get("isWritablePrimary", repl.get("ismaster")),
            "primary": repl.get("primary"),
            "me": repl.get("me"),
        }
        if repl
        else None,
    }


async def server_status(ctx: StepContext, params: NoParams) -> ServerStatusOutput:
    reply = await _command(ctx, "admin", {"serverStatus": 1, "metrics": 0, "locks": 0})
    return _as(ServerStatusOutput, summarize_server_status(reply))


class DbParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    db: str = "userdb"

    @field_validator("db")
    @classmethod
    def _check_db(cls, value: str) -> str:
        return _db_name(value)


def summarize_db_stats(reply: Mapping[str, Any]) -> dict[str, Any]:
    fs_used, fs_total = _num(reply.get("fsUsedSize")), _num(reply.get("fsTotalSize"))
    return {
        "db": reply.get("db"),
        "collections": _int(reply.get("collections")),
        "objects": _int(reply.get("objects")),
        "data_size": _int(reply.get("dataSize")),
        "storage_size": _int(reply.get("storageSize")),
        "index_size": _int(reply.get("indexSize")),
        "total_size": _int(reply.get("totalSize")),
        "fs_used_size": _int(fs_used),
        "fs_total_size": _int(fs_total),
        "fs_used_ratio": _ratio(fs_used, fs_total),
    }


async def db_stats(ctx: StepContext, params: DbParams) -> DbStatsOutput:
    reply = await _command(ctx, params.db, {"dbStats": 1, "scale": 1})
    reply.setdefault("db", params.db)
    return _as(DbStatsOutput, summarize_db_stats(reply))


class ProfilerParams(DbParams):
    since: Duration = timedelta(hours=1)
    min_millis: int = Field(100, ge=0)
    limit: int = Field(20, ge=1, le=200)


_PROFILE_FIELDS = {
    k: 1
    for k in (
        "op", "ns", "millis", "ts", "planSummary", "keysExamined", "docsExamined", "nreturned",
        "command", "originatingCommand", "appName", "client", "numYield", "responseLength",
    )
}  # fmt: skip


def summarize_profile(entries: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for e in entries:
        plan = e.get("planSummary")
        out.append(
            {
                "ts": jsonable(_aware(e.get("ts"))),
                "ns": e.get("ns"),
                "op": e.get("op"),
                "millis": _int(e.get("millis")),
                "plan_summary": str(plan)[:200] if plan is not None else None,
                "collscan": isinstance(plan, str) and "COLLSCAN" in plan,
                "keys_examined": _int(e.get("keysExamined")),
                "docs_examined": _int(e.get("docsExamined")),
                "nreturned": _int(e.get("nreturned")),
                "app_name": e.get("appName"),
                "client": e.get("client"),
                "command": command_shape(e.get("command")),
            }
        )
    return out


async def profiler(ctx: StepContext, params: ProfilerParams) -> ProfilerOutput:
    backend = _backend(ctx)
    level: int | None = None
    slowms: int | None = None
    try:
        reply = await backend.command(params.db, {"profile": -1})
        level, slowms = _int(reply.get("was")), _int(reply.get("slowms"))
    except OperationFailure:
        pass  # not allowed or not supported: read system.profile anyway
    except PyMongoError as exc:
        raise step_error("profile", exc) from None
    since = ctx.now - params.since
    try:
        docs = await backend.find(
            params.db,
            "system.profile",
            {"millis": {"$gte": params.min_millis}, "ts": {"$gte": since}},
            projection=_PROFILE_FIELDS,
            sort=[("ts", -1)],
            limit=params.limit,
        )
    except PyMongoError as exc:
        raise step_error(f"reading {params.db}.system.profile", exc) from None
    entries = summarize_profile(docs)
    return _as(
        ProfilerOutput,
        {
            "db": params.db,
            "profiling_level": level,
            "slowms": slowms,
            "enabled": None if level is None else level > 0,
            "since": since.isoformat(),
            "min_millis": params.min_millis,
            "shown": len(entries),
            "capped": len(entries) >= params.limit,
            "collscans": sum(1 for e in entries if e["collscan"]),
            "entries": entries,
        },
    )


COLLECTORS = (
    CollectorDef(
        "mongo.current_op",
        current_op,
        CurrentOpParams,
        "MongoDB operations running >= N seconds",
        CurrentOpOutput,
    ),
    CollectorDef(
        "mongo.rs_status",
        rs_status,
        NoParams,
        "replica set members, health, primary, lag",
        RsStatusOutput,
    ),
    CollectorDef(
        "mongo.server_status",
        server_status,
        NoParams,
        "connections, opcounters, memory, WT cache",
        ServerStatusOutput,
    ),
    CollectorDef(
        "mongo.db_stats", db_stats, DbParams, "database sizes and /data/db disk usage", DbStatsOutput
    ),
    CollectorDef(
        "mongo.profiler", profiler, ProfilerParams, "recent slow queries (system.profile)", ProfilerOutput
    ),
)
