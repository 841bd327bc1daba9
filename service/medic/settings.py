"""Medic's settings: one typed object, from ``MEDIC_*`` env vars and an optional YAML file.

Precedence (highest first): explicit keyword arguments, environment variables, the YAML file named by
``MEDIC_CONFIG``, defaults. Nothing is read at import time: call :func:`load_settings`.
"""

from __future__ import annotations

import os
import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict
from pydantic_settings.exceptions import SettingsError

from medic.durations import Duration
from medic.errors import ConfigError
from medic.notify.config import ChannelConfig, check_channel_names, secrets_from_env

Mode = Literal["off", "dry-run", "enforce"]

PACKAGE_DIR = Path(__file__).resolve().parent


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
    """Every setting of Medic. Env var = ``MEDIC_`` + upper-case field name (README lists them)."""

    model_config = SettingsConfigDict(env_prefix="MEDIC_", extra="forbid", frozen=True)

    # HTTP
    host: str = "0.0.0.0"
    port: int = Field(8080, ge=0, le=65535)
    max_body_bytes: int = Field(1024 * 1024, ge=1024)
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
    public_url: str = ""

    # intake auth (bearer and/or basic; required when set)
    webhook_token: SecretStr | None = None
    webhook_username: str | None = None
    webhook_password: SecretStr | None = None
    admin_token: SecretStr | None = None

    # behaviour
    mode: Mode = "dry-run"
    rules_dir: Path = Field(default_factory=lambda: _default_config_dir("rules"))
    playbooks_dir: Path = Field(default_factory=lambda: _default_config_dir("playbooks"))
    namespaces: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["playcode"])
    workers: int = Field(4, ge=1, le=256)
    dedup_ttl_seconds: int = Field(7 * 24 * 3600, ge=60)
    playbook_deadline_seconds: float = Field(60.0, gt=0)
    collector_timeout_seconds: float = Field(15.0, gt=0)
    evidence_max_bytes: int = Field(256 * 1024, ge=1024)

    # remediation guardrails beyond each rule's own cooldown and budget
    global_budget_count: int = Field(3, ge=0)
    global_budget_window_seconds: int = Field(3600, ge=60)
    flap_window_seconds: int = Field(7200, ge=0)

    # embedded state (and, with the production backends, the local fail-safe spool)
    data_dir: Path = Path("./data")

    # Medic's own production backends (not the systems it diagnoses): set both or neither.
    redis_url: SecretStr | None = None  # inbox stream, dedup, locks, action ledger, kill switch
    mongo_url: SecretStr | None = None  # incidents (bundles) and the audit log
    lease_seconds: float = Field(30.0, ge=0.2, le=3600)  # a dead replica's work moves on after it
    queue_max: int = Field(100_000, ge=10)  # accepted, unfinished deliveries; beyond it intake answers 503
    max_in_flight: int = Field(16, ge=1, le=1024)  # incidents one replica works on at once
    incident_retention_days: int = Field(90, ge=0)  # resolved incidents kept in MongoDB (0: forever)
    shutdown_grace_seconds: float = Field(10.0, ge=0, le=600)  # to finish in-flight work, then hand it back

    # diagnosed systems
    prometheus_url: str | None = None
    loki_url: str | None = None
    target_mongo_url: SecretStr | None = None
    target_redis_url: SecretStr | None = None

    # Kubernetes: KUBECONFIG is honoured as kubectl does; "off" disables Kubernetes access.
    kube_mode: Literal["auto", "in-cluster", "kubeconfig", "off"] = "auto"
    kubeconfig: str | None = Field(
        default=None, validation_alias=AliasChoices("MEDIC_KUBECONFIG", "KUBECONFIG", "kubeconfig")
    )
    kube_context: str | None = None

    # on-call: notification channels, incident pages, approvals (README "On-call")
    notifiers: dict[str, ChannelConfig] = Field(default_factory=dict)
    read_token: SecretStr | None = None  # incident pages and read API; required when set
    auth_proxy_header: str | None = None  # e.g. X-Forwarded-User, set by a trusted auth proxy
    approval_secret: SecretStr | None = None  # HMAC key of approval tokens; unset: kept in the store
    approval_ttl_seconds: int = Field(3600, ge=60, le=7 * 24 * 3600)

    # logging
    log_format: Literal["auto", "json", "console"] = "auto"
    log_level: Literal["debug", "info", "warning", "error"] = "info"

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

    @field_validator("read_token", "approval_secret")
    @classmethod
    def _check_secret_length(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 16:
            raise ValueError("use at least 16 characters (e.g. openssl rand -hex 32)")
        return value

    @field_validator("auth_proxy_header")
    @classmethod
    def _check_header(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[A-Za-z0-9-]+", value):
            raise ValueError("must be an HTTP header name, e.g. X-Forwarded-User")
        return value or None

    @field_validator("prometheus_url", "loki_url", "public_url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        if value and not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/") if value else value

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
        return self.data_dir / "medic.sqlite3"


def load_settings(**overrides: Any) -> Settings:
    """Build and validate the settings; raise ConfigError naming the setting on failure."""
    try:
        return Settings(**overrides)
    except SettingsError as exc:
        raise ConfigError(str(exc), file=os.environ.get("MEDIC_CONFIG") or "environment") from exc
    except ValidationError as exc:
        first = exc.errors()[0]
        name = ".".join(str(p) for p in first["loc"])
        env = "MEDIC_" + name.split(".")[0].upper() if name else ""
        source = os.environ.get("MEDIC_CONFIG") or "environment"
        raise ConfigError(f"{first['msg']} (env {env})", file=source, field=name) from exc
