"""Start-up reconciliation: the action ledger is the truth.

A replica records an action in the ledger (:meth:`RemediationState.begin_action`) before it
acts, then writes the audit record, and the pipeline adds the action to the incident when it
saves it. A replica killed in between leaves an action that happened (or may have) in the
ledger only. At start-up every mark of the last :data:`HORIZON` that its incident or the audit
log lacks is added there, marked ``reconciled``; running it again changes nothing.

The incident is changed under the pipeline's lock for its key (:class:`IncidentJournal`): a live
replica still acting on it holds that lock until it has saved the action itself, so a
reconciliation never races an action in progress into a second record.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import structlog

from medic.coordination.base import RemediationState
from medic.domain.actions import ActionMark
from medic.domain.incident import ActionRecord, ActionStatus, Incident, Target
from medic.incidents.base import IncidentStore
from medic.incidents.journal import IncidentJournal

log = structlog.get_logger("medic.remediation.reconcile")

HORIZON = timedelta(hours=24)  # a replica killed mid-action is back well within this
AUDIT_SCAN = 1000  # audit records of one incident looked through for the mark

_STATUS = {"succeeded": ActionStatus.SUCCEEDED, "failed": ActionStatus.FAILED}


def recovered_record(mark: ActionMark, target: Target) -> ActionRecord:
    """The action as the ledger knows it (pure)."""
    status = _STATUS.get(mark.status, ActionStatus.RUNNING)
    outcome = (
        f"recorded as {mark.status} in the action ledger"
        if status is not ActionStatus.RUNNING
        else "begun, outcome unknown: check the target"
    )
    return ActionRecord(
        action=mark.action,
        use=mark.idempotency_key.split("|", 1)[0],
        target=target,
        mode="auto",
        status=status,
        reason=f"reconciled at start-up from the action ledger ({outcome}): the replica that "
        "acted stopped before recording it here",
        result={"ledger": mark.detail},
        idempotency_key=mark.idempotency_key,
        at=mark.at,
    )


def has_action(incident: Incident, key: str) -> bool:
    return any(a.idempotency_key == key for a in incident.actions)


async def _audited(store: IncidentStore, incident_id: str, key: str) -> bool:
    entries = await store.audit(incident_id, limit=AUDIT_SCAN)
    return any(e["kind"] == "action" and e["record"].get("idempotency_key") == key for e in entries)


async def reconcile_ledger(
    state: RemediationState, store: IncidentStore, journal: IncidentJournal, now: datetime
) -> int:
    """Add the ledger's recent marks to their incidents and the audit log where missing;
    returns how many marks needed it."""
    fixed = 0
    for mark in await state.actions_since(now - HORIZON):
        incident = await store.get(mark.incident_id)
        if incident is None or incident.target is None:
            continue  # purged, or never stored: nothing to add it to
        key = mark.idempotency_key
        if has_action(incident, key) and await _audited(store, incident.id, key):
            continue
        target = incident.target

        async def change(current: Incident, mark: ActionMark = mark, target: Target = target) -> bool:
            record = recovered_record(mark, target)
            if not await _audited(store, current.id, mark.idempotency_key):
                await store.append_audit(
                    current.id, "action", {**record.model_dump(mode="json"), "reconciled": True}
                )
            if has_action(current, mark.idempotency_key):
                return False
            current.add_action(record, now)
            return True

        await journal.update(incident.id, change)
        fixed += 1
        log.warning(
            "an action found only in the ledger was added to its incident and the audit log",
            incident_id=incident.id,
            action=mark.action,
            status=mark.status,
        )
    return fixed


async def reconcile_at_start(
    state: RemediationState, store: IncidentStore, journal: IncidentJournal, now: datetime
) -> None:
    """:func:`reconcile_ledger`, never failing the start: a backend that does not answer now is
    reconciled at the next start."""
    try:
        await reconcile_ledger(state, store, journal, now)
    except Exception as exc:
        log.warning("the action ledger could not be reconciled at start-up", error=str(exc))
