"""Redis clients: Medic's own Redis (``connect``) and the Redis being diagnosed."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, cast

import redis.asyncio as aioredis
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff, NoBackoff

from medic.domain.errors import (
    ConfigError,
)
from medic.domain.redact import redact_text


def connect(url: str, *, timeout: float = 2.0) -> Redis:
    """A client for Medic's own Redis: short timeouts (the spool takes over when it is down) and
    one quick retry (a pooled connection that died with a restarted server is re-opened)."""
    return Redis.from_url(
        url,
        decode_responses=True,
        socket_timeout=timeout,
        socket_connect_timeout=min(timeout, 1.0),
        retry=Retry(ExponentialBackoff(cap=0.05, base=0.01), 1),
        client_name="medic",
    )


def _raw(response: Any, **_: Any) -> Any:
    return response


@dataclass
class RedisBackend:
    """An async client for the Redis being diagnosed; the URL may carry a password."""

    url: str = field(repr=False)
    socket_timeout: float = 3.0
    connect_timeout: float = 2.0
    db: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        try:
            self._client: aioredis.Redis = aioredis.Redis.from_url(
                self.url,
                socket_timeout=self.socket_timeout,
                socket_connect_timeout=self.connect_timeout,
                retry=Retry(NoBackoff(), 0),
                client_name="playcode-medic",
                max_connections=8,
                health_check_interval=0,
                decode_responses=False,
            )
        except (ValueError, TypeError) as exc:
            raise ConfigError(
                f"not a usable Redis URL: {redact_text(str(exc))}", field="target_redis_url"
            ) from None
        self._client.set_response_callback("INFO", _raw)  # parsed by parse_info below
        # redis-py leaves execute_command untyped; this is its documented signature.
        self._execute = cast(Callable[..., Awaitable[Any]], self._client.execute_command)
        self.db = int(self._client.connection_pool.connection_kwargs.get("db", 0) or 0)

    async def ping(self) -> float:
        """Seconds one PING took."""
        t0 = time.perf_counter()
        await self._client.ping()
        return time.perf_counter() - t0

    async def info(self) -> bytes:
        raw = await self._execute("INFO")
        return raw if isinstance(raw, bytes) else str(raw).encode()

    async def dbsize(self) -> int:
        return int(await self._client.dbsize())

    async def slowlog(self, count: int) -> tuple[int, list[Any]]:
        total = await self._execute("SLOWLOG", "LEN")
        entries = await self._execute("SLOWLOG", "GET", count)
        return int(total), list(entries or [])

    async def close(self) -> None:
        await self._client.aclose()
