"""The MongoDB being diagnosed (not Medic's own store): an async client."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pymongo import AsyncMongoClient, ReadPreference
from pymongo.errors import ConfigurationError

from medic.domain.errors import ConfigError
from medic.domain.redact import redact_text


@dataclass
class MongoBackend:
    """An async client for the MongoDB being diagnosed (not Medic's own store).

    Short server-selection and connect timeouts make a dead MongoDB an ``error`` within about two
    seconds; the socket timeout bounds a hung server, and the runner's step timeout bounds it all.
    (pymongo's ``timeout()`` block is not used: it replaces serverSelectionTimeoutMS, so a dead
    server would take the whole step budget to report.)
    """

    url: str = field(repr=False)
    server_selection_timeout: float = 2.0
    connect_timeout: float = 2.0
    socket_timeout: float = 10.0

    def __post_init__(self) -> None:
        try:
            self._client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
                self.url,
                serverSelectionTimeoutMS=int(self.server_selection_timeout * 1000),
                connectTimeoutMS=int(self.connect_timeout * 1000),
                socketTimeoutMS=int(self.socket_timeout * 1000),
                appname="playcode-medic",
                maxPoolSize=4,
                retryReads=False,
                tz_aware=True,
                readPreference="primaryPreferred",
            )
        except (ConfigurationError, ValueError, TypeError) as exc:
            raise ConfigError(
                f"not a usable MongoDB connection string: {redact_text(str(exc))}",
                field="target_mongo_url",
            ) from None

    async def command(self, db: str, command: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = await self._client[db].command(
            command, read_preference=ReadPreference.PRIMARY_PREFERRED
        )
        return result

    async def find(
        self,
        db: str,
        collection: str,
        query: dict[str, Any],
        *,
        projection: dict[str, Any],
        sort: list[tuple[str, int]],
        limit: int,
    ) -> list[dict[str, Any]]:
        database = self._client.get_database(db, read_preference=ReadPreference.PRIMARY_PREFERRED)
        cursor = database[collection].find(query, projection, sort=sort, limit=limit)
        return [doc async for doc in cursor]

    async def close(self) -> None:
        await self._client.close()
