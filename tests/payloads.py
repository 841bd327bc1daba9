"""Builders of Alertmanager webhook payloads for tests (the shape Alertmanager 0.25 sends)."""

from __future__ import annotations

import hashlib
from typing import Any


def alert(
    alertname: str,
    *,
    status: str = "firing",
    startsAt: str = "2026-11-26T08:00:00Z",
    endsAt: str = "0001-01-01T00:00:00Z",
    fingerprint: str | None = None,
    annotations: dict[str, str] | None = None,
    **labels: str,
) -> dict[str, Any]:
    all_labels = {"alertname": alertname, **labels}
    if fingerprint is None:
        canon = ",".join(f"{k}={v}" for k, v in sorted(all_labels.items()))
        fingerprint = hashlib.sha1(canon.encode()).hexdigest()[:16]
    return {
        "status": status,
        "labels": all_labels,
        "annotations": annotations or {"summary": f"{alertname} fired"},
        "startsAt": startsAt,
        "endsAt": endsAt,
        "generatorURL": "http://prometheus.example/graph?g0.expr=up",
        "fingerprint": fingerprint,
    }


def payload(alerts: list[dict[str, Any]], *, receiver: str = "medic") -> dict[str, Any]:
    status = "firing" if any(a["status"] == "firing" for a in alerts) else "resolved"
    first = alerts[0]["labels"] if alerts else {}
    return {
        "version": "4",
        "groupKey": '{{}}:{{alertname="{}"}}'.format(first.get("alertname", "")),
        "truncatedAlerts": 0,
        "status": status,
        "receiver": receiver,
        "groupLabels": {"alertname": first.get("alertname", "")},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager.example",
        "alerts": alerts,
    }
