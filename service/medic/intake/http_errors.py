"""The HTTP edge: a bad request is always a 4xx problem+json, and no client holds a connection
longer than the server allows.

:func:`edge_middleware` wraps every route and answers (RFC 9457 ``application/problem+json``):

    InputError (medic.domain.errors)          its status (400, 408, 415, ...), title, detail, field
    aiohttp HTTPException (>= 400)     same status (404, 405, 413, ...); Allow/WWW-Authenticate kept
    a broken body (HttpProcessingError: chunked framing, gzip/deflate data that does not decode)
                                       400 "Malformed body", connection closed
    StoreError / BackendUnavailable    503 + Retry-After: Medic could not store or read; retry
    anything else                      500, logged with the exception (a bug in Medic, never input)

Bodies, on every route, whoever reads them and however (``request.content``, ``read()``,
``text()``, ``post()``):

- ``Content-Encoding``: ``identity``, ``gzip`` or ``deflate``. aiohttp decodes gzip/deflate in
  bounded steps under flow control, and the decoded size counts against ``MEDIC_MAX_BODY_BYTES``
  (413), so a zip bomb stops at the cap. Anything else (``br``, ``zstd``, several codings, unknown
  names) is 415 with ``Accept-Encoding``.
- a body not received in full within ``MEDIC_BODY_READ_TIMEOUT`` of the request head is cut off:
  408, connection closed. The timer only arms the stream: a handler that answers before reading
  (401, 415) is not affected, and time spent storing a body received in full does not count.

A body a handler answered without reading (401, 404) is read and dropped by aiohttp for at most
the same timeout (its ``lingering_time``), then the connection is closed.

The request head is bounded by aiohttp's keep-alive timer (``MEDIC_KEEPALIVE_TIMEOUT``, see
:func:`handler_args`): a connection that has not sent a complete request line and headers that long
after it opened or after its last answer is closed. A request head aiohttp cannot parse at all
(bad request line, oversized header) is answered by aiohttp itself: a plain-text 400 or 431 and the
connection closed; it never reaches the application.

Query parameters are parsed with :func:`query_int` (bounded), bodies with :func:`json_body` (no
depth or integer-size failure escapes as a 500) and :func:`form_body` (URL-encoded UTF-8 only).
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import parse_qsl

import pydantic_core
import structlog
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.typedefs import Handler, Middleware
from aiohttp.web_protocol import RequestPayloadError

from medic.domain.errors import BackendUnavailable, InputError, StoreError
from medic.intake.problem import PROBLEM_TYPE, problem

log = structlog.get_logger("medic.http")

ACCEPTED_ENCODINGS = frozenset({"", "identity", "gzip", "deflate"})
# SQLite's INTEGER is a signed 64-bit number: no paging value may leave it
SQLITE_INT_MAX = 2**63 - 1
MAX_FORM_FIELDS = 50
# pydantic-core's own limit: a document it refuses is refused on every path, never half-accepted
MAX_JSON_DEPTH = 200
_KEPT_HEADERS = ("allow", "www-authenticate", "retry-after", "accept-encoding")


class BodyTimeout(InputError):
    """The client did not send its whole body in time (408; the connection is then closed)."""

    def __init__(self, seconds: float) -> None:
        super().__init__(
            "Request Timeout",
            f"the body was not received in full within {seconds:g}s (MEDIC_BODY_READ_TIMEOUT)",
            status=408,
        )


# --------------------------------------------------------------------------- parsing client input
def query_int(request: web.Request, name: str, default: int, lo: int, hi: int) -> int:
    """An integer query parameter within ``[lo, hi]``; InputError (400 naming it) otherwise."""
    raw = request.query.get(name)
    if raw is None:
        return default
    return bounded_int(raw, name, lo, hi)


def bounded_int(raw: str, name: str, lo: int, hi: int) -> int:
    """Pure: ``raw`` as a decimal integer within ``[lo, hi]``, or InputError naming ``name``."""
    text = raw.strip()
    # at most the digits of hi: int() of a 5,000-digit string raises, of a 4,000-digit one is slow
    if not text.isascii() or not text.lstrip("+-").isdigit() or len(text) > len(str(hi)) + 1:
        raise InputError("Bad Request", f"{name} must be an integer between {lo} and {hi}", field=name)
    value = int(text)
    if not lo <= value <= hi:
        raise InputError("Bad Request", f"{name} must be an integer between {lo} and {hi}", field=name)
    return value


def json_depth(value: Any) -> int:
    """Pure, iterative: how deeply a parsed JSON document nests (a scalar is 0)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            node = list(node.values())
        if isinstance(node, list):
            deepest = max(deepest, depth + 1)
            stack.extend((child, depth + 1) for child in node)
    return deepest


def parse_json(body: bytes) -> Any:
    """Pure: the JSON document, or InputError 400 (also for nesting past pydantic-core's limit,
    integers past 4,300 digits, lone surrogates, invalid UTF-8: nothing that Medic cannot store)."""
    try:
        return pydantic_core.from_json(body)
    except ValueError as exc:
        raise InputError("Malformed JSON", str(exc)) from None


async def json_body(request: web.Request, *, empty: Any = None) -> Any:
    """The request's JSON body (``empty`` when there is none)."""
    body = await request.read()
    if not body.strip():
        if empty is None:
            raise InputError("Malformed JSON", "the body is empty; expected a JSON object")
        return empty
    return parse_json(body)


async def form_body(request: web.Request) -> dict[str, str]:
    """An ``application/x-www-form-urlencoded`` body in UTF-8 as {name: last value}."""
    if request.content_type not in ("application/x-www-form-urlencoded", ""):
        raise InputError(
            "Unsupported Media Type",
            f"expected application/x-www-form-urlencoded, got {request.content_type}",
            status=415,
        )
    body = await request.read()
    try:
        pairs = parse_qsl(
            body.decode("utf-8"),
            keep_blank_values=True,
            strict_parsing=False,
            errors="strict",
            max_num_fields=MAX_FORM_FIELDS,
        )
    except UnicodeDecodeError:
        raise InputError("Malformed form", "the form is not valid UTF-8") from None
    except ValueError:
        raise InputError("Malformed form", f"more than {MAX_FORM_FIELDS} fields") from None
    return dict(pairs)


# --------------------------------------------------------------------------- the middleware
def _encoding_problem(request: web.Request) -> web.Response | None:
    codings = request.headers.getall("Content-Encoding", [])
    coding = ",".join(codings).strip().lower()
    if coding in ACCEPTED_ENCODINGS:
        return None
    return problem(
        415,
        "Unsupported Media Type",
        "unsupported Content-Encoding: use gzip, deflate or none",
        headers={"Accept-Encoding": "gzip, deflate"},
        field="Content-Encoding",
    )


def _arm_body_deadline(request: web.Request, seconds: float) -> asyncio.TimerHandle | None:
    """After ``seconds``, a body still not received in full fails every read of it with
    BodyTimeout (the handler's read raises; the middleware answers 408)."""
    if not request.body_exists or request.content.is_eof():
        return None
    stream = request.content

    def expire() -> None:
        if not stream.is_eof():
            stream.set_exception(BodyTimeout(seconds))

    return asyncio.get_running_loop().call_later(seconds, expire)


def _from_http_exception(exc: web.HTTPException) -> web.Response:
    headers = {k: v for k, v in exc.headers.items() if k.lower() in _KEPT_HEADERS}
    detail = exc.text or ""
    if detail.startswith(f"{exc.status}: "):  # aiohttp's default text repeats the reason
        detail = ""
    return problem(exc.status, exc.reason, detail, headers=headers)


def _payload_detail(exc: BaseException) -> str:
    for err in (exc, exc.__cause__):
        if isinstance(err, HttpProcessingError) and err.message:
            return str(err.message).strip()
    return "the body's framing or Content-Encoding is broken"


def _closing(response: web.Response) -> web.Response:
    response.force_close()
    return response


def edge_middleware(*, body_read_timeout: float) -> Middleware:
    """The one middleware every route runs under (see the module docstring)."""

    @web.middleware
    async def edge(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.body_exists and (refused := _encoding_problem(request)) is not None:
            return _closing(refused)  # the body is not read: do not keep the connection
        deadline = _arm_body_deadline(request, body_read_timeout)
        try:
            return await handler(request)
        except BodyTimeout as exc:
            log.info("body read timeout", method=request.method, path=request.path, remote=request.remote)
            return _closing(problem(exc.status, exc.title, exc.detail))
        except InputError as exc:
            return problem(exc.status, exc.title, exc.detail, field=exc.field)
        except web.HTTPException as exc:
            if exc.status < 400 or exc.content_type == PROBLEM_TYPE:
                raise
            return _from_http_exception(exc)
        except (HttpProcessingError, RequestPayloadError) as exc:  # broken framing or content coding
            return _closing(problem(400, "Malformed body", _payload_detail(exc)))
        except BackendUnavailable as exc:  # Medic's own Redis or MongoDB is down: try again later
            return problem(503, "Store unavailable", str(exc), headers={"Retry-After": "5"})
        except StoreError as exc:
            log.error("store error", method=request.method, path=request.path, error=str(exc))
            return problem(
                503, "Store error", "Medic could not read or store; retry later", headers={"Retry-After": "5"}
            )
        except ConnectionError:
            raise  # the client went away: aiohttp drops the connection
        except Exception:
            log.exception("unhandled error", method=request.method, path=request.path)
            return _closing(problem(500, "Internal Server Error", "Medic failed on this request"))
        finally:
            if deadline is not None:
                deadline.cancel()

    return edge


def handler_args(*, keepalive_timeout: float, body_read_timeout: float) -> dict[str, Any]:
    """aiohttp's per-connection settings. ``keepalive_timeout`` also bounds how long a client may
    take to send a request head (aiohttp closes a connection idle in its wait for one);
    ``lingering_time``, how long aiohttp reads and drops the rest of a body that a handler answered
    without reading (401, 404, ...) before it closes, is the body read timeout too."""
    return {"keepalive_timeout": keepalive_timeout, "lingering_time": body_read_timeout}


__all__ = [
    "BodyTimeout",
    "bounded_int",
    "edge_middleware",
    "form_body",
    "handler_args",
    "json_body",
    "parse_json",
    "query_int",
]
