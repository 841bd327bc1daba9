"""The embedded inbox served to the diagnosis process over a Unix socket.

The intake process owns ``inbox.sqlite3``: it alone writes it, so an accepted delivery's commit
never waits for a lock another process holds (SQLite makes a waiting writer sleep and poll,
which put tens of milliseconds on the webhook's answer during a storm). The diagnosis process
(:mod:`medic.app.worker_process`) claims, acknowledges and hands back deliveries through
:class:`RemoteInbox`, which asks the intake's :func:`inbox_app` on ``MEDIC_DATA_DIR/inbox.sock``;
the intake runs those writes in its own group commits, beside the accepts.

Only the worker's calls are served (claim, ack, release) plus the counts; accepting and the dead
letters stay with the intake, which has the inbox itself. While the intake is flooded a claim may
be answered with no item and ``retry_after`` (:mod:`medic.app.claim_gate`): the worker waits
that long, then asks again.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
from aiohttp import web
from pydantic import BaseModel, ValidationError

from medic.domain.errors import BackendUnavailable, StoreError
from medic.inbox.base import AcceptResult, DeadLetter, InboxItem, Payload
from medic.inbox.sqlite import SqliteInbox

CALL_TIMEOUT = 30.0  # a claim or an ack waits at most this long for the intake's commit
MAX_RETRY_AFTER = 5.0  # the longest a put-off claim waits before it asks again


def _claimed_json(rows: list[tuple[int, str, str, str, int]]) -> bytes:
    """The claimed rows as the answer's JSON, their stored JSON texts (validated when they were
    accepted) put in as they are: the intake does not parse what the child parses anyway."""
    items = [
        f'{{"id":"{r[0]}","payload":{r[1]},"new_episodes":{r[2]},'
        f'"received_at":{json.dumps(r[3])},"attempts":{int(r[4])}}}'
        for r in rows
    ]
    return ('{"items":[' + ",".join(items) + "]}").encode()


class _Answer(BaseModel):
    """Every answer of the intake is a JSON object; a refusal says why in ``error``."""

    error: str | None = None


class _Item(BaseModel):
    id: str
    payload: dict[str, Any]
    new_episodes: list[str]
    received_at: datetime  # as the SQLite inbox reads it (fromisoformat)
    attempts: int

    def item(self) -> InboxItem:
        return InboxItem(self.id, self.payload, self.new_episodes, self.received_at, self.attempts)


class _Claimed(_Answer):
    items: list[_Item]
    retry_after: float = 0.0  # the intake is flooded: ask again in this many seconds


class _Counts(_Answer):
    depth: int
    dead_letters: int


A = TypeVar("A", bound=_Answer)


def _refusal(text: bytes) -> str | None:
    """The ``error`` of a refusal's JSON object, if it is one."""
    try:
        return _Answer.model_validate_json(text).error
    except ValidationError:
        return None


def inbox_app(inbox: SqliteInbox, claim_wait: Callable[[], float] = lambda: 0.0) -> web.Application:
    """The intake's side: the worker's inbox calls, for the diagnosis process only (a Unix
    socket in the private data dir, mode 0600). ``claim_wait`` says when a claim is to be put
    off (seconds; 0 to hand out work): :class:`medic.app.claim_gate.ClaimGate`."""

    async def claim(request: web.Request) -> web.Response:
        body = await request.json()
        if (wait := claim_wait()) > 0:  # the intake is flooded: ask again later
            return web.json_response({"items": [], "retry_after": wait})
        rows = await inbox.claim_rows(str(body["consumer"]), int(body["limit"]))
        return web.Response(body=_claimed_json(rows), content_type="application/json")

    async def ack(request: web.Request) -> web.Response:
        body = await request.json()
        await inbox.ack_many([str(i) for i in body["ids"]])
        return web.json_response({})

    async def release(request: web.Request) -> web.Response:
        body = await request.json()
        episodes = body.get("episodes")
        await inbox.release(
            str(body["id"]),
            str(body["error"]),
            episodes=[str(e) for e in episodes] if episodes is not None else None,
            dead=bool(body.get("dead", False)),
        )
        return web.json_response({})

    async def counts(_: web.Request) -> web.Response:
        return web.json_response({"depth": await inbox.depth(), "dead_letters": await inbox.dead_letters()})

    @web.middleware
    async def store_errors(request: web.Request, handler: Any) -> web.StreamResponse:
        try:
            return await handler(request)  # type: ignore[no-any-return]
        except BackendUnavailable as exc:
            return web.json_response({"error": str(exc), "unavailable": True}, status=503)
        except StoreError as exc:
            return web.json_response({"error": str(exc)}, status=500)

    app = web.Application(middlewares=[store_errors])
    app.router.add_post("/claim", claim)
    app.router.add_post("/ack", ack)
    app.router.add_post("/release", release)
    app.router.add_get("/counts", counts)
    return app


class RemoteInbox:
    """The diagnosis process's inbox: the intake's, through its Unix socket. An intake that does
    not answer is an unavailable backend (the worker waits and retries, nothing is lost)."""

    def __init__(self, socket_path: Path) -> None:
        self.socket_path = socket_path
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.UnixConnector(path=str(self.socket_path)),
                timeout=aiohttp.ClientTimeout(total=CALL_TIMEOUT),
            )
        return self._session

    async def _call(self, method: str, path: str, body: dict[str, Any] | None, answer: type[A]) -> A:
        """The intake's answer as ``answer``. An answer that is not the intake's (not JSON, not a
        JSON object, not of that shape: something else on the socket, a truncated body) is an
        unavailable backend like no answer at all: the worker waits and asks again."""
        try:
            async with self._client().request(method, f"http://intake{path}", json=body) as resp:
                text = await resp.read()
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise BackendUnavailable(f"the intake process's inbox does not answer: {exc}") from exc
        if resp.status != 200:
            error = _refusal(text) or f"HTTP {resp.status}"
            if resp.status == 503:
                raise BackendUnavailable(f"the intake process's inbox is unavailable: {error}")
            raise StoreError(f"inbox: {error}")
        try:
            return answer.model_validate_json(text)
        except ValidationError as exc:  # the message only: the input may hold a delivery
            first = exc.errors()[0]
            where = ".".join(map(str, first["loc"])) or "the answer"
            raise BackendUnavailable(
                f"the intake process's inbox answered {method} {path} wrongly: {where}: {first['msg']}"
            ) from exc

    async def claim(self, consumer: str, limit: int) -> list[InboxItem]:
        """The items claimed; none, after waiting as asked, when the intake puts claims off."""
        data = await self._call("POST", "/claim", {"consumer": consumer, "limit": limit}, _Claimed)
        if data.retry_after > 0:
            await asyncio.sleep(min(data.retry_after, MAX_RETRY_AFTER))
        return [i.item() for i in data.items]

    async def ack_many(self, item_ids: list[str]) -> None:
        await self._call("POST", "/ack", {"ids": item_ids}, _Answer)

    async def release(
        self, item_id: str, error: str, *, episodes: list[str] | None = None, dead: bool = False
    ) -> None:
        body = {"id": item_id, "error": error, "episodes": episodes, "dead": dead}
        await self._call("POST", "/release", body, _Answer)

    async def depth(self) -> int:
        return (await self._call("GET", "/counts", None, _Counts)).depth

    async def dead_letters(self) -> int:
        return (await self._call("GET", "/counts", None, _Counts)).dead_letters

    async def ping(self) -> None:
        await self._call("GET", "/counts", None, _Counts)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    # The intake keeps these: the diagnosis process never accepts deliveries nor serves the API.
    async def accept(self, payload: Payload, episodes: list[str], received_at: datetime) -> AcceptResult:
        raise StoreError("the diagnosis process does not accept deliveries: the intake does")

    async def list_dead_letters(self, limit: int = 100, offset: int = 0) -> tuple[list[DeadLetter], int]:
        raise StoreError("the dead letters are served by the intake process")

    async def retry_dead_letter(self, item_id: str) -> bool:
        raise StoreError("the dead letters are served by the intake process")

    async def drop_dead_letter(self, item_id: str) -> bool:
        raise StoreError("the dead letters are served by the intake process")
