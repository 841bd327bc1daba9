"""What counts as a deploy (a new revision became current) in a change to a Deployment."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import pytest

from medic.domain.deploy_changes import (
    NEW_REPLICASET_REASONS,
    REVISION,
    RevisionChange,
    new_revision,
    remembered,
)
from medic.domain.rollout import MEDIC_ROLLED_BACK
from medic.remediation.actions.kube_objects import Deployment, ReplicaSet
from medic.remediation.actions.rollout import plan_rollback

NS, APP, UID = "playcode", "playcode-app", "uid-1"


def deployment(revision: int | None, *, image: str = "app:v1", replicas: int = 3,
               **extra: Any) -> dict[str, Any]:
    annotations = {REVISION: str(revision)} if revision is not None else {}
    annotations.update(extra.pop("annotations", {}))
    d: dict[str, Any] = {
        "metadata": {"name": APP, "namespace": NS, "uid": extra.pop("uid", UID),
                     "resourceVersion": "1000", "annotations": annotations},
        "spec": {"replicas": replicas, "template": {
            "metadata": {"labels": {"app": APP}},
            "spec": {"containers": [{"name": APP, "image": image}]}}},
        "status": extra.pop("status", {"observedGeneration": 4}),
    }
    d["spec"].update(extra.pop("spec", {}))
    d["metadata"].update(extra)
    return d


def replicaset(revision: int, image: str, template_hash: str) -> dict[str, Any]:
    return {
        "metadata": {"name": f"{APP}-{template_hash}", "namespace": NS,
                     "labels": {"app": APP, "pod-template-hash": template_hash},
                     "annotations": {REVISION: str(revision)},
                     "ownerReferences": [{"uid": UID, "controller": True, "kind": "Deployment"}]},
        "spec": {"template": {"metadata": {"labels": {"app": APP, "pod-template-hash": template_hash}},
                              "spec": {"containers": [{"name": APP, "image": image}]}}},
    }


def with_revision(d: dict[str, Any], revision: int) -> dict[str, Any]:
    out = copy.deepcopy(d)
    out["metadata"]["annotations"][REVISION] = str(revision)
    return out


def medic_rolls_back(before: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Medic's rollback as the executor writes it (its plan's annotations and template), then
    the controller's write giving the restored template the next revision."""
    rss = [replicaset(1, "app:v1", "aaa"), replicaset(2, "app:v2", "bbb")]
    views = [ReplicaSet.model_validate(r) for r in rss]
    at = datetime(2026, 12, 1, tzinfo=UTC)
    plan = plan_rollback(Deployment.model_validate(before), views, incident="inc-1", at=at)
    patched = copy.deepcopy(before)
    patched["metadata"]["annotations"] = dict(plan.annotations)
    patched["spec"]["template"] = plan.template
    return patched, with_revision(patched, 3)


def test_a_new_revision_is_reported_with_what_the_deployment_says() -> None:
    before = deployment(2, image="app:v2")
    after = deployment(3, image="app:v3", annotations={"kubernetes.io/change-cause": "ci #42"},
                       status={"observedGeneration": 5, "conditions": [
                           {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable",
                            "lastUpdateTime": "2026-12-01T09:00:00Z"},
                           {"type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated",
                            "lastUpdateTime": "2026-12-01T10:00:00Z"}]})
    assert new_revision(before, after) == RevisionChange(
        namespace=NS, deployment=APP, revision=3, previous_revision=2, change_cause="ci #42",
        observed_generation=5, at=datetime(2026, 12, 1, 10, tzinfo=UTC))
    assert new_revision(before, after) is not None
    assert new_revision(before, after).key == f"{NS}/{APP}@3"  # type: ignore[union-attr]


@pytest.mark.parametrize("reason", sorted(NEW_REPLICASET_REASONS))
def test_at_is_the_progressing_time_of_a_new_replicaset(reason: str) -> None:
    after = deployment(3, status={"conditions": [
        {"type": "Progressing", "reason": reason, "lastUpdateTime": "2026-12-01T10:00:00Z"}]})
    change = new_revision(deployment(2), after)
    assert change is not None and change.at == datetime(2026, 12, 1, 10, tzinfo=UTC)


def test_at_is_unknown_while_the_condition_still_speaks_of_the_old_rollout() -> None:
    """The controller bumps the revision before it updates the status."""
    after = deployment(3, status={"conditions": [
        {"type": "Progressing", "reason": "NewReplicaSetAvailable",
         "lastUpdateTime": "2026-12-01T10:00:00Z"}]})
    change = new_revision(deployment(2), after)
    assert change is not None and change.at is None and change.observed_generation is None


def test_a_human_rollout_undo_is_a_deploy() -> None:
    """kubectl rollout undo restores revision 1's template as revision 3: no Medic annotation."""
    change = new_revision(deployment(2, image="app:v2"), deployment(3, image="app:v1"))
    assert change is not None and (change.revision, change.previous_revision) == (3, 2)


def test_medics_own_rollback_is_not_a_deploy() -> None:
    before = deployment(2, image="app:v2")
    patched, bumped = medic_rolls_back(before)
    assert new_revision(before, patched) is None  # Medic's PATCH: the revision has not moved
    assert new_revision(patched, bumped) is None  # the controller gives it revision 3: Medic's
    assert new_revision(before, bumped) is None  # both seen at once (a re-list after a gap)
    assert new_revision(None, bumped) is None


def test_a_deploy_after_medics_rollback_is_a_deploy_though_the_annotation_stays() -> None:
    _, rolled_back = medic_rolls_back(deployment(2, image="app:v2"))
    later = with_revision(rolled_back, 4)
    later["spec"]["template"]["spec"]["containers"][0]["image"] = "app:v4"
    change = new_revision(rolled_back, later)
    assert change is not None and (change.revision, change.previous_revision) == (4, 3)


def test_medics_older_annotation_without_the_revision_number() -> None:
    """Written by this very change: Medic's; already there before: someone else's deploy."""
    legacy = {MEDIC_ROLLED_BACK: "from revision 2 to 1"}
    mine = deployment(3, annotations=legacy)
    assert new_revision(deployment(2), mine) is None
    assert new_revision(deployment(2, annotations=legacy), deployment(3, annotations=legacy)) is not None


def test_paused_scaled_unchanged_or_lower_revisions_are_not_deploys() -> None:
    assert new_revision(deployment(2), deployment(3, spec={"paused": True})) is None
    assert new_revision(deployment(2, replicas=3), deployment(2, replicas=10)) is None
    assert new_revision(deployment(2), deployment(2, image="app:v9")) is None  # not rolled out yet
    assert new_revision(deployment(3), deployment(2)) is None
    assert new_revision(deployment(2), deployment(None)) is None
    assert new_revision(deployment(2), deployment(3, annotations={REVISION: "three"})) is None


def test_a_deployment_being_deleted_is_not_a_deploy() -> None:
    gone = deployment(3, deletionTimestamp="2026-12-01T10:00:00Z")
    assert new_revision(deployment(2), gone) is None


def test_a_deployment_created_since_is_reported_at_its_first_revision() -> None:
    assert new_revision(None, deployment(None)) is None  # the controller has not numbered it yet
    change = new_revision(deployment(None), deployment(1))
    assert change is not None and (change.revision, change.previous_revision) == (1, None)
    change = new_revision(None, deployment(1))
    assert change is not None and change.previous_revision is None


def test_a_deployment_recreated_under_the_same_name_is_new() -> None:
    change = new_revision(deployment(7), deployment(1, uid="uid-2"))
    assert change is not None and (change.revision, change.previous_revision) == (1, None)


def _cases() -> list[tuple[dict[str, Any], dict[str, Any]]]:
    before = deployment(2, image="app:v2", annotations={
        "kubectl.kubernetes.io/last-applied-configuration": "{" + "x" * 5000 + "}"})
    patched, bumped = medic_rolls_back(before)
    legacy = {MEDIC_ROLLED_BACK: "from revision 2 to 1"}
    return [
        (before, with_revision(before, 3)),
        (before, patched),
        (patched, bumped),
        (before, bumped),
        (bumped, with_revision(bumped, 4)),
        (deployment(2, annotations=legacy), deployment(3, annotations=legacy)),
        (deployment(2), deployment(3, annotations=legacy)),
        (deployment(2), deployment(3, spec={"paused": True})),
        (deployment(7), deployment(1, uid="uid-2")),
    ]


@pytest.mark.parametrize(("before", "after"), _cases())
def test_what_a_watcher_remembers_decides_as_the_whole_object(
        before: dict[str, Any], after: dict[str, Any]) -> None:
    assert new_revision(remembered(before), after) == new_revision(before, after)


def test_what_a_watcher_remembers_is_small() -> None:
    big = deployment(2, annotations={"kubectl.kubernetes.io/last-applied-configuration": "x" * 5000})
    kept = remembered(big)
    assert kept["metadata"]["annotations"] == {REVISION: "2"}
    assert "template" not in kept["spec"] and "status" not in kept
