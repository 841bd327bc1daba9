"""What the typed facts and results record is what the ledger, the action records and the
incident JSON kept before they were typed: the same keys, the same values, ``{}`` for a plan
that found nothing; and apply/verify read the facts by attribute (a missing one is a type error)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from medic.domain.rollout import MEDIC_ROLLBACK
from medic.playbooks.action import ApplyResult, NoFacts
from medic.remediation.actions.certs import CertificateFacts, RenewalRequested
from medic.remediation.actions.k8s import JobCreated, JobFacts, Patched, PodFacts
from medic.remediation.actions.rollout import (
    RollbackFacts,
    patch_ops,
    patch_value,
    plan_rollback,
    rollback_facts,
    template_diff,
    timeline_of,
)
from medic.remediation.executor import mark_from_target
from tests.unit.test_rollout import HISTORY, dep_view, deployment, event_views, rs, rs_views

ROLLBACK_KEYS = {
    "from_revision",
    "to_revision",
    "from_hash",
    "to_hash",
    "from_images",
    "to_images",
    "to_replicaset",
    "template_diff",
    "timeline",
    "medic_rollback",
    "earlier_action",
}


def test_a_rollback_plan_records_every_fact_it_always_did() -> None:
    dep = deployment(3, "app:v3")
    plan = plan_rollback(dep_view(dep), rs_views(HISTORY))
    timeline = timeline_of(dep_view(dep), rs_views(HISTORY), event_views([]))
    facts = rollback_facts(plan, timeline, template_diff(dep["spec"]["template"], plan.template))
    kept = facts.record()
    assert set(kept) == ROLLBACK_KEYS
    assert kept["from_revision"] == 3 and kept["to_revision"] == 2
    assert (kept["from_hash"], kept["to_hash"], kept["to_replicaset"]) == ("ccc", "bbb", "playcode-app-bbb")
    assert kept["from_images"] == ["app:v3"] and kept["to_images"] == ["app:v2"]
    assert kept["medic_rollback"] is None and kept["earlier_action"] is None  # set, and kept as None
    assert kept["timeline"] == timeline.rows()
    json.dumps(kept)  # the ledger stores it as JSON


def test_medics_earlier_rollback_is_recorded_as_the_guards_read_it() -> None:
    at = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
    first = plan_rollback(dep_view(deployment(3, "app:v3")), rs_views(HISTORY), at=at, incident="inc-1")
    rolled = deployment(4, "app:v2")
    rolled["metadata"]["annotations"][MEDIC_ROLLBACK] = first.annotations[MEDIC_ROLLBACK]
    history = [*HISTORY[:1], HISTORY[2], rs(4, "app:v2", "bbb", ready=3)]
    plan = plan_rollback(dep_view(rolled), rs_views(history))
    timeline = timeline_of(dep_view(rolled), rs_views(history), event_views([]))
    kept = rollback_facts(plan, timeline, []).record()
    assert kept["earlier_action"] == {
        "action": "rollback",
        "at": "2026-11-26T09:00:00Z",
        "to_hash": "bbb",
        "incident": "inc-1",
        "status": "succeeded",
    }
    assert kept["medic_rollback"].startswith("Medic rolled back from revision 3 to 2")
    # what the guards read of it, typed: the cooldown and flap guards see this earlier rollback
    facts = rollback_facts(plan, timeline_of(dep_view(rolled), rs_views(history), event_views([])), [])
    assert facts.current_revision_hash() == "bbb"
    mark = mark_from_target("deployment/playcode/playcode-app", facts.earlier_on_target())
    assert mark is not None and (mark.action, mark.incident_id, mark.at, mark.status) == (
        "rollback",
        "inc-1",
        at,
        "succeeded",
    )
    assert mark.detail == {"to_hash": "bbb", "source": "the target's annotation"}


def test_a_plan_that_found_nothing_records_nothing() -> None:
    assert RollbackFacts().record() == {}
    assert NoFacts().record() == {}
    for nothing in (RollbackFacts(), NoFacts(), PodFacts(uid="u", owner="")):
        assert nothing.current_revision_hash() == "" and nothing.earlier_on_target() is None
    assert mark_from_target("t", None) is None


def test_the_other_facts_and_results_keep_their_shape() -> None:
    assert PodFacts(uid="u1", owner="ReplicaSet/app-1").record() == {"uid": "u1", "owner": "ReplicaSet/app-1"}
    assert JobFacts(job="b-manual-1", namespace="ns").record() == {"job": "b-manual-1", "namespace": "ns"}
    assert CertificateFacts(revision=2, resource_version="7", not_after=None, triggered_at="t").record() == {
        "revision": 2,
        "resource_version": "7",
        "not_after": None,
        "triggered_at": "t",
    }
    assert ApplyResult(applied=True).record() == {"applied": True}
    assert ApplyResult(applied=False, note="the pod was already gone").record() == {
        "applied": False,
        "note": "the pod was already gone",
    }
    assert ApplyResult(applied=False, already=True, note="n").record() == {
        "applied": False,
        "already": True,
        "note": "n",
    }
    assert Patched(applied=True, patch_ops=["test", "replace"]).record() == {
        "applied": True,
        "patch_ops": ["test", "replace"],
    }
    assert JobCreated(applied=True, job="j", created=None).record() == {
        "applied": True,
        "job": "j",
        "created": None,
    }
    assert RenewalRequested(applied=True, condition="Issuing=True", reason="ManuallyTriggered").record() == {
        "applied": True,
        "condition": "Issuing=True",
        "reason": "ManuallyTriggered",
    }


def test_the_rollback_reads_its_own_patch() -> None:
    plan = plan_rollback(dep_view(deployment(3, "app:v3")), rs_views(HISTORY))
    assert patch_value(plan.patch, "/spec/template") == plan.template
    assert patch_ops(plan.patch) == ["test", "replace", "replace"]


def test_a_plan_without_the_patch_is_a_step_error_not_a_type_error() -> None:
    import pytest

    from medic.domain.errors import StepError

    for payload in (None, {"spec": {}}, [{"op": "test", "path": "/spec/template"}]):
        with pytest.raises(StepError, match="sets nothing at /spec/template"):
            patch_value(payload, "/spec/template")
