"""Redis collectors (runbook 3.2 step 4 and 3.4): what ``redis-cli`` shows a human.

``redis.ping``     PING with its round-trip latency; an error reply (``-MISCONF``, ``-LOADING``,
                   ``-BUSY``, ``-NOAUTH``…) is data (``reply_error``): Redis is reachable but unhealthy
``redis.info``     INFO parsed to numbers: server, clients, memory (used vs maxmemory, evictions),
                   persistence (AOF on/off, last write/rewrite status, delayed fsyncs), stats,
                   replication, error stats, keyspace
``redis.dbsize``   DBSIZE of the configured database
``redis.slowlog``  SLOWLOG GET: command names, durations, key *patterns* (never argument values)

The Redis diagnosed here is ``MEDIC_TARGET_REDIS_URL``, never the Redis Medic keeps state in.
Short socket timeouts and no retries: a dead Redis is an ``error`` at once, a hung one a
``timeout`` within seconds. The other steps fail on an error reply with a message naming its code
(``Redis answered INFO with -NOAUTH …``). Each step's data follows its model in
:mod:`medic.collectors.redis_output`.
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import redis.exceptions as rex
from pydantic import BaseModel, ConfigDict, Field
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from medic.collectors.loki import mask_variables
from medic.collectors.redis_output import (
    DbsizeOutput,
    InfoOutput,
    Latency,
    PingOutput,
    ReplyError,
    SlowlogEntry,
    SlowlogOutput,
)
from medic.domain.errors import NotConfigured, StepError, StepTimeout
from medic.domain.redact import redact_text
from medic.playbooks.contract import CollectorDef, NoParams, StepContext
from medic.playbooks.ports import RedisApi

MAX_INFO_LINE = 4096
MAX_KEYSPACES = 16
MAX_ERRORSTATS = 10
# Commands whose first argument is not a key but a password, a script or a setting.
_NO_KEY_COMMANDS = frozenset(
    {"AUTH", "HELLO", "MIGRATE", "CONFIG", "ACL", "EVAL", "EVAL_RO", "SCRIPT", "FUNCTION", "CLIENT"}
)


def _backend(ctx: StepContext) -> RedisApi:
    backend = ctx.backends.redis
    if backend is None:
        raise NotConfigured("the Redis to diagnose is not configured (set MEDIC_TARGET_REDIS_URL)")
    return backend


_REPLY_CODE = re.compile(r"^([A-Z][A-Z_]{1,23})\b ?")


def reply_error(exc: RedisError) -> ReplyError | None:
    """The error reply Redis answered with, or None when it did not answer (refused, reset, timeout).

    redis-py strips the code of the replies it maps to exception classes (``LOADING`` ->
    BusyLoadingError, ``NOAUTH`` -> AuthenticationError, both ConnectionErrors) and keeps it in
    ``status_code``; other replies (``MISCONF``, ``BUSY``) are ResponseErrors starting with it."""
    if isinstance(exc, RedisTimeoutError):
        return None
    message = str(exc)
    code = getattr(exc, "status_code", None) or _code_of_class(exc)  # status_code: redis-py >= 7
    if code is None and isinstance(exc, ResponseError):
        m = _REPLY_CODE.match(message)
        code, message = (m.group(1), message[m.end() :]) if m else ("ERR", message)
    if code is None:
        return None
    return ReplyError(code=code, message=redact_text(message)[:300])


# Reply codes redis-py turns into exception classes (the code itself is kept as ``status_code``
# only since redis-py 7): the most specific class first.
_REPLY_CLASSES: tuple[tuple[type[RedisError], str], ...] = (
    (rex.AuthenticationError, "NOAUTH"),
    (rex.BusyLoadingError, "LOADING"),
    (rex.ReadOnlyError, "READONLY"),
    (rex.MasterDownError, "MASTERDOWN"),
    (rex.OutOfMemoryError, "OOM"),
    (rex.NoPermissionError, "NOPERM"),
    (rex.ExecAbortError, "EXECABORT"),
    (rex.NoScriptError, "NOSCRIPT"),
)


def _code_of_class(exc: RedisError) -> str | None:
    for cls, code in _REPLY_CLASSES:
        if isinstance(exc, cls):
            if code == "NOAUTH" and "username-password" in str(exc):
                return "WRONGPASS"
            return code
    return None


@contextmanager
def _errors(what: str) -> Iterator[None]:
    """redis-py errors as step outcomes, with messages free of connection secrets."""
    try:
        yield
    except RedisTimeoutError as exc:
        raise StepTimeout(f"Redis did not answer {what}: {redact_text(str(exc))[:300]}") from None
    except RedisError as exc:
        if (reply := reply_error(exc)) is not None:
            raise StepError(f"Redis answered {what} with -{reply.code} {reply.message}") from None
        if isinstance(exc, RedisConnectionError):
            raise StepError(f"Redis unreachable: {redact_text(str(exc))[:300]}") from None
        raise StepError(f"{what} failed: {type(exc).__name__}: {redact_text(str(exc))[:300]}") from None


class PingParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    count: int = Field(3, ge=1, le=20)


async def ping(ctx: StepContext, params: PingParams) -> PingOutput:
    backend = _backend(ctx)
    samples: list[float] = []
    reply: ReplyError | None = None
    with _errors("PING"):
        try:
            for _ in range(params.count):
                samples.append(await backend.ping() * 1000)
        except RedisError as exc:
            if (reply := reply_error(exc)) is None:
                raise
    latency = (
        Latency(
            min=round(min(samples), 3),
            median=round(statistics.median(samples), 3),
            max=round(max(samples), 3),
        )
        if samples
        else None
    )
    return PingOutput(pong=reply is None, samples=len(samples), latency_ms=latency, reply_error=reply)


def _value(raw: str) -> int | float | str:
    try:
        return int(raw)
    except ValueError:
        pass
    try:
        return float(raw)
    except ValueError:
        return raw


def _fields(raw: str) -> dict[str, int | float | str]:
    """``keys=1,expires=0,avg_ttl=0`` -> {"keys": 1, "expires": 0, "avg_ttl": 0}."""
    out: dict[str, int | float | str] = {}
    for part in raw.split(","):
        key, sep, value = part.partition("=")
        if sep:
            out[key] = _value(value)
    return out


def parse_info(raw: bytes | str) -> dict[str, dict[str, str]]:
    """INFO text -> {section: {field: raw value}}; overlong lines are skipped, bad bytes replaced."""
    text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else raw
    sections: dict[str, dict[str, str]] = {}
    current = sections.setdefault("unknown", {})
    for line in text.splitlines():
        if len(line) > MAX_INFO_LINE or not line.strip():
            continue
        if line.startswith("#"):
            current = sections.setdefault(line[1:].strip().lower(), {})
            continue
        key, sep, value = line.partition(":")
        if sep:
            current[key.strip()] = value.strip()
    return sections


_PICK: dict[str, tuple[str, ...]] = {
    "server": ("redis_version", "redis_mode", "os", "uptime_in_seconds", "hz", "executable"),
    "clients": ("connected_clients", "blocked_clients", "maxclients", "tracking_clients"),
    "memory": (
        "used_memory", "used_memory_human", "used_memory_rss", "used_memory_peak",
        "used_memory_peak_human", "used_memory_dataset", "maxmemory", "maxmemory_human",
        "maxmemory_policy", "mem_fragmentation_ratio", "total_system_memory",
    ),
    "persistence": (
        "loading", "async_loading", "aof_enabled", "aof_rewrite_in_progress",
        "aof_rewrite_scheduled", "aof_last_rewrite_time_sec", "aof_last_bgrewrite_status",
        "aof_rewrites_consecutive_failures", "aof_last_write_status", "aof_last_cow_size",
        "aof_delayed_fsync", "aof_pending_bio_fsync", "aof_current_size", "aof_base_size",
        "rdb_bgsave_in_progress", "rdb_last_bgsave_status", "rdb_changes_since_last_save",
        "rdb_last_save_time",
    ),
    "stats": (
        "total_connections_received", "total_commands_processed", "instantaneous_ops_per_sec",
        "rejected_connections", "expired_keys", "evicted_keys", "keyspace_hits", "keyspace_misses",
        "total_error_replies", "latest_fork_usec", "total_eviction_exceeded_time",
        "current_eviction_exceeded_time", "sync_partial_err",
    ),
    "replication": (
        "role", "connected_slaves", "master_host", "master_port", "master_link_status",
        "master_last_io_seconds_ago", "master_sync_in_progress", "master_link_down_since_seconds",
    ),
    "cpu": ("used_cpu_sys", "used_cpu_user"),
}  # fmt: skip
_TEXT_FIELDS = frozenset({"master_host", "os", "executable", "redis_version"})


def summarize_info(sections: Mapping[str, Mapping[str, str]]) -> dict[str, Any]:
    """Pure: parsed INFO -> the fields diagnosis needs, as numbers, plus derived ratios."""
    out: dict[str, Any] = {}
    for section, keys in _PICK.items():
        values = sections.get(section, {})
        out[section] = {
            k: (values[k] if k in _TEXT_FIELDS else _value(values[k])) for k in keys if k in values
        }
    out["server"].pop("executable", None)
    memory, clients, stats = out["memory"], out["clients"], out["stats"]
    used, maxmemory = memory.get("used_memory"), memory.get("maxmemory")
    memory["used_ratio"] = (
        round(used / maxmemory, 4)
        if isinstance(used, int) and isinstance(maxmemory, int) and maxmemory > 0
        else None
    )
    conn, maxclients = clients.get("connected_clients"), clients.get("maxclients")
    clients["used_ratio"] = (
        round(conn / maxclients, 4)
        if isinstance(conn, int) and isinstance(maxclients, int) and maxclients > 0
        else None
    )
    hits, misses = stats.get("keyspace_hits"), stats.get("keyspace_misses")
    if isinstance(hits, int) and isinstance(misses, int) and hits + misses:
        stats["hit_ratio"] = round(hits / (hits + misses), 4)
    errors = {
        k.removeprefix("errorstat_"): _fields(v).get("count", 0)
        for k, v in sections.get("errorstats", {}).items()
    }
    out["errorstats"] = dict(sorted(errors.items(), key=lambda kv: -int(kv[1] or 0))[:MAX_ERRORSTATS])
    keyspace = sections.get("keyspace", {})
    out["keyspace"] = {db: _fields(v) for db, v in list(keyspace.items())[:MAX_KEYSPACES]}
    return out


async def info(ctx: StepContext, params: NoParams) -> InfoOutput:
    with _errors("INFO"):
        raw = await _backend(ctx).info()
    summary = summarize_info(parse_info(raw))
    summary["info_bytes"] = len(raw)
    return InfoOutput.model_validate(summary)


async def dbsize(ctx: StepContext, params: NoParams) -> DbsizeOutput:
    backend = _backend(ctx)
    with _errors("DBSIZE"):
        keys = await backend.dbsize()
    return DbsizeOutput(db=backend.db, keys=keys)


class SlowlogParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    count: int = Field(10, ge=1, le=128)


def _s(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def summarize_slowlog_entry(entry: object) -> dict[str, Any] | None:
    """One raw SLOWLOG GET entry -> command name, duration, key pattern; argument values dropped."""
    if not isinstance(entry, list | tuple) or len(entry) < 4:
        return None
    args = list(entry[3]) if isinstance(entry[3], list | tuple) else []
    try:
        started = datetime.fromtimestamp(int(entry[1]), UTC).isoformat()
        duration_us = int(entry[2])
    except (TypeError, ValueError, OverflowError):
        return None
    command = _s(args[0]).upper()[:40] if args else ""
    key = mask_variables(redact_text(_s(args[1])[:200])) if len(args) > 1 else None
    return {
        "id": int(entry[0]) if str(entry[0]).isdigit() else None,
        "started_at": started,
        "duration_ms": round(duration_us / 1000, 3),
        "command": command,
        "key_pattern": None if command in _NO_KEY_COMMANDS else key,
        "args": len(args),
        "client": _s(entry[4])[:100] if len(entry) > 4 else None,
        "client_name": _s(entry[5])[:100] if len(entry) > 5 else None,
    }


async def slowlog(ctx: StepContext, params: SlowlogParams) -> SlowlogOutput:
    with _errors("SLOWLOG"):
        total, raw = await _backend(ctx).slowlog(params.count)
    entries = [
        SlowlogEntry.model_validate(e) for e in (summarize_slowlog_entry(r) for r in raw) if e is not None
    ]
    return SlowlogOutput(
        total=total,
        shown=len(entries),
        capped=total > len(entries),
        slowest_ms=max((e.duration_ms for e in entries), default=None),
        entries=entries,
    )


COLLECTORS = (
    CollectorDef("redis.ping", ping, PingParams, "PING with round-trip latency", PingOutput),
    CollectorDef(
        "redis.info", info, NoParams, "INFO parsed: memory, clients, persistence, stats", InfoOutput
    ),
    CollectorDef("redis.dbsize", dbsize, NoParams, "DBSIZE of the configured database", DbsizeOutput),
    CollectorDef(
        "redis.slowlog", slowlog, SlowlogParams, "SLOWLOG GET without argument values", SlowlogOutput
    ),
)
