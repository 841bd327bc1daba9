"""A Deployment's rollout timeline: when each revision became current, and how we know. Pure.

A ReplicaSet's ``creationTimestamp`` is when its template was *first* rolled out. A rollback (by
Medic or a human) or a re-deploy of an older template reuses the old ReplicaSet: the controller
gives it the next revision number and keeps the numbers it had before in its
``deployment.kubernetes.io/revision-history`` annotation, but its creation time stays as it was.
So the time a revision became current is taken, in this order, from:

1. Medic's own rollback annotation on the Deployment (:data:`MEDIC_ROLLBACK`), when the template it
   restored is the current one (known from the cluster, whatever Medic's ledger says);
2. the ReplicaSet's ``creationTimestamp`` when it was never reused (no revision-history);
3. the deployment controller's ``ScalingReplicaSet`` events: the last time it scaled that
   ReplicaSet up after scaling another one (events expire after about an hour);
4. the Deployment's ``Progressing`` condition naming the ReplicaSet (its ``lastUpdateTime``: the
   revision became current at that time or before).

When none applies the time is unknown, and an unknown time is never "recent".
Revision numbers grow in the order revisions became current, so the entries sorted by revision
are oldest-first and the previous revision is the one right below the current one.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

REVISION = "deployment.kubernetes.io/revision"  # the Deployment controller's revision number
REVISION_HISTORY = "deployment.kubernetes.io/revision-history"  # earlier numbers of a reused ReplicaSet
MEDIC_ROLLBACK = "medic.playcode.gg/rollback"  # JSON: from/to revision and template hash, at, incident
MEDIC_ROLLED_BACK = "medic.playcode.gg/rolled-back"  # human-readable: "from revision 30 to 29"

SOURCE_MEDIC = "Medic's rollback annotation"
SOURCE_CREATED = "ReplicaSet creationTimestamp (never reused)"
SOURCE_EVENT = "ScalingReplicaSet event"
SOURCE_PROGRESSING = "Progressing condition lastUpdateTime (at or before)"
SOURCE_UNKNOWN = "unknown"

# A revision that became current this recently counts as "the recent change" for a verdict.
RECENT_ROLLOUT = timedelta(hours=2)
# A previous revision that served this long before it was replaced counts as healthy.
MIN_SERVED = timedelta(minutes=10)

_SCALED_UP = re.compile(r"Scaled up replica set (?P<rs>\S+?)(?: from (?P<before>\d+))? to (?P<after>\d+)")
_LEGACY = re.compile(r"from revision (?P<src>\d+) to (?P<dst>\d+)")


def parse_time(raw: Any) -> datetime | None:
    if not raw:
        return None
    try:
        return datetime.fromisoformat(str(raw).replace("Z", "+00:00"))
    except ValueError:
        return None


def iso(when: datetime | None) -> str | None:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ") if when else None


def short_image(image: str) -> str:
    """``registry.example.com/team/playcode-app:v2`` → ``playcode-app:v2`` (a digest is cut to 12)."""
    name = image.rsplit("/", 1)[-1]
    if "@sha256:" in name:
        base, digest = name.split("@sha256:", 1)
        return f"{base}@{digest[:12]}"
    return name


def short_images(images: Iterable[str]) -> str:
    return ", ".join(short_image(i) for i in images) or "?"


def minutes(delta: timedelta) -> str:
    total = int(delta.total_seconds() // 60)
    if total < 120:
        return f"{total} min"
    if total < 48 * 60:
        return f"{total // 60} h"
    return f"{total // (24 * 60)} days"


@dataclass(frozen=True)
class MedicRollback:
    """A rollback Medic made, as it wrote it on the Deployment."""

    from_revision: int
    to_revision: int
    from_hash: str = ""
    to_hash: str = ""
    at: datetime | None = None
    incident: str = ""
    as_revision: int = 0  # the revision number the controller gives the restored template

    def describe(self) -> str:
        when = f" at {iso(self.at)}" if self.at else ""
        by = f" (incident {self.incident})" if self.incident else ""
        return f"Medic rolled back from revision {self.from_revision} to {self.to_revision}{when}{by}"

    def annotation(self) -> str:
        return json.dumps(
            {
                "from": self.from_revision,
                "to": self.to_revision,
                "from_hash": self.from_hash,
                "to_hash": self.to_hash,
                "at": iso(self.at),
                "incident": self.incident,
                "as": self.as_revision,
            },
            sort_keys=True,
        )


def medic_rollback(annotations: Mapping[str, Any]) -> MedicRollback | None:
    """Medic's rollback annotation (or the older human-readable one), or None."""
    raw = annotations.get(MEDIC_ROLLBACK)
    if raw:
        try:
            data = json.loads(str(raw))
            return MedicRollback(
                from_revision=int(data.get("from") or 0),
                to_revision=int(data.get("to") or 0),
                from_hash=str(data.get("from_hash") or ""),
                to_hash=str(data.get("to_hash") or ""),
                at=parse_time(data.get("at")),
                incident=str(data.get("incident") or ""),
                as_revision=int(data.get("as") or 0),
            )
        except (ValueError, TypeError, AttributeError):
            pass
    m = _LEGACY.search(str(annotations.get(MEDIC_ROLLED_BACK) or ""))
    return MedicRollback(int(m["src"]), int(m["dst"])) if m else None


@dataclass(frozen=True)
class TimelineEntry:
    revision: int
    replicaset: str
    template_hash: str
    images: tuple[str, ...]
    became_current: datetime | None
    source: str  # how the time is known (SOURCE_*), or why it is not
    reused_from: tuple[int, ...] = ()  # earlier revision numbers of the same template
    change_cause: str = ""
    ready: int = 0
    current: bool = False
    restored_by_medic: bool = False  # Medic's rollback made this revision current
    rolled_back_by_medic: bool = False  # Medic rolled back away from this revision

    def row(self) -> dict[str, Any]:
        """What the bundle, the report and the page show."""
        return {
            "revision": self.revision,
            "images": [short_image(i) for i in self.images],
            "became_current": iso(self.became_current),
            "source": self.source,
            "reused_from": list(self.reused_from),
            "change_cause": self.change_cause,
            "current": self.current,
            "note": self.note(),
        }

    def note(self) -> str:
        parts = []
        if self.reused_from:
            parts.append(f"re-deploy of revision {', '.join(str(r) for r in self.reused_from)}")
        if self.restored_by_medic:
            parts.append("restored by Medic")
        if self.rolled_back_by_medic:
            parts.append("Medic rolled back from it")
        return "; ".join(parts)


@dataclass(frozen=True)
class Timeline:
    entries: tuple[TimelineEntry, ...]  # oldest first
    medic: MedicRollback | None = None  # Medic's latest rollback, read from the cluster

    @property
    def current(self) -> TimelineEntry | None:
        return next((e for e in reversed(self.entries) if e.current), None)

    @property
    def previous(self) -> TimelineEntry | None:
        cur = self.current
        if cur is None:
            return None
        older = [e for e in self.entries if e.revision < cur.revision]
        return older[-1] if older else None

    def of(self, revision: int) -> TimelineEntry | None:
        return next((e for e in self.entries if e.revision == revision), None)

    def age(self, now: datetime) -> timedelta | None:
        cur = self.current
        return now - cur.became_current if cur and cur.became_current else None

    def recent(self, now: datetime, window: timedelta = RECENT_ROLLOUT) -> bool:
        """Whether the current revision became current within ``window``; unknown is not recent."""
        age = self.age(now)
        return age is not None and age <= window

    def served(self, entry: TimelineEntry, now: datetime) -> timedelta | None:
        """How long ``entry`` was current: until the next revision became current (or now)."""
        if entry.became_current is None:
            return None
        later = [e for e in self.entries if e.revision > entry.revision]
        if not later:
            return now - entry.became_current
        end = later[0].became_current
        return end - entry.became_current if end else None

    def rows(self) -> list[dict[str, Any]]:
        return [e.row() for e in self.entries]

    def when(self, entry: TimelineEntry | None, now: datetime) -> str:
        """'24 min ago (ScalingReplicaSet event)' or 'at an unknown time (…)'."""
        if entry is None:
            return "at an unknown time"
        if entry.became_current is None:
            return f"at an unknown time ({entry.source})"
        return f"{minutes(now - entry.became_current)} ago ({entry.source})"


# ---------------------------------------------------------------------- building


def _scale_up_switches(events: Iterable[Mapping[str, Any]]) -> dict[str, datetime]:
    """ReplicaSet name → the last time the controller scaled it up after scaling another one."""
    ups: list[tuple[datetime, int, str]] = []
    for e in events:
        if e.get("reason") != "ScalingReplicaSet":
            continue
        m = _SCALED_UP.search(str(e.get("message") or ""))
        if not m:
            continue
        # "from 0 to N" repeated is aggregated into one event: its last time is the last switch
        raw = e.get("last_seen") if m["before"] == "0" else e.get("first_seen") or e.get("last_seen")
        when = parse_time(raw)
        if when is not None:
            rv = str(e.get("resource_version") or "")
            ups.append((when, int(rv) if rv.isdigit() else 0, m["rs"]))
    switches: dict[str, datetime] = {}
    active = ""
    # by time, then (same second) in the order the API server stored them; then as given
    for when, _, rs in sorted(ups, key=lambda u: (u[0], u[1])):
        if rs != active:
            switches[rs] = when
            active = rs
    return switches


def _progressing_time(conditions: Iterable[Mapping[str, Any]], replicaset: str) -> datetime | None:
    for c in conditions:
        if c.get("type") != "Progressing":
            continue
        if c.get("reason") in ("NewReplicaSetAvailable", "ReplicaSetUpdated") and (
            f'"{replicaset}"' in str(c.get("message") or "")
        ):
            return parse_time(c.get("last_update"))
    return None


def _history(raw: Any) -> tuple[int, ...]:
    if isinstance(raw, list | tuple):
        return tuple(int(x) for x in raw if str(x).isdigit())
    return tuple(int(x) for x in str(raw or "").split(",") if x.strip().isdigit())


def _when(
    rev: Mapping[str, Any],
    reused: tuple[int, ...],
    restored: MedicRollback | None,
    switches: Mapping[str, datetime],
    conditions: Sequence[Mapping[str, Any]],
) -> tuple[datetime | None, str]:
    name = str(rev.get("replicaset") or "")
    if restored is not None and restored.at is not None:
        return restored.at, SOURCE_MEDIC
    created = parse_time(rev.get("created"))
    if not reused and created is not None:
        return created, SOURCE_CREATED
    if name in switches:
        return switches[name], SOURCE_EVENT
    if rev.get("current") and (t := _progressing_time(conditions, name)) is not None:
        return t, SOURCE_PROGRESSING
    why = f"ReplicaSet reused from revision {', '.join(map(str, reused))}" if reused else "no creation time"
    return None, f"{SOURCE_UNKNOWN}: {why}, and no event or condition names the time"


def _restored(medic: MedicRollback, thash: str, number: int, reused: tuple[int, ...]) -> bool:
    """Whether Medic's rollback made this revision current. The revision number it was given
    tells it apart from a later re-deploy of the same template (which gets a higher number)."""
    if medic.as_revision and medic.as_revision != number:
        return False
    if medic.to_hash:
        return medic.to_hash == thash
    return medic.to_revision in (number, *reused)


def _left(medic: MedicRollback, thash: str, number: int) -> bool:
    return medic.from_hash == thash if medic.from_hash else medic.from_revision == number


def build_timeline(history: Mapping[str, Any] | None, events: Iterable[Mapping[str, Any]] = ()) -> Timeline:
    """The timeline from ``k8s.rollout_history``'s data (deployment + revisions, with their
    ``scaling_events``) and any other events (``k8s.events``); an empty one without history."""
    if not history:
        return Timeline(())
    dep = history.get("deployment") or {}
    conditions = list(dep.get("conditions") or [])
    medic = medic_rollback(dep.get("annotations") or {})
    switches = _scale_up_switches([*(history.get("scaling_events") or []), *events])
    current_rev = int(dep.get("revision") or 0)
    entries: list[TimelineEntry] = []
    for rev in sorted(history.get("revisions") or [], key=lambda r: int(r.get("revision") or 0)):
        number = int(rev.get("revision") or 0)
        reused = _history(rev.get("revision_history"))
        thash = str(rev.get("pod_template_hash") or "")
        is_current = bool(rev.get("current")) or (current_rev != 0 and number == current_rev)
        mine = medic is not None and is_current and _restored(medic, thash, number, reused)
        restored = medic if mine else None
        away = medic is not None and not is_current and _left(medic, thash, number)
        when, source = _when(rev, reused, restored, switches, conditions)
        entries.append(
            TimelineEntry(
                revision=number,
                replicaset=str(rev.get("replicaset") or ""),
                template_hash=thash,
                images=tuple(str(i) for i in rev.get("images") or []),
                became_current=when,
                source=source,
                reused_from=reused,
                change_cause=str(rev.get("change_cause") or ""),
                ready=int(rev.get("ready") or 0),
                current=is_current,
                restored_by_medic=restored is not None,
                rolled_back_by_medic=away,
            )
        )
    return Timeline(tuple(entries), medic)


def healthy_before(timeline: Timeline, entry: TimelineEntry | None, now: datetime) -> tuple[bool, str]:
    """Whether ``entry`` (a previous revision) is known to have run healthy, and why (or why not).
    A revision Medic rolled back away from never is, whatever its age."""
    if entry is None:
        return False, "there is no previous revision"
    if entry.rolled_back_by_medic:
        return False, (
            f"revision {entry.revision} is the one Medic rolled back from"
            + (f" ({timeline.medic.describe()})" if timeline.medic else "")
        )
    if entry.ready > 0:
        return True, f"revision {entry.revision} still serves with {entry.ready} ready pod(s)"
    served = timeline.served(entry, now)
    if served is not None and served >= MIN_SERVED:
        return True, f"revision {entry.revision} served for {minutes(served)} before it was replaced"
    how = f"served {minutes(served)}" if served is not None else "served for an unknown time"
    return False, (
        f"revision {entry.revision} has no ready pod and {how} "
        f"(less than {minutes(MIN_SERVED)} is no evidence it was healthy)"
    )
