"""Approval tokens (pure) and the approval service's refusals, on a real embedded store."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from medic.app.approvals import (
    ApprovalRefused,
    ApprovalService,
    Claims,
    find_proposal,
    read_token,
    sign_token,
)
from medic.app.catalogue import default_registry
from medic.app.config import load_config
from medic.app.settings import load_settings
from medic.clients.sqlite import SqliteDB
from medic.coordination.marks import SqliteMarks
from medic.coordination.sqlite import SqliteRemediationState
from medic.domain.incident import ActionStatus, utcnow
from medic.domain.redact import redact_text
from medic.incidents.journal import IncidentJournal
from medic.incidents.sqlite import SqliteIncidentStore
from medic.remediation.executor import GuardedRemediator
from medic.telemetry.metrics import Metrics
from tests.e2e.pages_incidents import hostile_incident
from tests.medic_app import REPO

SECRET = b"s" * 32
NOW = 1_800_000_000.0
CLAIMS = Claims("inc-1", "rollback", "deployment/playcode/playcode-app", int(NOW) + 60, "nonce")


def refusal(token: str, now: float = NOW, secret: bytes = SECRET) -> str:
    with pytest.raises(ApprovalRefused) as err:
        read_token(secret, token, now)
    return err.value.code


def test_token_round_trip() -> None:
    token = sign_token(SECRET, CLAIMS)
    assert read_token(SECRET, token, NOW) == CLAIMS
    assert "eyJ" not in token and redact_text(f"https://m/approve?approval={token}").endswith(token)


def test_expired_tampered_and_malformed_tokens() -> None:
    token = sign_token(SECRET, CLAIMS)
    assert refusal(token, now=NOW + 60) == "expired"
    assert refusal(token, secret=b"t" * 32) == "tampered"
    _, mac = token.split(".")
    forged = json.dumps(
        [1, "inc-1", "rollback", "deployment/playcode/other", int(NOW) + 60, "nonce"]
    ).encode()
    assert refusal(base64.urlsafe_b64encode(forged).decode().rstrip("=") + "." + mac) == "tampered"
    longer = sign_token(SECRET, Claims("inc-1", "rollback", CLAIMS.target, int(NOW) + 10**6, "nonce"))
    assert refusal(longer.split(".")[0] + "." + mac) == "tampered"  # a later expiry is a forgery too
    for bad in ("", "x", "a.b.c", token.replace(".", ""), "!!!." + mac, "a" * 3000):
        assert refusal(bad) == "malformed", bad
    assert ApprovalRefused("expired", "", "").status == 410


def test_find_proposal() -> None:
    inc = hostile_incident(ActionStatus.AWAITING_APPROVAL)
    assert find_proposal(inc, None, None) == 0
    assert find_proposal(inc, "rollback", "deployment/playcode/playcode-app") == 0
    with pytest.raises(ApprovalRefused, match="no proposal 'restart'"):
        find_proposal(inc, "restart", None)
    inc.actions.append(inc.actions[0].model_copy(update={"action": "restart"}))
    with pytest.raises(ApprovalRefused, match="name the action"):
        find_proposal(inc, None, None)


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[ApprovalService]:
    settings = load_settings(data_dir=tmp_path, kube_mode="off", mode="enforce")
    db = SqliteDB(settings.db_path)
    await db.open()
    store = SqliteIncidentStore(db)
    marks = SqliteMarks(db, "approval:")
    try:
        yield ApprovalService(
            secret=await ApprovalService.load_secret(None, marks),
            ttl_seconds=600,
            config=load_config([REPO / "rules"], [REPO / "playbooks"], default_registry()),
            journal=IncidentJournal(store),
            store=store,
            marks=marks,
            remediator=GuardedRemediator(
                settings=settings, state=SqliteRemediationState(db), store=store, kube=None
            ),
            metrics=Metrics(),
        )
    finally:
        await db.close()


async def test_generated_secret_is_kept_in_the_store(service: ApprovalService) -> None:
    again = await ApprovalService.load_secret(None, service.marks)
    assert again == service.secret and len(again) == 64
    assert (
        await ApprovalService.load_secret("configured-secret-0123", service.marks)
        == b"configured-secret-0123"
    )


async def test_one_decision_per_proposal_even_under_concurrency(service: ApprovalService) -> None:
    inc = hostile_incident(ActionStatus.AWAITING_APPROVAL)
    await service.store.save(inc)
    tokens = [service.issue(inc, 0) for _ in range(2)]  # two links, e.g. Slack and the page
    results = await asyncio.gather(
        service.decide(inc.id, "rejected", by="bob", via="web", token=tokens[0]),
        service.decide(inc.id, "rejected", by="carol", via="web", token=tokens[1]),
        service.decide(inc.id, "approved", by="dave", via="api"),
        return_exceptions=True,
    )
    done = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, ApprovalRefused)]
    assert len(done) == 1 and len(refused) == 2 and {r.code for r in refused} == {"decided"}
    stored = await service.store.get(inc.id)
    assert stored is not None and stored.actions[0].status is not ActionStatus.AWAITING_APPROVAL
    with pytest.raises(ApprovalRefused) as err:
        await service.pending(inc.id, tokens[0])
    assert err.value.code == "decided" and "already" in err.value.detail
    audit = await service.store.audit(inc.id)
    assert len([a for a in audit if a["kind"] == "approval"]) == 1


async def test_refusals_change_nothing(service: ApprovalService) -> None:
    inc = hostile_incident(ActionStatus.AWAITING_APPROVAL)
    await service.store.save(inc)
    token = service.issue(inc, 0)
    cases = [
        ("mismatch", dict(token=token), "inc-other"),
        ("incomplete", dict(token=token, by=" "), inc.id),
        ("not_found", dict(), "inc-missing"),
        ("no_proposal", dict(action="restart"), inc.id),
    ]
    for code, kwargs, incident_id in cases:
        kwargs.setdefault("by", "mallory")
        with pytest.raises(ApprovalRefused) as err:
            await service.decide(incident_id, "approved", via="web", **kwargs)  # type: ignore[arg-type]
        assert err.value.code == code
    service.clock = lambda: utcnow() + timedelta(hours=1)  # the link has expired meanwhile
    with pytest.raises(ApprovalRefused) as err:
        await service.decide(inc.id, "approved", by="alice", via="web", token=token)
    assert err.value.code == "expired"
    stored = await service.store.get(inc.id)
    assert stored is not None and stored.actions[0].status is ActionStatus.AWAITING_APPROVAL
    assert await service.store.audit(inc.id) == []


async def test_a_resolved_incident_proposal_cannot_be_approved(service: ApprovalService) -> None:
    inc = hostile_incident(ActionStatus.AWAITING_APPROVAL)
    inc.status, inc.resolved_at = "resolved", utcnow()
    await service.store.save(inc)
    token = service.issue(inc, 0)
    for attempt in (service.pending(inc.id, token), service.decide(inc.id, "approved", by="a", via="api")):
        with pytest.raises(ApprovalRefused) as err:
            await attempt
        assert err.value.code == "resolved" and err.value.status == 409
    outcome = await service.decide(inc.id, "rejected", by="a", via="web", token=token)
    assert outcome.record.status is ActionStatus.REFUSED
