"""Workers: claim accepted deliveries from the inbox, run them through the pipeline, ack.

An item is acked only after its work is stored; a crash in between leaves it leased, and it is
handed out again when the lease runs out (on restart the embedded inbox reclaims at once).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import socket
from collections.abc import Awaitable, Callable
from dataclasses import replace

import structlog

from medic.app.pipeline import Pipeline
from medic.domain.errors import BackendUnavailable, MedicError
from medic.inbox.base import Inbox, InboxItem
from medic.intake.model import WebhookPayload
from medic.telemetry.metrics import Metrics

log = structlog.get_logger("medic.app.worker")


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
        # acks and hand-backs the inbox refused (its storage failed), by item: retried before
        # every claim, so that the items move on as soon as it takes writes again
        self._unsettled: dict[str, Callable[[], Awaitable[None]]] = {}

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
            await self._settle()
            try:
                items = await self.inbox.claim(consumer, self.batch)
            except BackendUnavailable as exc:  # down, or its disk full: no traceback every poll
                log.warning("inbox claim failed: a backend of Medic is unavailable", error=str(exc))
                await asyncio.sleep(self.poll_seconds)
                continue
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
            log.warning("processing failed; its alerts are tried one by one", item=item.id, error=str(exc))
            failures = await self._isolate(item, exc)
            if failures:
                await self._fail(item, failures)
                return
        try:
            await self.inbox.ack_many([item.id for item in items])
        except Exception:  # done all the same: a redelivery finds the work stored
            log.exception("acknowledging processed items failed", items=[item.id for item in items])
            for item in items:
                self._unsettled[item.id] = functools.partial(self.inbox.ack_many, [item.id])
            return
        log.debug("items done", items=[item.id for item in items], incidents=touched)

    async def _isolate(self, item: InboxItem, exc: Exception) -> dict[str, Exception]:
        """Process each alert of a failed delivery alone, so that an alert that cannot be
        processed never takes its siblings with it; the failed ones by episode (all of them
        when the delivery cannot be split)."""
        parts = split_by_alert(item)
        if len(parts) <= 1:
            return dict.fromkeys(item.new_episodes, exc)
        failures: dict[str, Exception] = {}
        for part in parts:
            try:
                await self.pipeline.process(part)
            except asyncio.CancelledError:
                raise
            except Exception as failed:
                failures[part.new_episodes[0]] = failed
        return failures

    async def _fail(self, item: InboxItem, failures: dict[str, Exception]) -> None:
        """Hand the failed part of a delivery back for a retry, or dead-letter it at once when
        every failure is in the data (retrying cannot help) or its tries are used up."""
        self.metrics.processing_errors.inc()
        first = next(iter(failures.values()))
        error = f"{type(first).__name__}: {first}"
        if len(failures) > 1:
            error += f" (and {len(failures) - 1} more alerts)"
        permanent = all(is_data_error(e) for e in failures.values())
        log.error(
            "processing failed" + ("; dead-lettered (the data cannot be processed)" if permanent else ""),
            item=item.id,
            attempts=item.attempts,
            failed_alerts=len(failures),
            error=error,
            exc_info=first,
        )
        try:
            await self.inbox.release(item.id, error, episodes=list(failures), dead=permanent)
        except Exception:  # retried before the next claim (and its lease runs out meanwhile)
            log.exception("handing a failed delivery back failed", item=item.id)
            self._unsettled[item.id] = functools.partial(
                self.inbox.release, item.id, error, episodes=list(failures), dead=permanent
            )

    async def _settle(self) -> None:
        """Retry the acks and hand-backs that failed, oldest first; stop at the first that fails
        again (the storage still refuses)."""
        while self._unsettled:
            item_id, retry = next(iter(self._unsettled.items()))
            del self._unsettled[item_id]
            try:
                await retry()
            except Exception as exc:
                self._unsettled[item_id] = retry
                log.debug("the inbox still refuses a deferred update", item=item_id, error=str(exc))
                return
            log.info("a deferred inbox update went through", item=item_id)


def split_by_alert(item: InboxItem) -> list[InboxItem]:
    """The delivery as one item per new alert episode (same id), or [] if it cannot be read."""
    try:
        payload = WebhookPayload.model_validate(item.payload)
    except ValueError:
        return []
    wanted = set(item.new_episodes)
    raw_alerts = item.payload["alerts"]
    return [
        replace(item, payload={**item.payload, "alerts": [raw]}, new_episodes=[alert.episode_key])
        for raw, alert in zip(raw_alerts, payload.alerts, strict=True)
        if alert.episode_key in wanted
    ]


def is_data_error(exc: BaseException) -> bool:
    """A failure that the same input will raise again (malformed or unstorable data, a
    validation error, a bug on this input), as opposed to a backend that failed for now. A
    store's error is judged by its cause: a write refused for its data fails the same way again."""
    if isinstance(exc, BackendUnavailable):
        return False
    if isinstance(exc, MedicError):
        return exc.__cause__ is not None and is_data_error(exc.__cause__)
    return isinstance(exc, (ValueError, TypeError, LookupError, AttributeError))
