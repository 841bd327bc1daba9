"""Local HTTP receivers for the notifier tests: real aiohttp servers on 127.0.0.1 that record
every request and answer from a script (status, delay, headers), then 200."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class Receiver:
    """Records requests; answers from a script of (status, delay seconds, headers), then 200."""

    script: list[tuple[int, float, dict[str, str]]] = field(default_factory=list)
    requests: list[tuple[str, dict[str, str], bytes]] = field(default_factory=list)
    check: Callable[[str, dict[str, str], bytes], int] | None = None  # receiver-side validation
    url: str = ""
    fail_always: tuple[int, float] | None = None  # (status, delay) for every request

    def json(self) -> list[Any]:
        return [json.loads(body) for _, _, body in self.requests]

    def text(self) -> str:
        return "\n".join(body.decode() for _, _, body in self.requests)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        headers = dict(request.headers)
        self.requests.append((request.path, headers, body))
        status, delay, extra = self.script.pop(0) if self.script else (200, 0.0, {})
        if self.fail_always is not None:
            (status, delay), extra = self.fail_always, {}
        if delay:
            await asyncio.sleep(delay)
        if status == 200 and self.check is not None:
            status = self.check(request.path, headers, body)
        return web.Response(status=status, text="ok" if status < 300 else "upstream says no", headers=extra)


@contextlib.asynccontextmanager
async def receiver(
    check: Callable[[str, dict[str, str], bytes], int] | None = None,
) -> AsyncIterator[Receiver]:
    rec = Receiver(check=check)
    app = web.Application()
    app.router.add_route("POST", "/{tail:.*}", rec.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    rec.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        yield rec
    finally:
        await runner.cleanup()
