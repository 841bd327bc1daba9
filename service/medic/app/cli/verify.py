"""``medic verify deployment/NAME -n NS``: verify a deploy (runbook 1.3) from a CI pipeline.

With ``--url`` it asks a running Medic (``POST /api/v1/verifications`` with the webhook credentials
from ``MEDIC_WEBHOOK_TOKEN``, or ``MEDIC_WEBHOOK_USERNAME``/``MEDIC_WEBHOOK_PASSWORD``) and, with
``--wait``, follows the verification (``MEDIC_READ_TOKEN``) until it ends. Without ``--url`` it
runs the verification itself with the local configuration (``MEDIC_*``, Kubernetes, Prometheus,
Loki) and always waits: nothing else would sample it.

Exit 0 passed (or started, without ``--wait``), 1 failed (also inconclusive with
``--fail-inconclusive``) or refused by the server, 2 usage or configuration error.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from medic.app.cli.output import EXIT_FAILURE, EXIT_OK, Progress, add_output_option, emit
from medic.app.cli.remote import (
    VerificationAnswer,
    add_url_option,
    answer_json,
    namespace,
    open_session,
    positive_int,
    read_headers,
)
from medic.domain.durations import parse_duration
from medic.domain.errors import ConfigError, MedicError, UsageError

POLL_SECONDS = 2.0


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "verify",
        help="verify a fresh deploy of a Deployment against its previous revision",
        description=__doc__,
    )
    p.add_argument("target", help="deployment/NAME (or NAME)")
    p.add_argument("-n", "--namespace", type=namespace, required=True, help="the Deployment's namespace")
    p.add_argument("--revision", type=positive_int, help="the revision to verify (default: the current one)")
    p.add_argument("--window", help="how long to watch, e.g. 10m (default: the playbook's)")
    p.add_argument("--wait", action="store_true", help="wait for the verdict (always, without --url)")
    p.add_argument("--fail-inconclusive", action="store_true", help="exit 1 when the verdict is inconclusive")
    p.add_argument("--timeout", default="2h", help="--wait: give up after this long (default 2h)")
    where = "a running Medic, e.g. http://127.0.0.1:8080; default: run it here"
    add_url_option(p, where, timeout_flag="--request-timeout")  # --timeout: how long --wait waits
    add_output_option(p, "one line per state")
    p.set_defaults(fn=cmd_verify)


def deployment_name(target: str) -> str:
    kind, sep, name = target.partition("/")
    if not sep:
        return target
    if kind not in ("deployment", "deployments", "deploy", "deployment.apps"):
        raise UsageError(f"verify works on a deployment, not on {kind!r}")
    return name


def _window(args: argparse.Namespace) -> timedelta | None:
    if not args.window:
        return None
    try:
        return parse_duration(args.window)
    except ValueError as exc:
        raise UsageError(f"--window: {exc}") from None


def cmd_verify(args: argparse.Namespace) -> int:
    name = deployment_name(args.target)
    window = _window(args)
    try:
        timeout = parse_duration(args.timeout).total_seconds()
    except ValueError as exc:
        raise UsageError(f"--timeout: {exc}") from None
    run = _remote(args, name, window, timeout) if args.url else _local(args, name, window, timeout)
    result = asyncio.run(run)
    emit(args, result, lambda: _text(result))
    return verify_exit(result.get("state"), waited=args.wait, fail_inconclusive=args.fail_inconclusive)


def verify_exit(state: Any, *, waited: bool, fail_inconclusive: bool) -> int:
    """0 passed (inconclusive too, unless ``fail_inconclusive``), and without ``--wait`` a
    verification that started; 1 failed, and any state that says neither (an unknown one, or one
    still running after ``--wait``): success is never assumed."""
    if state == "passed" or (state == "inconclusive" and not fail_inconclusive):
        return EXIT_OK
    if state == "verifying" and not waited:
        return EXIT_OK
    return EXIT_FAILURE


def _text(result: dict[str, Any]) -> str:
    where = f"deployment/{result.get('namespace')}/{result.get('deployment')}"
    against = f" against revision {result['baseline_revision']}" if result.get("baseline_revision") else ""
    head = f"{where} revision {result.get('revision')}{against}: {result.get('state')}"
    reason = f" — {result['reason']}" if result.get("reason") else ""
    url = f"\n{result['url']}" if result.get("url") else ""
    return f"{head}{reason}\nincident {result.get('incident_id')}{url}"


def webhook_headers() -> dict[str, str]:
    token = os.environ.get("MEDIC_WEBHOOK_TOKEN")
    if token:
        return {"Authorization": f"Bearer {token}"}
    user, password = os.environ.get("MEDIC_WEBHOOK_USERNAME"), os.environ.get("MEDIC_WEBHOOK_PASSWORD")
    if user is not None:
        pair = base64.b64encode(f"{user}:{password or ''}".encode()).decode()
        return {"Authorization": f"Basic {pair}"}
    return {}


async def _until_final(
    fetch: Callable[[], Awaitable[dict[str, Any]]], timeout: float, label: str, every: float = POLL_SECONDS
) -> dict[str, Any]:
    async def poll() -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            result = await fetch()
            if result.get("state") not in (None, "verifying"):
                return result
            if time.monotonic() > deadline:
                raise MedicError(f"{label}: no verdict within {timeout:.0f}s (still verifying)")
            await asyncio.sleep(every)

    return await Progress().around(label, poll())


async def _remote(
    args: argparse.Namespace, name: str, window: timedelta | None, timeout: float
) -> dict[str, Any]:
    from medic.domain.durations import format_duration

    base = args.url
    body: dict[str, Any] = {"namespace": args.namespace, "deployment": name}
    if args.revision:
        body["revision"] = args.revision
    if window is not None:
        body["window"] = format_duration(window)
    async with open_session(args, progress=not args.wait) as s:  # --wait draws its own line
        async with s.post(f"{base}/api/v1/verifications", json=body, headers=webhook_headers()) as resp:
            started = await answer_json(
                resp, f"{base}/api/v1/verifications", ok=(200, 202), shape=VerificationAnswer
            )
        if not args.wait:
            return started

        async def fetch() -> dict[str, Any]:
            url = f"{base}/api/v1/incidents/{started['incident_id']}"
            async with s.get(url, headers=read_headers()) as resp:
                doc = await answer_json(resp, url, ok=(200,))
            return _from_incident(doc, started)

        return await _until_final(fetch, timeout, f"verifying {args.namespace}/{name}")


def _from_incident(doc: dict[str, Any], started: dict[str, Any]) -> dict[str, Any]:
    v = doc.get("verification") or {}
    keep = (
        "namespace",
        "deployment",
        "revision",
        "baseline_revision",
        "state",
        "reason",
        "started_at",
        "ends_at",
    )
    return {**started, **{k: v.get(k) for k in keep if k in v}, "samples": len(v.get("samples") or [])}


async def _local(
    args: argparse.Namespace, name: str, window: timedelta | None, timeout: float
) -> dict[str, Any]:
    from medic.app.http.verifications import verification_json
    from medic.app.runtime import Runtime
    from medic.app.settings import load_settings
    from medic.app.verification import VerificationError

    settings = load_settings()
    runtime = await Runtime.open(settings)
    try:
        try:
            incident, _ = await runtime.verifications.request(
                args.namespace, name, args.revision, window, "cli"
            )
        except VerificationError as exc:
            if exc.status == 503 and runtime.backends.kube is None:  # a configuration error
                raise ConfigError(exc.detail) from None
            raise MedicError(exc.detail) from None

        async def fetch() -> dict[str, Any]:
            # this verification only, step by step: the command drives no other incident (with
            # Medic's shared Redis and MongoDB, a serving Medic samples the others)
            await runtime.verifications.evaluate(incident.id)
            current = await runtime.store.get(incident.id)
            return verification_json(current or incident, settings.public_url)

        return await _until_final(fetch, timeout, f"verifying {args.namespace}/{name}", every=0.5)
    finally:
        await runtime.close()
