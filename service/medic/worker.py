"""Workers: claim accepted deliveries from the inbox, run them through the pipeline, ack.

An item is acked only after its work is stored; a crash in between leaves it leased, and it is
handed out again when the lease runs out (on restart the embedded inbox reclaims at once).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket

import structlog

from medic.errors import BackendUnavailable
from medic.metrics import Metrics
from medic.pipeline import Pipeline
from medic.state.base import Inbox, InboxItem

log = structlog.get_logger("medic.worker")


class Worker:
    def __init__(
        self,
        inbox: Inbox,
        pipeline: Pipeline,
        metrics: Metrics,
        *,
        concurrency: int,
        wake: asyncio.Event,
        poll_seconds: float = 1.0,
        batch: int = 32,
    ) -> None:
        self.inbox = inbox
        self.pipeline = pipeline
        self.metrics = metrics
        self.concurrency = concurrency
        self.wake = wake
        self.poll_seconds = poll_seconds
        self.batch = batch
        self.consumer = f"{socket.gethostname()}-{os.getpid()}"
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._loop(i), name=f"medic-worker-{i}") for i in range(self.concurrency)
        ]

    async def stop(self, grace: float = 10.0) -> None:
        """Let in-flight items finish (up to ``grace`` seconds); unfinished ones stay leased."""
        self._stopping = True
        self.wake.set()
        if not self._tasks:
            return
        _, pending = await asyncio.wait(self._tasks, timeout=grace)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    async def _loop(self, index: int) -> None:
        consumer = f"{self.consumer}-{index}"
        while not self._stopping:
            try:
                items = await self.inbox.claim(consumer, self.batch)
            except Exception:
                log.exception("inbox claim failed")
                await asyncio.sleep(self.poll_seconds)
                continue
            if not items:
                self.wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), self.poll_seconds)
                continue
            self.wake.set()  # there may be more: let an idle sibling look too
            await self.handle(items)

    async def handle(self, items: list[InboxItem]) -> None:
        """Process a claimed batch together; if that fails, item by item, so that one bad item
        is retried (and in the end dead-lettered) alone. While one of Medic's own backends is
        unreachable the batch is kept and retried (not the items' fault: no attempt counted);
        on shutdown it stays unfinished and is handed back."""
        try:
            while True:
                try:
                    touched = await self.pipeline.process(*items)
                    break
                except BackendUnavailable as exc:
                    if self._stopping:
                        return
                    log.warning("a backend of Medic is unreachable; the batch waits", error=str(exc))
                    await asyncio.sleep(self.poll_seconds * 2)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if len(items) > 1:
                for item in items:
                    await self.handle([item])
                return
            (item,) = items
            self.metrics.processing_errors.inc()
            log.exception("processing failed; the item will be retried", item=item.id, attempts=item.attempts)
            with contextlib.suppress(Exception):
                await self.inbox.release(item.id, f"{type(exc).__name__}: {exc}")
            return
        try:
            await self.inbox.ack_many([item.id for item in items])
        except Exception:  # done all the same: a redelivery finds the work stored
            log.exception("acknowledging processed items failed", items=[item.id for item in items])
            return
        log.debug("items done", items=[item.id for item in items], incidents=touched)
