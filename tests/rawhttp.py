"""HTTP/1.1 over a raw socket, for what an HTTP client library refuses to send (header bytes that
are not UTF-8, broken encodings, bodies trickled a byte at a time)."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]  # lower-case names; the last value wins
    body: bytes

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "").split(";")[0].strip()

    def json(self) -> Any:
        return json.loads(self.body)


def request_bytes(
    method: str,
    path: str,
    *,
    headers: list[tuple[bytes, bytes]] | None = None,
    body: bytes | None = None,
) -> bytes:
    lines = [f"{method} {path} HTTP/1.1".encode(), b"Host: 127.0.0.1", b"Connection: close"]
    for name, value in headers or []:
        lines.append(name + b": " + value)
    if body is not None:
        lines.append(b"Content-Length: " + str(len(body)).encode())
    return b"\r\n".join(lines) + b"\r\n\r\n" + (body or b"")


def parse_response(data: bytes) -> RawResponse:
    head, _, body = data.partition(b"\r\n\r\n")
    first, *fields = head.decode("latin-1").split("\r\n")
    headers = {}
    for field in fields:
        name, _, value = field.partition(":")
        headers[name.strip().lower()] = value.strip()
    return RawResponse(int(first.split()[1]), headers, body)


async def send_raw(port: int, data: bytes, timeout: float = 10.0) -> RawResponse:
    """Send ``data`` as is and read the answer until the server closes the connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(), timeout)
    finally:
        writer.close()
    return parse_response(raw)


async def raw_request(
    port: int,
    method: str,
    path: str,
    *,
    headers: list[tuple[bytes, bytes]] | None = None,
    body: bytes | None = None,
) -> RawResponse:
    return await send_raw(port, request_bytes(method, path, headers=headers, body=body))


class Collect(asyncio.Protocol):
    """Keeps every byte received, also when the connection ends with a reset (asyncio's streams
    drop what they buffered once the reset arrives)."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.closed: asyncio.Future[float] = asyncio.get_running_loop().create_future()

    def data_received(self, data: bytes) -> None:
        self.data += data

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(asyncio.get_running_loop().time())  # when it ended


async def trickle_bytes(
    port: int, head: bytes, body: bytes, *, every: float = 0.1, give_up: float = 15.0
) -> tuple[bytes, float, bool]:
    """Send ``head`` at once, then ``body`` a byte every ``every`` seconds until the server
    answers or closes; return what it sent, after how long it closed the connection, and whether
    it did (False: still open after ``give_up`` seconds)."""
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_connection(Collect, "127.0.0.1", port)
    start = loop.time()
    try:
        transport.write(head)
        for i in range(len(body)):
            if proto.data or proto.closed.done() or loop.time() - start > give_up:
                break  # answered (or given up on): stop sending
            transport.write(body[i : i + 1])
            await asyncio.sleep(every)
        try:
            ended = await asyncio.wait_for(
                asyncio.shield(proto.closed), max(give_up - (loop.time() - start), 0.01)
            )
        except TimeoutError:
            return bytes(proto.data), loop.time() - start, False
        return bytes(proto.data), ended - start, True
    finally:
        transport.close()
