"""When the ConfigMaps and Secrets the pod template reads last changed, against the crash. Pure.

``k8s.rollout_history`` names every ConfigMap and Secret the template reads (``config_refs``) and
reads the ConfigMaps' metadata (``config_maps``: never their data). A ConfigMap's last change is
its newest ``managedFields`` time, else its ``creationTimestamp``. Against the window the crash
finding already uses for the Deployment's own writes (from when the current revision became
current, :attr:`CrashFacts.window_start`) and the first crash seen:

- changed inside the window, before the first crash: a **leading suspect**, named first (the
  pods read it under an unchanged revision);
- changed after the first crash: said, not a suspect;
- last changed before the window: "unchanged since …";
- missing (404): said;
- not read (403, a failed read, beyond the bound, a Secret): its time is **unknown**, and the
  finding says so rather than implying nothing changed. Secrets are never read: reading a
  Secret's metadata takes the right to read its data, which Medic's role is not granted.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from medic.collectors.k8s.workload_output import ConfigMapMeta, ConfigRef, RolloutHistoryOutput
from medic.domain.rollout import iso, minutes, parse_time

State = Literal["suspect", "changed_after_crash", "unchanged", "missing", "unknown"]
# no "word: value" here: redaction would take what follows a "Secrets:" for a secret
SECRET_WHY = (
    "Medic does not read Secrets, as reading a Secret's metadata takes the right to read its data, "
    "which Medic's role is not granted"
)
_UNKNOWN_WHY = {
    "forbidden": "403 forbidden: Medic's role cannot get this ConfigMap",
    "not_read": "not read: only the first ConfigMaps the template reads are read",
}
_ORDER: dict[str, int] = {"suspect": 0, "changed_after_crash": 1, "unchanged": 2, "missing": 3, "unknown": 4}


@dataclass(frozen=True)
class ConfigChange:
    """One ConfigMap or Secret the template reads, as the crash finding states it."""

    kind: str  # ConfigMap, Secret
    name: str
    via: str
    state: State
    at: datetime | None = None  # its last change (None: unknown or missing)
    manager: str | None = None
    operation: str | None = None
    why: str = ""  # why its last change is unknown
    text: str = ""

    @property
    def suspect(self) -> bool:
        return self.state == "suspect"

    def row(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "via": self.via,
            "state": self.state,
            "changed_at": iso(self.at),
            "manager": self.manager,
            "operation": self.operation,
            "note": self.text,
        }


def config_metas(history: RolloutHistoryOutput) -> dict[str, ConfigMapMeta]:
    """``k8s.rollout_history``'s ``config_maps`` by name (none in a bundle stored before them)."""
    return {m.name: m for m in history.config_maps}


def _last_change(m: ConfigMapMeta) -> tuple[datetime | None, str | None, str | None]:
    """(time, manager, operation) of the newest write, else (creationTimestamp, None, None)."""
    dated = [(t, w) for w in m.writes if (t := parse_time(w.time)) is not None]
    if dated:
        when, w = max(dated, key=lambda tw: tw[0])
        return when, w.manager, w.operation
    return parse_time(m.created), None, None


def _relative(at: datetime, first_crash: datetime | None, now: datetime) -> str:
    if first_crash is None:
        return f"{minutes(now - at)} ago"
    if at <= first_crash:
        return f"{minutes(first_crash - at)} before the first crash"
    return f"{minutes(at - first_crash)} after the first crash"


def _known(
    kind: str,
    name: str,
    via: str,
    m: ConfigMapMeta,
    start: datetime,
    first_crash: datetime | None,
    now: datetime,
) -> ConfigChange:
    at, manager, operation = _last_change(m)
    if at is None:
        return _unknown(kind, name, via, "no write time or creationTimestamp in its metadata")
    by = f" (by {manager}, {operation})" if manager else " (created)"
    if at <= start:
        state: State = "unchanged"
        text = f"{kind} {name} unchanged since {iso(at)} ({_relative(at, first_crash, now)})"
    elif first_crash is not None and at > first_crash:
        state, text = "changed_after_crash", f"{kind} {name} changed {_relative(at, first_crash, now)}{by}"
    else:
        state, text = "suspect", f"{kind} {name} changed {_relative(at, first_crash, now)}{by}"
    return ConfigChange(kind, name, via, state, at, manager, operation, text=text)


def _unknown(kind: str, name: str, via: str, why: str) -> ConfigChange:
    return ConfigChange(
        kind, name, via, "unknown", why=why, text=f"last change of {kind} {name} unknown ({why})"
    )


def config_change(
    ref: ConfigRef,
    metas: Mapping[str, ConfigMapMeta],
    start: datetime,
    first_crash: datetime | None,
    now: datetime,
) -> ConfigChange:
    """What is known of one ``config_refs`` entry's last change."""
    kind, name, via = ref.kind, ref.name, ref.via
    if kind != "ConfigMap":
        return _unknown(kind, name, via, SECRET_WHY)
    m = metas.get(name)
    if m is None:
        return _unknown(kind, name, via, "not read")
    if m.status == "missing":
        return ConfigChange(kind, name, via, "missing", text=f"{kind} {name} does not exist (404)")
    if m.status == "error":
        return _unknown(kind, name, via, f"the read failed: {(m.error or '')[:160]}".rstrip(": "))
    if m.status != "ok":
        return _unknown(kind, name, via, _UNKNOWN_WHY.get(m.status, m.status))
    return _known(kind, name, via, m, start, first_crash, now)


def config_changes(
    refs: Iterable[ConfigRef],
    metas: Mapping[str, ConfigMapMeta],
    start: datetime,
    first_crash: datetime | None,
    now: datetime,
) -> list[ConfigChange]:
    """Every referenced ConfigMap and Secret: suspects first (the latest change first), then
    changes after the first crash, unchanged, missing, unknown."""
    found = [config_change(r, metas, start, first_crash, now) for r in refs]
    latest_first = sorted(found, key=lambda c: c.at.timestamp() if c.at else 0.0, reverse=True)
    return sorted(latest_first, key=lambda c: _ORDER[c.state])


def unknown_statements(changes: Iterable[ConfigChange]) -> list[str]:
    """The objects whose last change is unknown, one statement per reason ("last change of Secrets
    a, b unknown (…)"; never "name: …", which redaction would mask after a Secret's name)."""
    groups: dict[tuple[str, str], list[str]] = {}
    for c in changes:
        if c.state == "unknown":
            groups.setdefault((c.kind, c.why), []).append(c.name)
    return [
        f"last change of {kind}{'s' if len(names) > 1 else ''} {', '.join(names)} unknown ({why})"
        for (kind, why), names in groups.items()
    ]
