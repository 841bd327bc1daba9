"""A fake MongoDB server speaking the wire protocol, for tests.

The real ``pymongo`` clients (``AsyncMongoClient`` and ``MongoClient``) connect to it with
``mongodb://127.0.0.1:PORT/?directConnection=true``. It speaks OP_MSG (opcode 2013, body and
document-sequence sections, ``moreToCome``) and answers a legacy OP_QUERY ``hello``/``isMaster``
with OP_REPLY. It never advertises compression and never sends ``topologyVersion`` (so the
driver polls instead of streaming ``hello``).

What it serves:

* handshake and housekeeping: ``hello``/``isMaster``, ``ping``, ``buildInfo``, ``endSessions``,
  ``connectionStatus``, ``whatsmyuri``;
* an in-memory store with simple CRUD: ``insert``, ``find``, ``getMore``, ``killCursors``,
  ``update``, ``delete``, ``findAndModify``, ``count``, ``distinct``, ``aggregate`` (a subset of
  stages), ``create``, ``drop``, ``dropDatabase``, ``listDatabases``, ``listCollections``,
  ``listIndexes``, ``createIndexes`` (unique indexes are enforced -> E11000), ``dropIndexes``;
* diagnostics from fixtures set by the test: ``currentOp`` (the command's filter is applied to
  the fixture's ``inprog`` list), ``killOp``, ``replSetGetStatus``, ``serverStatus``,
  ``dbStats`` (per database) and ``system.profile`` reads (an ordinary collection, see
  :meth:`FakeMongoServer.set_profile`).

Unknown commands fail like a real server: ``ok: 0, code: 59, codeName: CommandNotFound``.
Faults can be injected per command (error, delay, dropped connection) and every command received
is recorded in :attr:`FakeMongoServer.requests`.

Usage::

    async with FakeMongoServer() as fake:
        client = AsyncMongoClient(fake.url, serverSelectionTimeoutMS=2000)
        fake.set_fixture("currentOp", current_op_fixture(slow_collscan_op()))
        fake.fail("serverStatus", code=13, errmsg="not authorized")
        ...

A synchronous ``MongoClient`` blocks the event loop, so use the threaded form for it::

    with FakeMongoServer().in_thread() as fake:
        MongoClient(fake.url).admin.command("ping")
"""

from __future__ import annotations

import asyncio
import calendar
import contextlib
import copy
import datetime as dt
import decimal
import functools
import itertools
import math
import re
import socket
import struct
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import bson
from bson import Binary, Decimal128, Int64, MaxKey, MinKey, ObjectId, Regex, Timestamp

__all__ = [
    "CommandError",
    "FakeCollection",
    "FakeMongoServer",
    "Fault",
    "RecordedRequest",
    "current_op_fixture",
    "db_stats",
    "db_stats_nearly_full",
    "dead_port",
    "dead_url",
    "fast_op",
    "healthy_fixtures",
    "lost_primary_fixtures",
    "matches",
    "nearly_full_disk_fixtures",
    "replset_member",
    "replset_status",
    "replset_status_healthy",
    "replset_status_no_primary",
    "server_status",
    "slow_collscan_fixtures",
    "slow_collscan_op",
]

# --------------------------------------------------------------------------------------------
# wire protocol constants
# --------------------------------------------------------------------------------------------

OP_REPLY = 1
OP_QUERY = 2004
OP_COMPRESSED = 2012
OP_MSG = 2013

_MSG_CHECKSUM_PRESENT = 1 << 0
_MSG_MORE_TO_COME = 1 << 1
_REPLY_QUERY_FAILURE = 1 << 1
_REPLY_AWAIT_CAPABLE = 1 << 3

MAX_BSON_OBJECT_SIZE = 16 * 1024 * 1024
MAX_MESSAGE_SIZE_BYTES = 48_000_000
MAX_WRITE_BATCH_SIZE = 100_000
DEFAULT_BATCH_SIZE = 101

CODE_NAMES: dict[int, str] = {
    1: "InternalError",
    2: "BadValue",
    6: "HostUnreachable",
    7: "HostNotFound",
    9: "FailedToParse",
    11: "UserNotFound",
    13: "Unauthorized",
    14: "TypeMismatch",
    18: "AuthenticationFailed",
    26: "NamespaceNotFound",
    27: "IndexNotFound",
    28: "PathNotViable",
    43: "CursorNotFound",
    48: "NamespaceExists",
    50: "MaxTimeMSExpired",
    59: "CommandNotFound",
    66: "ImmutableField",
    72: "InvalidOptions",
    76: "NoReplicationEnabled",
    85: "IndexOptionsConflict",
    86: "IndexKeySpecsConflict",
    89: "NetworkTimeout",
    91: "ShutdownInProgress",
    112: "WriteConflict",
    189: "PrimarySteppedDown",
    262: "ExceededTimeLimit",
    352: "UnsupportedOpQueryCommand",
    10107: "NotWritablePrimary",
    11000: "DuplicateKey",
    11600: "InterruptedAtShutdown",
    11602: "InterruptedDueToReplStateChange",
    13435: "NotPrimaryNoSecondaryOk",
    13436: "NotPrimaryOrSecondary",
}

# Commands whose handler consults the fixture itself (instead of the fixture replacing it).
_FIXTURE_AWARE = frozenset({"currentOp", "dbStats", "replSetGetStatus", "serverStatus", "aggregate"})
# Commands that a real mongod only accepts on the admin database.
_ADMIN_ONLY = frozenset({"currentOp", "killOp", "replSetGetStatus", "listDatabases"})
# Generic command fields that are not part of a currentOp filter.
_GENERIC_FIELDS = frozenset(
    {
        "lsid",
        "txnNumber",
        "autocommit",
        "startTransaction",
        "comment",
        "maxTimeMS",
        "readConcern",
        "writeConcern",
        "apiVersion",
        "apiStrict",
        "apiDeprecationErrors",
    }
)


class CommandError(Exception):
    """A command failure, turned into ``{ok: 0, errmsg, code, codeName, ...}``."""

    def __init__(
        self,
        code: int,
        errmsg: str,
        *,
        code_name: str | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(errmsg)
        self.code = code
        self.errmsg = errmsg
        self.code_name = code_name or CODE_NAMES.get(code, f"Location{code}")
        self.extra = dict(extra or {})

    def to_reply(self) -> dict[str, Any]:
        return {
            "ok": 0.0,
            "errmsg": self.errmsg,
            "code": self.code,
            "codeName": self.code_name,
            **self.extra,
        }

    def to_write_error(self, index: int) -> dict[str, Any]:
        return {"index": index, "code": self.code, "errmsg": self.errmsg, **self.extra}


# --------------------------------------------------------------------------------------------
# BSON value ordering and equality (MongoDB's comparison order)
# --------------------------------------------------------------------------------------------


class _Missing:
    def __repr__(self) -> str:
        return "<missing>"


MISSING: Any = _Missing()


def _type_rank(value: Any) -> int:
    if value is MISSING or value is None:
        return 2
    if isinstance(value, MinKey):
        return 1
    if isinstance(value, MaxKey):
        return 13
    if isinstance(value, bool):
        return 9
    if isinstance(value, int | float | Decimal128 | decimal.Decimal):
        return 3
    if isinstance(value, str):
        return 4
    if isinstance(value, Mapping):
        return 5
    if isinstance(value, list | tuple):
        return 6
    if isinstance(value, bytes | uuid.UUID):
        return 7
    if isinstance(value, ObjectId):
        return 8
    if isinstance(value, dt.datetime | bson.DatetimeMS):
        return 10
    if isinstance(value, Timestamp):
        return 11
    if isinstance(value, Regex | re.Pattern):
        return 12
    return 14


def _number(value: Any) -> float | int | decimal.Decimal:
    if isinstance(value, Decimal128):
        return value.to_decimal()
    return value  # type: ignore[no-any-return]


def _is_nan(value: Any) -> bool:
    if isinstance(value, float):
        return math.isnan(value)
    if isinstance(value, decimal.Decimal):
        return value.is_nan()
    return False


def _datetime_ms(value: Any) -> int:
    if isinstance(value, bson.DatetimeMS):
        return int(value)
    assert isinstance(value, dt.datetime)
    return calendar.timegm(value.utctimetuple()) * 1000 + value.microsecond // 1000


def _cmp(a: Any, b: Any) -> int:
    return int((a > b) - (a < b))


def compare_values(a: Any, b: Any) -> int:
    """Compare two BSON values the way MongoDB orders them (-1, 0, 1)."""
    ra, rb = _type_rank(a), _type_rank(b)
    if ra != rb:
        return -1 if ra < rb else 1
    if ra == 3:
        na, nb = _number(a), _number(b)
        if _is_nan(na) or _is_nan(nb):
            return _cmp(not _is_nan(na), not _is_nan(nb))
        return _cmp(na, nb)
    if ra == 4:
        return _cmp(a, b)
    if ra == 5:
        for (ka, va), (kb, vb) in zip(a.items(), b.items(), strict=False):
            c = _cmp(_type_rank(va), _type_rank(vb)) or _cmp(ka, kb) or compare_values(va, vb)
            if c:
                return c
        return _cmp(len(a), len(b))
    if ra == 6:
        for ea, eb in zip(a, b, strict=False):
            c = compare_values(ea, eb)
            if c:
                return c
        return _cmp(len(a), len(b))
    if ra == 7:
        ba = a.bytes if isinstance(a, uuid.UUID) else bytes(a)
        bb = b.bytes if isinstance(b, uuid.UUID) else bytes(b)
        sa = getattr(a, "subtype", 4 if isinstance(a, uuid.UUID) else 0)
        sb = getattr(b, "subtype", 4 if isinstance(b, uuid.UUID) else 0)
        return _cmp(len(ba), len(bb)) or _cmp(sa, sb) or _cmp(ba, bb)
    if ra == 8:
        return _cmp(a.binary, b.binary)
    if ra == 9:
        return _cmp(a, b)
    if ra == 10:
        return _cmp(_datetime_ms(a), _datetime_ms(b))
    if ra == 11:
        return _cmp((a.time, a.inc), (b.time, b.inc))
    if ra == 12:
        return _cmp(str(getattr(a, "pattern", a)), str(getattr(b, "pattern", b)))
    if ra in (1, 2, 13):
        return 0
    return _cmp(repr(a), repr(b))


def values_equal(a: Any, b: Any) -> bool:
    return compare_values(a, b) == 0


# --------------------------------------------------------------------------------------------
# query matching
# --------------------------------------------------------------------------------------------


def _resolve(value: Any, parts: Sequence[str]) -> list[Any]:
    """All values reached by a dotted path (arrays are traversed); MISSING where absent."""
    if not parts:
        return [value]
    head, rest = parts[0], parts[1:]
    if isinstance(value, Mapping):
        if head in value:
            return _resolve(value[head], rest)
        return [MISSING]
    if isinstance(value, list):
        out: list[Any] = []
        if head.isdigit():
            index = int(head)
            if index < len(value):
                out.extend(_resolve(value[index], rest))
        for element in value:
            if isinstance(element, Mapping):
                out.extend(_resolve(element, parts))
        return out or [MISSING]
    return [MISSING]


def get_path(doc: Mapping[str, Any], path: str) -> Any:
    """The first value at ``path`` (MISSING if absent); arrays of documents are traversed."""
    leaves = [v for v in _resolve(doc, path.split(".")) if v is not MISSING]
    if not leaves:
        return MISSING
    return leaves[0] if len(leaves) == 1 else leaves


def _expand(leaves: list[Any]) -> Iterator[Any]:
    for leaf in leaves:
        if leaf is MISSING:
            continue
        yield leaf
        if isinstance(leaf, list):
            yield from leaf


def _compile_regex(pattern: Any, options: str = "") -> re.Pattern[str]:
    if isinstance(pattern, re.Pattern):
        return pattern
    if isinstance(pattern, Regex):
        compiled = pattern.try_compile()
        if options:
            return re.compile(compiled.pattern, compiled.flags | _regex_flags(options))
        return compiled
    if not isinstance(pattern, str):
        raise CommandError(2, "$regex has to be a string")
    return re.compile(pattern, _regex_flags(options))


def _regex_flags(options: str) -> int:
    flags = 0
    for ch in options:
        flags |= {"i": re.IGNORECASE, "m": re.MULTILINE, "s": re.DOTALL, "x": re.VERBOSE}.get(
            ch, 0
        )
    return flags


def _is_regex(value: Any) -> bool:
    return isinstance(value, Regex | re.Pattern)


def _regex_any(leaves: list[Any], pattern: re.Pattern[str]) -> bool:
    return any(isinstance(c, str) and pattern.search(c) is not None for c in _expand(leaves))


def _eq_any(leaves: list[Any], target: Any) -> bool:
    if target is None:
        if any(leaf is MISSING or leaf is None for leaf in leaves):
            return True
        return any(
            element is None for leaf in leaves if isinstance(leaf, list) for element in leaf
        )
    return any(values_equal(c, target) for c in _expand(leaves))


def _in_any(leaves: list[Any], targets: Any) -> bool:
    if not isinstance(targets, list):
        raise CommandError(2, "$in needs an array")
    for target in targets:
        if _is_regex(target):
            if _regex_any(leaves, _compile_regex(target)):
                return True
        elif _eq_any(leaves, target):
            return True
    return False


def _comparable(a: Any, b: Any) -> bool:
    return a is not MISSING and _type_rank(a) == _type_rank(b)


_TYPE_ALIASES: dict[str, tuple[type, ...]] = {
    "double": (float,),
    "string": (str,),
    "object": (dict,),
    "array": (list,),
    "binData": (bytes,),
    "objectId": (ObjectId,),
    "bool": (bool,),
    "date": (dt.datetime,),
    "timestamp": (Timestamp,),
    "regex": (Regex,),
    "decimal": (Decimal128,),
}


def _has_type(value: Any, alias: Any) -> bool:
    if alias == "null":
        return value is None
    if alias in ("int", "long"):
        return isinstance(value, int) and not isinstance(value, bool)
    if alias == "number":
        return _type_rank(value) == 3
    types = _TYPE_ALIASES.get(str(alias))
    return types is not None and isinstance(value, types) and not (
        alias != "bool" and isinstance(value, bool)
    )


def _apply_operator(leaves: list[Any], op: str, arg: Any, cond: Mapping[str, Any]) -> bool:
    if op == "$eq":
        return _regex_any(leaves, _compile_regex(arg)) if _is_regex(arg) else _eq_any(leaves, arg)
    if op == "$ne":
        return not _eq_any(leaves, arg)
    if op in ("$gt", "$gte", "$lt", "$lte"):
        if arg is None:
            return op in ("$gte", "$lte") and _eq_any(leaves, None)
        wanted = {"$gt": (1,), "$gte": (0, 1), "$lt": (-1,), "$lte": (-1, 0)}[op]
        return any(
            _comparable(c, arg) and compare_values(c, arg) in wanted for c in _expand(leaves)
        )
    if op == "$in":
        return _in_any(leaves, arg)
    if op == "$nin":
        return not _in_any(leaves, arg)
    if op == "$exists":
        return bool(arg) == any(leaf is not MISSING for leaf in leaves)
    if op == "$regex":
        return _regex_any(leaves, _compile_regex(arg, str(cond.get("$options", ""))))
    if op == "$options":
        if "$regex" not in cond:
            raise CommandError(2, "$options needs a $regex")
        return True
    if op == "$not":
        if _is_regex(arg):
            return not _regex_any(leaves, _compile_regex(arg))
        if not isinstance(arg, Mapping):
            raise CommandError(2, "$not needs a regex or a document")
        return not all(_apply_operator(leaves, o, a, arg) for o, a in arg.items())
    if op == "$size":
        return any(isinstance(leaf, list) and len(leaf) == arg for leaf in leaves)
    if op == "$all":
        if not isinstance(arg, list):
            raise CommandError(2, "$all needs an array")
        return bool(arg) and all(_eq_any(leaves, target) for target in arg)
    if op == "$elemMatch":
        if not isinstance(arg, Mapping):
            raise CommandError(2, "$elemMatch needs an Object")
        return any(
            isinstance(leaf, list) and any(_elem_match(element, arg) for element in leaf)
            for leaf in leaves
        )
    if op == "$type":
        aliases = arg if isinstance(arg, list) else [arg]
        return any(_has_type(c, alias) for c in _expand(leaves) for alias in aliases)
    if op == "$mod":
        divisor, remainder = arg
        return any(
            _type_rank(c) == 3 and int(_number(c)) % int(divisor) == int(remainder)
            for c in _expand(leaves)
        )
    raise CommandError(2, f"unknown operator: {op}")


def _is_operator_doc(value: Any) -> bool:
    return isinstance(value, Mapping) and bool(value) and all(k.startswith("$") for k in value)


def _elem_match(element: Any, sub: Mapping[str, Any]) -> bool:
    if _is_operator_doc(sub) and not any(k in ("$and", "$or", "$nor") for k in sub):
        return all(_apply_operator([element], op, arg, sub) for op, arg in sub.items())
    return isinstance(element, Mapping) and matches(element, sub)


def matches(doc: Mapping[str, Any], query: Mapping[str, Any] | None) -> bool:
    """Whether ``doc`` matches a MongoDB query filter (the subset this fake understands)."""
    if not query:
        return True
    for key, cond in query.items():
        if key == "$and":
            if not all(matches(doc, sub) for sub in cond):
                return False
        elif key == "$or":
            if not any(matches(doc, sub) for sub in cond):
                return False
        elif key == "$nor":
            if any(matches(doc, sub) for sub in cond):
                return False
        elif key == "$comment":
            continue
        elif key.startswith("$"):
            raise CommandError(2, f"unknown top level operator: {key}")
        else:
            leaves = _resolve(doc, key.split("."))
            if _is_operator_doc(cond):
                if not all(_apply_operator(leaves, op, arg, cond) for op, arg in cond.items()):
                    return False
            elif _is_regex(cond):
                if not _regex_any(leaves, _compile_regex(cond)):
                    return False
            elif not _eq_any(leaves, cond):
                return False
    return True


def _string_pins(query: Mapping[str, Any] | None) -> list[tuple[str, frozenset[str]]]:
    """The top-level fields a filter pins to strings (``{f: "s"}``, ``{f: {"$in": [...]}}``
    of strings only): a cheap pre-check in front of :func:`matches` (this fake keeps no indexes
    and scans; this keeps a scan of thousands of documents by ``_id`` or by one field fast).
    None for filters with top-level operators: they go to :func:`matches` whole."""
    if not query or any(k.startswith("$") for k in query):
        return []
    pins: list[tuple[str, frozenset[str]]] = []
    for key, cond in query.items():
        if "." in key:
            continue
        if isinstance(cond, str):
            pins.append((key, frozenset([cond])))
        elif (
            isinstance(cond, Mapping)
            and list(cond) == ["$in"]
            and isinstance(cond["$in"], list)
            and cond["$in"]
            and all(isinstance(v, str) for v in cond["$in"])
        ):
            pins.append((key, frozenset(cond["$in"])))
    return pins


def _may_match(doc: Mapping[str, Any], pins: list[tuple[str, frozenset[str]]]) -> bool:
    """False only when ``doc`` cannot match: a pinned field holds no array and no allowed string
    (a string equals only a string in BSON; arrays are left to :func:`matches`)."""
    for key, allowed in pins:
        value = doc.get(key, MISSING)
        if isinstance(value, list):
            continue
        if not (isinstance(value, str) and value in allowed):
            return False
    return True


def matching_positions(docs: Sequence[Mapping[str, Any]], query: Mapping[str, Any] | None) -> list[int]:
    """Positions of the documents that match ``query``, in order."""
    pins = _string_pins(query)
    return [i for i, d in enumerate(docs) if (not pins or _may_match(d, pins)) and matches(d, query)]


def filter_docs(docs: Sequence[dict[str, Any]], query: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """The documents that match ``query``, in order."""
    return [docs[i] for i in matching_positions(docs, query)]


# --------------------------------------------------------------------------------------------
# sort and projection
# --------------------------------------------------------------------------------------------


def _sort_value(doc: Mapping[str, Any], path: str, direction: int) -> Any:
    value = get_path(doc, path)
    if value is MISSING:
        return None
    leaves = [v for v in _resolve(doc, path.split(".")) if v is not MISSING]
    if len(leaves) == 1 and isinstance(leaves[0], list):
        values = leaves[0]
    elif len(leaves) > 1:
        values = list(_expand(leaves))
    else:
        return value
    if not values:
        return value
    key = functools.cmp_to_key(compare_values)
    return min(values, key=key) if direction > 0 else max(values, key=key)


def sort_docs(docs: list[dict[str, Any]], sort: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    if not sort:
        return list(docs)
    spec: list[tuple[str, int]] = []
    for path, direction in sort.items():
        if isinstance(direction, Mapping) or direction not in (1, -1):
            raise CommandError(2, f"$sort key ordering must be 1 (for ascending) or -1: {path}")
        spec.append((path, int(direction)))

    def compare_docs(a: dict[str, Any], b: dict[str, Any]) -> int:
        for path, direction in spec:
            c = compare_values(_sort_value(a, path, direction), _sort_value(b, path, direction))
            if c:
                return c * direction
        return 0

    return sorted(docs, key=functools.cmp_to_key(compare_docs))


def _path_tree(paths: Sequence[str]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for path in paths:
        node = tree
        parts = path.split(".")
        for part in parts[:-1]:
            child = node.get(part)
            if child is True:
                break
            node = node.setdefault(part, {})
        else:
            node[parts[-1]] = True
    return tree


def _project_include(doc: Mapping[str, Any], tree: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in doc.items():
        sub = tree.get(key)
        if sub is None:
            continue
        if sub is True:
            out[key] = value
        elif isinstance(value, Mapping):
            out[key] = _project_include(value, sub)
        elif isinstance(value, list):
            out[key] = [_project_include(e, sub) for e in value if isinstance(e, Mapping)]
    return out


def _project_exclude(doc: Mapping[str, Any], tree: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in doc.items():
        sub = tree.get(key)
        if sub is True:
            continue
        if sub is None:
            out[key] = value
        elif isinstance(value, Mapping):
            out[key] = _project_exclude(value, sub)
        elif isinstance(value, list):
            out[key] = [_project_exclude(e, sub) if isinstance(e, Mapping) else e for e in value]
        else:
            out[key] = value
    return out


def apply_projection(
    doc: Mapping[str, Any], projection: Mapping[str, Any] | None
) -> dict[str, Any]:
    """Apply a simple inclusion or exclusion projection (``_id`` is kept unless excluded)."""
    if not projection:
        return dict(doc)
    include_id = True
    included: list[str] = []
    excluded: list[str] = []
    for path, flag in projection.items():
        if isinstance(flag, Mapping):
            raise CommandError(2, f"projection operators are not supported by the fake: {path}")
        if path == "_id":
            include_id = bool(flag)
        elif flag:
            included.append(path)
        else:
            excluded.append(path)
    if included and excluded:
        raise CommandError(
            31254, f"Cannot do exclusion on field {excluded[0]} in inclusion projection"
        )
    if included:
        return _project_include(doc, _path_tree([*included, *(["_id"] if include_id else [])]))
    return _project_exclude(doc, _path_tree([*excluded, *([] if include_id else ["_id"])]))


# --------------------------------------------------------------------------------------------
# updates
# --------------------------------------------------------------------------------------------


def _parent_for_write(doc: Any, path: str, *, create: bool) -> tuple[Any, str] | None:
    parts = path.split(".")
    node = doc
    for part in parts[:-1]:
        if isinstance(node, dict):
            if part not in node or node[part] is None:
                if not create:
                    return None
                node[part] = {}
            elif not isinstance(node[part], dict | list):
                raise CommandError(
                    28, f"Cannot create field '{parts[-1]}' in element {{{part}: {node[part]!r}}}"
                )
            node = node[part]
        elif isinstance(node, list) and part.isdigit():
            index = int(part)
            if index >= len(node):
                if not create:
                    return None
                node.extend([None] * (index + 1 - len(node)))
            if node[index] is None:
                if not create:
                    return None
                node[index] = {}
            node = node[index]
        else:
            raise CommandError(28, f"Cannot create field '{part}' in element {node!r}")
    if isinstance(node, list) and not parts[-1].isdigit():
        raise CommandError(28, f"Cannot create field '{parts[-1]}' in an array")
    if not isinstance(node, dict | list):
        raise CommandError(28, f"Cannot create field '{parts[-1]}' in element {node!r}")
    return node, parts[-1]


def _read(container: Any, key: str) -> Any:
    if isinstance(container, list):
        index = int(key)
        return container[index] if index < len(container) else MISSING
    return container.get(key, MISSING)


def _write(container: Any, key: str, value: Any) -> None:
    if isinstance(container, list):
        index = int(key)
        if index >= len(container):
            container.extend([None] * (index + 1 - len(container)))
        container[index] = value
    else:
        container[key] = value


def set_path(doc: dict[str, Any], path: str, value: Any) -> None:
    target = _parent_for_write(doc, path, create=True)
    assert target is not None
    _write(target[0], target[1], value)


def _add_numbers(a: Any, b: Any, op: str, path: str) -> Any:
    for value in (a, b):
        if _type_rank(value) != 3:
            raise CommandError(
                14, f"Cannot apply {op} to a value of non-numeric type. {{_id: ...}} has the "
                f"field '{path}' of non-numeric type {type(value).__name__}",
            )
    x, y = _number(a), _number(b)
    if isinstance(x, decimal.Decimal) or isinstance(y, decimal.Decimal):
        result: Any = decimal.Decimal(x) + decimal.Decimal(y) if op == "$inc" else (
            decimal.Decimal(x) * decimal.Decimal(y)
        )
        return Decimal128(result)
    return x + y if op == "$inc" else x * y


def _push_items(arg: Any) -> tuple[list[Any], int | None, int | None]:
    if isinstance(arg, Mapping) and "$each" in arg:
        return list(arg["$each"]), arg.get("$position"), arg.get("$slice")
    return [arg], None, None


def apply_update(
    doc: Mapping[str, Any], update: Any, *, is_insert: bool
) -> dict[str, Any]:
    """Return a new document: ``doc`` with an update (operators or replacement) applied."""
    if isinstance(update, list):
        raise CommandError(2, "aggregation pipeline updates are not supported by the fake")
    if not isinstance(update, Mapping):
        raise CommandError(9, "update must be a document")
    keys = list(update)
    if not keys or not keys[0].startswith("$"):
        if any(k.startswith("$") for k in keys):
            raise CommandError(2, "The dollar ($) prefixed field is not valid in a replacement")
        new = {"_id": doc["_id"]} if "_id" in doc else {}
        for key, value in update.items():
            if key == "_id" and "_id" in doc and not values_equal(doc["_id"], value):
                raise CommandError(
                    66,
                    "After applying the update, the (immutable) field '_id' was found to have "
                    "been altered",
                )
            new[key] = copy.deepcopy(value)
        return new
    new = copy.deepcopy(dict(doc))
    for op, fields in update.items():
        if not op.startswith("$"):
            raise CommandError(9, f"Unknown modifier: {op}. Expected a valid update modifier")
        if not isinstance(fields, Mapping):
            raise CommandError(9, f"Modifiers operate on fields but we found another type: {op}")
        if op == "$setOnInsert" and not is_insert:
            continue
        for path, arg in fields.items():
            _apply_field_update(new, op, path, arg)
    if "_id" in doc and not values_equal(doc["_id"], new.get("_id", MISSING)):
        raise CommandError(
            66, "Performing an update on the path '_id' would modify the immutable field '_id'"
        )
    return new


def _apply_field_update(doc: dict[str, Any], op: str, path: str, arg: Any) -> None:
    if op in ("$set", "$setOnInsert"):
        set_path(doc, path, copy.deepcopy(arg))
        return
    if op == "$unset":
        target = _parent_for_write(doc, path, create=False)
        if target is not None:
            container, key = target
            if isinstance(container, list):
                if int(key) < len(container):
                    container[int(key)] = None
            else:
                container.pop(key, None)
        return
    if op == "$rename":
        target = _parent_for_write(doc, path, create=False)
        if target is not None and _read(*target) is not MISSING:
            value = _read(*target)
            container, key = target
            del container[key]
            set_path(doc, str(arg), value)
        return
    target = _parent_for_write(doc, path, create=True)
    assert target is not None
    container, key = target
    current = _read(container, key)
    if op in ("$inc", "$mul"):
        if current is MISSING:
            current = 0
            if op == "$mul":
                arg = 0 if isinstance(arg, int) else 0.0
        _write(container, key, _add_numbers(current, arg, op, path))
    elif op in ("$min", "$max"):
        wanted = -1 if op == "$min" else 1
        if current is MISSING or compare_values(arg, current) == wanted:
            _write(container, key, copy.deepcopy(arg))
    elif op == "$currentDate":
        now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        now = now.replace(microsecond=now.microsecond // 1000 * 1000)
        wants_ts = isinstance(arg, Mapping) and arg.get("$type") == "timestamp"
        _write(container, key, Timestamp(int(time.time()), 1) if wants_ts else now)
    elif op in ("$push", "$addToSet", "$pull", "$pop", "$pullAll"):
        if current is MISSING:
            if op in ("$pull", "$pop", "$pullAll"):
                return
            current = []
            _write(container, key, current)
        if not isinstance(current, list):
            raise CommandError(
                2, f"The field '{path}' must be an array but is of type "
                f"{type(current).__name__} in document {{_id: {doc.get('_id')!r}}}",
            )
        _apply_array_update(current, op, arg)
    else:
        raise CommandError(9, f"Unknown modifier: {op}. Expected a valid update modifier")


def _apply_array_update(current: list[Any], op: str, arg: Any) -> None:
    if op == "$push":
        items, position, slice_ = _push_items(arg)
        items = copy.deepcopy(items)
        if position is None:
            current.extend(items)
        else:
            current[position:position] = items
        if slice_ is not None:
            kept = current[:slice_] if slice_ >= 0 else current[slice_:]
            current[:] = kept
    elif op == "$addToSet":
        items = list(arg["$each"]) if isinstance(arg, Mapping) and "$each" in arg else [arg]
        for item in items:
            if not any(values_equal(item, existing) for existing in current):
                current.append(copy.deepcopy(item))
    elif op == "$pull":

        def pulled(element: Any) -> bool:
            if isinstance(arg, Mapping) and not _is_operator_doc(arg):
                return isinstance(element, Mapping) and matches(element, arg)
            if _is_operator_doc(arg):
                return all(_apply_operator([element], o, a, arg) for o, a in arg.items())
            return values_equal(element, arg)

        current[:] = [e for e in current if not pulled(e)]
    elif op == "$pullAll":
        current[:] = [e for e in current if not any(values_equal(e, x) for x in arg)]
    elif op == "$pop" and current:
        if arg == -1:
            del current[0]
        else:
            del current[-1]


def _upsert_seed(query: Mapping[str, Any]) -> dict[str, Any]:
    seed: dict[str, Any] = {}

    def walk(q: Mapping[str, Any]) -> None:
        for key, value in q.items():
            if key == "$and":
                for sub in value:
                    walk(sub)
            elif key.startswith("$"):
                continue
            elif _is_operator_doc(value):
                if "$eq" in value:
                    set_path(seed, key, copy.deepcopy(value["$eq"]))
            elif not _is_regex(value):
                set_path(seed, key, copy.deepcopy(value))

    walk(query)
    return seed


def _with_id_first(doc: dict[str, Any]) -> dict[str, Any]:
    if "_id" not in doc:
        return {"_id": ObjectId(), **doc}
    if next(iter(doc)) == "_id":
        return doc
    return {"_id": doc["_id"], **{k: v for k, v in doc.items() if k != "_id"}}


# --------------------------------------------------------------------------------------------
# aggregation (a tiny subset)
# --------------------------------------------------------------------------------------------


def eval_expr(doc: Mapping[str, Any], expr: Any) -> Any:
    """Evaluate a (very) small subset of aggregation expressions: ``"$path"``, literals."""
    if isinstance(expr, str) and expr.startswith("$"):
        value = get_path(doc, expr[1:])
        return None if value is MISSING else value
    if isinstance(expr, Mapping):
        if len(expr) == 1 and next(iter(expr)).startswith("$"):
            op, arg = next(iter(expr.items()))
            if op == "$literal":
                return arg
            raise CommandError(168, f"Unrecognized expression '{op}'")
        return {k: eval_expr(doc, v) for k, v in expr.items()}
    if isinstance(expr, list):
        return [eval_expr(doc, e) for e in expr]
    return expr


def _accumulate(op: str, values: list[Any]) -> Any:
    numbers = [_number(v) for v in values if _type_rank(v) == 3 and v is not None]
    if op == "$sum":
        return sum(numbers) if numbers else 0
    if op == "$avg":
        return sum(numbers) / len(numbers) if numbers else None
    present = [v for v in values if v is not None]
    key = functools.cmp_to_key(compare_values)
    if op == "$min":
        return min(present, key=key) if present else None
    if op == "$max":
        return max(present, key=key) if present else None
    if op == "$first":
        return values[0] if values else None
    if op == "$last":
        return values[-1] if values else None
    if op == "$push":
        return list(values)
    if op == "$addToSet":
        unique: list[Any] = []
        for value in values:
            if not any(values_equal(value, u) for u in unique):
                unique.append(value)
        return unique
    if op == "$count":
        return len(values)
    raise CommandError(15952, f"unknown group operator '{op}'")


def _group(docs: list[dict[str, Any]], spec: Mapping[str, Any]) -> list[dict[str, Any]]:
    if "_id" not in spec:
        raise CommandError(15955, "a group specification must include an _id")
    accumulators: list[tuple[str, str, Any]] = []
    for name, acc in spec.items():
        if name == "_id":
            continue
        if not isinstance(acc, Mapping) or len(acc) != 1:
            raise CommandError(40234, f"The field '{name}' must be an accumulator object")
        op, arg = next(iter(acc.items()))
        accumulators.append((name, op, arg))
    groups: dict[bytes, tuple[Any, list[list[Any]]]] = {}
    for doc in docs:
        group_id = eval_expr(doc, spec["_id"])
        key = bson.encode({"k": group_id})
        if key not in groups:
            groups[key] = (group_id, [[] for _ in accumulators])
        for i, (_name, _op, arg) in enumerate(accumulators):
            groups[key][1][i].append(eval_expr(doc, arg))
    out: list[dict[str, Any]] = []
    for group_id, collected in groups.values():
        row: dict[str, Any] = {"_id": group_id}
        for (name, op, _arg), values in zip(accumulators, collected, strict=True):
            row[name] = _accumulate(op, values)
        out.append(row)
    return out


def _project_stage(docs: list[dict[str, Any]], spec: Mapping[str, Any]) -> list[dict[str, Any]]:
    computed = {
        k: v
        for k, v in spec.items()
        if (isinstance(v, str) and v.startswith("$")) or isinstance(v, Mapping | list)
    }
    if not computed:
        return [apply_projection(d, spec) for d in docs]
    plain = {k: v for k, v in spec.items() if k not in computed}
    if any(not v for k, v in plain.items() if k != "_id"):
        raise CommandError(31254, "Cannot do exclusion in inclusion projection")
    out: list[dict[str, Any]] = []
    for doc in docs:
        keep = [k for k, v in plain.items() if v and k != "_id"]
        row = _project_include(doc, _path_tree(keep)) if keep else {}
        if plain.get("_id", True) and "_id" in doc:
            row = {"_id": doc["_id"], **row}
        for name, expr in computed.items():
            set_path(row, name, eval_expr(doc, expr))
        out.append(row)
    return out


def _unwind(docs: list[dict[str, Any]], spec: Any) -> list[dict[str, Any]]:
    path = spec if isinstance(spec, str) else spec["path"]
    preserve = isinstance(spec, Mapping) and bool(spec.get("preserveNullAndEmptyArrays"))
    path = path[1:]
    out: list[dict[str, Any]] = []
    for doc in docs:
        value = get_path(doc, path)
        if isinstance(value, list) and value:
            for element in value:
                row = copy.deepcopy(doc)
                set_path(row, path, element)
                out.append(row)
        elif isinstance(value, list) or value is MISSING or value is None:
            if preserve:
                out.append(doc)
        else:
            out.append(doc)
    return out


def run_pipeline(
    docs: list[dict[str, Any]], pipeline: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """Run the supported aggregation stages over ``docs``."""
    for stage in pipeline:
        if len(stage) != 1:
            raise CommandError(40323, "A pipeline stage specification object must contain "
                               "exactly one field.")
        name, spec = next(iter(stage.items()))
        if name == "$match":
            docs = filter_docs(docs, spec)
        elif name == "$sort":
            docs = sort_docs(docs, spec)
        elif name == "$limit":
            docs = docs[: int(spec)]
        elif name == "$skip":
            docs = docs[int(spec) :]
        elif name == "$count":
            docs = [{str(spec): len(docs)}] if docs else []
        elif name == "$project":
            docs = _project_stage(docs, spec)
        elif name == "$group":
            docs = _group(docs, spec)
        elif name == "$unwind":
            docs = _unwind(docs, spec)
        elif name in ("$addFields", "$set"):
            out = []
            for doc in docs:
                row = copy.deepcopy(doc)
                for path, expr in spec.items():
                    set_path(row, path, eval_expr(doc, expr))
                out.append(row)
            docs = out
        elif name == "$unset":
            paths = [spec] if isinstance(spec, str) else list(spec)
            docs = [apply_projection(d, dict.fromkeys(paths, 0)) for d in docs]
        elif name == "$currentOp":
            raise CommandError(
                40602, "$currentOp is only valid as the first stage in a pipeline"
            )
        else:
            raise CommandError(40324, f"Unrecognized pipeline stage name: '{name}'")
    return docs


# --------------------------------------------------------------------------------------------
# the store
# --------------------------------------------------------------------------------------------


def _id_index() -> dict[str, Any]:
    return {"v": 2, "key": {"_id": 1}, "name": "_id_"}


@dataclass
class FakeCollection:
    """One collection: documents in insertion order, index specs by name, create options."""

    name: str
    docs: list[dict[str, Any]] = field(default_factory=list)
    indexes: dict[str, dict[str, Any]] = field(default_factory=lambda: {"_id_": _id_index()})
    options: dict[str, Any] = field(default_factory=dict)
    uuid: uuid.UUID = field(default_factory=uuid.uuid4)

    def find(self, query: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        return filter_docs(self.docs, query)


@dataclass
class RecordedRequest:
    """A command as the fake received it (``body`` includes document sequences)."""

    command: str  # canonical name, e.g. "hello" for isMaster/ismaster, "findAndModify"
    name: str  # the first key exactly as sent
    db: str
    body: dict[str, Any]
    connection_id: int
    op_code: int
    at: float


@dataclass
class Fault:
    """A fault armed for one command: error reply, delay, or dropped connection."""

    kind: str  # "error" | "delay" | "close"
    times: int | None  # None = until cleared
    code: int = 0
    errmsg: str = ""
    code_name: str | None = None
    error_labels: list[str] | None = None
    seconds: float = 0.0
    db: str | None = None


@dataclass
class _Cursor:
    ns: str
    docs: list[dict[str, Any]]


FixtureValue = Mapping[str, Any] | Callable[[dict[str, Any]], Mapping[str, Any]]

_CLOSE = object()


def _ns(db: str, coll: str) -> str:
    return f"{db}.{coll}"


def _format_key_value(key_value: Mapping[str, Any]) -> str:
    parts = []
    for k, v in key_value.items():
        shown = f'"{v}"' if isinstance(v, str) else ("null" if v is None else repr(v))
        parts.append(f"{k}: {shown}")
    return "{ " + ", ".join(parts) + " }"


def _index_key(doc: Mapping[str, Any], key: Mapping[str, Any]) -> tuple[list[Any], bool]:
    values = []
    all_missing = True
    for path in key:
        value = get_path(doc, path)
        if value is not MISSING:
            all_missing = False
        values.append(None if value is MISSING else value)
    return values, all_missing


def _index_applies(spec: Mapping[str, Any], doc: Mapping[str, Any], all_missing: bool) -> bool:
    if spec.get("sparse") and all_missing:
        return False
    partial = spec.get("partialFilterExpression")
    return not (partial and not matches(doc, partial))


class _IdIndex:
    """Positions of a collection's documents by string ``_id``, built once per write command:
    this fake keeps no indexes, and a bulk of upserts by ``_id`` would otherwise scan the
    collection once or twice per statement. Kept up to date by the command's own appends
    (an ``_id`` never changes)."""

    def __init__(self, docs: list[dict[str, Any]]) -> None:
        self.docs = docs
        self.pos = {d["_id"]: i for i, d in enumerate(docs) if isinstance(d.get("_id"), str)}

    def lookup(self, query: Mapping[str, Any]) -> list[int] | None:
        """The positions a ``{_id: "<string>"}`` filter matches; None for any other filter."""
        if list(query) != ["_id"] or not isinstance(query["_id"], str):
            return None
        found = self.pos.get(query["_id"])
        return [] if found is None else [found]

    def appended(self, doc: Mapping[str, Any]) -> None:
        if isinstance(doc.get("_id"), str):
            self.pos[doc["_id"]] = len(self.docs) - 1


def _check_unique(
    coll: FakeCollection,
    ns: str,
    doc: Mapping[str, Any],
    skip: int | None = None,
    ids: _IdIndex | None = None,
) -> None:
    for name, spec in coll.indexes.items():
        if name != "_id_" and not spec.get("unique"):
            continue
        if name == "_id_" and ids is not None and isinstance(doc.get("_id"), str):
            if ids.pos.get(doc["_id"], skip) != skip:
                raise CommandError(
                    11000,
                    f"E11000 duplicate key error collection: {ns} index: _id_ dup key: "
                    f"{_format_key_value({'_id': doc['_id']})}",
                    extra={"keyPattern": {"_id": 1}, "keyValue": {"_id": doc["_id"]}},
                )
            continue
        key = spec["key"]
        values, all_missing = _index_key(doc, key)
        if not _index_applies(spec, doc, all_missing):
            continue
        # cheap pre-check: a string key value can only collide with the same string (or an array)
        pins = [
            (f, frozenset([v]))
            for f, v in zip(key, values, strict=True)
            if isinstance(v, str) and "." not in f
        ]
        for position, other in enumerate(coll.docs):
            if position == skip or (pins and not _may_match(other, pins)):
                continue
            other_values, other_missing = _index_key(other, key)
            if not _index_applies(spec, other, other_missing):
                continue
            if all(values_equal(a, b) for a, b in zip(values, other_values, strict=True)):
                key_value = dict(zip(key, values, strict=True))
                raise CommandError(
                    11000,
                    f"E11000 duplicate key error collection: {ns} index: {name} dup key: "
                    f"{_format_key_value(key_value)}",
                    extra={"keyPattern": dict(key), "keyValue": key_value},
                )


_INDEX_IGNORED_OPTIONS = frozenset({"v", "key", "name", "background", "ns"})


def _index_options(spec: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in spec.items() if k not in _INDEX_IGNORED_OPTIONS}


def _same_key(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    return list(a.items()) == list(b.items())


def _int(value: Any, default: int = 0) -> int:
    if value is None:
        return default
    return int(value)


# --------------------------------------------------------------------------------------------
# the server
# --------------------------------------------------------------------------------------------


class FakeMongoServer:
    """An in-process asyncio MongoDB look-alike listening on 127.0.0.1.

    ``async with FakeMongoServer() as fake`` starts it on a free port (``fake.port``,
    ``fake.url``) and stops it (closing client connections) on exit.

    Seeding: :meth:`seed` (documents), :meth:`set_fixture` / :meth:`set_fixtures` (diagnostic
    command replies, optionally per database), :meth:`set_profile` (``system.profile``).
    Inspection: :attr:`requests`, :meth:`requests_for`, :attr:`data`, :meth:`docs`,
    :meth:`indexes`, :attr:`killed_ops`, :attr:`errors` (internal exceptions).
    Faults: :meth:`fail`, :meth:`delay`, :meth:`drop_connection`, :meth:`clear_faults`.
    """

    def __init__(
        self,
        *,
        port: int = 0,
        replica_set: str | None = None,
        version: str = "7.0.14",
        max_wire_version: int = 21,
    ) -> None:
        self.host = "127.0.0.1"
        self.port = port
        self.replica_set = replica_set
        self.version = version
        self.max_wire_version = max_wire_version
        self.data: dict[str, dict[str, FakeCollection]] = {}
        self.requests: list[RecordedRequest] = []
        self.errors: list[str] = []
        self.killed_ops: list[Any] = []
        self._fixtures: dict[tuple[str, str | None], FixtureValue] = {}
        self._faults: dict[str, list[Fault]] = {}
        self._cursors: dict[int, _Cursor] = {}
        self._cursor_ids = itertools.count(7_000_000_001)
        self._conn_ids = itertools.count(1)
        self._request_ids = itertools.count(1)
        self._server: asyncio.Server | None = None
        self._conns: dict[int, tuple[asyncio.StreamWriter, asyncio.Task[Any]]] = {}
        self._started_at = time.monotonic()
        self._election_id = ObjectId()
        self._handlers: dict[str, Callable[[str, dict[str, Any], int], dict[str, Any]]] = {
            "hello": self._cmd_hello,
            "ping": self._cmd_ping,
            "buildInfo": self._cmd_build_info,
            "endSessions": self._cmd_ping,
            "connectionStatus": self._cmd_connection_status,
            "whatsmyuri": self._cmd_whatsmyuri,
            "getMore": self._cmd_get_more,
            "killCursors": self._cmd_kill_cursors,
            "listDatabases": self._cmd_list_databases,
            "listCollections": self._cmd_list_collections,
            "listIndexes": self._cmd_list_indexes,
            "createIndexes": self._cmd_create_indexes,
            "dropIndexes": self._cmd_drop_indexes,
            "create": self._cmd_create,
            "drop": self._cmd_drop,
            "dropDatabase": self._cmd_drop_database,
            "count": self._cmd_count,
            "distinct": self._cmd_distinct,
            "aggregate": self._cmd_aggregate,
            "insert": self._cmd_insert,
            "find": self._cmd_find,
            "update": self._cmd_update,
            "delete": self._cmd_delete,
            "findAndModify": self._cmd_find_and_modify,
            "currentOp": self._cmd_current_op,
            "killOp": self._cmd_kill_op,
            "replSetGetStatus": self._cmd_repl_set_get_status,
            "serverStatus": self._cmd_server_status,
            "dbStats": self._cmd_db_stats,
        }
        self._aliases = {name.lower(): name for name in self._handlers}
        self._aliases["ismaster"] = "hello"

    # ---------------------------------------------------------------- lifecycle

    @property
    def url(self) -> str:
        return f"mongodb://{self.host}:{self.port}/?directConnection=true"

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    async def start(self) -> None:
        """Listen (again) on ``self.port`` (0 = pick a free port the first time)."""
        if self._server is not None:
            return
        self._server = await asyncio.start_server(self._handle_connection, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop listening and close every client connection. ``start()`` reuses the port."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        tasks = []
        for writer, task in list(self._conns.values()):
            writer.close()
            task.cancel()
            tasks.append(task)
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        self._conns.clear()
        if server is not None:
            await server.wait_closed()

    async def __aenter__(self) -> FakeMongoServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @contextlib.contextmanager
    def in_thread(self) -> Iterator[FakeMongoServer]:
        """Run the server on its own event loop in a daemon thread (for sync clients)."""
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name="fake-mongo", daemon=True)
        thread.start()
        try:
            asyncio.run_coroutine_threadsafe(self.start(), loop).result(timeout=10)
            yield self
        finally:
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(self.stop(), loop).result(timeout=10)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=10)
            loop.close()

    @property
    def connection_count(self) -> int:
        return len(self._conns)

    # ---------------------------------------------------------------- seeding / inspection

    def collection(self, db: str, name: str, *, create: bool = True) -> FakeCollection:
        """The stored collection (created empty unless ``create=False``, then KeyError)."""
        if not create:
            return self.data[db][name]
        database = self.data.setdefault(db, {})
        if name not in database:
            database[name] = FakeCollection(name)
        return database[name]

    def docs(self, db: str, name: str) -> list[dict[str, Any]]:
        """The live list of stored documents ([] if the collection does not exist)."""
        coll = self.data.get(db, {}).get(name)
        return coll.docs if coll is not None else []

    def indexes(self, db: str, name: str) -> dict[str, dict[str, Any]]:
        """Index specs by name, as ``listIndexes`` reports them ({} if no collection)."""
        coll = self.data.get(db, {}).get(name)
        return coll.indexes if coll is not None else {}

    def seed(self, db: str, name: str, docs: Sequence[Mapping[str, Any]]) -> list[Any]:
        """Insert documents directly (``_id`` added when absent); returns their ids."""
        coll = self.collection(db, name)
        ids = []
        for doc in docs:
            stored = _with_id_first(copy.deepcopy(dict(doc)))
            coll.docs.append(stored)
            ids.append(stored["_id"])
        return ids

    def set_profile(self, db: str, entries: Sequence[Mapping[str, Any]]) -> None:
        """Replace ``<db>.system.profile`` (reads go through the normal ``find``)."""
        coll = self.collection(db, "system.profile")
        coll.options = {"capped": True, "size": 1024 * 1024}
        coll.docs = [dict(e) for e in entries]

    def set_fixture(self, command: str, reply: FixtureValue, *, db: str | None = None) -> None:
        """Serve ``reply`` for ``command`` (optionally only on database ``db``).

        ``reply`` is a document or a callable ``(body) -> document``. ``ok: 1`` is added when
        missing. For ``currentOp`` the request's filter is applied to ``reply["inprog"]``
        (and ``$currentOp`` aggregations read it too); any other command is answered with the
        fixture as is (overriding the built-in handler, or adding an unknown command).
        """
        self._fixtures[(self._canonical(command), db)] = reply

    def set_fixtures(self, fixtures: Mapping[str, FixtureValue], *, db: str | None = None) -> None:
        for command, reply in fixtures.items():
            self.set_fixture(command, reply, db=db)

    def clear_fixture(self, command: str, *, db: str | None = None) -> None:
        self._fixtures.pop((self._canonical(command), db), None)

    def requests_for(self, command: str) -> list[dict[str, Any]]:
        """Bodies of the recorded requests for ``command`` (canonical or raw name)."""
        canonical = self._canonical(command)
        return [r.body for r in self.requests if r.command == canonical]

    def command_names(self, *, include_handshake: bool = False) -> list[str]:
        """Canonical names of the recorded commands, in order (without hello by default)."""
        return [
            r.command for r in self.requests if include_handshake or r.command != "hello"
        ]

    def clear_requests(self) -> None:
        self.requests.clear()

    def expire_ttl(self, now: dt.datetime | None = None) -> int:
        """Apply TTL indexes once (as mongod's TTL monitor would); returns docs deleted."""
        now_ms = _datetime_ms(now or dt.datetime.now(dt.UTC))
        deleted = 0
        for database in self.data.values():
            for coll in database.values():
                for spec in coll.indexes.values():
                    if "expireAfterSeconds" not in spec or len(spec["key"]) != 1:
                        continue
                    path = next(iter(spec["key"]))
                    ttl_ms = float(spec["expireAfterSeconds"]) * 1000

                    def expired(doc: Mapping[str, Any], path: str = path, ttl: float = ttl_ms
                                ) -> bool:
                        value = get_path(doc, path)
                        values = value if isinstance(value, list) else [value]
                        dates = [_datetime_ms(v) for v in values if _type_rank(v) == 10]
                        return bool(dates) and min(dates) + ttl <= now_ms

                    before = len(coll.docs)
                    coll.docs = [d for d in coll.docs if not expired(d)]
                    deleted += before - len(coll.docs)
        return deleted

    # ---------------------------------------------------------------- faults

    def fail(
        self,
        command: str,
        code: int = 8000,
        errmsg: str | None = None,
        *,
        times: int | None = None,
        code_name: str | None = None,
        error_labels: Sequence[str] | None = None,
        db: str | None = None,
    ) -> None:
        """Answer ``command`` with ``{ok: 0, code, errmsg}`` (``times`` times, or always).

        ``command="*"`` matches every command except the handshake (``hello``).
        """
        self._add_fault(
            command,
            Fault(
                "error",
                times,
                code=code,
                errmsg=errmsg or f"fake failure injected for {command}",
                code_name=code_name,
                error_labels=list(error_labels) if error_labels else None,
                db=db,
            ),
        )

    def delay(
        self, command: str, seconds: float, *, times: int | None = None, db: str | None = None
    ) -> None:
        """Sleep before answering ``command``. If the request carries ``maxTimeMS`` shorter
        than the delay, the fake answers MaxTimeMSExpired (code 50) after ``maxTimeMS``."""
        self._add_fault(command, Fault("delay", times, seconds=seconds, db=db))

    def drop_connection(
        self, command: str, *, times: int | None = None, db: str | None = None
    ) -> None:
        """Close the client's connection instead of answering ``command``.

        Note: pymongo retries reads (and retryable writes on replica sets) once after a
        network error, so ``times=1`` on a read is usually invisible to the caller.
        """
        self._add_fault(command, Fault("close", times, db=db))

    def clear_faults(self, command: str | None = None) -> None:
        if command is None:
            self._faults.clear()
        else:
            self._faults.pop(self._canonical(command), None)

    def _add_fault(self, command: str, fault: Fault) -> None:
        key = "*" if command == "*" else self._canonical(command)
        self._faults.setdefault(key, []).append(fault)

    def _take_faults(self, canonical: str, db: str) -> list[Fault]:
        taken: list[Fault] = []
        keys = [canonical] if canonical == "hello" else [canonical, "*"]
        for key in keys:
            for fault in list(self._faults.get(key, [])):
                if fault.db is not None and fault.db != db:
                    continue
                if fault.times is not None:
                    fault.times -= 1
                    if fault.times <= 0:
                        self._faults[key].remove(fault)
                taken.append(fault)
        return taken

    # ---------------------------------------------------------------- connection handling

    def _canonical(self, name: str) -> str:
        return self._aliases.get(name.lower(), name)

    async def _handle_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        conn_id = next(self._conn_ids)
        task = asyncio.current_task()
        assert task is not None
        self._conns[conn_id] = (writer, task)
        try:
            while True:
                header = await reader.readexactly(16)
                length, request_id, _response_to, op_code = struct.unpack("<iiii", header)
                if length < 16 or length > MAX_MESSAGE_SIZE_BYTES:
                    break
                payload = await reader.readexactly(length - 16)
                reply = await self._process(conn_id, request_id, op_code, payload)
                if reply is _CLOSE:
                    break
                if isinstance(reply, bytes):
                    writer.write(reply)
                    await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._conns.pop(conn_id, None)
            writer.close()
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await writer.wait_closed()

    async def _process(
        self, conn_id: int, request_id: int, op_code: int, payload: bytes
    ) -> bytes | object | None:
        try:
            if op_code == OP_MSG:
                flags, body = self._parse_op_msg(payload)
                reply = await self._run_command(conn_id, body, OP_MSG, body.get("$db", "admin"))
                if reply is _CLOSE:
                    return _CLOSE
                if flags & _MSG_MORE_TO_COME:
                    return None
                assert isinstance(reply, dict)
                return self._op_msg_reply(request_id, reply)
            if op_code == OP_QUERY:
                return await self._process_op_query(conn_id, request_id, payload)
        except (bson.errors.BSONError, struct.error, IndexError, ValueError):
            self.errors.append(traceback.format_exc())
            return _CLOSE
        # OP_COMPRESSED (never negotiated) or a legacy opcode: a real server drops the client.
        return _CLOSE

    @staticmethod
    def _parse_op_msg(payload: bytes) -> tuple[int, dict[str, Any]]:
        (flags,) = struct.unpack_from("<I", payload, 0)
        end = len(payload) - (4 if flags & _MSG_CHECKSUM_PRESENT else 0)
        pos = 4
        body: dict[str, Any] | None = None
        sequences: dict[str, list[dict[str, Any]]] = {}
        while pos < end:
            kind = payload[pos]
            pos += 1
            if kind == 0:
                (size,) = struct.unpack_from("<i", payload, pos)
                body = bson.decode(payload[pos : pos + size])
                pos += size
            elif kind == 1:
                (size,) = struct.unpack_from("<i", payload, pos)
                section_end = pos + size
                name_end = payload.index(b"\x00", pos + 4)
                identifier = payload[pos + 4 : name_end].decode()
                cursor = name_end + 1
                docs = []
                while cursor < section_end:
                    (doc_size,) = struct.unpack_from("<i", payload, cursor)
                    docs.append(bson.decode(payload[cursor : cursor + doc_size]))
                    cursor += doc_size
                sequences.setdefault(identifier, []).extend(docs)
                pos = section_end
            else:
                raise ValueError(f"unknown OP_MSG section kind {kind}")
        if body is None:
            raise ValueError("OP_MSG without a body section")
        body.update(sequences)
        return flags, body

    def _op_msg_reply(self, response_to: int, doc: Mapping[str, Any]) -> bytes:
        payload = struct.pack("<I", 0) + b"\x00" + bson.encode(doc)
        header = struct.pack("<iiii", 16 + len(payload), next(self._request_ids), response_to,
                             OP_MSG)
        return header + payload

    def _op_reply(self, response_to: int, doc: Mapping[str, Any], flags: int) -> bytes:
        payload = struct.pack("<iqii", flags, 0, 0, 1) + bson.encode(doc)
        header = struct.pack("<iiii", 16 + len(payload), next(self._request_ids), response_to,
                             OP_REPLY)
        return header + payload

    async def _process_op_query(
        self, conn_id: int, request_id: int, payload: bytes
    ) -> bytes | object:
        name_end = payload.index(b"\x00", 4)
        full_name = payload[4:name_end].decode()
        pos = name_end + 1 + 8  # numberToSkip, numberToReturn
        (size,) = struct.unpack_from("<i", payload, pos)
        query = bson.decode(payload[pos : pos + size])
        if not full_name.endswith(".$cmd"):
            doc = {"$err": "OP_QUERY is no longer supported", "code": 352}
            return self._op_reply(request_id, doc, _REPLY_QUERY_FAILURE)
        db = full_name[: -len(".$cmd")]
        if "$query" in query:
            query = dict(query["$query"])
        name = next(iter(query), "")
        if self._canonical(name) != "hello":
            error = CommandError(
                352, f"Unsupported OP_QUERY command: {name}. The client driver may require an "
                "upgrade.",
            )
            return self._op_reply(request_id, error.to_reply(), _REPLY_AWAIT_CAPABLE)
        reply = await self._run_command(conn_id, query, OP_QUERY, db)
        if reply is _CLOSE:
            return _CLOSE
        assert isinstance(reply, dict)
        return self._op_reply(request_id, reply, _REPLY_AWAIT_CAPABLE)

    async def _run_command(
        self, conn_id: int, body: dict[str, Any], op_code: int, db: str
    ) -> dict[str, Any] | object:
        name = next(iter(body), "")
        canonical = self._canonical(name)
        self.requests.append(
            RecordedRequest(canonical, name, db, body, conn_id, op_code, time.time())
        )
        for fault in self._take_faults(canonical, db):
            if fault.kind == "delay":
                max_time_ms = _int(body.get("maxTimeMS"))
                if 0 < max_time_ms < fault.seconds * 1000:
                    await asyncio.sleep(max_time_ms / 1000)
                    return CommandError(50, "operation exceeded time limit").to_reply()
                await asyncio.sleep(fault.seconds)
            elif fault.kind == "close":
                return _CLOSE
            elif fault.kind == "error":
                extra = {"errorLabels": fault.error_labels} if fault.error_labels else None
                return CommandError(
                    fault.code, fault.errmsg, code_name=fault.code_name, extra=extra
                ).to_reply()
        try:
            return self._dispatch(canonical, name, db, body, conn_id)
        except CommandError as error:
            return error.to_reply()
        except Exception as exc:
            self.errors.append(traceback.format_exc())
            return CommandError(1, f"FakeMongoServer internal error: {exc!r}").to_reply()

    def _dispatch(
        self, canonical: str, name: str, db: str, body: dict[str, Any], conn_id: int
    ) -> dict[str, Any]:
        if canonical in _ADMIN_ONLY and db != "admin":
            raise CommandError(13, f"{name} may only be run against the admin database.")
        fixture = self._fixture(canonical, db)
        if fixture is not None and canonical not in _FIXTURE_AWARE:
            return self._materialize(fixture, body)
        handler = self._handlers.get(canonical)
        if handler is None:
            raise CommandError(59, f"no such command: '{name}'")
        return handler(db, body, conn_id)

    def _fixture(self, canonical: str, db: str) -> FixtureValue | None:
        found = self._fixtures.get((canonical, db))
        if found is None:
            found = self._fixtures.get((canonical, None))
        return found

    @staticmethod
    def _materialize(fixture: FixtureValue, body: dict[str, Any]) -> dict[str, Any]:
        doc = dict(fixture(body)) if callable(fixture) else copy.deepcopy(dict(fixture))
        doc.setdefault("ok", 1.0)
        return doc

    # ---------------------------------------------------------------- cursors

    def _cursor_reply(
        self,
        ns: str,
        docs: list[dict[str, Any]],
        batch_size: Any = None,
        *,
        single_batch: bool = False,
    ) -> dict[str, Any]:
        size = DEFAULT_BATCH_SIZE if batch_size is None else int(batch_size)
        first, rest = docs[:size], docs[size:]
        cursor_id = 0
        if rest and not single_batch:
            cursor_id = next(self._cursor_ids)
            self._cursors[cursor_id] = _Cursor(ns, rest)
        return {"cursor": {"firstBatch": first, "id": Int64(cursor_id), "ns": ns}, "ok": 1.0}

    def _cmd_get_more(self, db: str, body: dict[str, Any], _conn: int) -> dict[str, Any]:
        cursor_id = int(body["getMore"])
        cursor = self._cursors.get(cursor_id)
        if cursor is None:
            raise CommandError(43, f"cursor id {cursor_id} not found")
        batch_size = body.get("batchSize")
        if batch_size:
            batch, cursor.docs = cursor.docs[: int(batch_size)], cursor.docs[int(batch_size) :]
        else:
            batch, cursor.docs = cursor.docs, []
        if not cursor.docs:
            del self._cursors[cursor_id]
            cursor_id = 0
        return {"cursor": {"nextBatch": batch, "id": Int64(cursor_id), "ns": cursor.ns}, "ok": 1.0}

    def _cmd_kill_cursors(self, db: str, body: dict[str, Any], _conn: int) -> dict[str, Any]:
        killed, not_found = [], []
        for raw in body.get("cursors", []):
            cursor_id = int(raw)
            if self._cursors.pop(cursor_id, None) is not None:
                killed.append(Int64(cursor_id))
            else:
                not_found.append(Int64(cursor_id))
        return {
            "cursorsKilled": killed,
            "cursorsNotFound": not_found,
            "cursorsAlive": [],
            "cursorsUnknown": [],
            "ok": 1.0,
        }

    # ---------------------------------------------------------------- housekeeping commands

    def _cmd_hello(self, db: str, body: dict[str, Any], conn_id: int) -> dict[str, Any]:
        name = next(iter(body))
        reply: dict[str, Any] = {}
        if body.get("helloOk"):
            reply["helloOk"] = True
        if name == "hello":
            reply["isWritablePrimary"] = True
        else:
            reply["ismaster"] = True
        if self.replica_set:
            me = self.address
            reply.update(
                {
                    "setName": self.replica_set,
                    "setVersion": 1,
                    "secondary": False,
                    "hosts": [me],
                    "primary": me,
                    "me": me,
                    "electionId": self._election_id,
                }
            )
        reply.update(
            {
                "maxBsonObjectSize": MAX_BSON_OBJECT_SIZE,
                "maxMessageSizeBytes": MAX_MESSAGE_SIZE_BYTES,
                "maxWriteBatchSize": MAX_WRITE_BATCH_SIZE,
                "localTime": dt.datetime.now(dt.UTC),
                "logicalSessionTimeoutMinutes": 30,
                "connectionId": conn_id,
                "minWireVersion": 0,
                "maxWireVersion": self.max_wire_version,
                "readOnly": False,
                "ok": 1.0,
            }
        )
        return reply

    def _cmd_ping(self, db: str, body: dict[str, Any], _conn: int) -> dict[str, Any]:
        return {"ok": 1.0}

    def _cmd_build_info(self, db: str, body: dict[str, Any], _conn: int) -> dict[str, Any]:
        parts = [int(p) for p in re.findall(r"\d+", self.version)[:3]]
        return {
            "version": self.version,
            "gitVersion": "0000000000000000000000000000000000000000",
            "modules": [],
            "allocator": "tcmalloc",
            "javascriptEngine": "mozjs",
            "sysInfo": "deprecated",
            "versionArray": [*parts, 0],
            "bits": 64,
            "debug": False,
            "maxBsonObjectSize": MAX_BSON_OBJECT_SIZE,
            "storageEngines": ["devnull", "wiredTiger"],
            "ok": 1.0,
        }

    def _cmd_connection_status(self, db: str, body: dict[str, Any], _c: int) -> dict[str, Any]:
        return {"authInfo": {"authenticatedUsers": [], "authenticatedUserRoles": []}, "ok": 1.0}

    def _cmd_whatsmyuri(self, db: str, body: dict[str, Any], _conn: int) -> dict[str, Any]:
        writer = self._conns.get(_conn)
        peer = writer[0].get_extra_info("peername") if writer else None
        you = f"{peer[0]}:{peer[1]}" if peer else "127.0.0.1:0"
        return {"you": you, "ok": 1.0}

    # ---------------------------------------------------------------- namespace commands

    def _existing(self, db: str, name: Any) -> FakeCollection | None:
        return self.data.get(db, {}).get(str(name))

    def _cmd_list_databases(self, db: str, body: dict[str, Any], _conn: int) -> dict[str, Any]:
        databases: list[dict[str, Any]] = []
        for name, colls in sorted(self.data.items()):
            size = sum(len(bson.encode(d)) for c in colls.values() for d in c.docs)
            databases.append({"name": name, "sizeOnDisk": 4096 + size, "empty": not colls})
        if body.get("filter"):
            databases = [d for d in databases if matches(d, body["filter"])]
        if body.get("nameOnly"):
            return {"databases": [{"name": d["name"]} for d in databases], "ok": 1.0}
        total = sum(d["sizeOnDisk"] for d in databases)
        return {
            "databases": databases,
            "totalSize": total,
            "totalSizeMb": total // (1024 * 1024),
            "ok": 1.0,
        }

    def _cmd_list_collections(self, db: str, body: dict[str, Any], _conn: int) -> dict[str, Any]:
        infos = []
        for name, coll in self.data.get(db, {}).items():
            infos.append(
                {
                    "name": name,
                    "type": "collection",
                    "options": dict(coll.options),
                    "info": {"readOnly": False, "uuid": Binary(coll.uuid.bytes, 4)},
                    "idIndex": _id_index(),
                }
            )
        infos = [i for i in infos if matches(i, body.get("filter"))]
        if body.get("nameOnly"):
            infos = [{"name": i["name"], "type": i["type"]} for i in infos]
        cursor = body.get("cursor") or {}
        return self._cursor_reply(f"{db}.$cmd.listCollections", infos, cursor.get("batchSize"))

    def _cmd_list_indexes(self, db: str, body: dict[str, Any], _conn: int) -> dict[str, Any]:
        coll = self._existing(db, body["listIndexes"])
        if coll is None:
            raise CommandError(26, f"ns does not exist: {_ns(db, body['listIndexes'])}")
        cursor = body.get("cursor") or {}
        specs = [copy.deepcopy(s) for s in coll.indexes.values()]
        return self._cursor_reply(
            f"{db}.$cmd.listIndexes.{coll.name}", specs, cursor.get("batchSize")
        )

    def _cmd_create(self, db: str, body: dict[str, Any], _conn: int) -> dict[str, Any]:
        name = str(body["create"])
        if self._existing(db, name) is not None:
            raise CommandError(48, f"Collection {_ns(db, name)} already exists.")
        coll = self.collection(db, name)
        coll.options = {
            k: v for k, v in body.items()
            if k not in ("create", "$db", "lsid", "$clusterTime", "writeConcern", "txnNumber")
        }
        return {"ok": 1.0}

    def _cmd_drop(self, db: str, body: dict[str, Any], _conn: int) -> dict[str, Any]:
        name = str(body["drop"])
        coll = self.data.get(db, {}).pop(name, None)
        if coll is None:
            return {"ok": 1.0}
        return {"nIndexesWas": len(coll.indexes), "ns": _ns(db, name), "ok": 1.0}

    def _cmd_drop_database(self, db: str, body: dict[str, Any], _conn: int) -> dict[str, Any]:
        self.data.pop(db, None)
        return {"ok": 1.0}

    def _cmd_create_indexes(self, db: str, body: dict[str, Any], _conn: int) -> dict[str, Any]:
        name = str(body["createIndexes"])
        created = self._existing(db, name) is None
        coll = self.collection(db, name)
        ns = _ns(db, name)
        before = len(coll.indexes)
        for raw in body.get("indexes", []):
            spec = dict(raw)
            key = spec.get("key")
            if not isinstance(key, Mapping) or not key:
                raise CommandError(67, "Index keys cannot be empty.", code_name="CannotCreateIndex")
            index_name = spec.get("name") or "_".join(f"{k}_{v}" for k, v in key.items())
            existing = coll.indexes.get(index_name)
            if existing is not None:
                if not _same_key(existing["key"], key):
                    raise CommandError(
                        86,
                        f"An existing index has the same name as the requested index. "
                        f"Requested index: {spec}, existing index: {existing}",
                    )
                if _index_options(existing) != _index_options(spec):
                    raise CommandError(
                        85,
                        f"An equivalent index already exists with the same name but different "
                        f"options. Requested index: {spec}, existing index: {existing}",
                    )
                continue
            for other in coll.indexes.values():
                if _same_key(other["key"], key) and _index_options(other) == _index_options(spec):
                    raise CommandError(
                        85, f"Index already exists with a different name: {other['name']}"
                    )
            stored = {"v": 2, "key": dict(key), "name": index_name, **_index_options(spec)}
            if stored.get("unique"):
                probe = FakeCollection(name, indexes={index_name: stored})
                for doc in coll.docs:
                    _check_unique(probe, ns, doc)
                    probe.docs.append(doc)
            coll.indexes[index_name] = stored
        reply: dict[str, Any] = {
            "numIndexesBefore": before,
            "numIndexesAfter": len(coll.indexes),
            "createdCollectionAutomatically": created,
            "ok": 1.0,
        }
        if len(coll.indexes) == before:
            reply["note"] = "all indexes already exist"
        return reply

    def _cmd_drop_indexes(self, db: str, body: dict[str, Any], _conn: int) -> dict[str, Any]:
        name = str(body["dropIndexes"])
        coll = self._existing(db, name)
        if coll is None:
            raise CommandError(26, f"ns not found {_ns(db, name)}")
        before = len(coll.indexes)
        target = body.get("index")
        if target == "*":
            coll.indexes = {"_id_": coll.indexes["_id_"]}
            return {"nIndexesWas": before, "msg": "non-_id indexes dropped for collection",
                    "ok": 1.0}
        names: list[str]
        if isinstance(target, Mapping):
            found = [n for n, s in coll.indexes.items() if _same_key(s["key"], target)]
            if not found:
                raise CommandError(27, f"can't find index with key: {dict(target)}")
            names = found[:1]
        elif isinstance(target, list):
            names = [str(t) for t in target]
        else:
            names = [str(target)]
        for index_name in names:
            if index_name == "_id_":
                raise CommandError(72, "cannot drop _id index")
            if index_name not in coll.indexes:
                raise CommandError(27, f"index not found with name [{index_name}]")
        for index_name in names:
            del coll.indexes[index_name]
        return {"nIndexesWas": before, "ok": 1.0}

    # ---------------------------------------------------------------- reads

    def _source_docs(self, db: str, name: Any) -> list[dict[str, Any]]:
        coll = self._existing(db, name)
        return list(coll.docs) if coll is not None else []

    def _cmd_find(self, db: str, body: dict[str, Any], _conn: int) -> dict[str, Any]:
        name = str(body["find"])
        docs = filter_docs(self._source_docs(db, name), body.get("filter"))
        docs = sort_docs(docs, body.get("sort"))
        skip = _int(body.get("skip"))
        if skip < 0:
            raise CommandError(51024, "BSON field 'skip' value must be >= 0")
        docs = docs[skip:]
        limit = _int(body.get("limit"))
        single_batch = bool(body.get("singleBatch"))
        if limit < 0:
            limit, single_batch = -limit, True
        if limit:
            docs = docs[:limit]
        docs = [apply_projection(d, body.get("projection")) for d in docs]
        return self._cursor_reply(
            _ns(db, name), docs, body.get("batchSize"), single_batch=single_batch
        )

    def _cmd_count(self, db: str, body: dict[str, Any], _conn: int) -> dict[str, Any]:
        docs = filter_docs(self._source_docs(db, body["count"]), body.get("query"))
        docs = docs[_int(body.get("skip")) :]
        limit = abs(_int(body.get("limit")))
        if limit:
            docs = docs[:limit]
        return {"n": len(docs), "ok": 1.0}

    def _cmd_distinct(self, db: str, body: dict[str, Any], _conn: int) -> dict[str, Any]:
        key = str(body["key"])
        values: list[Any] = []
        for doc in self._source_docs(db, body["distinct"]):
            if not matches(doc, body.get("query")):
                continue
            value = get_path(doc, key)
            if value is MISSING:
                continue
            for item in value if isinstance(value, list) else [value]:
                if not any(values_equal(item, v) for v in values):
                    values.append(item)
        return {"values": sorted(values, key=functools.cmp_to_key(compare_values)), "ok": 1.0}

    def _cmd_aggregate(self, db: str, body: dict[str, Any], _conn: int) -> dict[str, Any]:
        target = body["aggregate"]
        pipeline = list(body.get("pipeline", []))
        if "cursor" not in body and not body.get("explain"):
            raise CommandError(
                9, "The 'cursor' option is required, except for aggregate with the explain "
                "argument",
            )
        if pipeline and "$currentOp" in pipeline[0]:
            if db != "admin" or target != 1:
                raise CommandError(
                    73, "$currentOp must be run against the 'admin' database with {aggregate: 1}",
                    code_name="InvalidNamespace",
                )
            docs = copy.deepcopy(self._inprog(db))
            pipeline = pipeline[1:]
            ns = f"{db}.$cmd.aggregate"
        elif target == 1:
            raise CommandError(
                73, "{aggregate: 1} is not valid for '$match'; a collection is required.",
                code_name="InvalidNamespace",
            )
        else:
            docs = self._source_docs(db, target)
            ns = _ns(db, str(target))
        fixture = self._fixture("aggregate", db)
        if fixture is not None:
            return self._materialize(fixture, body)
        docs = run_pipeline(docs, pipeline)
        cursor = body.get("cursor") or {}
        return self._cursor_reply(ns, docs, cursor.get("batchSize"))

    # ---------------------------------------------------------------- writes

    def _cmd_insert(self, db: str, body: dict[str, Any], _conn: int) -> dict[str, Any]:
        name = str(body["insert"])
        coll = self.collection(db, name)
        ordered = body.get("ordered", True)
        inserted = 0
        write_errors = []
        for index, raw in enumerate(body.get("documents", [])):
            doc = _with_id_first(dict(raw))
            try:
                _check_unique(coll, _ns(db, name), doc)
            except CommandError as error:
                write_errors.append(error.to_write_error(index))
                if ordered:
                    break
                continue
            coll.docs.append(doc)
            inserted += 1
        reply: dict[str, Any] = {"n": inserted, "ok": 1.0}
        if write_errors:
            reply["writeErrors"] = write_errors
        return reply

    def _cmd_update(self, db: str, body: dict[str, Any], _conn: int) -> dict[str, Any]:
        name = str(body["update"])
        coll = self.collection(db, name)
        ns = _ns(db, name)
        ordered = body.get("ordered", True)
        n = modified = 0
        upserted: list[dict[str, Any]] = []
        write_errors = []
        ids = _IdIndex(coll.docs)
        for index, stmt in enumerate(body.get("updates", [])):
            try:
                matched_n, modified_n, upserted_id = self._update_one_statement(coll, ns, stmt, ids)
            except CommandError as error:
                write_errors.append(error.to_write_error(index))
                if ordered:
                    break
                continue
            n += matched_n
            modified += modified_n
            if upserted_id is not MISSING:
                n += 1
                upserted.append({"index": index, "_id": upserted_id})
        reply: dict[str, Any] = {"n": n, "nModified": modified, "ok": 1.0}
        if upserted:
            reply["upserted"] = upserted
        if write_errors:
            reply["writeErrors"] = write_errors
        return reply

    def _update_one_statement(
        self, coll: FakeCollection, ns: str, stmt: Mapping[str, Any], ids: _IdIndex
    ) -> tuple[int, int, Any]:
        query = stmt.get("q") or {}
        update = stmt.get("u")
        multi = bool(stmt.get("multi"))
        is_replacement = isinstance(update, Mapping) and not next(iter(update), "$").startswith(
            "$"
        )
        if multi and is_replacement:
            raise CommandError(9, "multi update is not supported for replacement-style update")
        by_id = ids.lookup(query)
        positions = matching_positions(coll.docs, query) if by_id is None else by_id
        if not multi:
            positions = positions[:1]
        if positions:
            modified = 0
            for position in positions:
                old = coll.docs[position]
                new = apply_update(old, update, is_insert=False)
                _check_unique(coll, ns, new, skip=position, ids=ids)
                if bson.encode(old) != bson.encode(new):
                    coll.docs[position] = new
                    modified += 1
            return len(positions), modified, MISSING
        if not stmt.get("upsert"):
            return 0, 0, MISSING
        new = self._upsert_document(query, update)
        _check_unique(coll, ns, new, ids=ids)
        coll.docs.append(new)
        ids.appended(new)
        return 0, 0, new["_id"]

    @staticmethod
    def _upsert_document(query: Mapping[str, Any], update: Any) -> dict[str, Any]:
        seed = _upsert_seed(query)
        is_replacement = isinstance(update, Mapping) and not next(iter(update), "$").startswith(
            "$"
        )
        if is_replacement:
            new = copy.deepcopy(dict(update))
            if "_id" not in new and "_id" in seed:
                new["_id"] = seed["_id"]
        else:
            new = apply_update(seed, update, is_insert=True)
        return _with_id_first(new)

    def _cmd_delete(self, db: str, body: dict[str, Any], _conn: int) -> dict[str, Any]:
        coll = self._existing(db, body["delete"])
        removed = 0
        for stmt in body.get("deletes", []):
            if coll is None:
                break
            positions = matching_positions(coll.docs, stmt.get("q"))
            if _int(stmt.get("limit")) == 1:
                positions = positions[:1]
            for position in reversed(positions):
                del coll.docs[position]
            removed += len(positions)
        return {"n": removed, "ok": 1.0}

    def _cmd_find_and_modify(self, db: str, body: dict[str, Any], _conn: int) -> dict[str, Any]:
        name = str(body[next(iter(body))])
        coll = self.collection(db, name)
        ns = _ns(db, name)
        query = body.get("query") or {}
        candidates = sort_docs(filter_docs(coll.docs, query), body.get("sort"))
        found = candidates[0] if candidates else None
        fields = body.get("fields")
        if body.get("remove"):
            if found is not None:
                coll.docs.remove(found)
            value = apply_projection(found, fields) if found is not None else None
            return {"lastErrorObject": {"n": int(found is not None)}, "value": value, "ok": 1.0}
        update = body.get("update")
        if update is None:
            raise CommandError(9, "Either an update or remove=true must be specified")
        if found is not None:
            position = next(i for i, d in enumerate(coll.docs) if d is found)
            new = apply_update(found, update, is_insert=False)
            _check_unique(coll, ns, new, skip=position)
            coll.docs[position] = new
            result = new if body.get("new") else found
            return {
                "lastErrorObject": {"n": 1, "updatedExisting": True},
                "value": apply_projection(result, fields),
                "ok": 1.0,
            }
        if not body.get("upsert"):
            return {"lastErrorObject": {"n": 0, "updatedExisting": False}, "value": None,
                    "ok": 1.0}
        new = self._upsert_document(query, update)
        _check_unique(coll, ns, new)
        coll.docs.append(new)
        return {
            "lastErrorObject": {"n": 1, "updatedExisting": False, "upserted": new["_id"]},
            "value": apply_projection(new, fields) if body.get("new") else None,
            "ok": 1.0,
        }

    # ---------------------------------------------------------------- diagnostics

    def _inprog(self, db: str) -> list[dict[str, Any]]:
        fixture = self._fixture("currentOp", db)
        if fixture is None:
            return []
        doc = fixture({"currentOp": 1}) if callable(fixture) else fixture
        return list(doc.get("inprog", []))

    def _cmd_current_op(self, db: str, body: dict[str, Any], _conn: int) -> dict[str, Any]:
        query = {
            k: v
            for k, v in body.items()
            if k != next(iter(body))
            and k not in _GENERIC_FIELDS
            and (not k.startswith("$") or k in ("$and", "$or", "$nor"))
        }
        fixture = self._fixture("currentOp", db)
        base = self._materialize(fixture, body) if fixture is not None else {"inprog": []}
        base["inprog"] = [op for op in base.get("inprog", []) if matches(op, query)]
        base.setdefault("ok", 1.0)
        return base

    def _cmd_kill_op(self, db: str, body: dict[str, Any], _conn: int) -> dict[str, Any]:
        if "op" not in body:
            raise CommandError(4, "Did not provide \"op\" field", code_name="NoSuchKey")
        opid = body["op"]
        self.killed_ops.append(opid)
        for key, fixture in list(self._fixtures.items()):
            if key[0] == "currentOp" and isinstance(fixture, Mapping):
                remaining = [
                    op for op in fixture.get("inprog", []) if not values_equal(op.get("opid"), opid)
                ]
                self._fixtures[key] = {**fixture, "inprog": remaining}
        return {"info": "attempting to kill op", "ok": 1.0}

    def _cmd_repl_set_get_status(self, db: str, body: dict[str, Any], _c: int) -> dict[str, Any]:
        fixture = self._fixture("replSetGetStatus", db)
        if fixture is not None:
            return self._materialize(fixture, body)
        if not self.replica_set:
            raise CommandError(76, "not running with --replSet")
        return replset_status(
            [replset_member(0, self.address, "PRIMARY", self_=True)], set_name=self.replica_set
        )

    def _cmd_server_status(self, db: str, body: dict[str, Any], _conn: int) -> dict[str, Any]:
        fixture = self._fixture("serverStatus", db)
        if fixture is not None:
            return self._materialize(fixture, body)
        return server_status(
            host=self.address,
            version=self.version,
            connections_current=len(self._conns),
            uptime_seconds=time.monotonic() - self._started_at,
            repl_set=self.replica_set,
        )

    def _cmd_db_stats(self, db: str, body: dict[str, Any], _conn: int) -> dict[str, Any]:
        fixture = self._fixture("dbStats", db)
        if fixture is not None:
            reply = self._materialize(fixture, body)
            reply.setdefault("db", db)
            return reply
        colls = self.data.get(db, {})
        objects = sum(len(c.docs) for c in colls.values())
        data_size = sum(len(bson.encode(d)) for c in colls.values() for d in c.docs)
        return db_stats(
            db,
            collections=len(colls),
            objects=objects,
            data_size=data_size,
            indexes=sum(len(c.indexes) for c in colls.values()),
            scale=_int(body.get("scale"), 1) or 1,
        )


# --------------------------------------------------------------------------------------------
# fixture builders
# --------------------------------------------------------------------------------------------

_PLAYCODE_MEMBERS = (
    "mongodb-0.mongodb-headless.playcode.svc.cluster.local:27017",
    "mongodb-1.mongodb-headless.playcode.svc.cluster.local:27017",
    "mongodb-2.mongodb-headless.playcode.svc.cluster.local:27017",
)

_STATE_CODES = {
    "STARTUP": 0,
    "PRIMARY": 1,
    "SECONDARY": 2,
    "RECOVERING": 3,
    "STARTUP2": 5,
    "UNKNOWN": 6,
    "ARBITER": 7,
    "DOWN": 8,
    "ROLLBACK": 9,
    "REMOVED": 10,
}


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def slow_collscan_op(
    *,
    opid: int = 4242,
    secs_running: int = 12,
    ns: str = "userdb.users",
    email: str = "alice@example.com",
    client: str = "10.42.0.17:53422",
    app_name: str = "playcode-app",
) -> dict[str, Any]:
    """An in-progress ``find`` doing a COLLSCAN, as it appears in ``currentOp.inprog``.

    The command filter contains an email address (PII Medic must not leak verbatim)."""
    db, _, coll = ns.partition(".")
    return {
        "type": "op",
        "host": "mongodb-0:27017",
        "desc": "conn1871",
        "connectionId": 1871,
        "client": client,
        "appName": app_name,
        "clientMetadata": {"driver": {"name": "nodejs|Mongoose", "version": "6.3.0"}},
        "active": True,
        "currentOpTime": _utcnow().isoformat(),
        "effectiveUsers": [{"user": "playcode", "db": "admin"}],
        "threaded": True,
        "opid": opid,
        "secs_running": Int64(secs_running),
        "microsecs_running": Int64(secs_running * 1_000_000 + 123_456),
        "op": "query",
        "ns": ns,
        "redacted": False,
        "command": {"find": coll, "filter": {"email": email}, "limit": 1, "$db": db},
        "planSummary": "COLLSCAN",
        "numYields": 1482,
        "queryFramework": "classic",
        "locks": {"FeatureCompatibilityVersion": "r", "Global": "r"},
        "waitingForLock": False,
        "lockStats": {"Global": {"acquireCount": {"r": Int64(1483)}}},
        "waitingForFlowControl": False,
        "flowControlStats": {},
    }


def fast_op(*, opid: int = 4243, ns: str = "userdb.sessions") -> dict[str, Any]:
    """A short indexed op (secs_running 0) that a ``secs_running >= 3`` filter excludes."""
    db, _, coll = ns.partition(".")
    return {
        "type": "op",
        "host": "mongodb-0:27017",
        "desc": "conn1872",
        "connectionId": 1872,
        "client": "10.42.0.18:53500",
        "appName": "playcode-app",
        "active": True,
        "opid": opid,
        "secs_running": Int64(0),
        "microsecs_running": Int64(1834),
        "op": "query",
        "ns": ns,
        "command": {"find": coll, "filter": {"token": "<redacted>"}, "$db": db},
        "planSummary": "IXSCAN { token: 1 }",
        "numYields": 0,
        "locks": {},
        "waitingForLock": False,
    }


def current_op_fixture(*ops: Mapping[str, Any]) -> dict[str, Any]:
    return {"inprog": [dict(op) for op in ops], "ok": 1.0}


def replset_member(
    member_id: int,
    name: str,
    state: str,
    *,
    healthy: bool = True,
    self_: bool = False,
    sync_source: str = "",
    heartbeat_message: str = "",
) -> dict[str, Any]:
    """One ``members[]`` entry of ``replSetGetStatus``; ``state`` like "PRIMARY"."""
    now = _utcnow()
    optime = {"ts": Timestamp(int(now.timestamp()), 1), "t": Int64(7)}
    member: dict[str, Any] = {
        "_id": member_id,
        "name": name,
        "health": 1.0 if healthy else 0.0,
        "state": _STATE_CODES[state] if healthy else 8,
        "stateStr": state if healthy else "(not reachable/healthy)",
        "uptime": 86_400 if healthy else 0,
        "optime": optime if healthy else {"ts": Timestamp(0, 0), "t": Int64(-1)},
        "optimeDate": now if healthy else dt.datetime(1970, 1, 1, tzinfo=dt.UTC),
        "syncSourceHost": sync_source,
        "syncSourceId": -1,
        "infoMessage": "",
        "configVersion": 5,
        "configTerm": 7,
    }
    if self_:
        member["self"] = True
    else:
        member["lastHeartbeat"] = now
        member["lastHeartbeatRecv"] = now
        member["pingMs"] = Int64(0)
        member["lastHeartbeatMessage"] = heartbeat_message
    if healthy and state == "PRIMARY":
        member["electionTime"] = Timestamp(int(now.timestamp()) - 3600, 1)
        member["electionDate"] = now - dt.timedelta(hours=1)
    return member


def replset_status(members: Sequence[Mapping[str, Any]], *, set_name: str = "rs0") -> dict[str, Any]:
    """A ``replSetGetStatus`` reply around ``members`` (``myState`` from the self member)."""
    me = next((m for m in members if m.get("self")), members[0] if members else {})
    voting = len(members)
    return {
        "set": set_name,
        "date": _utcnow(),
        "myState": me.get("state", 0),
        "term": Int64(7),
        "syncSourceHost": me.get("syncSourceHost", ""),
        "syncSourceId": -1,
        "heartbeatIntervalMillis": Int64(2000),
        "majorityVoteCount": voting // 2 + 1,
        "writeMajorityCount": voting // 2 + 1,
        "votingMembersCount": voting,
        "writableVotingMembersCount": voting,
        "members": [dict(m) for m in members],
        "ok": 1.0,
    }


def replset_status_healthy(
    *, set_name: str = "rs0", hosts: Sequence[str] = _PLAYCODE_MEMBERS
) -> dict[str, Any]:
    """One PRIMARY (``mongodb-0``, self) and healthy SECONDARYs."""
    members = [replset_member(0, hosts[0], "PRIMARY", self_=True)]
    members += [
        replset_member(i, host, "SECONDARY", sync_source=hosts[0])
        for i, host in enumerate(hosts[1:], start=1)
    ]
    return replset_status(members, set_name=set_name)


def replset_status_no_primary(
    *, set_name: str = "rs0", hosts: Sequence[str] = _PLAYCODE_MEMBERS
) -> dict[str, Any]:
    """A set that lost its primary: two SECONDARYs, the last member unreachable."""
    members = [replset_member(0, hosts[0], "SECONDARY", self_=True)]
    members += [replset_member(i, h, "SECONDARY") for i, h in enumerate(hosts[1:-1], start=1)]
    members.append(
        replset_member(
            len(hosts) - 1,
            hosts[-1],
            "PRIMARY",
            healthy=False,
            heartbeat_message=f"Error connecting to {hosts[-1]} :: caused by :: "
            "Connection refused",
        )
    )
    return replset_status(members, set_name=set_name)


def server_status(
    *,
    host: str = "mongodb-0:27017",
    version: str = "7.0.14",
    connections_current: int = 42,
    connections_available: int = 838_818,
    uptime_seconds: float = 86_400,
    resident_mb: int = 1024,
    cache_used_bytes: int = 512 * 1024 * 1024,
    cache_max_bytes: int = 1536 * 1024 * 1024,
    repl_set: str | None = "rs0",
    is_primary: bool = True,
) -> dict[str, Any]:
    """A plausible ``serverStatus`` reply (healthy by default)."""
    reply: dict[str, Any] = {
        "host": host,
        "version": version,
        "process": "mongod",
        "pid": Int64(1),
        "uptime": float(int(uptime_seconds)),
        "uptimeMillis": Int64(int(uptime_seconds * 1000)),
        "uptimeEstimate": Int64(int(uptime_seconds)),
        "localTime": _utcnow(),
        "asserts": {"regular": 0, "warning": 0, "msg": 0, "user": 12, "rollovers": 0},
        "connections": {
            "current": connections_current,
            "available": connections_available,
            "totalCreated": connections_current + 100,
            "active": max(1, connections_current // 4),
        },
        "globalLock": {
            "totalTime": Int64(int(uptime_seconds * 1_000_000)),
            "currentQueue": {"total": 0, "readers": 0, "writers": 0},
            "activeClients": {"total": 0, "readers": 0, "writers": 0},
        },
        "mem": {"bits": 64, "resident": resident_mb, "virtual": resident_mb * 3,
                "supported": True},
        "opcounters": {
            "insert": Int64(1200),
            "query": Int64(98_000),
            "update": Int64(4_300),
            "delete": Int64(120),
            "getmore": Int64(800),
            "command": Int64(250_000),
        },
        "wiredTiger": {
            "cache": {
                "bytes currently in the cache": Int64(cache_used_bytes),
                "maximum bytes configured": Int64(cache_max_bytes),
                "tracked dirty bytes in the cache": Int64(cache_used_bytes // 50),
            }
        },
        "ok": 1.0,
    }
    if repl_set:
        reply["repl"] = {
            "setName": repl_set,
            "isWritablePrimary": is_primary,
            "secondary": not is_primary,
            "hosts": list(_PLAYCODE_MEMBERS),
            "primary": _PLAYCODE_MEMBERS[0] if is_primary else None,
            "me": _PLAYCODE_MEMBERS[0],
        }
    return reply


def db_stats(
    db: str = "userdb",
    *,
    collections: int = 4,
    objects: int = 125_000,
    data_size: int = 180 * 1024 * 1024,
    indexes: int = 9,
    fs_total_size: int = 100 * 1024**3,
    fs_used_ratio: float = 0.35,
    scale: int = 1,
) -> dict[str, Any]:
    """A ``dbStats`` reply; ``fsUsedSize / fsTotalSize == fs_used_ratio``."""
    storage = int(data_size * 0.6)
    index_size = max(4096, data_size // 10)
    return {
        "db": db,
        "collections": Int64(collections),
        "views": Int64(0),
        "objects": Int64(objects),
        "avgObjSize": float(data_size / objects) if objects else 0.0,
        "dataSize": float(data_size / scale),
        "storageSize": float(storage / scale),
        "indexes": Int64(indexes),
        "indexSize": float(index_size / scale),
        "totalSize": float((storage + index_size) / scale),
        "scaleFactor": Int64(scale),
        "fsUsedSize": float(int(fs_total_size * fs_used_ratio) / scale),
        "fsTotalSize": float(fs_total_size / scale),
        "ok": 1.0,
    }


def db_stats_nearly_full(db: str = "userdb", *, ratio: float = 0.95) -> dict[str, Any]:
    """``dbStats`` for a volume that is ``ratio`` (95 %) full."""
    return db_stats(db, fs_used_ratio=ratio, data_size=60 * 1024**3, objects=90_000_000)


def healthy_fixtures() -> dict[str, dict[str, Any]]:
    """Fixtures for a healthy PlayCode replica set (pass to ``set_fixtures``)."""
    return {
        "replSetGetStatus": replset_status_healthy(),
        "serverStatus": server_status(),
        "dbStats": db_stats(),
        "currentOp": current_op_fixture(fast_op()),
    }


def slow_collscan_fixtures() -> dict[str, dict[str, Any]]:
    """Healthy set, but a 12 s COLLSCAN on ``userdb.users`` is in progress."""
    return {**healthy_fixtures(), "currentOp": current_op_fixture(slow_collscan_op(), fast_op())}


def lost_primary_fixtures() -> dict[str, dict[str, Any]]:
    """No PRIMARY in the set, one member unreachable."""
    return {
        **healthy_fixtures(),
        "replSetGetStatus": replset_status_no_primary(),
        "serverStatus": server_status(is_primary=False),
    }


def nearly_full_disk_fixtures(ratio: float = 0.95) -> dict[str, dict[str, Any]]:
    """The data volume is ~95 % full (``dbStats`` fsUsedSize / fsTotalSize)."""
    return {**healthy_fixtures(), "dbStats": db_stats_nearly_full(ratio=ratio)}


# --------------------------------------------------------------------------------------------
# unreachable server
# --------------------------------------------------------------------------------------------


def dead_port() -> int:
    """A loopback port that was just bound and closed: connecting to it is refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def dead_url() -> str:
    return f"mongodb://127.0.0.1:{dead_port()}/?directConnection=true"
