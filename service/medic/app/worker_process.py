"""Diagnosis in its own process, so that a storm of diagnoses never slows the acknowledgement
Alertmanager waits for.

``medic serve`` with the embedded backend runs as two processes (``MEDIC_DIAGNOSIS_PROCESS``,
default on): the **intake** process serves HTTP (webhook, API, pages, approvals), owns the inbox
and keeps the store tidy; the **diagnosis** process, its child, claims accepted deliveries and
runs the pipeline (collectors, analysis, decisions, actions, notifications). Each has a core of
its own, and neither's event loop waits for the other's work.

- **The inbox** (``inbox.sqlite3``) is written by the intake alone: the child claims,
  acknowledges and hands back through the intake's Unix socket (:mod:`medic.inbox.rpc`), so an
  acknowledgement never waits for a lock the child holds. The store (``medic.sqlite3``) is shared.

- **Priority**: the child runs in the idle scheduling class (``SCHED_IDLE``, and niceness +10
  where that class is missing): when the cores are busy,
  diagnosis waits, never the acknowledgement. And while the intake's event loop is flooded, the
  child's claims are put off (:mod:`medic.app.claim_gate`): it slows the intake even in that class.
- **Wake-up**: the intake writes a byte to a pipe once per group of accepted deliveries; the
  child wakes its workers on it (no polling delay). Another byte wakes the child's verifier when
  a verification was begun in the intake process (``POST /api/v1/verifications``).
- **One fate**: a replica whose intake dies dies whole, as one process would: the child is killed
  with it (``PR_SET_PDEATHSIG``, and the pipe's end of file as a second signal), so it never goes
  on working beside the intake's successor; what it held is handed out again on restart.
- **Locks**: both processes change incidents (the child diagnoses, the intake executes approved
  actions), so the per-incident lock is the SQLite lock table with a fencing token
  (:meth:`SqliteRemediationState.acquire_fenced`), not an in-process lock.
- **The data dir's lock** is the intake's; the child, started by it, is let in
  (:data:`LOCK_HELD_BY_PARENT`).
- **Metrics**: the child serves its exposition on a Unix socket in the data dir; the intake's
  ``/metrics`` merges it with its own (:mod:`medic.telemetry.metrics_merge`). A replaced child's
  last counts stay in the merge (its successor counts from 0), so no merged counter goes back.
- **A child that dies** is started again (after a pause that grows while it keeps dying); its
  leases are freed first, so what it held is handed out again at once. ``/readyz`` reports it.

The production backends (Redis + MongoDB) keep diagnosis in the serving process: they scale out
by replicas, and their local spool belongs to one process.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import structlog
from aiohttp import web

from medic.app.claim_gate import ClaimGate, LoopLoad
from medic.clients.sqlite import LOCK_HELD_BY_PARENT
from medic.inbox.rpc import inbox_app
from medic.inbox.sqlite import SqliteInbox
from medic.telemetry.metrics import Metrics
from medic.telemetry.metrics_merge import ChildCounters, merge_expositions, parse_or_none

log = structlog.get_logger("medic.app.worker_process")

RESTART_PAUSE = (0.5, 30.0)  # first and longest pause before a dead child is started again
METRICS_TIMEOUT = 2.0
PR_SET_PDEATHSIG = 1
DIAGNOSIS_NICENESS = 10  # the child's CPU priority below the intake's (nice(2); no privilege needed)


def _child_setup() -> None:  # in the child, between fork and exec
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    # the intake comes first: when cores are short, diagnosis waits, the acknowledgement does not.
    # SCHED_IDLE (Linux; no privilege needed to lower one's own class): the child runs on what
    # the intake leaves; with cgroups (a pod) it yields only to the pod's own processes.
    os.nice(DIAGNOSIS_NICENESS)
    with contextlib.suppress(AttributeError, OSError):
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))


# What a byte on the wake-up pipe asks the child to look at: the inbox (written once per group of
# accepted deliveries), or the verifications (a verification begun in the intake process).
INBOX_WAKE = b"\0"
VERIFIER_WAKE = b"v"


class Waker:
    """The intake's side of the wake-up pipe: ``set()`` as an asyncio.Event's, never blocks. A
    write that finds the pipe full is dropped: the child has bytes to read, and a verifier wake
    lost that way is made up by the verifier's poll (``medic.app.verification.POLL``)."""

    def __init__(self, fd: int, what: bytes = INBOX_WAKE) -> None:
        self.fd = fd
        self.what = what
        os.set_blocking(fd, False)

    def set(self) -> None:
        with contextlib.suppress(BlockingIOError, BrokenPipeError):  # a full pipe wakes it already
            os.write(self.fd, self.what)


class DiagnosisProcess:
    """The intake's handle on its diagnosis process: start, watch, restart, wake, read metrics."""

    def __init__(
        self,
        data_dir: Path,
        inbox: SqliteInbox,
        *,
        recover_dead: Callable[[], Awaitable[object]] | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.socket_path = data_dir / "diagnosis.sock"
        self.inbox_socket = inbox_socket(data_dir)
        self.inbox = inbox
        self._inbox_runner: web.AppRunner | None = None
        self.recover_dead = recover_dead  # before a restart: what the dead child held is freed
        self.restarts = 0
        self._read_fd, write_fd = os.pipe()
        self.waker = Waker(write_fd)
        self.verifier_waker = Waker(write_fd, VERIFIER_WAKE)
        self._proc: asyncio.subprocess.Process | None = None
        self._watch: asyncio.Task[None] | None = None
        self._stopping = False
        self.load = LoopLoad()
        self.claim_gate = ClaimGate(self.load)
        self.counters = ChildCounters()  # the child's last counts, and those of the replaced ones
        self._metrics = metrics
        if metrics is not None:  # the gauge reads the load at each scrape; each deferral is counted
            metrics.intake_loop_busy.set_function(lambda: self.load.busy)
            self.claim_gate.on_defer = metrics.diagnosis_claims_deferred.inc

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.returncode is None

    async def start(self) -> None:
        """Serve the inbox to the child (see :mod:`medic.inbox.rpc`), then start it."""
        self.load.start()
        self._inbox_runner = web.AppRunner(inbox_app(self.inbox, self.claim_gate), access_log=None)
        await self._inbox_runner.setup()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.inbox_socket)
        await web.UnixSite(self._inbox_runner, str(self.inbox_socket)).start()
        os.chmod(self.inbox_socket, 0o600)
        await self._spawn()
        self._watch = asyncio.create_task(self._supervise(), name="medic-diagnosis-supervisor")

    async def _spawn(self) -> None:
        env = {**os.environ, LOCK_HELD_BY_PARENT: str(os.getpid())}
        argv = [sys.executable, "-m", "medic.app.diagnosis_child", "--wake-fd", str(self._read_fd)]
        argv += ["--metrics-socket", str(self.socket_path)]
        self._proc = await asyncio.create_subprocess_exec(
            *argv, env=env, pass_fds=(self._read_fd,), preexec_fn=_child_setup
        )
        log.info("diagnosis process started", pid=self._proc.pid, restarts=self.restarts)

    async def _supervise(self) -> None:
        pause = RESTART_PAUSE[0]
        while not self._stopping:
            assert self._proc is not None
            code = await self._proc.wait()
            if self._stopping:
                return
            self.restarts += 1
            self.counters.replaced()
            if self._metrics is not None:
                self._metrics.diagnosis_process_restarts.inc()
            log.error("the diagnosis process stopped; starting it again", exit_code=code, pause=pause)
            await asyncio.sleep(pause)
            pause = min(pause * 2, RESTART_PAUSE[1])
            if self.recover_dead is not None:
                try:
                    await self.recover_dead()
                except Exception:
                    log.exception("freeing what the dead diagnosis process held failed")
            await self._spawn()

    async def expositions(self) -> list[str]:
        """What the child adds to the replica's ``/metrics``: its exposition (or, when it does not
        answer, the counters of its last one) and the counts of the children it replaced."""
        restarts = self.restarts
        text = await self.metrics_text()
        if text is not None and restarts == self.restarts:  # not from a child replaced meanwhile
            self.counters.seen(text)
        return self.counters.expositions(text if restarts == self.restarts else None)

    async def metrics_text(self) -> str | None:
        """The child's exposition, or None when it does not answer (it may be restarting)."""
        if not self.alive:
            return None
        try:
            connector = aiohttp.UnixConnector(path=str(self.socket_path))
            timeout = aiohttp.ClientTimeout(total=METRICS_TIMEOUT)
            async with (
                aiohttp.ClientSession(connector=connector, timeout=timeout) as session,
                session.get("http://diagnosis/metrics") as resp,
            ):
                return parse_or_none(await resp.text()) if resp.status == 200 else None
        except (aiohttp.ClientError, OSError, TimeoutError):
            return None

    async def stop(self, grace: float) -> None:
        """SIGTERM: the child finishes what it holds (up to ``grace``), then it is killed."""
        self._stopping = True
        self.load.stop()
        proc = self._proc
        if proc is not None and proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), grace + 5)
            except TimeoutError:
                log.warning("the diagnosis process did not stop in time: killed", pid=proc.pid)
                proc.kill()
                await proc.wait()
        if self._watch is not None:
            self._watch.cancel()
            await asyncio.gather(self._watch, return_exceptions=True)
        if self._inbox_runner is not None:
            await self._inbox_runner.cleanup()
        for fd in (self._read_fd, self.waker.fd):
            with contextlib.suppress(OSError):
                os.close(fd)


def inbox_socket(data_dir: Path) -> Path:
    """Where the intake serves its inbox to the diagnosis process."""
    return data_dir / "inbox.sock"


async def merged_metrics(own: bytes, child: DiagnosisProcess | None) -> bytes:
    """The replica's exposition: this process's, merged with its diagnosis process's."""
    others = await child.expositions() if child is not None else []
    return merge_expositions([own.decode(), *others]) if others else own
