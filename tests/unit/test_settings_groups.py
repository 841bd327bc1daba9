"""Settings grouped by concern (kopf style): frozen groups built from the flat Settings, every
setting in a group, and one place (``settings.tokens``) where every secret's value is unwrapped,
the notification channels' included."""

from __future__ import annotations

import dataclasses
import typing
from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import SecretStr

from medic.app.settings import Settings, Tokens
from medic.notify.config import SECRET_FIELDS, ChannelConfig, ChannelSecrets

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


def groups_of(s: Settings) -> dict[str, object]:
    """Every group property of Settings (a property answering a dataclass), by name."""
    found = {}
    for name, member in vars(Settings).items():
        if isinstance(member, property):
            value = getattr(s, name)
            if dataclasses.is_dataclass(value):
                found[name] = value
    return found


GROUPS = groups_of(Settings(_env_file=None))  # type: ignore[call-arg]

CHANNELS = {
    "oncall": {"type": "slack", "url": "https://hooks.slack.example/services/T/B/slack-secret-part"},
    "bridge": {"type": "webhook", "url": "https://bridge.example/hook-secret-part", "secret": "h" * 32},
    "dashboards": {"type": "grafana", "url": "https://grafana.example", "token": "glsa_grafana-token-0123"},
}


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
    assert {"pipeline", "remediation", "kube", "links", "inbox", "notify", "tokens"} <= set(GROUPS)
    for group in GROUPS.values():
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


def _plain(value: object) -> object:
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    return tuple(value) if isinstance(value, list) else value


def _group_fields(group: object) -> dict[str, object]:
    """A group's fields by name, those of nested groups (``diagnosed.kube``) included."""
    out: dict[str, object] = {}
    for f in dataclasses.fields(group):  # type: ignore[arg-type]
        value = getattr(group, f.name)
        if dataclasses.is_dataclass(value):
            out |= _group_fields(value)
        out[f.name] = value
    return out


def test_every_setting_is_in_a_group_with_its_value(tmp_path: Path) -> None:
    """The code reads settings through the groups: a setting no group holds could only be read
    flat. Every group field named after a setting carries that setting's value (secrets as text)."""
    s = settings(
        webhook_username="alertmanager",
        auth_proxy_header="X-Forwarded-User",
        verify_deploys="off",
        loki_url="http://loki:3100",
        kubeconfig="/etc/kube/config",
        data_dir=tmp_path,
        notifiers=CHANNELS,
        **SECRETS,
    )
    held: dict[str, list[str]] = {}
    for group_name, group in groups_of(s).items():
        for name, value in _group_fields(group).items():
            held.setdefault(name, []).append(group_name)
            if name in Settings.model_fields and name != "notifiers":
                assert value == _plain(getattr(s, name)), (group_name, name)
    assert set(Settings.model_fields) - set(held) == set()
    new_groups = {"http", "rules", "process", "logging", "retention", "diagnosed", "verification"}
    assert new_groups <= set(groups_of(s))
    assert s.notify.notifiers == s.notifiers


def test_the_diagnosed_systems_group_takes_its_credentials_from_the_tokens() -> None:
    s = settings(kube_mode="off", namespaces=["playcode", "staging"], webhook_username="am", **SECRETS)
    diagnosed = s.diagnosed
    assert diagnosed.target_mongo_url == s.tokens.target_mongo_url == SECRETS["target_mongo_url"]
    assert diagnosed.target_redis_url == s.tokens.target_redis_url == SECRETS["target_redis_url"]
    assert diagnosed.namespaces == ("playcode", "staging") and diagnosed.kube == s.kube
    shown = repr(diagnosed)
    assert SECRETS["target_mongo_url"] not in shown and SECRETS["target_redis_url"] not in shown
    assert "playcode" in shown


def test_the_inbox_group_says_whether_medic_keeps_its_state_embedded() -> None:
    assert settings().inbox.embedded is True
    production = settings(redis_url=SECRETS["redis_url"], mongo_url=SECRETS["mongo_url"])
    assert production.inbox.embedded is False


def test_every_channel_secret_has_its_place_in_the_tokens() -> None:
    """A new secret setting of a notification channel type must be a field of ChannelSecrets
    (and so of ``Settings.tokens.notifiers``), and be named by the channels' env vars."""
    secret_fields = {f.name for f in dataclasses.fields(ChannelSecrets)}
    assert set(SECRET_FIELDS) == secret_fields
    (union,) = typing.get_args(ChannelConfig)[:1]
    for model in typing.get_args(union):
        hints = typing.get_type_hints(model, include_extras=True)
        secrets = {name for name in model.model_fields if "SecretStr" in repr(hints[name])}
        assert secrets, model
        assert secrets <= secret_fields, model


def test_tokens_unwrap_every_channel_secret_and_never_show_one() -> None:
    tokens = settings(notifiers=CHANNELS).tokens
    assert set(tokens.notifiers) == set(CHANNELS)
    oncall, bridge, dashboards = (tokens.notifiers[n] for n in ("oncall", "bridge", "dashboards"))
    assert oncall.url == CHANNELS["oncall"]["url"]
    assert (bridge.url, bridge.secret) == (CHANNELS["bridge"]["url"], CHANNELS["bridge"]["secret"])
    assert dashboards.token == CHANNELS["dashboards"]["token"]
    assert dashboards.url == ""  # Grafana's URL is no secret: it stays in the channel's config
    shown = repr(tokens)
    assert "oncall" in shown
    for channel in CHANNELS.values():
        for key in ("secret", "token"):
            assert channel.get(key, "-") not in shown
    assert "secret-part" not in shown
