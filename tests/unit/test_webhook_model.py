"""The Alertmanager webhook v4 model and the alert episode key."""

import pytest
from pydantic import ValidationError

from medic.intake.model import Alert, WebhookPayload
from tests.payloads import alert, payload


def test_full_payload_parses_and_keeps_unknown_fields() -> None:
    body = payload([alert("KubePodCrashLooping", pod="playcode-app-7d9f8b6c5d-abcde")])
    body["someFutureField"] = {"x": 1}
    p = WebhookPayload.model_validate(body)
    assert p.version == "4"
    assert p.truncatedAlerts == 0
    assert p.alerts[0].ended_at is None  # 0001-01-01 means "no end"
    assert p.model_extra == {"someFutureField": {"x": 1}}


def test_episode_key_separates_firing_resolved_and_restarts() -> None:
    firing = Alert.model_validate(alert("A", fingerprint="f1", startsAt="2026-11-26T08:00:00Z"))
    resolved = Alert.model_validate(
        alert("A", fingerprint="f1", startsAt="2026-11-26T08:00:00Z", status="resolved")
    )
    refire = Alert.model_validate(alert("A", fingerprint="f1", startsAt="2026-11-26T09:00:00Z"))
    keys = {firing.episode_key, resolved.episode_key, refire.episode_key}
    assert len(keys) == 3
    again = Alert.model_validate(alert("A", fingerprint="f1", startsAt="2026-11-26T08:00:00Z"))
    assert again.episode_key == firing.episode_key


def test_identity_without_fingerprint_is_a_stable_label_hash() -> None:
    a = Alert.model_validate(alert("A", fingerprint="", namespace="x"))
    b = Alert.model_validate(alert("A", fingerprint="", namespace="x"))
    c = Alert.model_validate(alert("A", fingerprint="", namespace="y"))
    assert a.identity == b.identity != c.identity


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda b: b.update(version="3"), "version"),
        (lambda b: b.pop("groupKey"), "groupKey"),
        (lambda b: b.update(alerts=[]), "alerts"),
        (lambda b: b["alerts"][0].update(status="pending"), "alerts.0.status"),
        (lambda b: b["alerts"][0].update(labels={}), "alerts.0.labels"),
        (lambda b: b["alerts"][0].update(startsAt="yesterday"), "alerts.0.startsAt"),
        (lambda b: b["alerts"][0].update(labels={"a": 1}), "alerts.0.labels.a"),
        (lambda b: b.update(truncatedAlerts=-1), "truncatedAlerts"),
    ],
)
def test_invalid_payloads_name_the_field(mutate, field: str) -> None:  # type: ignore[no-untyped-def]
    body = payload([alert("A")])
    mutate(body)
    with pytest.raises(ValidationError) as exc:
        WebhookPayload.model_validate(body)
    locs = {".".join(str(p) for p in e["loc"]) for e in exc.value.errors()}
    assert field in locs


def test_the_wire_alert_is_converted_to_the_domains_own() -> None:
    from medic.domain.alert import Alert as DomainAlert
    from medic.intake.model import WebhookPayload

    body = {
        "version": "4",
        "groupKey": "g",
        "status": "firing",
        "receiver": "medic",
        "alerts": [
            {
                "status": "firing",
                "labels": {"alertname": "A", "namespace": "playcode"},
                "startsAt": "2026-12-01T10:00:00Z",
                "fingerprint": "abc",
                "somethingNew": {"alertmanager": "1.0"},
            }
        ],
    }
    wire = WebhookPayload.model_validate(body).alerts[0]
    alert = wire.to_domain()
    assert type(alert) is DomainAlert  # the pipeline never holds the wire model
    assert alert.episode_key == wire.episode_key and alert.labels == wire.labels
    assert "somethingNew" not in alert.model_dump()  # what only the wire carried stays there
