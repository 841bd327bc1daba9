"""Settings grouped by concern (kopf style): frozen groups built from the flat Settings, and one
place (``settings.tokens``) where every secret's value is unwrapped."""

from __future__ import annotations

import dataclasses
import typing
from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import SecretStr

from medic.app.settings import Settings, Tokens

SECRETS = {
    "webhook_token": "webhook-token-0123456789",
    "webhook_password": "webhook-password-0123456789",
    "admin_token": "admin-token-0123456789abcdef",
    "read_token": "read-token-0123456789abcdef",
    "approval_secret": "approval-secret-0123456789ab",
    "redis_url": "redis://:redis-password-0123@127.0.0.1:6379/0",
    "mongo_url": "mongodb://medic:mongo-password-0123@127.0.0.1:27017/medic",
    "target_redis_url": "redis://:app-redis-password-0123@redis:6379/0",
    "target_mongo_url": "mongodb://app:app-mongo-password-0123@mongodb-0:27017/userdb",
}


def settings(**kw: object) -> Settings:
    return Settings(_env_file=None, **kw)  # type: ignore[call-arg]


def test_the_groups_carry_the_settings_of_their_concern(tmp_path: Path) -> None:
    s = settings(
        mode="enforce",
        namespaces=["playcode", "staging"],
        global_budget_count=5,
        flap_window_seconds=60,
        kube_mode="off",
        kube_context="prod",
        grafana_url="https://grafana.example",
        prometheus_url="http://prometheus:9090",
        link_margin=timedelta(minutes=5),
        data_dir=tmp_path,
        lease_seconds=2.5,
        queue_max=50,
        public_url="https://medic.example",
        approval_ttl_seconds=600,
        max_in_flight=3,
        collector_timeout_seconds=7.5,
    )
    assert (s.pipeline.mode, s.pipeline.max_in_flight, s.pipeline.collector_timeout_seconds) == (
        "enforce",
        3,
        7.5,
    )
    assert s.remediation.mode == "enforce"
    assert s.remediation.namespaces == ("playcode", "staging")
    assert (s.remediation.global_budget_count, s.remediation.flap_window_seconds) == (5, 60)
    assert s.remediation.global_budget_window_seconds == 3600
    assert (s.kube.kube_mode, s.kube.kube_context) == ("off", "prod")
    assert s.links.grafana_url == "https://grafana.example"
    assert s.links.prometheus_url == "http://prometheus:9090"
    assert s.links.link_margin == timedelta(minutes=5)
    assert s.inbox.data_dir == tmp_path
    assert (s.inbox.db_path, s.inbox.inbox_path) == (s.db_path, s.inbox_path)
    assert (s.inbox.lease_seconds, s.inbox.queue_max) == (2.5, 50)
    assert (s.notify.public_url, s.notify.approval_ttl_seconds, s.notify.notifiers) == (
        "https://medic.example",
        600,
        {},
    )


def test_a_group_is_frozen() -> None:
    s = settings()
    for group in (s.pipeline, s.remediation, s.kube, s.links, s.inbox, s.notify, s.tokens):
        name = dataclasses.fields(group)[0].name
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(group, name, None)


def test_tokens_unwrap_every_secret_and_never_show_one() -> None:
    s = settings(webhook_username="alertmanager", **SECRETS)
    tokens = s.tokens
    for name, value in SECRETS.items():
        assert getattr(tokens, name) == value
    assert tokens.webhook_username == "alertmanager"
    shown = repr(tokens) + str(tokens)
    assert "alertmanager" in shown
    for value in SECRETS.values():
        assert value not in shown
    unset = settings().tokens
    assert all(getattr(unset, name) is None for name in SECRETS)


def test_every_secret_setting_has_its_place_in_the_tokens() -> None:
    """A new secret setting must be added to Tokens: the one place secrets are unwrapped."""
    hints = typing.get_type_hints(Settings, include_extras=True)
    secret_settings = {name for name in Settings.model_fields if "SecretStr" in repr(hints[name])}
    assert secret_settings == set(SECRETS)
    assert secret_settings <= {f.name for f in dataclasses.fields(Tokens)}


def test_secret_settings_stay_secret_on_settings() -> None:
    s = settings(webhook_username="alertmanager", **SECRETS)
    assert isinstance(s.admin_token, SecretStr)
    assert SECRETS["admin_token"] not in repr(s)
