"""Medic's settings: one typed object, from ``MEDIC_*`` env vars and an optional YAML file.

Precedence (highest first): explicit keyword arguments, environment variables, the YAML file named by
``MEDIC_CONFIG``, defaults. Nothing is read at import time: call :func:`load_settings`.

:class:`Settings` is the source (flat, as the env vars and docs/configuration.md name them); the
code reads the group of its concern, kopf style: ``settings.http``, ``.rules``, ``.process``,
``.logging``, ``.pipeline``, ``.remediation``, ``.inbox``, ``.retention``, ``.diagnosed`` (with
``.kube``), ``.verification``, ``.links``, ``.notify`` and ``.tokens``. Every setting is in a group
(tests/unit/test_settings_groups.py). :class:`Tokens` holds every token, password and
credential-bearing URL, the notification channels' secrets included: it is the one place a
``SecretStr`` is unwrapped (no other module calls ``get_secret_value``), and a group that needs a
credential takes it from there. The groups are frozen and satisfy the Protocols through which
lower layers read settings without importing this module (``RemediationSettings``,
``KubeSettings``, ``LinkSource``, ``RetentionSettings``).
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import (
    AfterValidator,
    AliasChoices,
    Field,
    ModelWrapValidatorHandler,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError
from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict
from pydantic_settings.exceptions import SettingsError

from medic.app.yamlsource import YamlDoc, load_yaml_file
from medic.domain.durations import Duration
from medic.domain.errors import ConfigError, ConfigErrors
from medic.notify.config import (
    ChannelConfig,
    ChannelSecrets,
    check_channel_names,
    env_name,
    secrets_from_env,
)
from medic.rules.labels import loki_stream_selector

Mode = Literal["off", "dry-run", "enforce"]

# --------------------------------------------------------------------------- constrained types
# Each setting's type says what a valid value is, so a bad value is refused when Medic starts
# (all of them in one report, see load_settings), never first when an alert fires.

_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_HOSTNAME = re.compile(
    r"(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*"
)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _namespace(value: str) -> str:
    if len(value) > 63 or not _DNS_LABEL.fullmatch(value):
        raise ValueError(
            f"{value!r} is not a Kubernetes namespace name (DNS-1123 label: at most 63 characters, "
            "lower-case letters, digits and '-', starting and ending with a letter or digit)"
        )
    return value


def _namespaces(values: list[str]) -> list[str]:
    if not values:
        raise ValueError("name at least one namespace")
    return list(dict.fromkeys(values))


def _listen_host(value: str) -> str:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        if not _HOSTNAME.fullmatch(value):
            raise ValueError(f"{value!r} is neither an IP address nor a host name") from None
    return value


def _url_check(schemes: tuple[str, ...], *, host_required: bool = True) -> Callable[[str], str]:
    """A URL with one of ``schemes`` and a host; the value is never echoed (it may hold a password)."""

    def check(value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in schemes:
            raise ValueError("must be a URL starting with " + " or ".join(f"{s}://" for s in schemes))
        if host_required and not parts.hostname:
            raise ValueError(f"the {parts.scheme}:// URL names no host")
        if _CONTROL.search(value) or " " in value:
            raise ValueError("a URL cannot hold spaces or control characters")
        return value

    return check


def _secret_url(schemes: tuple[str, ...]) -> Callable[[SecretStr], SecretStr]:
    check = _url_check(schemes)
    return lambda value: SecretStr(check(value.get_secret_value()))


def _redis_url(value: SecretStr) -> SecretStr:
    text = value.get_secret_value()
    if text.startswith("unix://"):  # a socket path, no host
        return value
    return _secret_url(("redis", "rediss"))(value)


def _credential(value: SecretStr) -> SecretStr:
    """A token or password: an empty one would leave what it guards open."""
    text = value.get_secret_value()
    if not text:
        raise ValueError("is empty: unset it, or give it a value (an empty credential guards nothing)")
    if text != text.strip() or _CONTROL.search(text):
        raise ValueError(
            "holds leading/trailing whitespace or control characters (a newline from the Secret's file?)"
        )
    return value


def _long_secret(value: SecretStr) -> SecretStr:
    _credential(value)
    if len(value.get_secret_value()) < 16:
        raise ValueError("use at least 16 characters (e.g. openssl rand -hex 32)")
    return value


def _username(value: str) -> str:
    if not value:
        raise ValueError("is empty: unset it, or give it a value (an empty credential guards nothing)")
    if ":" in value or _CONTROL.search(value) or value != value.strip():
        raise ValueError("a basic-auth user name cannot hold ':', control characters or surrounding spaces")
    return value


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("is empty: unset it instead")
    return value


def _http_url(value: str) -> str:
    return _url_check(("http", "https"))(value).rstrip("/")


def _public_url(value: str) -> str:
    return _http_url(value) if value else value


def _path(value: Path) -> Path:
    if not str(value).strip() or str(value) == ".":
        raise ValueError("name a directory")
    return value


Namespace = Annotated[str, AfterValidator(_namespace)]
HttpUrl = Annotated[str, AfterValidator(_http_url)]
Credential = Annotated[SecretStr, AfterValidator(_credential)]
LongSecret = Annotated[SecretStr, AfterValidator(_long_secret)]
DirPath = Annotated[Path, AfterValidator(_path)]
Text = Annotated[str, AfterValidator(_not_blank)]

PACKAGE_DIR = Path(__file__).resolve().parent.parent  # service/medic (this module is in app/)


def _default_config_dir(name: str) -> Path:
    """The shipped rules/playbooks: the top-level dir of a source checkout (an editable install runs
    ``service/medic`` in place), else the copy the wheel ships as ``medic/defaults/<name>`` (setup.py)."""
    checkout = PACKAGE_DIR.parent.parent
    in_checkout = PACKAGE_DIR.parent.name == "service" and (checkout / "pyproject.toml").is_file()
    if in_checkout and (checkout / name).is_dir():
        return checkout / name
    return PACKAGE_DIR / "defaults" / name


class _YamlFileSource(PydanticBaseSettingsSource):
    """Reads the YAML file named by MEDIC_CONFIG (keys are the field names, lower case)."""

    def __init__(self, settings_cls: type[BaseSettings], path: str | None) -> None:
        super().__init__(settings_cls)
        self.path = path

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        if not self.path:
            return {}
        try:
            with open(self.path, encoding="utf-8") as fh:
                data = yaml.safe_load(fh)
        except OSError as exc:
            raise ConfigError(f"cannot read config file: {exc.strerror}", file=self.path) from exc
        except yaml.YAMLError as exc:
            line = getattr(getattr(exc, "problem_mark", None), "line", None)
            raise ConfigError(
                f"invalid YAML: {exc}", file=self.path, line=line + 1 if line is not None else None
            ) from exc
        if data is None:
            return {}
        if not isinstance(data, dict):
            raise ConfigError("the config file must hold a mapping of setting: value", file=self.path)
        return {str(k).lower(): v for k, v in data.items()}


class _NotifierSecretsSource(PydanticBaseSettingsSource):
    """``MEDIC_NOTIFY_<CHANNEL>_<URL|SECRET|TOKEN>``: notifier secrets merged over the file's."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        found = secrets_from_env()
        return {"notifiers": found} if found else {}


class Settings(BaseSettings):
    """Every setting of Medic. Env var = ``MEDIC_`` + upper-case field name; in the ``MEDIC_CONFIG``
    file, the field name. docs/configuration.md is generated from the descriptions below."""

    model_config = SettingsConfigDict(env_prefix="MEDIC_", extra="forbid", frozen=True)

    # HTTP
    host: Annotated[str, AfterValidator(_listen_host)] = Field(
        "0.0.0.0", description="Address the HTTP server listens on (an IP address or host name)."
    )
    port: int = Field(8080, ge=1, le=65535, description="Port the HTTP server listens on.")
    max_body_bytes: int = Field(
        1024 * 1024,
        ge=1024,
        le=64 * 1024 * 1024,
        description="Largest webhook body accepted; a larger one is answered 413.",
    )
    body_read_timeout: Duration = Field(
        timedelta(seconds=10),
        gt=timedelta(0),
        le=timedelta(minutes=10),
        description="A request body not received in full this long after its headers is answered "
        "408 and its connection closed (every route that takes a body).",
    )
    keepalive_timeout: Duration = Field(
        timedelta(seconds=30),
        gt=timedelta(0),
        le=timedelta(hours=1),
        description="An open connection that sends no complete request head (request line and "
        "headers) for this long, new or between requests, is closed.",
    )
    public_url: Annotated[str, AfterValidator(_public_url)] = Field(
        "", description="Medic's external http(s) URL, for links in notifications and approval pages."
    )

    # intake auth (bearer and/or basic; required when set)
    webhook_token: Credential | None = Field(
        None, description="Bearer token Alertmanager must send (`http_config.authorization`)."
    )
    webhook_username: Annotated[str, AfterValidator(_username)] | None = Field(
        None, description="Basic-auth user Alertmanager must send; set with `webhook_password`."
    )
    webhook_password: Credential | None = Field(
        None, description="Basic-auth password Alertmanager must send; set with `webhook_username`."
    )
    admin_token: LongSecret | None = Field(
        None, description="Bearer token of the admin API (kill switch, audit) and of approvals by API."
    )

    # behaviour
    mode: Mode = Field(
        "dry-run", description="Global remediation mode: `off`, `dry-run` (plan only) or `enforce`."
    )
    rules_dir: DirPath = Field(
        default_factory=lambda: _default_config_dir("rules"), description="Directory of rule files."
    )
    playbooks_dir: DirPath = Field(
        default_factory=lambda: _default_config_dir("playbooks"), description="Directory of playbook files."
    )
    namespaces: Annotated[list[Namespace], NoDecode, AfterValidator(_namespaces)] = Field(
        default_factory=lambda: ["playcode"],
        description="Namespaces Medic may diagnose and remediate (comma-separated in the env var).",
    )
    workers: int = Field(4, ge=1, le=256, description="Deliveries processed concurrently.")
    diagnosis_process: bool = Field(
        True,
        description="With the embedded backend, `medic serve` runs diagnosis in a child process, so that "
        "a storm of diagnoses never slows the webhook's acknowledgement (false: one process).",
    )
    dedup_ttl_seconds: int = Field(
        7 * 24 * 3600,
        ge=60,
        le=366 * 24 * 3600,
        description="How long an alert episode is remembered, so re-sends are recognised as duplicates.",
    )
    playbook_deadline_seconds: float = Field(
        60.0, gt=0, le=3600, description="Deadline of one playbook run (all its collectors)."
    )
    collector_timeout_seconds: float = Field(
        15.0, gt=0, le=3600, description="Timeout of one collector step (at most the playbook deadline)."
    )
    evidence_max_bytes: int = Field(
        256 * 1024, ge=1024, le=64 * 1024 * 1024, description="Evidence kept per step; the rest is truncated."
    )

    # remediation guardrails beyond each rule's own cooldown and budget
    global_budget_count: int = Field(
        3, ge=0, description="Automatic actions allowed across all targets per budget window (0: none)."
    )
    global_budget_window_seconds: int = Field(
        3600, ge=60, le=30 * 24 * 3600, description="Window of the global action budget."
    )
    flap_window_seconds: int = Field(
        7200,
        ge=0,
        le=30 * 24 * 3600,
        description="After an action that did not help, no new action on that target for this long.",
    )

    # embedded state (and, with the production backends, the local fail-safe spool)
    data_dir: DirPath = Field(
        Path("./data"),
        description="Directory of the embedded SQLite store (and of the fail-safe spool with Redis+MongoDB); "
        "created 0700 at start.",
    )

    # Medic's own production backends (not the systems it diagnoses): set both or neither.
    redis_url: Annotated[SecretStr, AfterValidator(_redis_url)] | None = Field(
        None,
        description="Medic's own Redis (inbox stream, dedup, locks, ledger, kill switch); "
        "set with `mongo_url`.",
    )
    mongo_url: Annotated[SecretStr, AfterValidator(_secret_url(("mongodb", "mongodb+srv")))] | None = Field(
        None, description="Medic's own MongoDB (incidents, audit log); set with `redis_url`."
    )
    lease_seconds: float = Field(
        30.0, ge=0.2, le=3600, description="A delivery held by a dead replica moves on after this long."
    )
    queue_max: int = Field(
        100_000, ge=10, description="Accepted, unfinished deliveries; beyond it intake answers 503."
    )
    max_in_flight: int = Field(16, ge=1, le=1024, description="Incidents one replica works on at once.")
    shutdown_grace_seconds: float = Field(
        10.0, ge=0, le=600, description="At shutdown, time to finish in-flight work before handing it back."
    )

    # retention of Medic's own data, both backends (docs/backends.md "Retention"); 0 keeps it forever
    retention_incidents: Duration = Field(
        timedelta(days=30),
        description="Resolved incidents and their alerts are deleted this long after; 0: kept.",
    )
    retention_audit: Duration = Field(
        timedelta(days=90),
        description="Audit records are deleted this long after they were written; 0: kept.",
    )
    retention_dead_letters: Duration = Field(
        timedelta(days=14), description="Dead-lettered deliveries are deleted this long after; 0: kept."
    )
    purge_interval: Duration = Field(
        timedelta(minutes=10),
        gt=timedelta(0),
        description="How often old data is purged (also once at start).",
    )

    # diagnosed systems
    prometheus_url: HttpUrl | None = Field(None, description="Prometheus the collectors query.")
    loki_url: HttpUrl | None = Field(None, description="Loki the collectors query.")
    ingress_log_selector: Annotated[str, AfterValidator(loki_stream_selector)] = Field(
        '{namespace="ingress-nginx"}',
        description="LogQL stream selector of the ingress controller's logs (WebSocket proxy timeouts).",
    )
    target_mongo_url: Annotated[SecretStr, AfterValidator(_secret_url(("mongodb", "mongodb+srv")))] | None = (
        Field(None, description="The application's MongoDB, diagnosed (read-only commands).")
    )
    target_redis_url: Annotated[SecretStr, AfterValidator(_redis_url)] | None = Field(
        None, description="The application's Redis, diagnosed (read-only commands)."
    )

    # Kubernetes: KUBECONFIG is honoured as kubectl does; "off" disables Kubernetes access.
    kube_mode: Literal["auto", "in-cluster", "kubeconfig", "off"] = Field(
        "auto", description="Kubernetes access: `auto`, `in-cluster`, `kubeconfig` or `off`."
    )
    kubeconfig: Text | None = Field(
        default=None,
        validation_alias=AliasChoices("MEDIC_KUBECONFIG", "KUBECONFIG", "kubeconfig"),
        description="Kubeconfig file(s), as kubectl reads them (`KUBECONFIG` is honoured too).",
    )
    kube_context: Text | None = Field(None, description="Kubeconfig context (default: the current one).")
    verify_deploys: Literal["on", "off"] | None = Field(
        None,
        description="Watch the Deployments of `namespaces` and verify every new revision "
        "(docs/deploy-verification.md); default: `on` when Kubernetes is configured.",
    )

    # on-call: notification channels, incident pages, approvals (README "On-call")
    notifiers: dict[str, ChannelConfig] = Field(
        default_factory=dict,
        description="Notification channels by name (file, or JSON in the env var); secrets also as "
        "`MEDIC_NOTIFY_<NAME>_<URL|SECRET|TOKEN>`.",
    )
    read_token: LongSecret | None = Field(
        None, description="Token required by the incident pages and the read API; unset: they are open."
    )
    auth_proxy_header: str | None = Field(
        None, description="Header naming the user, set by a trusted auth proxy (e.g. `X-Forwarded-User`)."
    )
    approval_secret: LongSecret | None = Field(
        None, description="HMAC key of approval tokens; unset: a random key kept in the store."
    )
    approval_ttl_seconds: int = Field(
        3600, ge=60, le=7 * 24 * 3600, description="How long an approval link stays valid."
    )
    # links on-call follows from an incident (docs/notifications.md): each only when its base is set
    grafana_url: HttpUrl | None = Field(
        None, description="Grafana as on-call's browser reaches it (Explore links)."
    )
    grafana_prometheus_datasource: Text | None = Field(
        None, description="UID of Grafana's Prometheus data source: a metrics Explore link."
    )
    grafana_loki_datasource: Text | None = Field(
        None, description="UID of Grafana's Loki data source: a logs Explore link."
    )
    prometheus_external_url: HttpUrl | None = Field(
        None, description="Prometheus' UI as a browser reaches it, for graph links (default: prometheus_url)."
    )
    alertmanager_url: HttpUrl | None = Field(
        None, description="Alertmanager's UI for silence links, when the alerts carry no `externalURL`."
    )
    link_margin: Duration = Field(
        timedelta(minutes=15),
        ge=timedelta(0),
        le=timedelta(days=1),
        description="Links' time range starts this long before the first alert (and ends this long "
        "after the resolution).",
    )

    # logging
    log_format: Literal["auto", "json", "console"] = Field(
        "auto", description="`json`, `console`, or `auto` (console on a terminal, else JSON)."
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="Lowest level logged."
    )

    @field_validator("namespaces", mode="before")
    @classmethod
    def _split_namespaces(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("notifiers", mode="before")
    @classmethod
    def _check_notifier_names(cls, value: Any) -> Any:
        check_channel_names(value)
        return value

    @field_validator("auth_proxy_header")
    @classmethod
    def _check_header(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[A-Za-z0-9-]+", value):
            raise ValueError("must be an HTTP header name, e.g. X-Forwarded-User")
        return value or None

    @model_validator(mode="wrap")
    @classmethod
    def _every_problem(cls, data: Any, handler: ModelWrapValidatorHandler[Settings]) -> Settings:
        """The field errors and the cross-setting errors, all in one ValidationError."""
        cross = _cross_setting_errors(data) if isinstance(data, Mapping) else []
        try:
            settings = handler(data)
        except ValidationError as exc:
            if not cross:
                raise
            details = [InitErrorDetails(**e) for e in exc.errors()]  # type: ignore[typeddict-unknown-key]
            raise ValidationError.from_exception_data(exc.title, [*details, *cross]) from None
        if cross:
            raise ValidationError.from_exception_data(cls.__name__, cross)
        return settings

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        yaml_source = _YamlFileSource(settings_cls, os.environ.get("MEDIC_CONFIG"))
        return (init_settings, env_settings, _NotifierSecretsSource(settings_cls), yaml_source)

    @property
    def db_path(self) -> Path:
        """The embedded store: incidents, audit, coordination state."""
        return self.data_dir / "medic.sqlite3"

    @property
    def inbox_path(self) -> Path:
        """The embedded inbox (accepted deliveries, dedup keys, dead letters): a file of its own,
        so that the webhook's commits never wait behind the store's."""
        return self.data_dir / "inbox.sqlite3"

    # -------------------------------------------------------------- groups by concern
    @property
    def http(self) -> HttpGroup:
        return HttpGroup(
            host=self.host,
            port=self.port,
            max_body_bytes=self.max_body_bytes,
            body_read_timeout=self.body_read_timeout,
            keepalive_timeout=self.keepalive_timeout,
            public_url=self.public_url,
            auth_proxy_header=self.auth_proxy_header,
        )

    @property
    def rules(self) -> RulesGroup:
        return RulesGroup(rules_dir=self.rules_dir, playbooks_dir=self.playbooks_dir)

    @property
    def process(self) -> ProcessGroup:
        return ProcessGroup(
            workers=self.workers,
            diagnosis_process=self.diagnosis_process,
            shutdown_grace_seconds=self.shutdown_grace_seconds,
        )

    @property
    def logging(self) -> LoggingGroup:
        return LoggingGroup(log_format=self.log_format, log_level=self.log_level)

    @property
    def retention(self) -> RetentionGroup:
        return RetentionGroup(
            retention_incidents=self.retention_incidents,
            retention_audit=self.retention_audit,
            retention_dead_letters=self.retention_dead_letters,
            purge_interval=self.purge_interval,
        )

    @property
    def diagnosed(self) -> DiagnosedGroup:
        tokens = self.tokens
        return DiagnosedGroup(
            namespaces=tuple(self.namespaces),
            prometheus_url=self.prometheus_url,
            loki_url=self.loki_url,
            ingress_log_selector=self.ingress_log_selector,
            kube=self.kube,
            target_mongo_url=tokens.target_mongo_url,
            target_redis_url=tokens.target_redis_url,
        )

    @property
    def verification(self) -> VerificationGroup:
        return VerificationGroup(verify_deploys=self.verify_deploys, namespaces=tuple(self.namespaces))

    @property
    def remediation(self) -> RemediationGroup:
        return RemediationGroup(
            mode=self.mode,
            namespaces=tuple(self.namespaces),
            global_budget_count=self.global_budget_count,
            global_budget_window_seconds=self.global_budget_window_seconds,
            flap_window_seconds=self.flap_window_seconds,
        )

    @property
    def pipeline(self) -> PipelineGroup:
        return PipelineGroup(
            mode=self.mode,
            collector_timeout_seconds=self.collector_timeout_seconds,
            playbook_deadline_seconds=self.playbook_deadline_seconds,
            evidence_max_bytes=self.evidence_max_bytes,
            max_in_flight=self.max_in_flight,
        )

    @property
    def kube(self) -> KubeGroup:
        return KubeGroup(kube_mode=self.kube_mode, kubeconfig=self.kubeconfig, kube_context=self.kube_context)

    @property
    def links(self) -> LinksGroup:
        return LinksGroup(
            grafana_url=self.grafana_url,
            grafana_prometheus_datasource=self.grafana_prometheus_datasource,
            grafana_loki_datasource=self.grafana_loki_datasource,
            prometheus_external_url=self.prometheus_external_url,
            prometheus_url=self.prometheus_url,
            alertmanager_url=self.alertmanager_url,
            link_margin=self.link_margin,
        )

    @property
    def inbox(self) -> InboxGroup:
        return InboxGroup(
            data_dir=self.data_dir,
            db_path=self.db_path,
            inbox_path=self.inbox_path,
            embedded=self.redis_url is None and self.mongo_url is None,
            dedup_ttl_seconds=self.dedup_ttl_seconds,
            lease_seconds=self.lease_seconds,
            queue_max=self.queue_max,
        )

    @property
    def notify(self) -> NotifyGroup:
        return NotifyGroup(
            notifiers=dict(self.notifiers),
            public_url=self.public_url,
            approval_ttl_seconds=self.approval_ttl_seconds,
        )

    @property
    def tokens(self) -> Tokens:
        return Tokens(
            webhook_token=_reveal(self.webhook_token),
            webhook_username=self.webhook_username,
            webhook_password=_reveal(self.webhook_password),
            admin_token=_reveal(self.admin_token),
            read_token=_reveal(self.read_token),
            approval_secret=_reveal(self.approval_secret),
            redis_url=_reveal(self.redis_url),
            mongo_url=_reveal(self.mongo_url),
            target_redis_url=_reveal(self.target_redis_url),
            target_mongo_url=_reveal(self.target_mongo_url),
            notifiers={name: channel_secrets(channel) for name, channel in self.notifiers.items()},
        )


# --------------------------------------------------------------------------- groups by concern
# Built from a validated Settings (its properties above); frozen, so a group handed to a
# component is what it reads for its whole life.


def _reveal(secret: SecretStr | None) -> str | None:
    return secret.get_secret_value() if secret is not None else None


def channel_secrets(channel: ChannelConfig) -> ChannelSecrets:
    """A notification channel's secrets as text: every ``SecretStr`` setting of its type."""
    return ChannelSecrets(
        **{name: value.get_secret_value() for name, value in channel if isinstance(value, SecretStr)}
    )


@dataclass(frozen=True)
class HttpGroup:
    """The HTTP server: where it listens, what a request may take, the external URL, the auth
    proxy's header (the tokens are in :class:`Tokens`)."""

    host: str
    port: int
    max_body_bytes: int
    body_read_timeout: timedelta
    keepalive_timeout: timedelta
    public_url: str
    auth_proxy_header: str | None


@dataclass(frozen=True)
class RulesGroup:
    """Where the rules and the playbooks are read from."""

    rules_dir: Path
    playbooks_dir: Path


@dataclass(frozen=True)
class ProcessGroup:
    """How a Medic process works: concurrent deliveries, diagnosis in a child process, the
    shutdown grace."""

    workers: int
    diagnosis_process: bool
    shutdown_grace_seconds: float


@dataclass(frozen=True)
class LoggingGroup:
    log_format: str
    log_level: str


@dataclass(frozen=True)
class RetentionGroup:
    """How long Medic keeps its own data (:class:`medic.app.retention.RetentionSettings`)."""

    retention_incidents: timedelta
    retention_audit: timedelta
    retention_dead_letters: timedelta
    purge_interval: timedelta


@dataclass(frozen=True)
class RemediationGroup:
    """The guardrails beyond each rule's own (:class:`medic.remediation.executor.RemediationSettings`)."""

    mode: str
    namespaces: tuple[str, ...]
    global_budget_count: int
    global_budget_window_seconds: int
    flap_window_seconds: int


@dataclass(frozen=True)
class PipelineGroup:
    """What a diagnosis may take (time, evidence, incidents at once) and the global mode its
    decision is capped by."""

    mode: str
    collector_timeout_seconds: float
    playbook_deadline_seconds: float
    evidence_max_bytes: int
    max_in_flight: int


@dataclass(frozen=True)
class KubeGroup:
    """Kubernetes access (:class:`medic.clients.kube.client.KubeSettings`)."""

    kube_mode: str
    kubeconfig: str | None
    kube_context: str | None


@dataclass(frozen=True)
class DiagnosedGroup:
    """The systems Medic diagnoses (:class:`medic.app.backends.Backends`): the namespaces it may
    look into, the clients' addresses, their credentials (from :class:`Tokens`)."""

    namespaces: tuple[str, ...]
    prometheus_url: str | None
    loki_url: str | None
    ingress_log_selector: str
    kube: KubeGroup
    target_mongo_url: str | None = field(repr=False)
    target_redis_url: str | None = field(repr=False)


@dataclass(frozen=True)
class VerificationGroup:
    """Deploy verification: whether the Deployments of ``namespaces`` are watched (None: when
    Kubernetes is configured)."""

    verify_deploys: str | None
    namespaces: tuple[str, ...]


@dataclass(frozen=True)
class LinksGroup:
    """Where on-call's links point (:class:`medic.incidents.report.links.LinkSource`)."""

    grafana_url: str | None
    grafana_prometheus_datasource: str | None
    grafana_loki_datasource: str | None
    prometheus_external_url: str | None
    prometheus_url: str | None
    alertmanager_url: str | None
    link_margin: timedelta


@dataclass(frozen=True)
class InboxGroup:
    """Medic's own state on disk and the inbox's delivery rules."""

    data_dir: Path
    db_path: Path
    inbox_path: Path
    embedded: bool  # no redis_url / mongo_url: the inbox and the store are SQLite files in data_dir
    dedup_ttl_seconds: int
    lease_seconds: float
    queue_max: int


@dataclass(frozen=True)
class NotifyGroup:
    """Notification channels, and the external URL their links and approval pages use."""

    notifiers: dict[str, ChannelConfig]
    public_url: str
    approval_ttl_seconds: int


@dataclass(frozen=True)
class Tokens:
    """Every token, password and credential-bearing URL, unwrapped in this one place (never
    shown by ``repr``: a logged group leaks nothing); ``notifiers``: each notification channel's."""

    webhook_token: str | None = field(repr=False)
    webhook_username: str | None
    webhook_password: str | None = field(repr=False)
    admin_token: str | None = field(repr=False)
    read_token: str | None = field(repr=False)
    approval_secret: str | None = field(repr=False)
    redis_url: str | None = field(repr=False)  # Medic's own backends
    mongo_url: str | None = field(repr=False)
    target_redis_url: str | None = field(repr=False)  # the diagnosed systems
    target_mongo_url: str | None = field(repr=False)
    notifiers: dict[str, ChannelSecrets]  # by channel name (ChannelSecrets shows no value)


if TYPE_CHECKING:  # the groups satisfy the Protocols of the lower layers (checked by mypy)
    from medic.app.retention import RetentionSettings
    from medic.clients.kube.client import KubeSettings
    from medic.incidents.report.links import LinkSource
    from medic.remediation.executor import RemediationSettings

    def _protocols(s: Settings) -> tuple[RemediationSettings, KubeSettings, LinkSource, RetentionSettings]:
        return s.remediation, s.kube, s.links, s.retention


# Settings that only make sense together: (setting, the one it needs, why). (Redis without MongoDB
# is refused by medic.app.backend_select.open_backend.)
_PAIRS = (
    ("webhook_password", "webhook_username", "a password without a user name leaves the webhook open"),
    ("webhook_username", "webhook_password", "basic auth needs both"),
)


def _cross_setting_errors(data: Mapping[str, Any]) -> list[InitErrorDetails]:
    def is_set(name: str) -> bool:
        return data.get(name) is not None

    return [
        InitErrorDetails(
            type=PydanticCustomError(
                "settings_pair", "is set without {other}: {why}", {"other": other, "why": why}
            ),
            loc=(name,),
            input="",  # never the value: it may be a secret
        )
        for name, other, why in _PAIRS
        if is_set(name) and not is_set(other)
    ]


class _Origins:
    """Where each setting came from, to name it as the user wrote it: the argument, the env var,
    or the config file's key and line (precedence as in :meth:`Settings.settings_customise_sources`)."""

    def __init__(
        self, overrides: Mapping[str, Any], environ: Mapping[str, str], config_file: str | None
    ) -> None:
        self.overrides = {k.lower() for k in overrides}
        self.environ = {k.upper() for k in environ}
        self.file = config_file
        self.doc: YamlDoc | None = None
        self.file_keys: dict[str, str] = {}  # lower-case key -> the key as written in the file
        if config_file:
            try:
                self.doc = load_yaml_file(Path(config_file))
            except ConfigError:
                self.doc = None
        if self.doc is not None and isinstance(self.doc.data, dict):
            self.file_keys = {str(k).lower(): str(k) for k in self.doc.data}

    def env_vars(self, loc: tuple[str | int, ...]) -> list[str]:
        name = str(loc[0])
        found = []
        if name == "notifiers" and len(loc) >= 3:
            found.append(env_name(str(loc[1]), str(loc[2])))
        if name.lower() == "kubeconfig":
            found += ["MEDIC_KUBECONFIG", "KUBECONFIG"]
        found.append("MEDIC_" + name.upper())
        return [v for v in found if v in self.environ]

    def error(self, err: Mapping[str, Any]) -> ConfigError:
        loc: tuple[str | int, ...] = tuple(err["loc"])
        if len(loc) >= 3 and loc[0] == "notifiers" and loc[2] in ("slack", "webhook", "grafana"):
            loc = loc[:2] + loc[3:]  # the union's tag is not a key the user wrote
        name = str(loc[0]) if loc else ""
        dotted = ".".join(str(p) for p in loc) or None
        if name.lower() in self.overrides:
            return ConfigError(_message(err, name, name), field=dotted)
        env = self.env_vars(loc) if loc else []
        if env:
            inner = (
                ".".join(str(p) for p in loc[1:] if isinstance(p, str))
                if env[0].endswith(name.upper())
                else ""
            )
            return ConfigError(_message(err, name, "MEDIC_{}"), env=env[0], field=inner or None)
        if self.doc is not None and name.lower() in self.file_keys:
            key_path = (self.file_keys[name.lower()], *loc[1:])
            return ConfigError(
                _message(err, name, "{}"),
                file=self.file,
                line=self.doc.line_of(key_path),
                field=".".join(str(p) for p in key_path),
            )
        return ConfigError(_message(err, name, "{}"), field=dotted)


def _message(err: Mapping[str, Any], name: str, style: str) -> str:
    """The error's text; ``style`` formats another setting's name (``MEDIC_{}`` for env vars)."""
    kind = err["type"]
    if kind == "extra_forbidden" and len(err["loc"]) > 1:
        return "unknown field"
    if kind == "extra_forbidden":
        close = difflib.get_close_matches(name.lower(), list(Settings.model_fields), n=1, cutoff=0.6)
        return "unknown setting" + (f"; did you mean {close[0]!r}?" if close else "")
    if kind == "settings_pair":
        ctx = err.get("ctx") or {}
        other = str(ctx.get("other", ""))
        other = style.format(other.upper() if style.startswith("MEDIC_") else other)
        return f"is set without {other}: {ctx.get('why', '')}"
    return str(err["msg"]).removeprefix("Value error, ")


def load_settings(**overrides: Any) -> Settings:
    """Build and validate the settings; raise :class:`ConfigErrors` naming every invalid setting
    where it was set (the argument, the env var, or the config file's key and line)."""
    config_file = os.environ.get("MEDIC_CONFIG") or None
    try:
        return Settings(**overrides)
    except SettingsError as exc:  # a value pydantic-settings could not decode (e.g. MEDIC_NOTIFIERS)
        raise ConfigError(str(exc), file=config_file or "environment") from exc
    except ValidationError as exc:
        origins = _Origins(overrides, os.environ, config_file)
        errors = [origins.error(e) for e in exc.errors(include_url=False, include_input=False)]
        raise ConfigErrors(errors) from exc


def ensure_data_dir(path: Path) -> None:
    """Create the data dir (0700) if needed and prove it writable, before any store opens it:
    a read-only or impossible path is a configuration error naming the setting, not a traceback."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path, prefix=".medic-write-check-"):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ConfigError(
            f"cannot create or write the data dir {str(path)!r}: {reason}; "
            "point MEDIC_DATA_DIR (data_dir) at a writable directory",
            field="data_dir",
        ) from exc


# MEDIC_* variables that are not settings but are read elsewhere (or by the tests)
_OTHER_ENV_PREFIXES = ("MEDIC_CONFIG", "MEDIC_NOTIFY_", "MEDIC_TEST_", "MEDIC_INTERNAL_")


def unknown_env(environ: Mapping[str, str] | None = None) -> list[tuple[str, str | None]]:
    """``MEDIC_*`` variables that name no setting, each with the closest setting's variable (a
    typo such as ``MEDIC_WEBHOK_TOKEN`` would otherwise leave the webhook open without a word)."""
    environ = os.environ if environ is None else environ
    known = {"MEDIC_" + name.upper(): name for name in Settings.model_fields}
    out: list[tuple[str, str | None]] = []
    for name in sorted(environ):
        upper = name.upper()
        if not upper.startswith("MEDIC_") or upper in known or upper.startswith(_OTHER_ENV_PREFIXES):
            continue
        close = difflib.get_close_matches(upper, list(known), n=1, cutoff=0.8)
        out.append((name, close[0] if close else None))
    return out
