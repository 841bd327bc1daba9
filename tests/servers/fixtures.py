"""pytest fixtures for real Alertmanager, Prometheus and Redis servers.

Register with ``pytest_plugins = ["tests.servers.fixtures"]`` in the top-level conftest.
All fixtures are function-scoped async fixtures (pytest-asyncio); every server a fixture starts
is stopped and its temp dir removed at teardown, also when the test failed.

* ``alertmanager_factory``: ``await alertmanager_factory(receiver_url=..., **kw)`` ->
  started :class:`AlertmanagerServer` (keywords as in its constructor).
* ``prometheus_factory``: ``await prometheus_factory(series, **kw)`` -> started
  :class:`PrometheusServer` (``.url``, ``.query(...)``).
* ``redis_server``: a fresh, started :class:`RedisServer` with AOF on.
* ``redis_server_factory``: ``await redis_server_factory(**kw)`` -> started :class:`RedisServer`.
* ``webhook_recorder``: a started :class:`WebhookRecorder` (an aiohttp receiver that records).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from typing import Any, Protocol, TypeVar

import pytest

from tests.servers.alertmanager import AlertmanagerServer
from tests.servers.openmetrics import Series
from tests.servers.process import BaseServer
from tests.servers.prometheus import PrometheusServer
from tests.servers.redis_server import RedisServer
from tests.servers.webhook import WebhookRecorder

S = TypeVar("S", bound=BaseServer)


class AlertmanagerFactory(Protocol):
    async def __call__(self, receiver_url: str, **kwargs: Any) -> AlertmanagerServer: ...


class PrometheusFactory(Protocol):
    async def __call__(self, series: Iterable[Series] = (), **kwargs: Any) -> PrometheusServer: ...


class RedisServerFactory(Protocol):
    async def __call__(self, **kwargs: Any) -> RedisServer: ...


async def _close_all(servers: list[BaseServer]) -> None:
    errors: list[BaseException] = []
    for server in reversed(servers):
        try:
            await server.close()
        except Exception as exc:  # keep closing the others
            errors.append(exc)
    if errors:
        raise errors[0]


async def _started(server: S, started: list[BaseServer]) -> S:
    started.append(server)  # registered first: a failed start is cleaned up too
    await server.start()
    return server


@pytest.fixture
async def alertmanager_factory() -> AsyncIterator[AlertmanagerFactory]:
    started: list[BaseServer] = []

    async def make(receiver_url: str, **kwargs: Any) -> AlertmanagerServer:
        return await _started(AlertmanagerServer(receiver_url, **kwargs), started)

    try:
        yield make
    finally:
        await _close_all(started)


@pytest.fixture
async def prometheus_factory() -> AsyncIterator[PrometheusFactory]:
    started: list[BaseServer] = []

    async def make(series: Iterable[Series] = (), **kwargs: Any) -> PrometheusServer:
        return await _started(PrometheusServer(series, **kwargs), started)

    try:
        yield make
    finally:
        await _close_all(started)


@pytest.fixture
async def redis_server_factory() -> AsyncIterator[RedisServerFactory]:
    started: list[BaseServer] = []

    async def make(**kwargs: Any) -> RedisServer:
        return await _started(RedisServer(**kwargs), started)

    try:
        yield make
    finally:
        await _close_all(started)


@pytest.fixture
async def redis_server(redis_server_factory: RedisServerFactory) -> RedisServer:
    """A fresh Redis with AOF on, stopped and removed after the test."""
    return await redis_server_factory(appendonly=True)


@pytest.fixture
async def webhook_recorder() -> AsyncIterator[WebhookRecorder]:
    recorder = WebhookRecorder()
    await recorder.start()
    try:
        yield recorder
    finally:
        await recorder.close()
