"""Hostile client input is a 4xx problem+json on every route; a 5xx only when Medic is at fault
(500, logged) or cannot store (503 + Retry-After). Issue 11, item 3: each case here was a plain-text
500 before (JSON nested 1,000 deep, a 5,000-digit integer, gzip on a plain body, Authorization
bytes that are not UTF-8, a page past SQLite's integer range)."""

from __future__ import annotations

import base64
import gzip
import json
import zlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
import structlog
from aiohttp import web
from aiohttp.test_utils import TestServer

from medic.app.http.web.access import ReadAccess
from medic.domain.errors import BackendUnavailable, StoreError
from medic.intake.http_errors import bounded_int, edge_middleware, json_depth
from tests.medic_app import RunningMedic, medic_settings, running_medic
from tests.payloads import alert, payload
from tests.rawhttp import RawResponse, raw_request

WEBHOOK = "webhook-token-0123456789"
ADMIN = "admin-token-0123456789"
READ = "read-token-0123456789ab"
PROBLEM = "application/problem+json"


@pytest.fixture
async def medic(tmp_path: Path) -> AsyncIterator[RunningMedic]:
    settings = medic_settings(
        tmp_path,
        webhook_token=WEBHOOK,
        admin_token=ADMIN,
        read_token=READ,
        auth_proxy_header="X-Forwarded-User",
    )
    async with running_medic(settings) as m:
        yield m


def good_body(**labels: str) -> bytes:
    return json.dumps(payload([alert("PlayCodeHighLatency", namespace="playcode", **labels)])).encode()


def bearer(token: str) -> tuple[bytes, bytes]:
    return (b"Authorization", b"Bearer " + token.encode())


JSON = (b"Content-Type", b"application/json")


async def post_webhook(m: RunningMedic, body: bytes, *extra: tuple[bytes, bytes]) -> RawResponse:
    return await raw_request(
        m.port, "POST", "/api/v1/alerts", headers=[bearer(WEBHOOK), JSON, *extra], body=body
    )


def assert_problem(r: RawResponse, status: int) -> dict[str, Any]:
    assert r.status == status, (r.status, r.body[:300])
    assert r.content_type == PROBLEM, r.headers
    doc = r.json()
    assert doc["status"] == status and doc["title"]
    return dict(doc)


# --------------------------------------------------------------------------- JSON the parser refuses
def _deep(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


PAST_LIMITS = {
    "deep-1000": b'{"version": "4", "x": ' + _deep(1000) + b"}",
    "deep-100000": b'{"version": "4", "x": ' + _deep(100_000) + b"}",
    "deep-in-valid": good_body()[:-1] + b', "extra": ' + _deep(1000) + b"}",
    "deep-300-in-valid": good_body()[:-1] + b', "extra": ' + _deep(300) + b"}",  # Python parses it
    "bigint": b'{"version": "4", "x": ' + b"9" * 5000 + b"}",
    "bigint-4301": good_body()[:-1] + b', "extra": ' + b"9" * 4301 + b"}",
    "neg-bigint": good_body()[:-1] + b', "extra": -' + b"9" * 10_000 + b"}",
}


async def test_json_past_parser_limits_is_a_400(medic: RunningMedic) -> None:
    for name, body in PAST_LIMITS.items():
        doc = assert_problem(await post_webhook(medic, body), 400)
        assert doc["title"] == "Malformed JSON", name
    assert await medic.runtime.inbox.depth() == 0  # nothing of it was accepted


# --------------------------------------------------------------------------- Content-Encoding
ENCODINGS = [
    (b"gzip", good_body(), 400, "Malformed body"),  # a plain body labelled gzip
    (b"deflate", good_body(), 400, "Malformed body"),
    (b"gzip", gzip.compress(good_body())[:-12], 400, "Malformed JSON"),  # cut short: decodes partly
    (b"br", good_body(), 415, "Unsupported Media Type"),
    (b"zstd", good_body(), 415, "Unsupported Media Type"),
    (b"compress", good_body(), 415, "Unsupported Media Type"),
    (b"gzip, gzip", gzip.compress(gzip.compress(good_body())), 415, "Unsupported Media Type"),
    (b"x-\xff\xfe", good_body(), 415, "Unsupported Media Type"),
]


async def test_bad_or_unsupported_content_encoding(medic: RunningMedic) -> None:
    for encoding, body, status, title in ENCODINGS:
        r = await post_webhook(medic, body, (b"Content-Encoding", encoding))
        if encoding in (b"br", b"zstd") and r.content_type == "text/plain":
            # aiohttp without Brotli/zstandard refuses these before the app runs: its own 400,
            # still a client error, never accepted
            assert r.status == 400 and b"Can not decode content-encoding" in r.body
            continue
        assert assert_problem(r, status)["title"] == title, encoding
        if status == 415:
            assert r.headers["accept-encoding"] == "gzip, deflate"
        assert r.headers.get("connection", "").lower() == "close"
    assert await medic.runtime.inbox.depth() == 0


async def test_gzip_and_deflate_bodies_are_decoded_and_stored(medic: RunningMedic) -> None:
    for encoding, data in (
        (b"gzip", gzip.compress(good_body(deployment="gz"))),
        (b"deflate", zlib.compress(good_body(deployment="zl"))),
    ):
        r = await post_webhook(medic, data, (b"Content-Encoding", encoding))
        assert r.status == 200 and r.json()["new"] == 1, r.body
    await medic.drain()
    async with (
        aiohttp.ClientSession(headers={"Authorization": f"Bearer {READ}"}) as s,
        s.get(f"{medic.url}/api/v1/incidents?limit=500") as resp,
    ):
        listing = await resp.json()
    targets = {i["target"]["name"] for i in listing["items"] if i["target"]}
    assert {"gz", "zl"} <= targets


async def test_a_zip_bomb_stops_at_the_body_cap(medic: RunningMedic) -> None:
    bomb = gzip.compress(b"{" + b" " * (64 * 1024 * 1024) + b"}", compresslevel=9)
    assert len(bomb) < 200_000  # 64 MiB decoded from ~64 KiB sent
    doc = assert_problem(await post_webhook(medic, bomb, (b"Content-Encoding", b"gzip")), 413)
    assert "MEDIC_MAX_BODY_BYTES" in doc["detail"]
    r = await raw_request(medic.port, "GET", "/healthz")
    assert r.status == 200


# --------------------------------------------------------------------------- Authorization bytes
BAD_AUTH = [
    b"Bearer \xff\xfe\xfd",
    b"Bearer \xed\xa0\x80",  # UTF-8 of a lone surrogate
    b"Basic \xff\xfe",
    b"Basic " + base64.b64encode(b"\xff\xfe:\xff"),
    b"\xff \xff",
]


PROTECTED = [
    ("POST", "/api/v1/alerts", good_body()),
    ("GET", "/api/v1/admin/kill-switch", None),
    ("PUT", "/api/v1/admin/kill-switch", b'{"enabled": true}'),
    ("GET", "/api/v1/admin/audit", None),
    ("GET", "/api/v1/incidents", None),
    ("GET", "/api/v1/incidents/x", None),
    ("GET", "/api/v1/incidents/x/alerts", None),
    ("POST", "/api/v1/incidents/x/approve", b"{}"),
]


async def test_authorization_that_is_not_utf8_is_a_401(medic: RunningMedic) -> None:
    for method, path, body in PROTECTED:
        for value in BAD_AUTH:
            r = await raw_request(
                medic.port, method, path, headers=[(b"Authorization", value), JSON], body=body
            )
            assert_problem(r, 401)
            assert "www-authenticate" in r.headers, (method, path, value)


async def test_pages_refuse_such_credentials_with_a_page(medic: RunningMedic) -> None:
    for headers in ([(b"Authorization", b"Bearer \xff")], [(b"Cookie", b"medic_read=\xff\xfe")]):
        r = await raw_request(medic.port, "GET", "/incidents", headers=headers)
        assert r.status == 401 and r.content_type == "text/html"


async def test_a_proxy_identity_that_is_not_utf8_is_stored_readably(medic: RunningMedic) -> None:
    """An auth proxy's user header arrives with bytes that are not UTF-8: reading works, and the
    name is kept as text (U+FFFD) rather than failing the store."""
    r = await raw_request(
        medic.port, "GET", "/api/v1/incidents", headers=[(b"X-Forwarded-User", b"al\xffce")]
    )
    assert r.status == 200
    access = ReadAccess(READ, "X-Forwarded-User")  # the access rule is pure: the name it derives
    name = access.proxied({"X-Forwarded-User": "al\udcffce"})
    assert name == "al\ufffdce" and name.encode("utf-8")


# --------------------------------------------------------------------------- paging
HUGE = ["9223372036854775808", "99999999999999999999999", "9" * 5000, "-1", "1e3", "0x10", "１", " ", ""]


async def test_paging_values_out_of_range_are_a_400(medic: RunningMedic) -> None:
    read, admin = [bearer(READ)], [bearer(ADMIN)]
    for value in HUGE:
        q = quote(value)
        for path, auth, field in (
            (f"/api/v1/incidents?limit={q}", read, "limit"),
            (f"/api/v1/incidents?offset={q}", read, "offset"),
            (f"/api/v1/incidents/x/alerts?limit={q}", read, "limit"),
            (f"/api/v1/incidents/x/alerts?offset={q}", read, "offset"),
            (f"/api/v1/admin/audit?limit={q}", admin, "limit"),
        ):
            doc = assert_problem(await raw_request(medic.port, "GET", path, headers=auth), 400)
            assert doc["field"] == field
        r = await raw_request(medic.port, "GET", f"/incidents?page={q}", headers=read)
        assert r.status == 400 and r.content_type == "text/html" and b"page" in r.body, value


async def test_the_largest_page_is_served(medic: RunningMedic) -> None:
    r = await raw_request(
        medic.port, "GET", "/api/v1/incidents?offset=1000000000&limit=500", headers=[bearer(READ)]
    )
    assert r.status == 200 and r.json()["items"] == []
    r = await raw_request(medic.port, "GET", "/incidents?page=40000000", headers=[bearer(READ)])
    assert r.status == 200


def test_bounded_int_is_pure_and_strict() -> None:
    assert bounded_int(" 42 ", "n", 0, 100) == 42
    for bad in ("4_2", "٤٢", "1.0", "+", "", "101", "9" * 4000):
        with pytest.raises(Exception) as info:
            bounded_int(bad, "n", 0, 100)
        assert getattr(info.value, "field", None) == "n"


def test_json_depth() -> None:
    assert json_depth(1) == 0 and json_depth([]) == 1 and json_depth({"a": [{"b": []}]}) == 4
    doc: Any = []
    for _ in range(50_000):  # iterative: no RecursionError
        doc = [doc]
    assert json_depth(doc) == 50_001


# --------------------------------------------------------------------------- JSON and form bodies
BAD_JSON = [
    _deep(1000),
    b'{"enabled": true, "reason": ' + b"9" * 5000 + b"}",
    b'{"enabled": true, "reason": "\\ud800"}',  # a lone surrogate: not storable
    b'{"enabled": true, "reason": "\xff"}',
    b"",
]


async def test_admin_and_approval_json_bodies(medic: RunningMedic) -> None:
    for body in BAD_JSON:
        r = await raw_request(
            medic.port, "PUT", "/api/v1/admin/kill-switch", headers=[bearer(ADMIN), JSON], body=body
        )
        assert assert_problem(r, 400)["title"] == "Malformed JSON", body[:40]
        if body:
            r = await raw_request(
                medic.port, "POST", "/api/v1/incidents/x/approve", headers=[bearer(ADMIN), JSON], body=body
            )
            assert assert_problem(r, 400)["title"] == "Malformed JSON", body[:40]
    assert not (await medic.runtime.state.kill_switch()).enabled


FORMS = [
    (b"multipart/form-data; boundary=b", b"--b\r\nContent-Disposition: form-data\r\n\r\nx\r\n--b--\r\n", 415),
    (b"application/x-www-form-urlencoded", b"by=%ff%fe&approval=x", 400),
    (b"application/x-www-form-urlencoded", b"by=%ed%a0%80", 400),  # an encoded lone surrogate
    (b"application/x-www-form-urlencoded", b"by=\xff", 400),
    (b"application/x-www-form-urlencoded", b"&".join([b"a=b"] * 200), 400),
]


async def test_approval_form_bodies(medic: RunningMedic) -> None:
    for ctype, body, status in FORMS:
        for path in ("/incidents/x/approve", "/incidents/x/reject"):
            r = await raw_request(
                medic.port, "POST", path, headers=[bearer(READ), (b"Content-Type", ctype)], body=body
            )
            assert_problem(r, status)


# --------------------------------------------------------------------------- every route
HOSTILE_IDS = ["%ff", "%ED%A0%80", "x" * 5000, "..%2f..", "%00", "inc-%F0%9F%92%A5"]
HOSTILE_QUERY = (
    "?limit=99999999999999999999&offset=-1&page=9e99&status=%ff&format=%00&incident=%ED%A0%80"
    "&approval=%ff.%00.&token=%ED%A0%80"
)
HOSTILE_HEADERS = [
    (b"Authorization", b"Bearer \xff"),
    (b"Cookie", b"medic_read=\xff; x=\xed\xa0\x80"),
    (b"X-Forwarded-User", b"\xff\xfe"),
    (b"Accept", b"\xff"),
    (b"Content-Type", b"application/json; charset=\xff"),
]


def _routes(m: RunningMedic) -> list[tuple[str, str]]:
    found = []
    for route in m._runner.app.router.routes():
        info = route.resource.get_info() if route.resource is not None else {}
        path = info.get("path") or info.get("formatter")
        if route.method != "HEAD" and path:
            found.append((route.method, str(path)))
    return found


async def test_every_route_answers_hostile_requests_without_a_5xx(medic: RunningMedic) -> None:
    routes = _routes(medic)
    assert len(routes) >= 17  # every route of build_app, found from the router itself
    bodies = [None, _deep(1000), b"\xff\xfe", b'{"a": ' + b"9" * 5000 + b"}", b"a=%ff"]
    seen: dict[int, int] = {}
    for method, template in routes:
        for ident in HOSTILE_IDS if "{id}" in template else ["-"]:
            path = template.replace("{id}", ident) + HOSTILE_QUERY
            for headers in ([], HOSTILE_HEADERS, [bearer(ADMIN)], [bearer(READ)], [bearer(WEBHOOK)]):
                for body in bodies if method in ("POST", "PUT") else [None]:
                    r = await raw_request(medic.port, method, path, headers=list(headers), body=body)
                    seen[r.status] = seen.get(r.status, 0) + 1
                    assert r.status < 500, (method, path, headers, body and body[:40], r.status, r.body[:300])
                    if r.status >= 400 and r.content_type != "text/html":
                        assert r.content_type == PROBLEM, (method, path, r.status, r.headers)
    assert not [s for s in seen if s >= 500]
    r = await raw_request(medic.port, "GET", "/healthz")
    assert r.status == 200


# --------------------------------------------------------------------------- the middleware itself
async def _edge_app(handler: Any) -> TestServer:
    app = web.Application(middlewares=[edge_middleware(body_read_timeout=5)])
    app.router.add_get("/x", handler)
    server = TestServer(app)
    await server.start_server()
    return server


@pytest.mark.parametrize(
    ("exc", "status", "retry"),
    [
        (RuntimeError("boom: secret-ish detail"), 500, False),
        (RecursionError(), 500, False),
        (KeyError("k"), 500, False),
        (BackendUnavailable("redis down"), 503, True),
        (StoreError("disk full"), 503, True),
        (web.HTTPForbidden(), 403, False),
        (web.HTTPMethodNotAllowed("POST", ["GET"]), 405, False),
    ],
)
async def test_unexpected_errors_become_problems(exc: Exception, status: int, retry: bool) -> None:
    async def handler(_: web.Request) -> web.Response:
        raise exc

    server = await _edge_app(handler)
    try:
        with structlog.testing.capture_logs() as logs:
            async with aiohttp.ClientSession() as s, s.get(server.make_url("/x")) as r:
                assert r.status == status and r.content_type == PROBLEM
                doc = await r.json()
                assert doc["status"] == status
                assert ("Retry-After" in r.headers) is retry
        if status == 500:
            assert "boom" not in json.dumps(doc)  # the exception text stays in the log
            logged = [e for e in logs if e["event"] == "unhandled error"]
            assert logged and logged[0]["log_level"] == "error" and logged[0].get("exc_info")
        if status == 405:
            assert r.headers["Allow"] == "GET"
    finally:
        await server.close()
