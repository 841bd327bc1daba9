"""Nothing secret leaves Medic."""

import json
import threading
from typing import Any

import pytest

from medic.collectors.loki import group_streams
from medic.domain.evidence import Evidence, StepStatus
from medic.domain.incident import ActionRecord, ActionStatus, Incident, Target
from medic.domain.redact import (
    INLINE_LIMIT,
    JSON_TEXT_LIMIT,
    REDACTED,
    is_secret_key,
    is_small,
    redact,
    redact_async,
    redact_text,
)
from medic.inbox.base import kept_delivery
from medic.incidents.base import stored_form
from medic.intake.model import WebhookPayload
from tests.payloads import alert, payload
from tests.secrets_corpus import HARMLESS, PLANTED, Planted


def test_secret_keys_are_redacted_whatever_the_value() -> None:
    out = redact(
        {
            "password": "p",
            "apiKey": 12345,
            "Authorization": "Bearer abc",
            "name": "ok",
            "nested": {"client_secret": "s", "replicas": 3},
        }
    )
    assert out == {
        "password": REDACTED,
        "apiKey": REDACTED,
        "Authorization": REDACTED,
        "name": "ok",
        "nested": {"client_secret": REDACTED, "replicas": 3},
    }


def test_kubernetes_env_entries_hide_secrets_in_the_name() -> None:
    env = [
        {"name": "MONGO_PASSWORD", "value": "x"},
        {"name": "PORT", "value": "3000"},
        {"name": "JWT_SECRET", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
    ]
    out = redact(env)
    assert out[0]["value"] == REDACTED
    assert out[1]["value"] == "3000"
    assert out[2]["valueFrom"]["secretKeyRef"]["name"] == "s"  # a reference is not a secret


def test_secrets_inside_text() -> None:
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"
    text = (
        f"connect mongodb://admin:s3cr3t@mongodb-0:27017 failed; token={jwt} "
        "Authorization: Bearer abcdefghijklmnop password=hunter2 redis://:redispw@redis:6379/0"
    )
    out = redact_text(text)
    for secret in ("s3cr3t", jwt, "abcdefghijklmnop", "hunter2", "redispw"):
        assert secret not in out
    assert "mongodb://admin:" in out and "mongodb-0:27017" in out


def test_harmless_text_is_untouched() -> None:
    line = "GET /api/users 200 12ms tokens_used=3 passed=true"
    assert redact_text(line) == line


# ------------------------------------------------------------------ planted secrets, false positives


@pytest.mark.parametrize("planted", PLANTED, ids=lambda p: p.name)
def test_every_planted_secret_is_redacted(planted: Planted) -> None:
    out = redact_text(planted.text)
    assert planted.secret not in out
    assert REDACTED in out


@pytest.mark.parametrize("text", HARMLESS)
def test_ordinary_text_is_not_redacted(text: str) -> None:
    assert redact_text(text) == text


@pytest.mark.parametrize("text", [p.text for p in PLANTED] + list(HARMLESS))
def test_redaction_is_idempotent(text: str) -> None:
    once = redact_text(text)
    assert redact_text(once) == once


def test_what_stays_readable_around_a_secret() -> None:
    assert redact_text("Authorization: Basic dXNlcjpwYXNz") == f"Authorization: Basic {REDACTED}"
    assert redact_text("DB_PASS=x DB_HOST=db-0") == f"DB_PASS={REDACTED} DB_HOST=db-0"
    assert redact_text("https://hooks.slack.com/services/T1/B2/abc") == (
        f"https://hooks.slack.com/services/{REDACTED}"
    )
    assert redact_text("redis://:p@ss@redis:6379/0") == f"redis://:{REDACTED}@redis:6379/0"
    assert redact_text("the password is wrong") == "the password is wrong"


@pytest.mark.parametrize(
    ("key", "secret"),
    [
        ("DB_PASS", True), ("MYSQL_PWD", True), ("PGPASSWORD", True), ("adminPassword", True),
        ("x-api-key", True), ("AWS_SECRET_ACCESS_KEY", True), ("STRIPE_KEY", True),
        ("Set-Cookie", True), ("slack_webhook_url", True), ("client_secret", True),
        ("GITHUB_TOKEN", True), ("sessionId", True), ("DATABASE_URL", True),
        ("passed", False), ("bypass", False), ("tokens", False), ("token_count", False),
        ("secretKeyRef", False), ("secret_name", False), ("password_file", False), ("auth_mode", False),
        ("author", False), ("authenticated", False), ("cache_key", False), ("key", False),
        ("pod-template-hash", False), ("idempotency_key", False), ("auth_url", False),
    ],
)  # fmt: skip
def test_secret_key_names(key: str, secret: bool) -> None:
    assert is_secret_key(key) is secret


def test_a_secret_in_a_key_name_is_redacted_and_colliding_keys_are_kept() -> None:
    out = redact(
        {
            "Bearer abcdefghijklmnop123": "a",
            "Bearer qrstuvwxyz012345678": "b",
            "https://u:pw@host": "c",
            "plain": "d",
        }
    )
    assert out == {
        f"Bearer {REDACTED}": "a",
        f"Bearer {REDACTED}#2": "b",
        f"https://u:{REDACTED}@host": "c",
        "plain": "d",
    }


# ------------------------------------------------------------------ structured log lines (issue 12.7)


def test_a_json_log_line_stays_valid_json() -> None:
    line = '{"level":"error","msg":"login failed","password":"hunter2","db":"postgres://u:pw@db/app"}'
    out = redact_text(line)
    assert json.loads(out) == {
        "level": "error",
        "msg": "login failed",
        "password": REDACTED,
        "db": f"postgres://u:{REDACTED}@db/app",
    }
    assert out.startswith('{"level":"error"')  # compact stays compact


def test_a_json_log_line_after_a_prefix_and_nested() -> None:
    line = '2026-11-26T08:00:00Z stdout F {"level": "warn", "ctx": {"headers": {"Cookie": "sid=1"}}}'
    out = redact_text(line)
    prefix, _, body = out.partition("F ")
    assert prefix == "2026-11-26T08:00:00Z stdout "
    assert json.loads(body) == {"level": "warn", "ctx": {"headers": {"Cookie": REDACTED}}}


def test_a_json_line_without_secrets_is_kept_byte_for_byte() -> None:
    line = '{"level": "info",   "msg": "ok"}'
    assert redact_text(line) == line


def test_a_huge_json_line_is_scrubbed_as_text() -> None:
    line = '{"password":"hunter2","pad":"' + "x" * (JSON_TEXT_LIMIT + 10) + '"}'
    out = redact_text(line)
    assert "hunter2" not in out and out.startswith('{"password":"[REDACTED]"')


# ------------------------------------------------------------------ off the event loop


async def test_large_values_are_redacted_off_the_event_loop() -> None:
    threads: list[str] = []

    def spy(value: Any) -> Any:
        threads.append(threading.current_thread().name)
        return redact(value)

    small = {"password": "x"}
    large = {"labels": {"k": "-----BEGIN PRIVATE KEY-----\n" * (INLINE_LIMIT // 20)}}
    assert await redact_async(small, spy) == {"password": REDACTED}
    assert await redact_async(large, spy) == {"labels": {"k": REDACTED}}
    assert threads[0] == threading.current_thread().name
    assert threads[1] != threading.current_thread().name


def test_size_estimate_stops_early() -> None:
    assert is_small({"a": ["b" * 10]}, 100)
    assert not is_small({"a": ["b" * 200]}, 100)
    assert not is_small([[]] * 10**6, 100)  # nodes count too


def test_json_log_lines_with_passwords_still_group_by_message() -> None:
    """Issue 12.7: a JSON line with a password stayed a masked blob (invalid JSON after redaction),
    did not group with its siblings and landed raw in a finding summary."""
    lines = [
        json.dumps({"level": "error", "msg": "login failed", "user": f"u{i}", "password": f"pw-{i}"})
        for i in range(3)
    ]
    streams = [
        {"stream": {"pod": "app-1"}, "values": [[str(10**18 + i), line] for i, line in enumerate(lines)]}
    ]
    grouped = group_streams(streams, max_patterns=10)
    (group,) = grouped["patterns"]
    assert group["count"] == 3 and group["level"] == "error"
    assert group["pattern"].startswith("login failed")
    sample = json.loads(group["sample"])
    assert sample["password"] == REDACTED and "pw-" not in group["sample"]


def test_a_dead_letter_is_kept_redacted_with_its_alerts_identity() -> None:
    """A fingerprint-less alert's identity hashes its raw labels: kept_delivery pins it before
    redacting, so that a retry still finds the episode that failed."""
    raw = alert("X", token="hunter2-label", annotations={"summary": "DB_PASS=hunter2-annotation"})
    raw["fingerprint"] = ""
    body = json.dumps(payload([raw]))
    (before,) = WebhookPayload.model_validate_json(body).alerts
    kept = kept_delivery(body)
    assert "hunter2" not in kept
    (after,) = WebhookPayload.model_validate_json(kept).alerts
    assert after.labels["token"] == REDACTED
    assert after.episode_key == before.episode_key
    assert kept_delivery("not json, password=hunter2") == f"not json, password={REDACTED}"


def test_a_kubernetes_secret_object_keeps_its_keys_but_no_values() -> None:
    secret = {
        "kind": "Secret",
        "metadata": {"name": "db-credentials", "namespace": "playcode"},
        "data": {"config.json": "eyJ1c2VyIjoiYSJ9", "tls.crt": "LS0tLS1CRUdJTi"},
        "stringData": {"settings.ini": "host=db"},
    }
    out = redact(secret)
    assert out["metadata"] == secret["metadata"]
    assert out["data"] == {"config.json": REDACTED, "tls.crt": REDACTED}
    assert out["stringData"] == {"settings.ini": REDACTED}
    config_map = {"kind": "ConfigMap", "data": {"app.properties": "db.password=hunter2\nport=80"}}
    assert redact(config_map)["data"] == {"app.properties": f"db.password={REDACTED}\nport=80"}


def test_a_reference_to_a_secret_is_not_a_secret() -> None:
    """A pod's volume names the Secret it mounts: the diagnosis needs the name (what changed?)."""
    volume = {
        "name": "creds",
        "secret": {"secretName": "db-credentials", "items": [{"key": "pw", "path": "p"}]},
    }
    assert redact({"volumes": [volume]}) == {"volumes": [volume]}
    holding = {"secret": {"name": "db", "password": "hunter2"}, "token": {"value": "abc"}}
    assert redact(holding) == {
        "secret": {"name": REDACTED, "password": REDACTED},
        "token": {"value": REDACTED},
    }


def test_a_stored_bundle_is_redacted_but_its_evidence_is_not_read_again() -> None:
    """Action plans and results, guard reasons and the timeline come from the cluster and from
    errors: the stores write them redacted. Evidence was redacted when collected and is shared."""
    target = Target(kind="deployment", namespace="playcode", name="app")
    evidence = Evidence(step="k8s.pod_logs", collector="k8s.pod_logs", status=StepStatus.OK, data={"x": 1})
    incident = Incident(
        id="inc-1",
        key="k",
        evidence=[evidence],
        actions=[
            ActionRecord(
                action="rollback",
                use="k8s.rollback_deployment",
                target=target,
                mode="auto",
                status=ActionStatus.SUCCEEDED,
                result={"env": [{"name": "DB_PASSWORD", "value": "hunter2-env"}]},
                reason="rolled back; token=hunter2-reason",
            )
        ],
    )
    incident.note("action", "GET https://admin:hunter2-url@api failed")
    stored = stored_form(incident)
    assert "hunter2" not in stored.model_dump_json(exclude={"evidence"})
    assert stored.evidence[0] is evidence
    assert "hunter2" in incident.model_dump_json()  # the incident itself is not changed
    clean = Incident(id="inc-2", key="k")
    assert stored_form(clean) is clean
