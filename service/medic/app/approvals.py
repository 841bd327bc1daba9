"""Approvals: signed, expiring, single-use tokens, and the decision they allow.

A rule in mode ``approve`` leaves a proposal on its incident (an action record with status
``awaiting_approval``). Its approval token is

    base64url(JSON [version, incident id, action, target key, expiry (unix s), nonce])
    "." base64url(HMAC-SHA256(secret, that JSON))

so it is bound to one incident, one action and one target, expires (``MEDIC_APPROVAL_TTL_SECONDS``)
and cannot be forged without the secret (``MEDIC_APPROVAL_SECRET``; when unset, a random secret
is generated once and kept in the state store, so links survive restarts). Verification compares
the MAC in constant time before it reads anything else.

Single use: the first decision about a proposal (approve or reject, through any token, the API or
the CLI) is claimed atomically in the state store; every later attempt — a double click, a
replayed link, a second token — is refused and told who decided when. Approving re-checks every
guard *now* (:meth:`GuardedRemediator.approve`) and then acts; rejecting closes the proposal.
Both are recorded on the incident's timeline and in the audit log (who, when, through what), and
notified.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Literal, Protocol

import structlog

from medic.app.config import Config
from medic.coordination.marks import Marks
from medic.domain.errors import MedicError
from medic.domain.incident import ActionRecord, ActionStatus, Incident, utcnow
from medic.incidents.base import IncidentStore
from medic.incidents.journal import IncidentJournal
from medic.playbooks.compiled import CompiledPlaybook
from medic.rules.model import Rule
from medic.telemetry.metrics import Metrics

log = structlog.get_logger("medic.app.approvals")

TOKEN_VERSION = 1
TOKEN_SHAPE = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")
SECRET_KEY = "secret"
Decision = Literal["approved", "rejected"]


class ApprovalRefused(MedicError):
    """Why an approval (or rejection) is not carried out. Nothing was done."""

    STATUS: ClassVar[dict[str, int]] = {
        "malformed": 400,
        "incomplete": 400,
        "tampered": 403,
        "mismatch": 403,
        "not_found": 404,
        "no_proposal": 409,
        "decided": 409,
        "resolved": 409,
        "ambiguous": 409,
        "expired": 410,
    }

    def __init__(self, code: str, title: str, detail: str, **info: Any) -> None:
        self.code = code
        self.title = title
        self.detail = detail
        self.info = info
        super().__init__(f"{title}: {detail}")

    @property
    def status(self) -> int:
        return self.STATUS.get(self.code, 400)


# ------------------------------------------------------------------------ tokens (pure)
@dataclass(frozen=True)
class Claims:
    incident_id: str
    action: str
    target: str  # Target.key
    expires: int  # unix seconds
    nonce: str


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign_token(secret: bytes, claims: Claims) -> str:
    payload = json.dumps(
        [TOKEN_VERSION, claims.incident_id, claims.action, claims.target, claims.expires, claims.nonce],
        separators=(",", ":"),
    ).encode()
    mac = hmac.new(secret, payload, hashlib.sha256).digest()
    return f"{_b64(payload)}.{_b64(mac)}"


def read_token(secret: bytes, token: str, now: float) -> Claims:
    """Verify a token (signature first, then expiry); raise ApprovalRefused when it is not valid."""
    bad = ApprovalRefused("malformed", "Invalid approval link", "the approval token is malformed")
    if len(token) > 2048 or not TOKEN_SHAPE.fullmatch(token):
        raise bad
    body, _, mac = token.partition(".")
    try:
        payload, given = _unb64(body), _unb64(mac)
    except (binascii.Error, ValueError):
        raise bad from None
    expected = hmac.new(secret, payload, hashlib.sha256).digest()
    if not hmac.compare_digest(expected, given):
        raise ApprovalRefused(
            "tampered",
            "Invalid approval link",
            "the approval token's signature does not match: it was altered, or signed by another Medic",
        )
    try:
        version, incident_id, action, target, expires, nonce = json.loads(payload)
    except (ValueError, TypeError):
        raise bad from None
    if version != TOKEN_VERSION or not isinstance(expires, int):
        raise bad
    claims = Claims(str(incident_id), str(action), str(target), expires, str(nonce))
    if now >= claims.expires:
        raise ApprovalRefused(
            "expired",
            "Approval link expired",
            f"this approval link expired at {_utc(claims.expires)}; open the incident page for a fresh one",
            expired_at=claims.expires,
        )
    return claims


def _utc(ts: int) -> str:
    return f"{datetime.fromtimestamp(ts, UTC):%Y-%m-%d %H:%M:%S} UTC"


def find_proposal(incident: Incident, action: str | None, target: str | None) -> int:
    """Index of the proposal awaiting approval (for ``action`` on ``target`` when given)."""
    matches = [
        i
        for i, a in enumerate(incident.actions)
        if a.status is ActionStatus.AWAITING_APPROVAL
        and (action is None or a.action == action)
        and (target is None or a.target.key == target)
    ]
    if len(matches) > 1 and action is None:
        names = ", ".join(sorted({incident.actions[i].action for i in matches}))
        raise ApprovalRefused("ambiguous", "Several proposals", f"name the action to decide: {names}")
    if not matches:
        raise ApprovalRefused(
            "no_proposal",
            "Nothing awaits approval",
            f"incident {incident.id} has no proposal{f' {action!r}' if action else ''} awaiting approval",
        )
    return matches[-1]


def decision_key(incident_id: str, record: ActionRecord) -> str:
    return f"{incident_id}|{record.action}|{record.target.key}"


# ------------------------------------------------------------------------ the service
class Approver(Protocol):
    async def approve(
        self,
        incident: Incident,
        rule: Rule,
        playbook: CompiledPlaybook,
        action: str,
        approver: str,
        params: Mapping[str, Any] | None = None,
    ) -> ActionRecord: ...


class ActionNotifier(Protocol):
    def submit(self, incident: Incident, kind: str, *, action_index: int | None = None) -> None: ...


@dataclass(frozen=True)
class Outcome:
    incident: Incident
    index: int
    record: ActionRecord
    decision: Decision
    by: str


@dataclass(frozen=True)
class DecisionRequest:
    """A decision as asked for, its caller checked (the token's action and target, if any)."""

    decision: Decision
    by: str
    via: str
    reason: str
    action: str | None
    target: str | None
    nonce: str


@dataclass(frozen=True)
class Pending:
    """A proposal a valid token points at (what the confirmation page shows)."""

    incident: Incident
    index: int
    record: ActionRecord
    claims: Claims


class ApprovalService:
    def __init__(
        self,
        *,
        secret: bytes,
        ttl_seconds: int,
        config: Config,
        journal: IncidentJournal,
        store: IncidentStore,
        marks: Marks,
        remediator: Approver,
        metrics: Metrics,
        notifier: ActionNotifier | None = None,
        public_url: str = "",
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.secret = secret
        self.ttl = timedelta(seconds=ttl_seconds)
        self.config = config
        self.journal = journal
        self.store = store
        self.marks = marks
        self.remediator = remediator
        self.metrics = metrics
        self.notifier = notifier
        self.public_url = public_url.rstrip("/")
        self.clock = clock

    @staticmethod
    async def load_secret(configured: str | None, marks: Marks) -> bytes:
        """The configured secret, else the one generated by the first Medic on this store."""
        if configured:
            return configured.encode()
        fresh = secrets.token_hex(32)
        existing = await marks.claim(SECRET_KEY, fresh)
        return (existing or fresh).encode()

    # -------------------------------------------------------------- tokens
    def issue(self, incident: Incident, index: int) -> str:
        record = incident.actions[index]
        expires = int((self.clock() + self.ttl).timestamp())
        claims = Claims(incident.id, record.action, record.target.key, expires, secrets.token_urlsafe(12))
        return sign_token(self.secret, claims)

    def path(self, incident: Incident, index: int) -> str:
        return f"/incidents/{incident.id}/approve?approval={self.issue(incident, index)}"

    async def link(self, incident: Incident, index: int) -> str | None:
        """Absolute approval page URL for notifications (None without MEDIC_PUBLIC_URL)."""
        return f"{self.public_url}{self.path(incident, index)}" if self.public_url else None

    def verify(self, incident_id: str, token: str) -> Claims:
        claims = read_token(self.secret, token, self.clock().timestamp())
        if claims.incident_id != incident_id:
            raise ApprovalRefused(
                "mismatch", "Invalid approval link", "this approval token belongs to another incident"
            )
        return claims

    async def _decided(self, incident_id: str, record: ActionRecord) -> ApprovalRefused | None:
        raw = await self.marks.get(decision_key(incident_id, record))
        return _already(raw) if raw is not None else None

    async def pending(self, incident_id: str, token: str) -> Pending:
        """Check a token without using it (the confirmation page, on GET)."""
        claims = self.verify(incident_id, token)
        incident = await self.store.get(incident_id)
        if incident is None:
            raise ApprovalRefused("not_found", "No such incident", f"no incident {incident_id!r}")
        for record in incident.actions:
            same = record.action == claims.action and record.target.key == claims.target
            if same and (done := await self._decided(incident_id, record)) is not None:
                raise done
        index = find_proposal(incident, claims.action, claims.target)
        _check_open(incident)
        return Pending(incident, index, incident.actions[index], claims)

    # -------------------------------------------------------------- decisions
    async def decide(
        self,
        incident_id: str,
        decision: Decision,
        *,
        by: str,
        via: str,
        token: str | None = None,
        action: str | None = None,
        reason: str = "",
    ) -> Outcome:
        """Approve or reject a proposal, once. With a token (web) it must be valid and bound to
        this incident; without one (admin API, CLI) the caller is already authorised."""
        request = self._request(incident_id, decision, by, via, token, action, reason)

        async def change(incident: Incident) -> tuple[int, ActionRecord]:
            return await self._decide_in(incident, request)

        done = await self.journal.update(incident_id, change)
        if done is None:
            raise ApprovalRefused("not_found", "No such incident", f"no incident {incident_id!r}")
        incident, (index, record) = done
        log.info(
            "approval decided",
            incident_id=incident_id,
            decision=decision,
            by=request.by,
            via=via,
            action=record.action,
            status=record.status.value,
        )
        if self.notifier is not None:
            self.notifier.submit(incident, "action", action_index=index)
        return Outcome(incident, index, record, decision, request.by)

    def _request(
        self,
        incident_id: str,
        decision: Decision,
        by: str,
        via: str,
        token: str | None,
        action: str | None,
        reason: str,
    ) -> DecisionRequest:
        """Who decides what, checked: a name is required, a token must be valid for this incident
        (and then names the action and target)."""
        by = by.strip()[:100]
        if not by:
            raise ApprovalRefused("incomplete", "Who is deciding?", "an approver name is required")
        claims = self.verify(incident_id, token) if token is not None else None
        return DecisionRequest(
            decision=decision,
            by=by,
            via=via,
            reason=reason,
            action=claims.action if claims else action,
            target=claims.target if claims else None,
            nonce=claims.nonce if claims else "",
        )

    async def _decide_in(self, incident: Incident, req: DecisionRequest) -> tuple[int, ActionRecord]:
        """The decision on the incident as read under its lock: claim it once, record it, carry
        it out, and put the outcome in the proposal's place."""
        index = await self._open_proposal(incident, req)
        proposal = incident.actions[index]
        if req.decision == "approved":
            _check_open(incident)
        now = self.clock()
        mark = await self._claim(incident, proposal, req, now)
        incident.note(
            "approval",
            f"{proposal.action} on {proposal.target} {req.decision} by {req.by} (via {req.via})"
            + (f": {req.reason}" if req.reason else ""),
            now,
            decision=req.decision,
            by=req.by,
            via=req.via,
        )
        await self._audit(
            incident.id,
            {**mark, "action": proposal.action, "target": proposal.target.key, "reason": req.reason},
        )
        record = await self._outcome(incident, proposal, req)
        record.result = {
            **record.result,
            "approval": mark,
            "proposal": {"reason": proposal.reason, "at": proposal.at.isoformat()},
        }
        incident.replace_action(index, record, self.clock())
        self.metrics.actions.labels(action=record.use, status=record.status.value).inc()
        return index, record

    async def _open_proposal(self, incident: Incident, req: DecisionRequest) -> int:
        """The proposal awaiting this decision; when there is none, an earlier decision about it
        (who decided when) is the better answer than "nothing awaits approval"."""
        try:
            return find_proposal(incident, req.action, req.target)
        except ApprovalRefused as refused:
            for record in incident.actions:
                if (req.action is None or record.action == req.action) and (
                    done := await self._decided(incident.id, record)
                ):
                    raise done from None
            raise refused

    async def _claim(
        self, incident: Incident, proposal: ActionRecord, req: DecisionRequest, now: datetime
    ) -> dict[str, str]:
        """The once-only mark of the decision (atomic in the state store); a second decision,
        through any channel, is refused with the first one's who and when."""
        mark = {
            "decision": req.decision,
            "by": req.by,
            "via": req.via,
            "at": now.isoformat(),
            "nonce": req.nonce,
        }
        earlier = await self.marks.claim(decision_key(incident.id, proposal), json.dumps(mark))
        if earlier is not None:
            raise _already(earlier)
        return mark

    async def _outcome(
        self, incident: Incident, proposal: ActionRecord, req: DecisionRequest
    ) -> ActionRecord:
        """A rejection closes the proposal; an approval carries it out (guards checked again)."""
        if req.decision == "approved":
            return await self._approve(incident, proposal, req.by)
        record = proposal.model_copy(deep=True)
        record.status = ActionStatus.REFUSED
        record.reason = f"rejected by {req.by}" + (f": {req.reason}" if req.reason else "")
        return record

    async def _approve(self, incident: Incident, proposal: ActionRecord, by: str) -> ActionRecord:
        rules: Mapping[str, Rule] = {r.name: r for r in self.config.rules}
        rule = rules.get(incident.rule or "")
        playbook = self.config.playbooks.get(incident.playbook or "")
        record = proposal.model_copy(deep=True)
        record.approved_by = by
        if rule is None or playbook is None or rule.remediation is None:
            record.status = ActionStatus.REFUSED
            record.reason = "the rule or playbook of this proposal is no longer configured: nothing done"
            return record
        try:
            return await self.remediator.approve(
                incident, rule, playbook, proposal.action, by, proposal.params
            )
        except Exception as exc:  # recorded, never lost: the decision is on the incident either way
            log.exception("approved action failed", incident_id=incident.id)
            record.status = ActionStatus.FAILED
            record.reason = f"approved by {by}, but the action could not run: {type(exc).__name__}: {exc}"
            return record

    async def _audit(self, incident_id: str, entry: dict[str, Any]) -> None:
        try:
            await self.store.append_audit(incident_id, "approval", entry)
        except Exception:  # the decision also lives on the incident's timeline
            log.exception("audit append failed", incident_id=incident_id)


def _check_open(incident: Incident) -> None:
    """A proposal of a resolved incident is void: what it would fix is no longer broken."""
    if incident.status == "resolved":
        when = f" at {incident.resolved_at:%Y-%m-%d %H:%M:%S} UTC" if incident.resolved_at else ""
        raise ApprovalRefused(
            "resolved",
            "Incident resolved",
            f"incident {incident.id} resolved{when}: its proposal is void and nothing was done "
            "(rejecting it is still possible)",
        )


def _already(raw: str) -> ApprovalRefused:
    try:
        mark = json.loads(raw)
    except ValueError:
        mark = {}
    who = mark.get("by") or "someone"
    when = mark.get("at", "")
    return ApprovalRefused(
        "decided",
        "Already decided",
        f"this proposal was already {mark.get('decision', 'decided')} by {who}"
        + (f" at {when}" if when else "")
        + (f" (via {mark['via']})" if mark.get("via") else "")
        + ": nothing more was done",
        decision=mark.get("decision"),
        by=mark.get("by"),
        at=when,
    )
