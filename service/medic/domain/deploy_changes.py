"""Which change to a Deployment is a deploy: a new revision became current. Pure.

The deployment controller numbers every template it rolls out in the Deployment's
``deployment.kubernetes.io/revision`` annotation. The number rises when a new template is
rolled out and when an older one is restored (``kubectl rollout undo`` gives the old ReplicaSet
the next number): both are deploys, a human's undo included. It does not rise for a scale, a
status update, a label or annotation edit, or a template change of a paused Deployment (that
one rises when the Deployment is resumed: the resume is the deploy).

:func:`new_revision` compares what was known of a Deployment (``before``: None when it was not
known, e.g. created since) with what it is now (``after``) and answers a :class:`RevisionChange`
when the revision rose, except:

- Medic's own rollback: Medic writes :data:`~medic.domain.rollout.MEDIC_ROLLBACK` with the
  revision number the controller gives the restored template (``as``), so the rise to exactly
  that number is Medic's (a later deploy has a higher number, even if the annotation stays);
  an older annotation without that number is Medic's when this very change wrote it;
- a paused Deployment (nothing is rolled out);
- a Deployment being deleted (``deletionTimestamp`` set).

A Deployment recreated under the same name (another ``uid``) counts as not known before.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from medic.domain.rollout import MEDIC_ROLLBACK, MEDIC_ROLLED_BACK, REVISION, medic_rollback, parse_time

CHANGE_CAUSE = "kubernetes.io/change-cause"
# Progressing condition reasons that name the new ReplicaSet of a rollout in progress
NEW_REPLICASET_REASONS = frozenset({"NewReplicaSetCreated", "FoundNewReplicaSet", "ReplicaSetUpdated"})
# what :func:`new_revision` reads of ``before``: all :func:`remembered` keeps
_BEFORE_ANNOTATIONS = (REVISION, MEDIC_ROLLBACK, MEDIC_ROLLED_BACK)


@dataclass(frozen=True)
class RevisionChange:
    """A new revision of a Deployment became current."""

    namespace: str
    deployment: str
    revision: int
    previous_revision: int | None  # None: the Deployment was not known before (created since)
    change_cause: str | None  # the ``kubernetes.io/change-cause`` annotation
    observed_generation: int | None  # ``status.observedGeneration`` when the change was seen
    at: datetime | None  # the Progressing condition's lastUpdateTime for a new ReplicaSet

    @property
    def key(self) -> str:
        """``namespace/deployment@revision``: one per deploy (an idempotency key)."""
        return f"{self.namespace}/{self.deployment}@{self.revision}"


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    meta = obj.get("metadata")
    return meta if isinstance(meta, Mapping) else {}


def _annotations(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    annotations = _meta(obj).get("annotations")
    return annotations if isinstance(annotations, Mapping) else {}


def _section(obj: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = obj.get(key)
    return value if isinstance(value, Mapping) else {}


def revision_of(deployment: Mapping[str, Any]) -> int:
    """The revision annotation as a number; 0 when absent or not a number."""
    raw = str(_annotations(deployment).get(REVISION) or "").strip()
    return int(raw) if raw.isdigit() else 0


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _medic_annotations(obj: Mapping[str, Any] | None) -> tuple[Any, ...]:
    annotations = _annotations(obj) if obj is not None else {}
    return tuple(annotations.get(k) for k in (MEDIC_ROLLBACK, MEDIC_ROLLED_BACK))


def is_medic_rollback(before: Mapping[str, Any] | None, after: Mapping[str, Any]) -> bool:
    """Whether ``after``'s current revision is one Medic's rollback made current."""
    mine = medic_rollback(_annotations(after))
    if mine is None:
        return False
    if mine.as_revision:
        return mine.as_revision == revision_of(after)
    return _medic_annotations(before) != _medic_annotations(after)


def rollout_started_at(deployment: Mapping[str, Any]) -> datetime | None:
    """The Progressing condition's lastUpdateTime when it is about a new ReplicaSet."""
    for condition in _section(deployment, "status").get("conditions") or []:
        if (
            isinstance(condition, Mapping)
            and condition.get("type") == "Progressing"
            and condition.get("reason") in NEW_REPLICASET_REASONS
        ):
            return parse_time(condition.get("lastUpdateTime"))
    return None


def _known_before(before: Mapping[str, Any] | None, after: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """``before`` unless it was another object of the same name (deleted and recreated)."""
    if before is None:
        return None
    uid_before, uid_after = _meta(before).get("uid"), _meta(after).get("uid")
    return None if uid_before and uid_after and uid_before != uid_after else before


def new_revision(before: Mapping[str, Any] | None, after: Mapping[str, Any]) -> RevisionChange | None:
    """The deploy ``after`` shows compared with ``before``, or None (see the module's rules)."""
    before = _known_before(before, after)
    revision = revision_of(after)
    previous = revision_of(before) if before is not None else 0
    if revision <= previous:
        return None
    if _section(after, "spec").get("paused") or _meta(after).get("deletionTimestamp"):
        return None
    if is_medic_rollback(before, after):
        return None
    cause = _annotations(after).get(CHANGE_CAUSE)
    return RevisionChange(
        namespace=str(_meta(after).get("namespace") or ""),
        deployment=str(_meta(after).get("name") or ""),
        revision=revision,
        previous_revision=previous or None,
        change_cause=str(cause) if cause else None,
        observed_generation=_int_or_none(_section(after, "status").get("observedGeneration")),
        at=rollout_started_at(after),
    )


def remembered(deployment: Mapping[str, Any]) -> dict[str, Any]:
    """What a watcher keeps of a Deployment to pass as ``before`` later: what
    :func:`new_revision` reads of it, not the whole object."""
    meta = _meta(deployment)
    annotations = _annotations(deployment)
    return {
        "metadata": {
            "namespace": meta.get("namespace"),
            "name": meta.get("name"),
            "uid": meta.get("uid"),
            "resourceVersion": meta.get("resourceVersion"),
            "annotations": {k: annotations[k] for k in _BEFORE_ANNOTATIONS if k in annotations},
        },
        "spec": {"paused": bool(_section(deployment, "spec").get("paused"))},
    }
