"""What the CLI shares to talk to a running Medic (``--url``), and its shared argument types.

* :func:`add_url_option` adds ``--url`` (an http(s) URL, else a usage error) and the timeout of
  each request (``--timeout``, default :data:`DEFAULT_TIMEOUT`).
* :func:`open_session`: the one way a command opens its HTTP session: that timeout on every
  request (connect included), an error naming the URL when it runs out (exit 1), and the
  progress line on stderr while an answer takes longer than :data:`PROGRESS_AFTER` seconds.
* :func:`answer_json` / :func:`answer_text`: the one way a command reads an answer: Medic's JSON
  (or, for ``format=md``, its Markdown), else a failure naming the URL and what came instead (a
  proxy's or an ingress's HTML page, whatever its status: exit 1, never a traceback); a refusal
  is a failure with the server's problem detail.
* :func:`positive_int`, :func:`http_url`, :func:`seconds`, :func:`namespace`: argparse types,
  so that a bad value is a usage error (exit 2) with argparse's message, for every command alike.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
from collections.abc import AsyncIterator, Callable, Container
from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, StrictBool, ValidationError

from medic.app.cli.output import Progress
from medic.domain.durations import format_duration, parse_duration
from medic.domain.errors import MedicError

if TYPE_CHECKING:  # aiohttp is imported when a command talks to a server
    import aiohttp

DEFAULT_TIMEOUT = 30.0  # seconds a request may take, connect included (amtool's default too)
PROGRESS_AFTER = 1.0  # seconds without an answer before the progress line is drawn


def read_headers() -> dict[str, str]:
    """The read token (or the admin token) for a Medic whose incident data needs one."""
    token = os.environ.get("MEDIC_READ_TOKEN") or os.environ.get("MEDIC_ADMIN_TOKEN")
    return {"Authorization": f"Bearer {token}"} if token else {}


# --------------------------------------------------------------------------- argument types
def positive_int(value: str) -> int:
    """An integer of at least 1 (``--limit``)."""
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"{value!r}: must be 1 or more")
    return number


def http_url(value: str) -> str:
    """An http(s) URL with a host, without a trailing slash (``--url``)."""
    try:
        parts = urlsplit(value.strip())
        host = parts.hostname
        parts.port  # noqa: B018  # raises ValueError on a bad port
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{value!r} is not a URL: {exc}") from None
    if parts.scheme not in ("http", "https") or not host:
        raise argparse.ArgumentTypeError(f"{value!r} is not an http(s) URL, e.g. http://127.0.0.1:8080")
    return value.strip().rstrip("/")


def seconds(value: str) -> float:
    """A finite duration more than zero (``30``, ``30s``, ``2m``), in seconds."""
    if _is_number(value) and not math.isfinite(float(value)):  # nan, inf, 1e999
        raise argparse.ArgumentTypeError(f"{value!r} is not a finite duration (use e.g. 30s, 5m)")
    try:
        number = float(parse_duration(float(value) if _is_number(value) else value).total_seconds())
    except (ValueError, OverflowError) as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if not 0 < number < math.inf:
        raise argparse.ArgumentTypeError(f"{value!r}: must be more than zero")
    return number


def _is_number(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True


def namespace(value: str) -> str:
    """A Kubernetes namespace name, checked as Medic's settings check ``MEDIC_NAMESPACES``."""
    from pydantic import TypeAdapter, ValidationError

    from medic.app.settings import Namespace

    try:
        checked: str = TypeAdapter(Namespace).validate_python(value)
    except ValidationError as exc:
        raise argparse.ArgumentTypeError(exc.errors()[0]["msg"].removeprefix("Value error, ")) from None
    return checked


# --------------------------------------------------------------------------- answers
T = TypeVar("T")
OK = range(200, 300)  # any 2xx


class Answer(dict[str, Any]):
    """A JSON object Medic answered. A field it lacks is a failure naming the URL and the field
    (a JSON answer of another shape: a gateway's own JSON, another version of Medic), never a
    ``KeyError`` out of the command; the objects inside it are answers too."""

    def __init__(self, url: str, doc: dict[str, Any]) -> None:
        super().__init__({k: _answer_value(url, v) for k, v in doc.items()})
        self.url = url

    def __missing__(self, key: str) -> Any:
        raise MedicError(f"{self.url}: the answer has no {key!r}: not a Medic answer of this version")


def _answer_value(url: str, value: Any) -> Any:
    if isinstance(value, dict):
        return Answer(url, value)
    if isinstance(value, list):
        return [_answer_value(url, v) for v in value]
    return value


def parse_answer(url: str, status: int, text: str) -> Answer:
    """The JSON object Medic answered (a document or a problem), else a failure naming ``url``,
    the status and the start of what came instead (a proxy's HTML page)."""
    try:
        doc = json.loads(text)
    except ValueError:
        doc = None
    if not isinstance(doc, dict):
        raise MedicError(f"{url}: {status} not a Medic answer: {text[:200]!r}")
    return Answer(url, doc)


def answer_as(parse: Callable[[dict[str, Any]], T], doc: dict[str, Any], url: str) -> T:
    """An answer read as the document it should be (``parse``: a model's ``model_validate``,
    ``IncidentView.from_document``); one of another shape is a failure naming the URL and the
    fields, never a validation traceback."""
    try:
        return parse(dict(doc))
    except ValidationError as exc:
        wrong = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or '(the answer)'}: {e['msg']}"
            for e in exc.errors(include_url=False, include_input=False)[:3]
        )
        raise MedicError(f"{url}: not a Medic answer of this version: {wrong}") from None


def refusal(url: str, status: int, problem: dict[str, Any]) -> MedicError:
    """A problem+json answer as a failure: the URL, the status, the problem's title and detail."""
    said = [str(problem[k]) for k in ("title", "detail") if problem.get(k)]
    return MedicError(f"{url}: {status} {': '.join(said) or 'no detail'}")


async def answer_json(
    resp: aiohttp.ClientResponse,
    url: str,
    *,
    ok: Container[int] = OK,
    shape: type[BaseModel] | None = None,
) -> dict[str, Any]:
    """``resp``'s JSON object when its status is in ``ok`` (any 2xx by default); a status outside
    it is :func:`refusal`, a body that is not Medic's JSON a failure naming ``url`` (exit 1), and
    so is one that does not read as ``shape`` (the fields a command prints or acts on)."""
    doc = parse_answer(url, resp.status, await resp.text())
    if resp.status not in ok:
        raise refusal(url, resp.status, doc)
    if shape is not None and resp.status < 300:
        answer_as(shape.model_validate, doc, url)
    return doc


class KillSwitchAnswer(BaseModel):
    """What ``/api/v1/admin/kill-switch`` answers (the fields ``medic kill-switch`` prints)."""

    enabled: StrictBool
    by: str = ""
    reason: str = ""


class VerificationAnswer(BaseModel):
    """What ``POST /api/v1/verifications`` answers (the fields ``medic verify`` prints)."""

    incident_id: str = Field(min_length=1)
    status: str
    state: str | None = None


async def answer_text(resp: aiohttp.ClientResponse, url: str, content_type: str) -> str:
    """``resp``'s body when it is a 200 answer of ``content_type`` (``text/markdown`` for
    ``format=md``); a problem is :func:`refusal`, anything else (a login page) a failure naming ``url``."""
    text = await resp.text()
    if resp.status != 200:
        raise refusal(url, resp.status, parse_answer(url, resp.status, text))
    if resp.content_type != content_type:
        what = f"{resp.content_type}, not {content_type}"
        raise MedicError(f"{url}: {resp.status} not a Medic answer ({what}): {text[:200]!r}")
    return text


# --------------------------------------------------------------------------- --url
def add_url_option(
    parser: argparse.ArgumentParser,
    help: str,
    *,
    timeout_flag: str = "--timeout",
    default: float = DEFAULT_TIMEOUT,
    why: str = "",
) -> None:
    """``--url`` and the per-request timeout (``timeout_flag``, dest ``http_timeout``; ``why``
    says why a command's default is longer than :data:`DEFAULT_TIMEOUT`)."""
    parser.add_argument("--url", type=http_url, help=help)
    parser.set_defaults(http_timeout_flag=timeout_flag)
    parser.add_argument(
        timeout_flag,
        dest="http_timeout",
        type=seconds,
        default=default,
        metavar="DURATION",
        help=f"--url: give up on a request after this long, e.g. 10s or 2m "
        f"(default {format_duration(timedelta(seconds=default))}{why})",
    )


@contextlib.asynccontextmanager
async def open_session(
    args: argparse.Namespace, headers: dict[str, str] | None = None, *, progress: bool = True
) -> AsyncIterator[aiohttp.ClientSession]:
    """A session to ``args.url`` whose every request gives up after ``args.http_timeout``.

    Running out is a :class:`MedicError` naming the URL (exit 1). With ``progress`` the line
    ``medic: waiting for URL 3s`` is drawn on a terminal's stderr once the block has waited
    :data:`PROGRESS_AFTER` seconds (a command with a progress line of its own passes False).
    """
    import aiohttp

    limit = float(getattr(args, "http_timeout", DEFAULT_TIMEOUT))
    timeout = aiohttp.ClientTimeout(total=limit, connect=limit)
    label = f"waiting for {args.url}"
    flag = getattr(args, "http_timeout_flag", "--timeout")
    try:
        async with aiohttp.ClientSession(headers=headers, timeout=timeout) as session:
            if not progress:
                yield session
                return
            async with Progress().showing(label, budget=limit, after=PROGRESS_AFTER):
                yield session
    except TimeoutError:  # aiohttp's total and connect timeouts (ServerTimeoutError is one too)
        raise MedicError(f"{args.url}: no answer within {limit:g}s (raise {flag} to wait longer)") from None
