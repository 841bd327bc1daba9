"""Slow clients (issue 11.9): a body trickled a byte at a time, on any route that takes one, is cut
off with a 408 problem and a closed connection once MEDIC_BODY_READ_TIMEOUT has passed; a request
head trickled the same way is closed after MEDIC_KEEPALIVE_TIMEOUT; other clients are served
meanwhile. Before the fix such connections were held for as long as the client kept sending."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.medic_app import RunningMedic, medic_settings, running_medic
from tests.payloads import alert, payload
from tests.rawhttp import parse_response, raw_request, trickle_bytes

WEBHOOK = "webhook-token-0123456789"
ADMIN = "admin-token-0123456789"
READ = "read-token-0123456789ab"
BODY_TIMEOUT = 1.0
KEEPALIVE = 2.0
HANG_GUARD = 15.0  # far above both timeouts: only a connection that is never cut reaches it


@pytest.fixture
async def medic(tmp_path: Path) -> AsyncIterator[RunningMedic]:
    settings = medic_settings(
        tmp_path,
        webhook_token=WEBHOOK,
        admin_token=ADMIN,
        read_token=READ,
        body_read_timeout=f"{BODY_TIMEOUT}s",
        keepalive_timeout=f"{KEEPALIVE}s",
    )
    async with running_medic(settings) as m:
        yield m


BODY = json.dumps(payload([alert("PlayCodeHighLatency", namespace="playcode", deployment="web")])).encode()


def head(
    method: str, path: str, token: str, ctype: str, *, length: int | None, chunked: bool = False
) -> bytes:
    lines = [
        f"{method} {path} HTTP/1.1",
        "Host: 127.0.0.1",
        f"Authorization: Bearer {token}",
        f"Content-Type: {ctype}",
    ]
    lines.append("Transfer-Encoding: chunked" if chunked else f"Content-Length: {length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def trickle(
    port: int, request_head: bytes, body: bytes, *, every: float = 0.1
) -> tuple[bytes, float, bool]:
    return await trickle_bytes(port, request_head, body, every=every, give_up=HANG_GUARD)


def assert_cut_off(answer: bytes, closed: bool) -> None:
    r = parse_response(answer)
    assert r.status == 408, answer[:300]
    assert r.content_type == "application/problem+json"
    assert "MEDIC_BODY_READ_TIMEOUT" in r.json()["detail"]
    assert r.headers.get("connection", "").lower() == "close" and closed


ROUTES_WITH_BODIES = [
    ("POST", "/api/v1/alerts", WEBHOOK, "application/json", BODY),
    ("PUT", "/api/v1/admin/kill-switch", ADMIN, "application/json", b'{"enabled": true, "reason": "x"}'),
    ("POST", "/api/v1/incidents/x/approve", ADMIN, "application/json", b'{"by": "alice"}'),
    ("POST", "/api/v1/incidents/x/reject", ADMIN, "application/json", b'{"by": "alice"}'),
    ("POST", "/incidents/x/approve", READ, "application/x-www-form-urlencoded", b"approval=t&by=alice"),
    ("POST", "/incidents/x/reject", READ, "application/x-www-form-urlencoded", b"approval=t&by=alice"),
]


async def test_a_trickled_body_is_cut_off_with_408_on_every_route(medic: RunningMedic) -> None:
    results = await asyncio.gather(
        *(
            trickle(medic.port, head(method, path, token, ctype, length=len(body)), body)
            for method, path, token, ctype, body in ROUTES_WITH_BODIES
        )
    )
    for (method, path, *_), (answer, took, closed) in zip(ROUTES_WITH_BODIES, results, strict=True):
        assert_cut_off(answer, closed)
        assert took >= BODY_TIMEOUT - 0.1, (method, path)  # not before the client had its time
    assert await medic.runtime.inbox.depth() == 0  # nothing half-read was accepted
    assert not (await medic.runtime.state.kill_switch()).enabled


async def test_every_route_that_takes_a_body_is_covered(medic: RunningMedic) -> None:
    """The list above is every POST/PUT/PATCH route of the app (a new one must be added)."""
    known = {(m, p.replace("/x/", "/{id}/")) for m, p, *_ in ROUTES_WITH_BODIES}
    found = set()
    for route in medic._runner.app.router.routes():
        info = route.resource.get_info() if route.resource is not None else {}
        path = info.get("path") or info.get("formatter")
        if route.method in ("POST", "PUT", "PATCH") and path:
            found.add((route.method, str(path)))
    others = sorted(found - known)
    results = await asyncio.gather(
        *(
            trickle(
                medic.port, head(m, p.replace("{id}", "x"), ADMIN, "application/json", length=50), b"{" * 50
            )
            for m, p in others
        )
    )
    for (method, path), (answer, took, closed) in zip(others, results, strict=True):
        # a route outside the list (e.g. one that takes no body) is never held either
        status = parse_response(answer).status
        assert closed and status < 500, (method, path, status)
        assert took < BODY_TIMEOUT + 6, (method, path, took)  # not aiohttp's 10 s lingering
        if status == 408:
            assert_cut_off(answer, closed)


async def test_a_chunked_body_that_never_ends_is_cut_off(medic: RunningMedic) -> None:
    chunks = b"".join(b"1\r\n%s\r\n" % bytes([c]) for c in BODY[:200])
    answer, _, closed = await trickle(
        medic.port,
        head("POST", "/api/v1/alerts", WEBHOOK, "application/json", length=None, chunked=True),
        chunks,
    )
    assert_cut_off(answer, closed)


async def test_others_are_served_while_slow_clients_are_held(tmp_path: Path) -> None:
    timeout = 4.0  # long enough that the fast requests surely come first, even on a loaded machine
    settings = medic_settings(tmp_path, webhook_token=WEBHOOK, body_read_timeout=f"{timeout}s")
    async with running_medic(settings) as medic:
        loop = asyncio.get_running_loop()
        start = loop.time()
        slow = [
            asyncio.create_task(
                trickle(
                    medic.port,
                    head("POST", "/api/v1/alerts", WEBHOOK, "application/json", length=len(BODY)),
                    BODY,
                    every=0.2,
                )
            )
            for _ in range(100)
        ]
        await asyncio.sleep(0.3)  # all of them are trickling now
        r = await raw_request(medic.port, "GET", "/healthz")
        assert r.status == 200
        r = await raw_request(
            medic.port,
            "POST",
            "/api/v1/alerts",
            headers=[
                (b"Authorization", f"Bearer {WEBHOOK}".encode()),
                (b"Content-Type", b"application/json"),
            ],
            body=BODY,
        )
        assert r.status == 200 and r.json()["new"] == 1
        served = loop.time() - start
        results = await asyncio.gather(*slow)
        for answer, took, closed in results:
            assert_cut_off(answer, closed)
            assert took >= timeout - 0.1
        # served while all 100 were held (a machine so loaded that it took longer tells nothing)
        assert served < min(took for _, took, _ in results) or served >= timeout
        await medic.drain()
        assert await medic.runtime.inbox.depth() == 0


async def test_a_body_received_in_time_is_not_cut(medic: RunningMedic) -> None:
    """The timer is for the body's arrival: a body sent in full after a pause shorter than the
    timeout is accepted."""
    reader, writer = await asyncio.open_connection("127.0.0.1", medic.port)
    try:
        writer.write(head("POST", "/api/v1/alerts", WEBHOOK, "application/json", length=len(BODY)))
        await writer.drain()
        await asyncio.sleep(BODY_TIMEOUT / 2)
        writer.write(BODY)
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), HANG_GUARD)
        assert status_line.startswith(b"HTTP/1.1 200"), status_line
    finally:
        writer.close()


async def test_a_trickled_request_head_is_closed(medic: RunningMedic) -> None:
    loop = asyncio.get_running_loop()
    reader, writer = await asyncio.open_connection("127.0.0.1", medic.port)
    start = loop.time()

    async def send() -> None:
        writer.write(b"POST /api/v1/alerts HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        for _ in range(1000):
            writer.write(b"X")  # one header line that never ends
            await writer.drain()
            await asyncio.sleep(0.1)

    sender = asyncio.create_task(send())
    try:
        rest = await asyncio.wait_for(reader.read(), HANG_GUARD)
        took = loop.time() - start
    finally:
        sender.cancel()
        with contextlib.suppress(BaseException):
            await sender
        writer.close()
    assert rest == b"" and reader.at_eof()  # closed without an answer
    assert took >= KEEPALIVE - 0.1
    r = await raw_request(medic.port, "GET", "/healthz")
    assert r.status == 200


async def test_an_idle_connection_is_closed_after_the_keepalive_timeout(medic: RunningMedic) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", medic.port)
    try:
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        await writer.drain()
        first = await asyncio.wait_for(reader.readuntil(b'{"status": "ok"}'), HANG_GUARD)
        assert first.startswith(b"HTTP/1.1 200")
        rest = await asyncio.wait_for(reader.read(), HANG_GUARD)  # idle: closed by the server
        assert rest == b""
    finally:
        writer.close()
