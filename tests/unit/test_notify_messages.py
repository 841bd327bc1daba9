"""Notifications, the pure parts: routing, first message vs update, message building, signatures,
backoff, and the channel configuration (file, env secrets, validation)."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from medic.app.settings import channel_secrets, load_settings
from medic.domain.errors import ConfigError
from medic.domain.incident import ActionStatus
from medic.incidents.report.links import LinkSettings
from medic.incidents.report.oncall import oncall
from medic.incidents.views import IncidentView
from medic.notify.config import GrafanaChannel, SlackChannel, WebhookChannel, check_routes, secrets_from_env
from medic.notify.delivery import Outgoing, backoff_delay, retryable
from medic.notify.events import Event, EventKind, Links, MessageKind, plan_message, route, snapshot
from medic.notify.grafana import annotation
from medic.notify.slack import escape, first_message, update_message
from medic.notify.webhook import NotificationV1, WebhookNotifier, notification, signature, verify_signature
from tests.e2e.pages_incidents import PLANTED, SLACK_PING, T0, hostile_alert, hostile_incident

SLACK = SlackChannel(type="slack", url="https://hooks.slack.example/services/x")


def event(
    kind: EventKind = EventKind.DIAGNOSED, status: ActionStatus = ActionStatus.SUCCEEDED, **kw: Any
) -> Event:
    return Event(kind, snapshot(hostile_incident(status)), T0, **kw)


# ------------------------------------------------------------------ routing
def test_route_by_rule_all_rules_severity_and_events() -> None:
    channels = {
        "oncall": SLACK,
        "other-team": SLACK,
        "grafana": GrafanaChannel(type="grafana", url="http://g", token="t" * 20, all_rules=True),
        "critical": SlackChannel(type="slack", url="http://x", all_rules=True, min_severity="critical"),
        "resolutions": SlackChannel(type="slack", url="http://x", all_rules=True, events=["resolved"]),
    }
    ev = event()  # a critical incident of rule crashloop-rollback
    assert route(ev, ["oncall"], channels) == ["oncall", "grafana", "critical"]
    ev.incident.severity = "warning"
    assert route(ev, ["oncall"], channels) == ["oncall", "grafana"]
    assert route(ev, [], channels) == ["grafana"]
    resolved = event(EventKind.RESOLVED)
    assert "resolutions" in route(resolved, [], channels)


def test_one_first_message_then_updates() -> None:
    diagnosed, action, resolved = event(), event(EventKind.ACTION, action_index=0), event(EventKind.RESOLVED)
    assert plan_message(diagnosed, first_sent=False) is MessageKind.FIRST
    assert plan_message(diagnosed, first_sent=True) is None
    assert plan_message(action, first_sent=True) is MessageKind.UPDATE
    assert plan_message(action, first_sent=False) is MessageKind.FIRST
    assert plan_message(resolved, first_sent=True) is MessageKind.UPDATE
    assert plan_message(resolved, first_sent=False) is None  # news of an incident it never heard of
    assert plan_message(resolved, first_sent=False, events=["resolved"]) is MessageKind.FIRST
    opened = event(EventKind.OPENED)
    assert plan_message(opened, first_sent=False) is None  # the diagnosis follows in seconds
    opened.incident.playbook = None
    assert plan_message(opened, first_sent=False) is MessageKind.FIRST


def test_event_keys_dedupe_per_event() -> None:
    assert event().key == "diagnosed"
    assert event(EventKind.ACTION, action_index=0).key == "action:0:succeeded"
    assert event(EventKind.ACTION, ActionStatus.REFUSED, action_index=0).key == "action:0:refused"


# ------------------------------------------------------------------ Slack
def test_slack_first_message_has_title_severity_ranked_findings_action_and_link() -> None:
    links = Links(
        "https://medic.example/incidents/i", {0: "https://medic.example/incidents/i/approve?approval=t"}
    )
    msg = first_message(event(status=ActionStatus.AWAITING_APPROVAL), links)
    kinds = [b["type"] for b in msg["blocks"]]
    assert kinds == ["header", "section", "section", "section", "context"]
    findings = msg["blocks"][2]["text"]["text"]
    assert findings.index("crashloop.regression") < findings.index("coverage.unchecked")  # most severe first
    assert "`kubectl rollout undo deployment/playcode-app -n playcode`" in findings
    action = msg["blocks"][3]["text"]["text"]
    assert "awaiting_approval" in action
    assert "<https://medic.example/incidents/i/approve?approval=t|Review and approve or reject>" in action
    assert "<https://medic.example/incidents/i|Open the incident>" in msg["blocks"][4]["elements"][0]["text"]
    assert msg["text"].startswith("[critical] KubePodCrashLooping")


def test_slack_control_sequences_from_alerts_stay_text() -> None:
    inc = hostile_incident()
    inc.title = SLACK_PING
    msg = first_message(Event(EventKind.DIAGNOSED, inc, T0), Links())
    text = json.dumps(msg)
    assert "<!channel>" not in text and "<https://evil.example" not in text
    assert escape(SLACK_PING) in text


def test_slack_update_is_one_short_section() -> None:
    msg = update_message(event(EventKind.ACTION, action_index=0), Links("https://m/incidents/i"))
    assert len(msg["blocks"]) == 1
    assert "rollback on deployment/playcode/playcode-app: succeeded" in msg["text"]


def test_outgoing_bodies_are_redacted_and_html_safe() -> None:
    raw = {"text": "MONGO_PASSWORD=hunter2-planted <b>&", "auth": "Bearer plantedbearertoken123"}
    out = Outgoing.json("http://x", raw)
    text = out.body.decode()
    assert not [s for s in PLANTED if s in text]
    assert "<" not in text and ">" not in text and "&" not in text
    assert json.loads(text)["text"].endswith("<b>&")  # the same data after decoding


# ------------------------------------------------------------------ webhook
def test_webhook_body_follows_the_versioned_schema() -> None:
    links = Links("https://medic.example/incidents/i", {0: "https://medic.example/a"})
    body = notification(event(status=ActionStatus.AWAITING_APPROVAL), MessageKind.FIRST, links, T0)
    data = json.loads(body.model_dump_json(by_alias=True))
    assert data["schema"] == "medic.notification/v1"
    assert data["incident"]["findings"][0]["code"] == "crashloop.regression"
    assert data["incident"]["actions"][0]["approve_url"] == "https://medic.example/a"
    assert NotificationV1.model_validate(data) == body
    schema = NotificationV1.model_json_schema(by_alias=True, mode="serialization")
    assert {"schema", "event", "message", "delivery_id", "incident"} <= set(schema["required"])


def test_webhook_without_approval_links() -> None:
    cfg = WebhookChannel(type="webhook", url="http://x", secret="s" * 16, approval_links=False)
    out = WebhookNotifier("w", cfg, channel_secrets(cfg)).build(
        event(status=ActionStatus.AWAITING_APPROVAL), MessageKind.FIRST, Links(None, {0: "http://a"}), T0
    )
    assert out is not None and json.loads(out.body)["incident"]["actions"][0]["approve_url"] is None


def test_signature_helpers() -> None:
    sig = signature("k" * 16, "1700000000", b"{}")
    assert verify_signature("k" * 16, "1700000000", b"{}", sig, 1700000100)
    assert not verify_signature("k" * 16, "1700000000", b"{}", sig, 1700000400)  # older than 5 min
    assert not verify_signature("k" * 16, "x", b"{}", sig, 1700000000)
    assert not verify_signature("k" * 16, None, b"{}", sig, 1700000000)


# ------------------------------------------------------------------ Grafana
def test_grafana_annotation_fields() -> None:
    cfg = GrafanaChannel(
        type="grafana", url="http://g", token="t" * 20, dashboard_uid="abc", panel_id=4, tags=["x"]
    )
    body = annotation(cfg, event(EventKind.ACTION, action_index=0), Links("https://m/incidents/i"))
    assert body is not None
    assert body["tags"] == ["medic", "crashloop-rollback", "playcode", "rollback", "succeeded", "x"]
    assert body["dashboardUID"] == "abc" and body["panelId"] == 4
    assert body["text"].endswith("— https://m/incidents/i")
    assert annotation(cfg, event(EventKind.OPENED), Links()) is None
    assert annotation(cfg, event(status=ActionStatus.REFUSED), Links()) is None


# ------------------------------------------------------------------ delivery policy
def test_backoff_is_exponential_bounded_and_honours_retry_after() -> None:
    assert [backoff_delay(n, 0.5, 4) for n in (1, 2, 3, 4, 5)] == [0.5, 1.0, 2.0, 4.0, 4.0]
    assert backoff_delay(1, 0.5, 4, "3") == 3.0
    assert backoff_delay(1, 0.5, 4, "600") == 4.0
    assert backoff_delay(1, 0.5, 4, "Wed, 21 Oct 2015 07:28:00 GMT") == 0.5
    assert retryable(503) and retryable(429) and not retryable(404) and not retryable(400)


# ------------------------------------------------------------------ configuration
def test_channels_from_the_config_file_with_secrets_from_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "medic.yaml"
    config.write_text(
        "notifiers:\n"
        "  oncall: {type: slack, min_severity: warning}\n"
        "  pager-bridge: {type: webhook, url: 'https://bridge.example/in', secret: 'from-the-file-0123'}\n"
        "  dashboards: {type: grafana, url: 'https://grafana.example/', all_rules: true, timeout: 2s}\n"
    )
    monkeypatch.setenv("MEDIC_CONFIG", str(config))
    monkeypatch.setenv("MEDIC_NOTIFY_ONCALL_URL", "https://hooks.slack.example/services/T/B/x")
    monkeypatch.setenv("MEDIC_NOTIFY_PAGER_BRIDGE_SECRET", "from-the-environment-0123")
    monkeypatch.setenv("MEDIC_NOTIFY_DASHBOARDS_TOKEN", "glsa_0123456789")
    s = load_settings()
    oncall, bridge, grafana = s.notifiers["oncall"], s.notifiers["pager-bridge"], s.notifiers["dashboards"]
    assert isinstance(oncall, SlackChannel) and oncall.min_severity == "warning"
    assert oncall.url.get_secret_value() == "https://hooks.slack.example/services/T/B/x"
    assert (
        isinstance(bridge, WebhookChannel) and bridge.secret.get_secret_value() == "from-the-environment-0123"
    )
    assert isinstance(grafana, GrafanaChannel) and grafana.url == "https://grafana.example"
    assert grafana.timeout == timedelta(seconds=2) and grafana.token.get_secret_value() == "glsa_0123456789"
    assert "0123456789" not in repr(s)


@pytest.mark.parametrize(
    ("channels", "words"),
    [
        ({"On Call": {"type": "slack", "url": "http://x"}}, "notifier name"),
        ({"oncall": {"type": "pagerduty"}}, "type must be slack, webhook or grafana"),
        ({"oncall": {"type": "slack"}}, "url"),
        ({"oncall": {"type": "slack", "url": "ftp://x"}}, "http"),
        ({"hook": {"type": "webhook", "url": "http://x", "secret": "short"}}, "16 characters"),
        ({"oncall": {"type": "slack", "url": "http://x", "min_severity": "page"}}, "min_severity"),
        ({"oncall": {"type": "slack", "url": "http://x", "events": ["fired"]}}, "events"),
        ({"oncall": {"type": "slack", "url": "http://x", "colour": "red"}}, "colour"),
    ],
)
def test_invalid_channels_stop_the_start_naming_the_setting(channels: dict[str, Any], words: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(notifiers=channels)
    assert words in str(err.value) and "notifiers" in str(err.value)


def test_rules_must_name_configured_channels_once_any_is_configured() -> None:
    check_routes({"crashloop-rollback": ["oncall"]}, {})  # no channel at all: notifications off
    check_routes({"crashloop-rollback": ["oncall"]}, {"oncall": SLACK})
    with pytest.raises(ConfigError, match="notifies 'oncall', which is not a configured notifier"):
        check_routes({"crashloop-rollback": ["oncall"]}, {"dashboards": SLACK})


def test_env_secret_names() -> None:
    env = {"MEDIC_NOTIFY_PAGER_BRIDGE_SECRET": "s", "MEDIC_NOTIFY_ONCALL_URL": "u", "MEDIC_NOTIFY_URL": "x"}
    assert secrets_from_env(env) == {"pager-bridge": {"secret": "s"}, "oncall": {"url": "u"}}


# ------------------------------------------------------------------ what on-call sees
def oncall_links() -> Links:
    alert = hostile_alert().model_copy(
        update={
            "annotations": {
                "summary": "pods crash\nsince the rollout",
                "runbook_url": "https://rb.example/x",
            },
            "alertmanager_url": "http://am-0.example:9093",
        }
    )
    view = IncidentView(hostile_incident(), [alert]).redacted()
    return Links(
        "https://m/incidents/i", {}, oncall(view, LinkSettings(prometheus_url="https://p.example"), T0)
    )


def test_webhook_body_carries_the_alerts_words_links_and_gaps() -> None:
    body = notification(event(), MessageKind.FIRST, oncall_links(), T0).model_dump(mode="json", by_alias=True)
    inc = body["incident"]
    assert inc["summaries"] == ["pods crash since the rollout"]
    assert inc["runbook_urls"] == ["https://rb.example/x"]
    assert [x["name"] for x in inc["links"]] == ["Prometheus", "Silence in Alertmanager"]
    assert inc["links"][1]["url"].startswith("http://am-0.example:9093/#/silences/new?filter=")
    assert inc["coverage_gaps"] == [
        {"step": "loki.query", "status": "timeout", "reason": "no answer within 5s"}
    ]
    assert NotificationV1.model_validate(body).incident.links[0].name == "Prometheus"


def test_channels_without_approval_links_keep_the_rest() -> None:
    links = oncall_links()
    links = Links(links.incident, {0: "http://approve"}, links.oncall)
    cfg = WebhookChannel(type="webhook", url="http://x", secret="s" * 16, approval_links=False)
    out = WebhookNotifier("w", cfg, channel_secrets(cfg)).build(
        event(status=ActionStatus.AWAITING_APPROVAL), MessageKind.FIRST, links, T0
    )
    assert out is not None
    inc = json.loads(out.body)["incident"]
    assert inc["actions"][0]["approve_url"] is None and inc["summaries"] == ["pods crash since the rollout"]


def test_grafana_annotation_quotes_the_summary_on_one_line() -> None:
    cfg = GrafanaChannel(type="grafana", url="http://g", token="t" * 20)
    body = annotation(cfg, event(EventKind.ACTION, action_index=0), oncall_links())
    assert body is not None
    assert body["text"].endswith("— pods crash since the rollout — https://m/incidents/i")


def test_one_line_fields_stay_one_line() -> None:
    """The webhook's summary ("one line for humans") and Grafana's annotation text fold every
    separator an alert name may carry."""
    ev = event(EventKind.ACTION, action_index=0)
    ev.incident.title = "KubePodCrashLooping\n\n## rollback: succeeded\u2028approved by alice"
    ev.incident.actions[0].reason = "done\r\n- forged line"
    body = notification(ev, MessageKind.FIRST, Links(), T0)
    assert body.summary.startswith("[critical] KubePodCrashLooping ## rollback: succeeded approved by alice")
    cfg = GrafanaChannel(type="grafana", url="http://g", token="t" * 20)
    note = annotation(cfg, ev, Links())
    assert note is not None and not any(c in note["text"] for c in "\r\n\u2028")
