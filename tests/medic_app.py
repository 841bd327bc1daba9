"""Start Medic in-process for tests: the real app on a real socket, with its own data dir."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from aiohttp import web

from medic.app.runtime import Runtime, build_app
from medic.app.settings import Settings, load_settings

REPO = Path(__file__).resolve().parents[1]


def medic_settings(tmp_path: Path, **overrides: Any) -> Settings:
    base: dict[str, Any] = {
        "data_dir": tmp_path / "data",
        "rules_dir": REPO / "rules",
        "playbooks_dir": REPO / "playbooks",
        "kube_mode": "off",
        "collector_timeout_seconds": 5.0,
    }
    base.update(overrides)
    return load_settings(**base)


class RunningMedic:
    def __init__(self, runtime: Runtime, site: web.TCPSite, runner: web.AppRunner) -> None:
        self.runtime = runtime
        self._site = site
        self._runner = runner
        server = site._server
        assert server is not None and server.sockets
        self.port = server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"

    async def drain(self, timeout: float = 30.0) -> None:
        """Wait until every accepted delivery is processed (acked) by the running workers."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while await self.runtime.inbox.depth():
            if loop.time() > deadline:
                raise TimeoutError(f"inbox not drained within {timeout}s")
            await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def running_medic(settings: Settings, *, workers: bool = True) -> AsyncIterator[RunningMedic]:
    runtime = await Runtime.open(settings)
    app = build_app(runtime)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    if workers:
        runtime.start_diagnosis()
    runtime.backend.start()  # upkeep of the production backends (a no-op for SQLite)
    try:
        yield RunningMedic(runtime, site, runner)
    finally:
        await runner.cleanup()
        await runtime.close()
