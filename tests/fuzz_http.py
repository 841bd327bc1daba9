"""Hostile requests for Medic's webhook, generated with hypothesis, and the checks every answer must
pass. Used by tests/integration/test_fuzz_intake.py (CI size) and bench/bench_fuzz.py (long run).

Kinds of case:

- ``schema``: Alertmanager v4 payloads built field by field with hostile values (lone surrogates
  written as ``\\ud800`` escapes or as raw CESU bytes, NUL, huge integers, deep nesting, unicode
  label names, empty or odd fingerprints, missing and extra fields, bad timestamps);
- ``bytes``: arbitrary bytes as the body;
- ``mutated``: a valid payload with a few bytes flipped, inserted or cut;
- ``headers``: a valid payload with hostile Authorization / Content-Type / Content-Encoding values
  and extra headers (raw bytes, never CR or LF: the framing itself is not the subject);
- ``query``: GETs of the read API with hostile query strings.

Every alert of a generated payload carries a unique ``fuzz_id`` label (and a unique fingerprint
suffix), so each accepted alert is a new episode and can be looked for in the incidents API.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote_from_bytes

from hypothesis import strategies as st

from tests.medic_app import RunningMedic, medic_settings, running_medic
from tests.payloads import alert, payload
from tests.rawhttp import RawResponse, parse_response, request_bytes

WEBHOOK = "fuzz-webhook-token-0123456789"
READ = "fuzz-read-token-0123456789"
PROBLEM = "application/problem+json"


class Raw(str):
    """A JSON fragment written as is (numbers past json.dumps' limits, deep nesting)."""


def mostly(
    common: st.SearchStrategy[Any], rare: st.SearchStrategy[Any], one_in: int = 11
) -> st.SearchStrategy[Any]:
    """``rare`` about once in ``one_in`` draws. (``st.one_of`` with a strategy repeated does not
    weigh it: the copies count once; and hypothesis favours the ends of a range, so the rare
    choice is its middle.)"""
    return st.integers(0, one_in - 1).flatmap(lambda i: rare if i == one_in // 2 else common)


HOSTILE_TEXT = [
    "\ud800",
    "\udfff",
    "a\udc80b",
    "\x00",
    "nul\x00inside",
    "\u202eevil",
    "\ufeff",
    "𝕳𝖊𝖑𝖑𝖔",
    "ß",
    "' OR 1=1 --",
    "{{7*7}}",
    "<script>alert(1)</script>",
    "-----BEGIN PRIVATE KEY-----\nMIIB",
    "\\",
    '"',
    "\n\r\t",
    " ",
    "",
    "a" * 3000,
    "password=hunter2",
    "%ff%00",
]

plain_text = st.text(max_size=30)  # any unicode but lone surrogates
text = mostly(
    plain_text,
    st.one_of(
        st.sampled_from(HOSTILE_TEXT), st.text(st.characters(categories=["Cs", "Cc", "Zl", "Mn"]), max_size=6)
    ),
    one_in=6,
)
label_name = st.one_of(
    st.from_regex(r"[a-zA-Z_][a-zA-Z0-9_]{0,20}", fullmatch=True),
    text,
)
numbers = st.one_of(
    st.integers(),
    st.integers(min_value=4000, max_value=6000).map(lambda n: Raw("9" * n)),
    st.just(Raw("1e999")),
    st.just(Raw("-0")),
    st.floats(allow_nan=True, allow_infinity=True),
)
scalars = st.one_of(st.none(), st.booleans(), numbers, text)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(text, inner, max_size=3)),
    max_leaves=8,
)
deep = st.integers(min_value=150, max_value=3000).map(lambda d: Raw("[" * d + "]" * d))
odd_value = st.one_of(numbers, deep, json_values)

good_times = st.one_of(
    st.datetimes().map(lambda d: d.isoformat() + "Z"),
    st.sampled_from(
        [
            "2026-11-26T08:00:00Z",
            "2026-11-26T08:00:00.123456789+02:00",
            "0001-01-01T00:00:00Z",
            "9999-12-31T23:59:59Z",
        ]
    ),
)
bad_times = st.one_of(st.sampled_from(["2026-13-45T99:00:00Z", "", "now", "1732608000"]), text)
timestamps = mostly(good_times, bad_times)
fingerprints = st.one_of(
    st.from_regex(r"[0-9a-f]{16}", fullmatch=True),
    st.sampled_from(["", " ", "\ud800", "\x00", "x" * 2000]),
    text,
)


def _maybe(value: st.SearchStrategy[Any], odd: st.SearchStrategy[Any] = odd_value) -> st.SearchStrategy[Any]:
    """Mostly the field's own kind, sometimes anything (hypothesis favours a choice's first and
    last branches: the odd one sits in the middle)."""
    return mostly(value, odd, one_in=5)


def _sometimes(draw: st.DrawFn) -> bool:
    """True about one time in ten."""
    return draw(st.sampled_from([False] * 5 + [True] + [False] * 5))


def _field(
    draw: st.DrawFn, odd: bool, value: st.SearchStrategy[Any], other: st.SearchStrategy[Any] = odd_value
) -> Any:
    """A field of its own kind; in an odd payload, sometimes anything."""
    return draw(_maybe(value, other) if odd else value)


@st.composite
def alerts(draw: st.DrawFn, odd: bool = False) -> dict[str, Any]:
    labels: Any = draw(st.dictionaries(label_name, text, max_size=4))
    if draw(st.booleans()):
        labels["alertname"] = draw(st.sampled_from(["PlayCodeHighLatency", "KubePodCrashLooping", "Fuzz"]))
        labels["namespace"] = "playcode"
    alert: dict[str, Any] = {
        "status": _field(draw, odd, st.sampled_from(["firing", "resolved"]), st.one_of(text, odd_value)),
        "labels": labels if not odd or not _sometimes(draw) else draw(odd_value),
        "annotations": _field(draw, odd, st.dictionaries(text, text, max_size=3)),
        "startsAt": _field(draw, odd, timestamps),
        "endsAt": _field(draw, odd, timestamps),
        "generatorURL": _field(draw, odd, text),
        "fingerprint": _field(draw, odd, fingerprints),
    }
    if _sometimes(draw):  # extra fields, kept by Medic as Alertmanager may add some
        alert.update(draw(st.dictionaries(text, odd_value if odd else json_values, max_size=2)))
    if odd and _sometimes(draw):
        for name in draw(st.lists(st.sampled_from(list(alert)), max_size=2)):
            alert.pop(name, None)
    return alert


@st.composite
def payloads(draw: st.DrawFn) -> dict[str, Any]:
    """A webhook body; about one in ten is "odd" (fields of the wrong type, missing, huge numbers,
    deep nesting), the others have the right shape with hostile text in them."""
    odd = _sometimes(draw)
    version = st.one_of(st.sampled_from(["3", "5", 4, ""]), odd_value)
    body: dict[str, Any] = {
        "version": _field(draw, odd, st.just("4"), version),
        "groupKey": _field(draw, odd, text),
        "truncatedAlerts": _field(draw, odd, st.integers(0, 10)),
        "status": _field(draw, odd, st.sampled_from(["firing", "resolved"])),
        "receiver": _field(draw, odd, text),
        "groupLabels": _field(draw, odd, st.dictionaries(label_name, text, max_size=3)),
        "commonLabels": _field(draw, odd, st.dictionaries(label_name, text, max_size=3)),
        "commonAnnotations": _field(draw, odd, st.dictionaries(text, text, max_size=3)),
        "externalURL": _field(draw, odd, text),
        "alerts": _field(draw, odd, st.lists(alerts(odd), min_size=1, max_size=4)),
    }
    if _sometimes(draw):
        body.update(draw(st.dictionaries(text, odd_value if odd else json_values, max_size=2)))
    if odd and _sometimes(draw):
        for name in draw(st.lists(st.sampled_from(list(body)), max_size=2)):
            body.pop(name, None)
    return body


def dump(value: Any, ascii_only: bool = True) -> str:
    """JSON text, with Raw fragments as they are; NaN/Infinity as Python writes them."""
    if isinstance(value, Raw):
        return str(value)
    if isinstance(value, dict):
        items = (
            f"{json.dumps(str(k), ensure_ascii=ascii_only)}:{dump(v, ascii_only)}" for k, v in value.items()
        )
        return "{" + ",".join(items) + "}"
    if isinstance(value, list):
        return "[" + ",".join(dump(v, ascii_only) for v in value) + "]"
    return json.dumps(value, ensure_ascii=ascii_only)


def encode(doc: Any, ascii_only: bool) -> bytes:
    # not ASCII-only: lone surrogates become CESU bytes, which are not UTF-8 (hostile too)
    return dump(doc, ascii_only).encode("utf-8", "surrogatepass")


header_bytes = st.binary(max_size=60).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b""))
header_names = st.one_of(
    st.sampled_from(
        [b"Authorization", b"Content-Type", b"Content-Encoding", b"Cookie", b"Accept", b"X-Forwarded-User"]
    ),
    st.from_regex(rb"[A-Za-z][A-Za-z0-9-]{0,20}", fullmatch=True),
)


Mutation = tuple[float, str, int, bytes]  # where (0..1 of the body), what, a byte, bytes to insert


@dataclass
class Case:
    """What hypothesis draws; :func:`prepare` turns it into bytes (the unique tags are added then,
    outside the strategies, which must draw the same data for the same example)."""

    kind: str
    method: str = "POST"
    path: str = "/api/v1/alerts"
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytes | None = None
    doc: Any = None  # a JSON document to encode as the body
    ascii_only: bool = True
    mutations: list[Mutation] = field(default_factory=list)
    fuzz_ids: list[str] = field(default_factory=list)  # set by prepare(): labels of its alerts


_ids = itertools.count(1)


def _tag(doc: Any) -> list[str]:
    """Give every alert of ``doc`` a unique fuzz_id label and fingerprint suffix."""
    tagged: list[str] = []
    alerts = doc.get("alerts") if isinstance(doc, dict) else None
    for item in alerts if isinstance(alerts, list) else []:
        if not isinstance(item, dict):
            continue
        fid = f"f{next(_ids)}"
        if isinstance(item.get("labels"), dict):
            item["labels"]["fuzz_id"] = fid
            tagged.append(fid)
        if isinstance(item.get("fingerprint"), str) and item["fingerprint"]:
            item["fingerprint"] += f"-{fid}"
    return tagged


def _mutate(body: bytes, mutations: list[Mutation]) -> bytes:
    out = bytearray(body)
    for where, op, byte, extra in mutations:
        at = min(int(where * len(out)), len(out))
        if op == "flip" and at < len(out):
            out[at] = byte
        elif op == "insert":
            out[at:at] = extra
        elif op == "cut":
            del out[at : at + 1 + byte % 20]
    return bytes(out)


def prepare(case: Case) -> Case:
    """The case with its body as bytes and its alerts tagged (each call: new tags)."""
    if case.doc is None:
        return case
    doc = copy.deepcopy(case.doc)
    ids = _tag(doc)
    body = _mutate(encode(doc, case.ascii_only), case.mutations)
    return Case(case.kind, case.method, case.path, case.headers, body, fuzz_ids=ids)


AUTH = (b"Authorization", f"Bearer {WEBHOOK}".encode())
JSON_TYPE = (b"Content-Type", b"application/json")


@st.composite
def schema_cases(draw: st.DrawFn) -> Case:
    doc = draw(payloads())
    return Case("schema", headers=[AUTH, JSON_TYPE], doc=doc, ascii_only=not _sometimes(draw))


@st.composite
def bytes_cases(draw: st.DrawFn) -> Case:
    return Case("bytes", headers=[AUTH, JSON_TYPE], body=draw(st.binary(max_size=3000)))


def _valid_doc() -> dict[str, Any]:
    return payload([alert("PlayCodeHighLatency", namespace="playcode", deployment="fuzz")])


mutations = st.lists(
    st.tuples(
        st.floats(0, 1),
        st.sampled_from(["flip", "insert", "cut"]),
        st.integers(0, 255),
        st.binary(min_size=1, max_size=8),
    ),
    min_size=1,
    max_size=4,
)


@st.composite
def mutated_cases(draw: st.DrawFn) -> Case:
    return Case("mutated", headers=[AUTH, JSON_TYPE], doc=_valid_doc(), mutations=draw(mutations))


SPECIAL_HEADER_VALUES = [
    b"Bearer " + WEBHOOK.encode() + b"\xff",
    b"Bearer \xff\xfe",
    b"Basic \xff",
    b"gzip",
    b"deflate",
    b"br",
    b"identity",
    b"gzip, gzip",
    b"application/json; charset=latin-1",
    b"application/json; charset=\xff",
    b"text/plain",
    b"",
]


@st.composite
def header_cases(draw: st.DrawFn) -> Case:
    headers = [AUTH, JSON_TYPE]
    for _ in range(draw(st.integers(1, 3))):
        name = draw(header_names)
        value = draw(st.one_of(header_bytes, st.sampled_from(SPECIAL_HEADER_VALUES)))
        if draw(st.booleans()):  # replace rather than add
            headers = [h for h in headers if h[0].lower() != name.lower()]
        headers.append((name, value))
    return Case("headers", headers=headers, doc=_valid_doc())


QUERY_PATHS = ["/api/v1/incidents", "/api/v1/incidents/x/alerts", "/incidents", "/api/v1/incidents/x"]
QUERY_NAMES = [b"limit", b"offset", b"page", b"status", b"format", b"rule", b"namespace"]


@st.composite
def query_cases(draw: st.DrawFn) -> Case:
    path = draw(st.sampled_from(QUERY_PATHS))
    params = draw(st.lists(st.tuples(st.sampled_from(QUERY_NAMES), st.binary(max_size=30)), max_size=4))
    query = "&".join(f"{k.decode()}={quote_from_bytes(v)}" for k, v in params)
    auth = (b"Authorization", f"Bearer {READ}".encode())
    return Case("query", method="GET", path=f"{path}?{query}", headers=[auth])


cases = st.one_of(
    schema_cases(),
    schema_cases(),
    schema_cases(),
    bytes_cases(),
    mutated_cases(),
    header_cases(),
    query_cases(),
)


# --------------------------------------------------------------------------- sending and checking
def send(port: int, case: Case, timeout: float = 30.0) -> RawResponse:
    """One request on its own connection, as raw bytes (blocking: hypothesis drives it)."""
    case = prepare(case)
    data = request_bytes(case.method, case.path, headers=case.headers, body=case.body)
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return parse_response(b"".join(chunks))


def check(case: Case, r: RawResponse) -> None:
    """What every answer must be: no 5xx (the store is never down here); a 4xx is problem+json,
    or aiohttp's own plain-text 400 for a request head it could not parse (it never reached
    Medic); a page route may answer HTML."""
    assert r.status < 500, (case.kind, r.status, r.body[:300], case.headers, (case.body or b"")[:200])
    if r.status >= 400:
        allowed = {PROBLEM, "text/plain"} if case.kind == "headers" else {PROBLEM}
        if case.path.startswith("/incidents"):
            allowed.add("text/html")
        assert r.content_type in allowed, (case.kind, r.status, r.content_type, r.body[:200], case.headers)
        if r.content_type == "text/plain":
            assert r.status == 400, (case.kind, r.status, r.body[:200])


def healthy(port: int) -> bool:
    return send(port, Case("health", method="GET", path="/healthz"), timeout=10).status == 200


def visible_fuzz_ids(port: int) -> set[str]:
    """Every fuzz_id label in every incident's alerts, through the read API."""
    seen: set[str] = set()
    auth = [(b"Authorization", f"Bearer {READ}".encode())]
    offset = 0
    while True:
        page = send(port, Case("read", "GET", f"/api/v1/incidents?limit=500&offset={offset}", auth)).json()
        for item in page["items"]:
            a_off = 0
            while True:
                path = f"/api/v1/incidents/{item['id']}/alerts?limit=1000&offset={a_off}"
                alerts = send(port, Case("read", "GET", path, auth)).json()
                seen.update(str(a["labels"].get("fuzz_id")) for a in alerts["items"])
                a_off += len(alerts["items"])
                if not alerts["items"] or a_off >= alerts["total"]:
                    break
        offset += len(page["items"])
        if not page["items"] or offset >= page["total"]:
            return seen


# --------------------------------------------------------------------------- Medic in a thread
class MedicThread:
    """The real app on a free port, served from its own event loop in a thread, so that a blocking
    hypothesis test can talk to it."""

    def __init__(self, data_dir: Path, **overrides: Any) -> None:
        self.settings = medic_settings(data_dir, webhook_token=WEBHOOK, read_token=READ, **overrides)
        self.loop = asyncio.new_event_loop()
        self.medic: RunningMedic | None = None
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="medic-fuzz", daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self._serve())
        except BaseException as exc:
            self._error = exc
            self._ready.set()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        async with running_medic(self.settings) as m:
            self.medic = m
            self._ready.set()
            await self._stop.wait()

    @property
    def port(self) -> int:
        assert self.medic is not None
        return self.medic.port

    def drain(self, timeout: float = 60.0) -> None:
        assert self.medic is not None
        asyncio.run_coroutine_threadsafe(self.medic.drain(timeout), self.loop).result(timeout + 5)

    def start(self) -> None:
        self._thread.start()
        self._ready.wait(60)
        if self._error is not None:
            raise self._error

    def stop(self) -> None:
        if self._stop is not None:
            self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(60)


@contextmanager
def medic_thread(data_dir: Path, **overrides: Any) -> Iterator[MedicThread]:
    server = MedicThread(data_dir, **overrides)
    server.start()
    try:
        yield server
    finally:
        server.stop()
