"""A real Redis (Debian ``redis-server`` 7.0) for integration tests.

Started as ``redis-server --port P --bind 127.0.0.1 --save "" --appendonly yes --dir TMP``
(RDB snapshots off, AOF on). Ready when ``PING`` answers ``+PONG`` (not ``-LOADING`` while the
AOF is replayed). ``stop()`` (SIGTERM: Redis flushes the AOF and exits), ``kill()`` (SIGKILL, as a
crash: with the default ``appendfsync everysec`` the written commands are in the OS page cache
and survive a process kill) and ``start()`` again on the same port and dir, for restart tests.
"""

from __future__ import annotations

from collections.abc import Sequence

from tests.servers.process import BaseServer, redis_ping, require_binary

REDIS_BIN = "/usr/bin/redis-server"
REDIS_PACKAGE = "redis-server"
REDIS_ENV = "MEDIC_TEST_REDIS_BIN"


class RedisServer(BaseServer):
    name = "redis"

    def __init__(
        self,
        *,
        appendonly: bool = True,
        appendfsync: str = "everysec",
        maxmemory: str | int | None = None,
        maxmemory_policy: str | None = None,
        extra_args: Sequence[str] = (),
        port: int | None = None,
        startup_timeout: float = 10.0,
    ) -> None:
        super().__init__(port=port, startup_timeout=startup_timeout)
        self.binary = require_binary(
            REDIS_BIN,
            debian_package=REDIS_PACKAGE,
            env_var=REDIS_ENV,
            fallback_names=("redis-server",),
        )
        self.appendonly = appendonly
        self.appendfsync = appendfsync
        self.maxmemory = maxmemory
        self.maxmemory_policy = maxmemory_policy
        self.extra_args = list(extra_args)

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT/0``."""
        return f"redis://{self.host}:{self.port}/0"

    def url_for(self, db: int) -> str:
        return f"redis://{self.host}:{self.port}/{db}"

    def _argv(self) -> list[str]:
        argv = [
            self.binary,
            "--port", str(self.port),
            "--bind", self.host,
            "--save", "",
            "--appendonly", "yes" if self.appendonly else "no",
            "--appendfsync", self.appendfsync,
            "--dir", str(self.dir),
            "--daemonize", "no",
            "--logfile", "",
        ]  # fmt: skip
        if self.maxmemory is not None:
            argv += ["--maxmemory", str(self.maxmemory)]
        if self.maxmemory_policy is not None:
            argv += ["--maxmemory-policy", self.maxmemory_policy]
        return argv + self.extra_args

    async def _probe(self) -> bool:
        return await redis_ping(self.host, self.port)
