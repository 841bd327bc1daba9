"""Start, probe and stop real server binaries for integration tests.

Pieces:

* :func:`free_port` - a free TCP port on 127.0.0.1 (servers only ever listen on loopback).
* :func:`require_binary` - find a server binary; when it is missing raise
  :class:`BinaryNotFoundError` naming the Debian package to install, or skip the test when
  ``MEDIC_TEST_ALLOW_SKIP=1`` is set (CI must never silently skip).
* :class:`ManagedProcess` - one subprocess with stdout+stderr appended to a log file, a readiness
  wait with a deadline (errors carry the tail of the log), SIGTERM-then-SIGKILL shutdown.
* :class:`BaseServer` - a server with its own temp dir and port: ``start()`` / ``stop()`` /
  ``kill()`` / ``close()`` and ``async with``. ``stop()`` keeps the port and the dir so that
  ``start()`` brings the same server back (restart tests); ``close()`` also removes the dir.
* probes: :func:`http_ok` and :func:`redis_ping`.

Error hierarchy: :class:`ServerError` (base) <- :class:`BinaryNotFoundError`,
:class:`ServerStartError`.

A safety net kills still-running children and removes temp dirs when the Python process exits,
and on Linux children get ``PR_SET_PDEATHSIG=SIGKILL`` so that they die with the test process
even when it is killed hard.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import ctypes
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import ClassVar, Self

import aiohttp
import pytest

LOOPBACK = "127.0.0.1"
ALLOW_SKIP_ENV = "MEDIC_TEST_ALLOW_SKIP"

Probe = Callable[[], Awaitable[bool]]


class ServerError(RuntimeError):
    """Base class of every error raised by the test server harness."""


class BinaryNotFoundError(ServerError):
    """A server binary is not installed; the message names the Debian package."""


class ServerStartError(ServerError):
    """A server exited early or did not become ready in time; the message has its log tail."""


# --------------------------------------------------------------------------- ports, binaries


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago.

    There is a small race (someone else may take it before the server binds it);
    :meth:`BaseServer.start` retries with a new port when the server reports
    "address already in use".
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def skip_allowed() -> bool:
    return os.environ.get(ALLOW_SKIP_ENV, "").strip().lower() in {"1", "true", "yes"}


def require_binary(
    default: str,
    *,
    debian_package: str,
    env_var: str | None = None,
    fallback_names: Sequence[str] = (),
) -> str:
    """Return the path of an executable or fail loudly.

    ``env_var`` (if set in the environment) overrides ``default``; then ``default`` and each of
    ``fallback_names`` is tried (absolute paths as is, bare names through ``$PATH``).
    Missing: raise :class:`BinaryNotFoundError` telling which Debian package to install,
    unless ``MEDIC_TEST_ALLOW_SKIP=1``, then ``pytest.skip`` with the same message.
    """
    override = os.environ.get(env_var, "").strip() if env_var else ""
    candidates = [override] if override else [default, *fallback_names]
    for candidate in candidates:
        found = candidate if os.sep in candidate else shutil.which(candidate)
        if found and os.path.isfile(found) and os.access(found, os.X_OK):
            return found
    hint = f" or set {env_var} to the binary's path" if env_var else ""
    message = (
        f"{', '.join(candidates)} not found: install the Debian package "
        f"'{debian_package}' (apt-get install -y {debian_package}){hint}. "
        f"Set {ALLOW_SKIP_ENV}=1 to skip these tests instead of failing."
    )
    if skip_allowed():
        pytest.skip(message)
    raise BinaryNotFoundError(message)


# --------------------------------------------------------------------------- probes


async def http_ok(url: str, *, request_seconds: float = 1.0) -> bool:
    """True when GET ``url`` answers 200."""
    client_timeout = aiohttp.ClientTimeout(total=request_seconds)
    async with aiohttp.ClientSession(timeout=client_timeout) as session, session.get(url) as resp:
        return resp.status == 200


async def redis_ping(host: str, port: int, *, io_seconds: float = 1.0) -> bool:
    """True when a Redis server answers ``PING`` with ``+PONG`` (not ``-LOADING``)."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), io_seconds)
    try:
        writer.write(b"PING\r\n")
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), io_seconds)
        return line.strip() == b"+PONG"
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


def listens_on(pid: int, port: int) -> bool | None:
    """Whether process ``pid`` holds a socket listening on TCP ``port`` (Linux ``/proc``).

    None when it cannot be told. Guards readiness against a *different* server that happens
    to listen on the port we picked.
    """
    inodes: set[str] = set()
    readable = False
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        readable = True
        for row in rows:
            fields = row.split()
            listening = len(fields) > 9 and fields[3] == "0A"  # 0A = LISTEN
            if listening and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(f"socket:[{fields[9]}]")
    fd_dir = Path(f"/proc/{pid}/fd")
    if not readable or not fd_dir.is_dir():
        return None
    try:
        names = os.listdir(fd_dir)
    except OSError:
        return None
    for name in names:
        with contextlib.suppress(OSError):
            if os.readlink(fd_dir / name) in inodes:
                return True
    return False


# --------------------------------------------------------------------------- processes

_PR_SET_PDEATHSIG = 1
_LIBC: ctypes.CDLL | None = None
if sys.platform.startswith("linux"):
    with contextlib.suppress(OSError):
        _LIBC = ctypes.CDLL(None, use_errno=True)


def _die_with_parent() -> None:  # runs in the child between fork and exec
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


_LIVE_PROCESSES: set[ManagedProcess] = set()
_TEMP_DIRS: set[Path] = set()


@atexit.register
def _cleanup_leftovers() -> None:
    for proc in list(_LIVE_PROCESSES):
        proc.kill_sync()
    for path in list(_TEMP_DIRS):
        shutil.rmtree(path, ignore_errors=True)


class ManagedProcess:
    """One server subprocess whose stdout and stderr are appended to ``log_path``."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        log_path: Path,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.cwd = cwd
        self.env = dict(env) if env is not None else None
        self._popen: subprocess.Popen[bytes] | None = None
        self._log_offset = 0

    # -- state
    @property
    def pid(self) -> int | None:
        return self._popen.pid if self._popen is not None else None

    @property
    def returncode(self) -> int | None:
        return self._popen.poll() if self._popen is not None else None

    @property
    def running(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    # -- lifecycle
    def start(self) -> None:
        if self.running:
            raise ServerError(f"{self.name} is already running (pid {self.pid})")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        # Only the thread that forks may set PDEATHSIG safely: the signal fires when that
        # *thread* exits, so skip it for worker threads.
        on_main_thread = threading.current_thread() is threading.main_thread()
        with self.log_path.open("ab") as log:
            self._log_offset = log.tell()
            log.write(f"=== {self.name}: {shlex.join(self.argv)}\n".encode())
            log.flush()
            self._popen = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.cwd,
                env=self.env,
                start_new_session=True,  # Ctrl-C on pytest must not kill it before teardown
                preexec_fn=_die_with_parent if on_main_thread and _LIBC is not None else None,
            )
        _LIVE_PROCESSES.add(self)

    async def wait_ready(self, probe: Probe, *, within: float, interval: float = 0.05) -> float:
        """Poll ``probe`` until it returns True; return the seconds it took.

        Raises :class:`ServerStartError` (with the log tail) when the process exits first or
        the deadline passes; a probe still waiting for an answer is abandoned as soon as the
        process exits. Probe exceptions (connection refused, ...) count as "not yet".
        """
        loop = asyncio.get_running_loop()
        started = loop.time()
        deadline = started + within
        last_error: BaseException | None = None

        def check_alive_and_in_time() -> None:
            code = self.returncode
            if code is not None:
                raise ServerStartError(self.describe_failure(f"exited with code {code} early"))
            if loop.time() >= deadline:
                reason = f"not ready after {within:.1f}s (last probe error: {last_error!r})"
                raise ServerStartError(self.describe_failure(reason))

        while True:
            check_alive_and_in_time()
            attempt = asyncio.ensure_future(probe())
            try:
                while not attempt.done():
                    await asyncio.wait({attempt}, timeout=interval)
                    if not attempt.done():
                        check_alive_and_in_time()
            finally:
                if not attempt.done():
                    attempt.cancel()
                    await asyncio.wait({attempt})
            try:
                if attempt.result():
                    return loop.time() - started
            except (OSError, aiohttp.ClientError, TimeoutError) as exc:
                last_error = exc
            await asyncio.sleep(interval)

    async def stop(self, *, term_timeout: float = 5.0, kill_timeout: float = 5.0) -> int | None:
        """SIGTERM, wait up to ``term_timeout``, then SIGKILL. Returns the exit code."""
        popen = self._popen
        if popen is None:
            return None
        if popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                popen.send_signal(signal.SIGTERM)
            if not await _wait_exit(popen, term_timeout):
                with contextlib.suppress(ProcessLookupError):
                    popen.kill()
                await _wait_exit(popen, kill_timeout)
        _LIVE_PROCESSES.discard(self)
        return popen.poll()

    async def kill(self, *, wait_seconds: float = 5.0) -> int | None:
        """SIGKILL (no chance to flush or clean up) and wait for the exit."""
        popen = self._popen
        if popen is None:
            return None
        if popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                popen.kill()
            await _wait_exit(popen, wait_seconds)
        _LIVE_PROCESSES.discard(self)
        return popen.poll()

    def kill_sync(self) -> None:
        """Blocking SIGKILL; for the exit-time safety net only."""
        popen = self._popen
        if popen is not None and popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                popen.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                popen.wait(timeout=5)
        _LIVE_PROCESSES.discard(self)

    # -- logs
    def log_text(self, *, since_start: bool = True, max_bytes: int = 64 * 1024) -> str:
        """The log (of the current run only by default), at most the last ``max_bytes``."""
        try:
            with self.log_path.open("rb") as log:
                size = log.seek(0, os.SEEK_END)
                begin = self._log_offset if since_start else 0
                log.seek(max(begin, size - max_bytes))
                return log.read().decode("utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text(since_start=False).splitlines()[-lines:])

    def describe_failure(self, reason: str) -> str:
        return (
            f"{self.name} {reason}\ncommand: {shlex.join(self.argv)}\n"
            f"log: {self.log_path}\n--- last lines of the log ---\n{self.log_tail()}"
        )


async def _wait_exit(popen: subprocess.Popen[bytes], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while popen.poll() is None:
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(0.02)
    return True


# --------------------------------------------------------------------------- servers


def make_temp_dir(prefix: str) -> Path:
    path = Path(tempfile.mkdtemp(prefix=prefix))
    _TEMP_DIRS.add(path)
    return path


def remove_temp_dir(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
    _TEMP_DIRS.discard(path)


_PORT_TAKEN_MARKERS = ("address already in use",)


class BaseServer:
    """A server process with its own temp dir and loopback port.

    Subclasses set ``name`` and implement :meth:`_argv` and :meth:`_probe`; :meth:`_prepare`
    (write config files, ...) runs before every start.
    """

    name: ClassVar[str] = "server"
    start_attempts: ClassVar[int] = 3

    def __init__(self, *, port: int | None = None, startup_timeout: float = 10.0) -> None:
        self.startup_timeout = startup_timeout
        self._port = port
        self._port_fixed = port is not None
        self._dir: Path | None = None
        self._process: ManagedProcess | None = None
        self.startup_seconds: float | None = None

    # -- properties
    @property
    def dir(self) -> Path:
        """The server's temp dir (created on first use, removed by :meth:`close`)."""
        if self._dir is None:
            self._dir = make_temp_dir(f"medic-{self.name}-")
        return self._dir

    @property
    def host(self) -> str:
        return LOOPBACK

    @property
    def port(self) -> int:
        if self._port is None:
            raise ServerError(f"{self.name} has no port yet: start it first")
        return self._port

    @property
    def log_path(self) -> Path:
        return self.dir / f"{self.name}.log"

    @property
    def process(self) -> ManagedProcess:
        if self._process is None:
            raise ServerError(f"{self.name} was never started")
        return self._process

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.running

    def log_tail(self, lines: int = 40) -> str:
        return self._process.log_tail(lines) if self._process is not None else ""

    # -- hooks
    def _argv(self) -> list[str]:
        raise NotImplementedError

    async def _probe(self) -> bool:
        raise NotImplementedError

    async def _prepare(self) -> None:
        """Runs before each start (after the port is chosen)."""

    def _ready_probe(self, proc: ManagedProcess) -> Probe:
        port = self.port

        async def ready() -> bool:
            if not await self._probe():
                return False
            # Answered - but by our process, not by another server on the same port?
            return proc.pid is not None and listens_on(proc.pid, port) is not False

        return ready

    # -- lifecycle
    async def start(self) -> None:
        """Start and wait until ready; a restart reuses the port and the dir."""
        if self.running:
            raise ServerError(f"{self.name} is already running on port {self._port}")
        # A fresh server may retry on another port if it lost the race for its port; a restart
        # must keep its port (clients hold the URL).
        retry_port = not self._port_fixed and self._process is None
        attempts = self.start_attempts if retry_port else 1
        for attempt in range(1, attempts + 1):
            if self._port is None:
                self._port = free_port()
            await self._prepare()
            proc = ManagedProcess(self.name, self._argv(), log_path=self.log_path, cwd=self.dir)
            self._process = proc
            proc.start()
            try:
                self.startup_seconds = await proc.wait_ready(
                    self._ready_probe(proc), within=self.startup_timeout
                )
            except BaseException as exc:
                await proc.stop(term_timeout=2.0)
                port_taken = any(m in proc.log_text().lower() for m in _PORT_TAKEN_MARKERS)
                if isinstance(exc, ServerStartError) and port_taken and attempt < attempts:
                    self._port = None
                    continue
                raise
            return

    async def stop(self, *, grace: float = 5.0) -> int | None:
        """Graceful stop (SIGTERM, then SIGKILL after ``grace`` seconds); keeps port and dir."""
        if self._process is None:
            return None
        return await self._process.stop(term_timeout=grace)

    async def kill(self) -> int | None:
        """SIGKILL, as a crash would; keeps port and dir."""
        if self._process is None:
            return None
        return await self._process.kill()

    async def close(self) -> None:
        """Stop and remove the temp dir. Safe to call more than once."""
        try:
            await self.stop()
        finally:
            if self._dir is not None:
                remove_temp_dir(self._dir)
                self._dir = None

    async def __aenter__(self) -> Self:
        try:
            await self.start()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<{type(self).__name__} {self.host}:{self._port} {state}>"
