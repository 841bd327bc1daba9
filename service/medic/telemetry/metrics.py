"""Medic's own Prometheus metrics, in a registry per app instance.

Besides Medic's counters: ``medic_build_info``, ``medic_mode_info``, the kill switch, whether
each of Medic's own backends answers, the fail-safe spool's size (the last three refreshed at
each scrape, see :func:`medic.app.runtime.build_app`) and the process metrics (RSS, CPU, open fds).
No ``*_created`` series: they double the series count and nothing here needs them.
"""

from __future__ import annotations

import contextlib
import platform
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
)

from medic import __version__
from medic.telemetry.build import build_revision

MODES = ("off", "dry-run", "enforce")
# which readiness checks answer for inbox, state and store: production (Medic's Redis and
# MongoDB), else embedded (one SQLite file for all three, which must also take writes)
_READINESS_CHECKS: dict[str, tuple[tuple[str, ...], ...]] = {
    "inbox": (("redis",), ("inbox", "writes")),
    "state": (("redis",), ("inbox", "writes")),
    "store": (("mongo",), ("incident_store", "writes")),
}


def backends_up(checks: Mapping[str, str]) -> dict[str, bool]:
    """``{"inbox": True, ...}`` from a backend's readiness checks."""
    out = {}
    for backend, alternatives in _READINESS_CHECKS.items():
        for names in alternatives:
            if names[0] in checks:
                out[backend] = all(checks.get(name, "ok") == "ok" for name in names)
                break
    return out


@dataclass
class Metrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    # long because: a declarative list, one definition per metric (name, help, labels, buckets)
    def __post_init__(self) -> None:
        disable_created_metrics()  # type: ignore[no-untyped-call]  # process-wide, idempotent
        r = self.registry
        ProcessCollector(registry=r)
        Gauge(
            "medic_build_info",
            "Always 1; the labels say which Medic runs (revision: the commit of the image)",
            ["version", "revision", "python"],
            registry=r,
        ).labels(version=__version__, revision=build_revision(), python=platform.python_version()).set(1)
        self.mode_info = Gauge(
            "medic_mode_info", "1 for the global remediation mode Medic runs in", ["mode"], registry=r
        )
        self.kill_switch_enabled = Gauge(
            "medic_kill_switch_enabled",
            "1 while the kill switch stops every automatic action",
            registry=r,
        )
        self.backend_up = Gauge(
            "medic_backend_up",
            "1 while Medic's own backend answers (inbox, state, store), as of the last scrape",
            ["backend"],
            registry=r,
        )
        self.spool_items = Gauge(
            "medic_spool_items",
            "Items in the local fail-safe spool waiting for Medic's Redis or MongoDB",
            ["kind"],
            registry=r,
        )
        self.alerts_received = Counter(
            "medic_alerts_received_total", "Alerts received in webhook deliveries", registry=r
        )
        self.alerts_deduplicated = Counter(
            "medic_alerts_deduplicated_total",
            "Alert episodes already seen (redeliveries)",
            registry=r,
        )
        self.webhooks_rejected = Counter(
            "medic_webhooks_rejected_total", "Webhook deliveries refused", ["reason"], registry=r
        )
        self.webhooks_failed = Counter(
            "medic_webhooks_failed_total", "Deliveries answered 5xx (not stored)", registry=r
        )
        self.incidents = Counter("medic_incidents_total", "Incidents opened", ["rule"], registry=r)
        self.incidents_resolved = Counter(
            "medic_incidents_resolved_total", "Incidents resolved", ["rule"], registry=r
        )
        self.step_duration = Histogram(
            "medic_step_duration_seconds",
            "Collector step duration",
            ["collector", "status"],
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=r,
        )
        self.steps = Counter(
            "medic_steps_total", "Collector steps by outcome", ["collector", "status"], registry=r
        )
        self.actions = Counter(
            "medic_actions_total",
            "Remediation decisions by outcome",
            ["action", "status"],
            registry=r,
        )
        self.verifications = Counter(
            "medic_verifications_total",
            "Deploy verifications finished, by outcome (passed, failed, inconclusive)",
            ["outcome"],
            registry=r,
        )
        self.verification_samples = Counter(
            "medic_verification_samples_total", "Deploy verification intervals evaluated", registry=r
        )
        self.notifications_sent = Counter(
            "medic_notifications_sent_total", "Notifications delivered", ["notifier"], registry=r
        )
        self.notifications_failed = Counter(
            "medic_notifications_failed_total",
            "Notifications not delivered after every retry (recorded on the incident's timeline)",
            ["notifier"],
            registry=r,
        )
        self.processing_errors = Counter(
            "medic_processing_errors_total", "Inbox items whose processing failed", registry=r
        )
        self.intake_loop_busy = Gauge(
            "medic_intake_loop_busy_ratio",
            "Utilization of the intake's event loop: the share of the last quarter second it spent "
            "working, not waiting for I/O (embedded backend; from 0.6 the diagnosis process takes less work)",
            registry=r,
        )
        self.diagnosis_claims_deferred = Counter(
            "medic_diagnosis_claims_deferred_total",
            "Claims of the diagnosis process put off because the intake was flooded",
            registry=r,
        )
        self.diagnosis_process_restarts = Counter(
            "medic_diagnosis_process_restarts_total",
            "Diagnosis processes that died and were replaced (embedded backend)",
            registry=r,
        )
        self.queue_depth = Gauge("medic_queue_depth", "Accepted deliveries not yet processed", registry=r)
        self.dead_letters = Gauge(
            "medic_dead_letters", "Deliveries that failed processing too often", registry=r
        )

    def set_mode(self, mode: str) -> None:
        for name in MODES:
            self.mode_info.labels(mode=name).set(1 if name == mode else 0)

    def observe_backends(self, up: Mapping[str, bool]) -> None:
        for backend, ok in up.items():
            self.backend_up.labels(backend=backend).set(1 if ok else 0)

    async def refresh_state(
        self,
        *,
        kill_switch: Callable[[], Awaitable[bool]],
        readiness: Callable[[], Awaitable[tuple[str, dict[str, str]]]],
        spool_counts: Callable[[], Awaitable[Mapping[str, int]]] | None = None,
    ) -> None:
        """At scrape time: the gauges read from Medic's state (another replica may have flipped
        the kill switch). A read that fails leaves the last value; the backend then shows down."""
        with contextlib.suppress(Exception):
            self.kill_switch_enabled.set(1 if await kill_switch() else 0)
        try:
            _, checks = await readiness()
        except Exception:
            checks = {"inbox": "error", "incident_store": "error"}
        self.observe_backends(backends_up(checks))
        if spool_counts is not None:
            with contextlib.suppress(Exception):
                for kind, count in (await spool_counts()).items():
                    self.spool_items.labels(kind=kind).set(count)
