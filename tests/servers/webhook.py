"""A tiny aiohttp server on 127.0.0.1 that records every request it gets.

Used as the webhook receiver of a real Alertmanager in the harness's own tests (Medic's
integration tests point Alertmanager at Medic instead). The response status can be changed
on the fly (``recorder.status = 503``) to see Alertmanager retry.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Self

from aiohttp import web

from tests.servers.process import LOOPBACK, ServerError


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    headers: Mapping[str, str]  # keys lower-cased
    body: bytes
    received_at: float = field(default_factory=time.time)

    def json(self) -> Any:
        return json.loads(self.body)

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


RequestPredicate = Callable[[RecordedRequest], bool]


def _any_request(_: RecordedRequest) -> bool:
    return True


class WebhookRecorder:
    """Records requests to any path; answers ``status`` (200 by default)."""

    def __init__(self, *, path: str = "/hook", status: int = 200) -> None:
        self.path = path
        self.status = status
        self.requests: list[RecordedRequest] = []
        self._runner: web.AppRunner | None = None
        self._port: int | None = None
        self._changed: asyncio.Condition | None = None

    @property
    def port(self) -> int:
        if self._port is None:
            raise ServerError("webhook recorder is not started")
        return self._port

    @property
    def base_url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def url(self) -> str:
        """The URL to give Alertmanager (``base_url`` + ``path``)."""
        return self.base_url + self.path

    async def start(self) -> None:
        self._changed = asyncio.Condition()
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, LOOPBACK, 0)
        await site.start()
        self._runner = runner
        self._port = int(runner.addresses[0][1])

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        recorded = RecordedRequest(
            method=request.method,
            path=request.path,
            headers={k.lower(): v for k, v in request.headers.items()},
            body=body,
        )
        self.requests.append(recorded)
        if self._changed is not None:
            async with self._changed:
                self._changed.notify_all()
        return web.Response(status=self.status, text="recorded")

    def matching(self, predicate: RequestPredicate = _any_request) -> list[RecordedRequest]:
        return [r for r in self.requests if predicate(r)]

    async def wait_for(
        self,
        predicate: RequestPredicate = _any_request,
        *,
        count: int = 1,
        within: float = 5.0,
    ) -> list[RecordedRequest]:
        """Wait until at least ``count`` recorded requests match; return the matches.

        Raises ``AssertionError`` listing what did arrive when ``within`` seconds pass.
        """
        if self._changed is None:
            raise ServerError("webhook recorder is not started")
        changed = self._changed

        async def enough() -> list[RecordedRequest]:
            async with changed:
                while len(found := self.matching(predicate)) < count:
                    await changed.wait()
                return found

        try:
            return await asyncio.wait_for(enough(), within)
        except TimeoutError:
            seen = [f"{r.method} {r.path} {r.body[:300]!r}" for r in self.requests]
            raise AssertionError(
                f"expected {count} matching request(s) within {within}s, "
                f"{len(self.matching(predicate))} matched; received {len(seen)}: {seen}"
            ) from None


def alertmanager_payloads(recorder: WebhookRecorder, *, status: str | None = None) -> list[dict[str, Any]]:
    """Decoded Alertmanager webhook bodies received so far (optionally only one status)."""
    payloads = [r.json() for r in recorder.requests]
    return [p for p in payloads if status is None or p.get("status") == status]


def is_notification(status: str) -> RequestPredicate:
    """Predicate: an Alertmanager webhook whose group ``status`` is firing/resolved."""

    def predicate(request: RecordedRequest) -> bool:
        try:
            payload = request.json()
        except ValueError:
            return False
        return isinstance(payload, dict) and payload.get("status") == status

    return predicate
