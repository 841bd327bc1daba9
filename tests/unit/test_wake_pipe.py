"""The wake-up pipe between the intake and the diagnosis process: a group of accepted deliveries
wakes the workers only, a verification begun in the intake wakes the verifier (which lists the
open incidents, so it must not run on every delivery)."""

from __future__ import annotations

import asyncio
import os

from medic.app.diagnosis_child import route_wake
from medic.app.worker_process import VERIFIER_WAKE, Waker


def _woken(*writes: str) -> tuple[bool, bool]:
    read_fd, write_fd = os.pipe()
    try:
        wakers = {"inbox": Waker(write_fd), "verifier": Waker(write_fd, VERIFIER_WAKE)}
        for name in writes:
            wakers[name].set()
        workers, verifier = asyncio.Event(), asyncio.Event()
        route_wake(os.read(read_fd, 4096), workers, verifier)
        return workers.is_set(), verifier.is_set()
    finally:
        os.close(read_fd)
        os.close(write_fd)


def test_accepted_deliveries_wake_the_workers_not_the_verifier() -> None:
    assert _woken("inbox", "inbox", "inbox") == (True, False)


def test_a_verification_begun_in_the_intake_wakes_the_verifier() -> None:
    assert _woken("verifier") == (False, True)
    assert _woken("inbox", "verifier", "inbox") == (True, True)


def test_a_full_pipe_never_blocks_the_intake() -> None:
    read_fd, write_fd = os.pipe()
    try:
        waker = Waker(write_fd)
        for _ in range(70_000):  # more than a pipe holds (64 KiB on Linux)
            waker.set()
        assert os.read(read_fd, 4096)
    finally:
        os.close(read_fd)
        os.close(write_fd)
