"""A real Prometheus (Debian ``prometheus`` 2.42) serving backfilled series.

:meth:`PrometheusServer.start` writes the series as OpenMetrics (``series.om`` in its temp
dir), runs ``promtool tsdb create-blocks-from openmetrics series.om data/`` and starts
Prometheus on that data dir with a scrape-less config and a 100 year retention (so that no
backfilled block, however old its timestamps, is ever deleted under a test).

What works (checked with 2.42): samples from now-1h up to now-10s every 15 s; promtool also
takes timestamps in the future and blocks that reach into the current 2 h head window, and
Prometheus serves them right after ``/-/ready``. Instant queries need a sample in the 5 minutes
(lookback delta) before the evaluation time, so generate data up to "now" (see
:class:`tests.servers.playcode_series.Timeline`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from tests.servers.openmetrics import Series, render_openmetrics
from tests.servers.process import BaseServer, ServerError, http_ok, require_binary

PROMETHEUS_BIN = "/usr/bin/prometheus"
PROMTOOL_BIN = "/usr/bin/promtool"
PROMETHEUS_PACKAGE = "prometheus"
PROMETHEUS_ENV = "MEDIC_TEST_PROMETHEUS_BIN"
PROMTOOL_ENV = "MEDIC_TEST_PROMTOOL_BIN"


class PromQLError(ServerError):
    """The Prometheus HTTP API answered with ``status: error``."""


async def backfill(
    promtool: str, openmetrics_file: Path, data_dir: Path, *, limit_seconds: float = 60.0
) -> str:
    """Run ``promtool tsdb create-blocks-from openmetrics``; return its output."""
    proc = await asyncio.create_subprocess_exec(
        promtool,
        "tsdb",
        "create-blocks-from",
        "openmetrics",
        str(openmetrics_file),
        str(data_dir),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        output, _ = await asyncio.wait_for(proc.communicate(), limit_seconds)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise ServerError(f"promtool backfill of {openmetrics_file} took over {limit_seconds}s") from None
    text = output.decode("utf-8", errors="replace")
    if proc.returncode != 0:
        raise ServerError(
            f"promtool tsdb create-blocks-from openmetrics {openmetrics_file} failed "
            f"(exit {proc.returncode}):\n{text[-4000:]}"
        )
    return text


class PrometheusServer(BaseServer):
    """Prometheus on 127.0.0.1 over backfilled ``series`` (or raw ``openmetrics`` text)."""

    name = "prometheus"

    def __init__(
        self,
        series: Iterable[Series] = (),
        *,
        openmetrics: str | None = None,
        retention: str = "100y",
        extra_config: Mapping[str, Any] | None = None,
        extra_args: Sequence[str] = (),
        port: int | None = None,
        startup_timeout: float = 15.0,
    ) -> None:
        super().__init__(port=port, startup_timeout=startup_timeout)
        self.binary = require_binary(
            PROMETHEUS_BIN, debian_package=PROMETHEUS_PACKAGE, env_var=PROMETHEUS_ENV
        )
        self.promtool = require_binary(PROMTOOL_BIN, debian_package=PROMETHEUS_PACKAGE, env_var=PROMTOOL_ENV)
        series_list = list(series)
        if openmetrics is not None and series_list:
            raise ValueError("give either series or openmetrics text, not both")
        # Rendered (and validated) now, so that a bad description fails before any process.
        self.openmetrics = (
            openmetrics
            if openmetrics is not None
            else (render_openmetrics(series_list) if series_list else None)
        )
        self.retention = retention
        self.extra_config = dict(extra_config or {})
        self.extra_args = list(extra_args)
        self.backfill_output: str | None = None
        self.backfill_seconds: float | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def data_dir(self) -> Path:
        return self.dir / "data"

    @property
    def config_path(self) -> Path:
        return self.dir / "prometheus.yml"

    def config(self) -> dict[str, Any]:
        config: dict[str, Any] = {
            "global": {"scrape_interval": "15s", "evaluation_interval": "15s"},
        }
        config.update(self.extra_config)
        return config

    async def _prepare(self) -> None:
        self.config_path.write_text(yaml.safe_dump(self.config(), sort_keys=False))
        if self.backfill_output is None and self.openmetrics is not None:
            source = self.dir / "series.om"
            source.write_text(self.openmetrics)
            started = time.monotonic()
            self.backfill_output = await backfill(self.promtool, source, self.data_dir)
            self.backfill_seconds = time.monotonic() - started
        self.data_dir.mkdir(exist_ok=True)

    def _argv(self) -> list[str]:
        return [
            self.binary,
            f"--config.file={self.config_path}",
            f"--storage.tsdb.path={self.data_dir}",
            f"--storage.tsdb.retention.time={self.retention}",
            f"--web.listen-address={self.host}:{self.port}",
            *self.extra_args,
        ]

    async def _probe(self) -> bool:
        return await http_ok(f"{self.url}/-/ready")

    # -- HTTP API
    async def api_get(self, path: str, params: Mapping[str, str]) -> Any:
        """GET ``/api/v1/<path>``; return ``data`` or raise :class:`PromQLError`."""
        timeout = aiohttp.ClientTimeout(total=30)
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.get(f"{self.url}/api/v1/{path}", params=dict(params)) as resp,
        ):
            body = await resp.json(content_type=None)
        if not isinstance(body, dict) or body.get("status") != "success":
            raise PromQLError(f"Prometheus {path} {dict(params)} -> {resp.status}: {body}")
        return body["data"]

    async def query(self, promql: str, *, at: float | None = None) -> dict[str, Any]:
        """Instant query; returns ``data`` (``resultType`` and ``result``)."""
        params = {"query": promql}
        if at is not None:
            params["time"] = repr(float(at))
        data: dict[str, Any] = await self.api_get("query", params)
        return data

    async def query_value(self, promql: str, *, at: float | None = None) -> float:
        """Instant query that must return exactly one sample (vector or scalar): its value."""
        data = await self.query(promql, at=at)
        result = data["result"]
        if data["resultType"] == "scalar":
            return float(result[1])
        if data["resultType"] != "vector" or len(result) != 1:
            raise PromQLError(f"expected one sample from {promql!r}, got {data}")
        return float(result[0]["value"][1])

    async def query_range(self, promql: str, *, start: float, end: float, step: float) -> dict[str, Any]:
        params = {"query": promql, "start": repr(start), "end": repr(end), "step": repr(step)}
        data: dict[str, Any] = await self.api_get("query_range", params)
        return data
