"""Notification channels: the ``notifiers:`` mapping of the settings, validated when Medic starts.

```yaml
notifiers:                      # in the MEDIC_CONFIG file (or MEDIC_NOTIFIERS as JSON)
  oncall:                       # a channel name, used by rules: ``notify: [oncall]``
    type: slack                 # slack | webhook | grafana
    url: https://hooks.slack.com/services/...   # or MEDIC_NOTIFY_ONCALL_URL
    min_severity: warning
  dashboards:
    type: grafana
    url: https://grafana.example
    token: glsa_...             # or MEDIC_NOTIFY_DASHBOARDS_TOKEN
    all_rules: true             # every incident, whatever the rules' notify lists say
```

Secrets (``url`` of Slack and webhook channels, ``secret``, ``token``) can come from environment
variables ``MEDIC_NOTIFY_<NAME>_<URL|SECRET|TOKEN>``, NAME being the channel name upper-cased with
``-`` as ``_``; they win over the file.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, SecretStr, field_validator

from medic.domain.durations import Duration
from medic.domain.errors import ConfigError

EventName = Literal["opened", "diagnosed", "action", "resolved"]
ALL_EVENTS: tuple[EventName, ...] = ("opened", "diagnosed", "action", "resolved")
CHANNEL_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
SECRET_FIELDS = ("url", "secret", "token")
ENV_PREFIX = "MEDIC_NOTIFY_"


def _http_url(value: str) -> str:
    if not value.startswith(("http://", "https://")):
        raise ValueError("must be an http:// or https:// URL")
    return value.rstrip("/")


def _long_enough(value: str) -> str:
    if len(value) < 16:
        raise ValueError("use at least 16 characters (e.g. openssl rand -hex 32)")
    return value


def _text_checked(check: Callable[[str], str]) -> BeforeValidator:
    """Check a secret's text before pydantic wraps it in a SecretStr (its value is revealed only
    by :class:`medic.app.settings.Tokens`); a SecretStr built by code is taken as given."""
    return BeforeValidator(lambda value: check(value) if isinstance(value, str) else value)


SecretUrl = Annotated[SecretStr, _text_checked(_http_url)]
LongSecret = Annotated[SecretStr, _text_checked(_long_enough)]


@dataclass(frozen=True)
class ChannelSecrets:
    """A channel's secret settings as text, for its notifier: unwrapped by
    :class:`medic.app.settings.Tokens` (the one place Medic reveals a secret), never shown by
    ``repr``. A field is empty when the channel's type has no such setting."""

    url: str = field(default="", repr=False)  # Slack's and the webhook's URL (holds the credential)
    secret: str = field(default="", repr=False)  # the webhook's HMAC key
    token: str = field(default="", repr=False)  # Grafana's service account token


class ChannelBase(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    min_severity: Literal["info", "warning", "critical"] = "info"
    events: list[EventName] = Field(default_factory=lambda: list(ALL_EVENTS), min_length=1)
    all_rules: bool = False  # receive every incident, not only those of rules that name it
    timeout: Duration = timedelta(seconds=5)  # per attempt
    attempts: int = Field(4, ge=1, le=10)
    backoff: Duration = timedelta(milliseconds=500)  # first retry delay; doubled each time
    max_backoff: Duration = timedelta(seconds=10)

    @field_validator("timeout")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value.total_seconds() <= 0 or value.total_seconds() > 60:
            raise ValueError("must be between 0 and 60 seconds")
        return value


class SlackChannel(ChannelBase):
    """A Slack incoming webhook (Block Kit)."""

    type: Literal["slack"]
    url: SecretUrl
    approval_links: bool = True


class WebhookChannel(ChannelBase):
    """A generic JSON webhook: schema ``medic.notification/v1``, body signed with HMAC-SHA256."""

    type: Literal["webhook"]
    url: SecretUrl
    secret: LongSecret = Field(description="HMAC-SHA256 key of the X-Medic-Signature header")
    approval_links: bool = True


class GrafanaChannel(ChannelBase):
    """Grafana annotations (POST /api/annotations) for actions and resolutions."""

    type: Literal["grafana"]
    url: str
    token: SecretStr  # a service account token with the annotations:write permission
    dashboard_uid: str | None = None  # omit for an organisation-wide annotation
    panel_id: int | None = None
    tags: list[str] = Field(default_factory=list)  # added to ["medic", rule, namespace, action]

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return _http_url(value)


ChannelConfig = Annotated[SlackChannel | WebhookChannel | GrafanaChannel, Field(discriminator="type")]


def check_channel_names(channels: Any) -> None:
    """Before the models: clear messages for the mistakes a hand-written mapping makes."""
    if not isinstance(channels, Mapping):
        raise ValueError("expected a mapping of channel name -> {type: slack|webhook|grafana, ...}")
    for name, body in channels.items():
        if not isinstance(name, str) or not CHANNEL_NAME.match(name):
            raise ValueError(f"notifier name {name!r}: use lower-case letters, digits and '-'")
        kind = body.get("type") if isinstance(body, Mapping) else None
        if kind not in ("slack", "webhook", "grafana"):
            raise ValueError(f"notifier {name!r}: type must be slack, webhook or grafana, not {kind!r}")


def env_name(channel: str, field: str) -> str:
    return f"{ENV_PREFIX}{channel.upper().replace('-', '_')}_{field.upper()}"


def secrets_from_env(environ: Mapping[str, str] | None = None) -> dict[str, dict[str, str]]:
    """``MEDIC_NOTIFY_ONCALL_URL=...`` → ``{"oncall": {"url": "..."}}`` (merged over the file)."""
    environ = os.environ if environ is None else environ
    out: dict[str, dict[str, str]] = {}
    for key, value in environ.items():
        if not key.startswith(ENV_PREFIX):
            continue
        rest = key[len(ENV_PREFIX) :]
        for secret in SECRET_FIELDS:
            suffix = "_" + secret.upper()
            if rest.endswith(suffix) and len(rest) > len(suffix):
                channel = rest[: -len(suffix)].lower().replace("_", "-")
                out.setdefault(channel, {})[secret] = value
                break
    return out


def check_routes(rule_notify: Mapping[str, list[str]], channels: Mapping[str, Any]) -> None:
    """Every channel a rule names must be defined, once any channel is defined.

    With no channel at all notifications are simply off (the shipped rules name ``oncall``)."""
    if not channels:
        return
    for rule, names in rule_notify.items():
        for name in names:
            if name not in channels:
                known = ", ".join(sorted(channels))
                raise ConfigError(
                    f"notifies {name!r}, which is not a configured notifier (known: {known})",
                    rule=f"rule {rule}",
                    field="notify",
                )
