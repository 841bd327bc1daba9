"""Medic's own Prometheus metrics, in a registry per app instance (no global state)."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


@dataclass
class Metrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
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
        self.queue_depth = Gauge("medic_queue_depth", "Accepted deliveries not yet processed", registry=r)
        self.dead_letters = Gauge(
            "medic_dead_letters", "Deliveries that failed processing too often", registry=r
        )
