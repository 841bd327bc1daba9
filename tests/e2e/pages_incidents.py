"""A hostile, secret-laden incident for the notifier and page tests.

Hostile: HTML/script in labels, annotations and log lines, a ``javascript:`` generator URL, Slack
control sequences. Secret-laden: every string in PLANTED is a secret that must never leave Medic
(not in a notification, not on a page, not in an export).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from medic.domain.evidence import Evidence, StepStatus
from medic.domain.incident import (
    ActionRecord,
    ActionStatus,
    Finding,
    GuardDecision,
    Incident,
    IncidentAlert,
    Phase,
    Target,
)
from medic.incidents.base import IncidentStore

PLANTED = (
    "s3cr3t-planted",
    "hunter2-planted",
    "planted-token-123",
    "plantedbearertoken123",
    "planted-label-password",
)
SCRIPT_LABEL = "<script>window.__pwned = 1</script>"
IMG_ANNOTATION = '<img src=x onerror="window.__pwned = 2">'
LOG_SCRIPT = "</pre><script>window.__pwned = 4</script>"
SLACK_PING = "<!channel> <https://evil.example|click here>"
T0 = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)
TARGET = Target(kind="deployment", namespace="playcode", name="playcode-app")


def _points(start: datetime, values: list[float | None]) -> list[list[float | None]]:
    return [[start.timestamp() + 30 * i, v] for i, v in enumerate(values)]


def evidence() -> list[Evidence]:
    return [
        Evidence(
            step="k8s.pod_logs",
            collector="k8s.pod_logs",
            status=StepStatus.OK,
            started_at=T0,
            duration_ms=42.0,
            data={
                "logs": [
                    {
                        "pod": "playcode-app-7d9f-abcde",
                        "container": "playcode-app",
                        "previous": True,
                        "lines": [
                            "Server starting",
                            "connecting with MONGO_PASSWORD=hunter2-planted",
                            LOG_SCRIPT,
                            "TypeError: Cannot read properties of undefined (reading 'port')",
                        ],
                        "truncated": False,
                        "error": None,
                    }
                ]
            },
        ),
        Evidence(
            step="prometheus.query",
            collector="prometheus.query",
            status=StepStatus.OK,
            started_at=T0,
            duration_ms=1530.0,
            data={
                "queries": [
                    {
                        "name": "error_ratio_5xx",
                        "expr": 'sum(rate(http_requests_total{status_code=~"5.."}[5m]))',
                        "unit": "ratio",
                        "description": "share of 5xx responses",
                        "warn": 0.02,
                        "crit": 0.05,
                        "compare": "above",
                        "value": 0.31,
                        "series": [],
                        "range": [
                            {
                                "labels": {"namespace": "playcode"},
                                "points": _points(T0 - timedelta(minutes=10), [0.0, 0.01, None, 0.2, 0.31]),
                            }
                        ],
                    }
                ]
            },
        ),
        Evidence(
            step="loki.query",
            collector="loki.query",
            status=StepStatus.TIMEOUT,
            started_at=T0,
            duration_ms=5000.0,
            error="no answer within 5s",
        ),
    ]


def hostile_alert() -> IncidentAlert:
    return IncidentAlert(
        identity="fp1",
        status="firing",
        labels={
            "alertname": "KubePodCrashLooping",
            "namespace": "playcode",
            "pod": "playcode-app-7d9f-abcde",
            "evil": SCRIPT_LABEL,
            "slack": SLACK_PING,
            "password": "planted-label-password",
        },
        annotations={
            "summary": IMG_ANNOTATION,
            "description": "DB at mongodb://admin:s3cr3t-planted@mongodb-0:27017/userdb",
            "auth": "Authorization: Bearer plantedbearertoken123",
        },
        startsAt=T0,
        generatorURL="javascript:window.__pwned = 3",
        first_seen=T0,
        last_seen=T0,
    )


def hostile_incident(
    action_status: ActionStatus = ActionStatus.SUCCEEDED, *, incident_id: str = "inc-20261126-080000-0badc0de"
) -> Incident:
    """An incident whose every field (and its one alert, :func:`hostile_alert`) carries
    markup, script and planted secrets."""
    alert = hostile_alert()
    record = ActionRecord(
        action="rollback",
        use="k8s.rollback_deployment",
        target=TARGET,
        mode="auto" if action_status is not ActionStatus.AWAITING_APPROVAL else "approve",
        status=action_status,
        params={"to": "previous"},
        guards=[
            GuardDecision(guard="global_mode", allowed=True, reason="global mode is enforce"),
            GuardDecision(guard="cooldown", allowed=True, reason="no action on the target in 30m"),
        ],
        reason="rolled back deployment playcode/playcode-app from revision 2 to 1 (token=planted-token-123)",
        result={"plan": "roll back from revision 2 to 1", "facts": {"from_revision": 2, "to_revision": 1}},
        idempotency_key="k8s.rollback_deployment|deployment/playcode/playcode-app|rev2",
        at=T0 + timedelta(minutes=1),
    )
    inc = Incident(
        id=incident_id,
        key="crashloop-rollback|deployment/playcode/playcode-app",
        rule="crashloop-rollback",
        playbook="crashloop",
        status="open",
        phase=Phase.DIAGNOSED,
        severity="critical",
        title=f"KubePodCrashLooping on deployment/playcode/playcode-app {SCRIPT_LABEL}",
        target=TARGET,
        alerts_total=1,
        alerts_firing=1,
        labels=dict(alert.labels),
        evidence=evidence(),
        findings=[
            Finding(
                analyzer="coverage",
                code="coverage.unchecked",
                severity="info",
                summary="loki.query could not be checked: timeout",
            ),
            Finding(
                analyzer="crashloop",
                code="crashloop.regression",
                severity="critical",
                summary="revision 2 crash-loops since the rollout 4 min ago; revision 1 was healthy "
                "(token=planted-token-123)",
                details={
                    "log_sample": ["TypeError: Cannot read properties of undefined", LOG_SCRIPT],
                    "from_revision": 2,
                },
                evidence=["k8s.pod_logs", "prometheus.query"],
                next_steps=[
                    "kubectl rollout undo deployment/playcode-app -n playcode",
                    "kubectl logs playcode-app-7d9f-abcde -n playcode -c playcode-app --previous",
                ],
                suggests="rollback",
            ),
        ],
        actions=[record],
        created_at=T0,
        updated_at=T0 + timedelta(minutes=1),
    )
    inc.note("routing", "matched rule crashloop-rollback", T0)
    inc.note("decision", "crashloop.regression justifies rollback", T0 + timedelta(seconds=30))
    return inc


async def store_hostile(store: IncidentStore, action_status: ActionStatus, **kw: str) -> Incident:
    """The hostile incident and its alert, stored."""
    inc = hostile_incident(action_status, **kw)
    await store.save(inc)
    await store.merge_alerts(inc.id, [hostile_alert()])
    return inc


def bodies_text(bodies: list[bytes]) -> str:
    return "\n".join(b.decode("utf-8", errors="replace") for b in bodies)


def leaked(text: str, extra: tuple[str, ...] = ()) -> list[str]:
    return [s for s in (*PLANTED, *extra) if s in text]


def as_json(incident: Incident) -> dict[str, Any]:
    return incident.model_dump(mode="json")
