"""The Alertmanager webhook payload, version 4 (all fields Alertmanager sends)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from medic.domain.alert import Alert as DomainAlert
from medic.domain.alert import AlertStatus


def _timestamp(value: Any) -> Any:
    """Alertmanager sends RFC 3339 strings; a bare number is a client bug, not a time."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        raise ValueError("expected an RFC 3339 timestamp string")
    return value


Timestamp = Annotated[datetime, BeforeValidator(_timestamp)]


class Alert(DomainAlert):
    """One alert as Alertmanager sends it: unknown fields kept, times and labels checked. The
    pipeline works on :meth:`to_domain`'s alert, never on this wire model."""

    model_config = ConfigDict(extra="allow", frozen=True)

    def to_domain(self) -> DomainAlert:
        """Medic's own alert (the fields it knows, already validated: no second validation)."""
        return DomainAlert.model_construct(**{name: getattr(self, name) for name in DomainAlert.model_fields})

    startsAt: Timestamp
    endsAt: Timestamp | None = None

    @field_validator("labels")
    @classmethod
    def _labels_not_empty(cls, value: dict[str, str]) -> dict[str, str]:
        if not value:
            raise ValueError("an alert needs at least one label")
        return value


class WebhookPayload(BaseModel):
    """Alertmanager's webhook body. Unknown extra fields are kept (forward compatible)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    version: Literal["4"]
    groupKey: str
    truncatedAlerts: int = Field(0, ge=0)
    status: AlertStatus
    receiver: str
    groupLabels: dict[str, str] = Field(default_factory=dict)
    commonLabels: dict[str, str] = Field(default_factory=dict)
    commonAnnotations: dict[str, str] = Field(default_factory=dict)
    externalURL: str = ""
    alerts: list[Alert] = Field(min_length=1)


def unstorable_field(raw: Any, path: str = "") -> tuple[str, str] | None:
    """The first place in a parsed delivery that no backend can store, as (field, why), or None.

    Every store writes UTF-8 (SQLite text, Redis, BSON) and BSON names are C strings, so a lone
    UTF-16 surrogate (JSON lets ``"\\ud800"`` through, Python's parser keeps it) is refused
    anywhere, and a NUL in a name (label, annotation or field). Checked at intake so that such a
    delivery is a 400 for the whole delivery, never an accepted alert that later fails to store.
    """
    if isinstance(raw, str):
        why = _unstorable_text(raw)
        return (path, why) if why else None
    if isinstance(raw, dict):
        for key, value in raw.items():
            where = f"{path}.{key}" if path else str(key)
            if isinstance(key, str) and (why := _unstorable_text(key) or _nul_in_name(key)):
                return (f"{path}[name]" if path else "[name]", f"{why} in the name {key!r}")
            if found := unstorable_field(value, where):
                return found
    elif isinstance(raw, list):
        for index, value in enumerate(raw):
            if found := unstorable_field(value, f"{path}.{index}" if path else str(index)):
                return found
    return None


def _unstorable_text(text: str) -> str:
    if text.isascii():
        return ""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"a lone surrogate (\\u{ord(text[exc.start]):04x}) is not valid Unicode and cannot be stored"
    return ""


def _nul_in_name(name: str) -> str:
    return "a NUL character is not allowed" if "\x00" in name else ""
