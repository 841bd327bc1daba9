"""The diagnosis process itself (started by :class:`medic.app.worker_process.DiagnosisProcess` as
``python -m medic.app.diagnosis_child``): a runtime in role DIAGNOSIS, woken through a pipe, its
metrics on a Unix socket. Apart from the parent's side so that the runtime, which starts the
child, and the child, which opens a runtime, do not import each other."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys

import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from medic.app.logging import configure_logging
from medic.app.runtime import Role, Runtime
from medic.app.settings import load_settings
from medic.app.worker_process import INBOX_WAKE, VERIFIER_WAKE
from medic.domain.errors import MedicError

log = structlog.get_logger("medic.app.diagnosis_child")


def route_wake(data: bytes, workers: asyncio.Event, verifier: asyncio.Event) -> None:
    """Wake what the intake's bytes ask for: the workers for accepted deliveries, the verifier for
    a verification begun in the intake process (not for every delivery: it lists open incidents)."""
    if INBOX_WAKE in data:
        workers.set()
    if VERIFIER_WAKE in data:
        verifier.set()


async def _serve_child(wake_fd: int, socket_path: str) -> None:
    settings = load_settings()
    runtime = await Runtime.open(settings, role=Role.DIAGNOSIS)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

    def on_wake() -> None:
        try:
            data = os.read(wake_fd, 4096)
        except BlockingIOError:
            return
        if data:
            route_wake(data, runtime.wake, runtime.verifications.wake)
        else:  # the intake died without stopping us first: die with it (see "One fate")
            log.error("the intake process is gone: the diagnosis process stops at once")
            os._exit(70)

    os.set_blocking(wake_fd, False)
    loop.add_reader(wake_fd, on_wake)
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    async def metrics(_: web.Request) -> web.Response:
        resp = web.Response(body=generate_latest(runtime.metrics.registry))
        resp.content_type = CONTENT_TYPE_LATEST.split(";")[0]
        return resp

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    with contextlib.suppress(FileNotFoundError):
        os.unlink(socket_path)
    await web.UnixSite(runner, socket_path).start()
    os.chmod(socket_path, 0o600)
    runtime.start_diagnosis()
    runtime.wake.set()  # whatever was accepted before this process ran
    log.info("diagnosis process ready", workers=settings.process.workers)
    try:
        await stop.wait()
    finally:
        log.info("diagnosis process stopping")
        await runner.cleanup()
        await runtime.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="medic-diagnosis", description="Medic's diagnosis process (internal)")
    ap.add_argument("--wake-fd", type=int, required=True, help="read end of the intake's wake-up pipe")
    ap.add_argument("--metrics-socket", required=True, help="Unix socket to serve /metrics on")
    args = ap.parse_args(argv)
    settings = load_settings()
    configure_logging(settings.logging.log_format, settings.logging.log_level)
    structlog.contextvars.bind_contextvars(process="diagnosis")
    try:
        asyncio.run(_serve_child(args.wake_fd, args.metrics_socket))
    except MedicError as exc:
        print(f"medic diagnosis process: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
