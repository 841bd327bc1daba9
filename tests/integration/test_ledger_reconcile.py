"""An action that landed just before its replica was killed is in the ledger only: the next
start adds it to its incident and to the audit log (the ledger is the truth), once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import pytest

from medic.domain.actions import ActionMark
from medic.domain.incident import ActionStatus, utcnow
from medic.incidents.base import IncidentQuery
from tests.fakes.mongo_server import FakeMongoServer
from tests.medic_app import RunningMedic, medic_settings, running_medic
from tests.payloads import alert, payload
from tests.servers.redis_server import RedisServer

pytestmark = pytest.mark.integration

KEY = "k8s.rollback_deployment|deployment/playcode/playcode-app|rev2->rev1"


async def open_incident(medic: RunningMedic) -> str:
    body = payload([alert("KubePodCrashLooping", namespace="playcode", pod="playcode-app-5d8f7c9b4d-xk2lp")])
    async with aiohttp.ClientSession() as s, s.post(f"{medic.url}/api/v1/alerts", json=body) as resp:
        assert resp.status == 200
    await medic.drain()
    items, total = await medic.runtime.store.query(IncidentQuery())
    assert total == 1
    return items[0].id


async def ledger_only_action(medic: RunningMedic, incident_id: str, status: str) -> None:
    """What a replica killed right after acting leaves: the mark, nothing else."""
    target = (await medic.runtime.store.get(incident_id)).target  # type: ignore[union-attr]
    assert target is not None
    mark = ActionMark(KEY, target.key, "rollback", incident_id, utcnow(), "started", {"from_revision": 2})
    assert await medic.runtime.state.begin_action(mark)
    if status != "started":
        await medic.runtime.state.finish_action(KEY, status, {"verify": "rolled out"})


async def actions_and_audit(medic: RunningMedic, incident_id: str) -> tuple[list[Any], list[Any]]:
    incident = await medic.runtime.store.get(incident_id)
    assert incident is not None
    audit = [e for e in await medic.runtime.store.audit(incident_id) if e["kind"] == "action"]
    return [a for a in incident.actions if a.idempotency_key == KEY], audit


async def check_reconciled_once(settings: Any, status: str, expected: ActionStatus) -> None:
    async with running_medic(settings) as medic:
        incident_id = await open_incident(medic)
        await ledger_only_action(medic, incident_id, status)
        assert await actions_and_audit(medic, incident_id) == ([], [])
    for _ in range(2):  # restarted twice: added once
        async with running_medic(settings, workers=False) as medic:
            actions, audit = await actions_and_audit(medic, incident_id)
            assert len(actions) == 1 and len(audit) == 1, (actions, audit)
            assert actions[0].status is expected and actions[0].action == "rollback"
            assert actions[0].use == "k8s.rollback_deployment" and "ledger" in actions[0].reason
            assert audit[0]["record"]["idempotency_key"] == KEY and audit[0]["record"]["reconciled"]


@pytest.mark.parametrize(
    ("status", "expected"), [("succeeded", ActionStatus.SUCCEEDED), ("started", ActionStatus.RUNNING)]
)
async def test_embedded_start_adds_what_only_the_ledger_has(
    tmp_path: Path, status: str, expected: ActionStatus
) -> None:
    await check_reconciled_once(medic_settings(tmp_path), status, expected)


async def test_production_start_adds_what_only_the_ledger_has(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    async with FakeMongoServer() as mongo:
        settings = medic_settings(tmp_path, redis_url=redis_server.url, mongo_url=mongo.url)
        await check_reconciled_once(settings, "succeeded", ActionStatus.SUCCEEDED)
