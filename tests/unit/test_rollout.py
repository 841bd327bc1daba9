"""kubectl rollout undo / rollout status semantics over plain API objects."""

from typing import Any

import pytest

from medic.remediation.actions.rollout import RollbackError, plan_rollback, rollout_status

DEP_UID = "dep-uid"


def template(image: str, hash_: str | None = None) -> dict[str, Any]:
    labels = {"app": "playcode-app"} | ({"pod-template-hash": hash_} if hash_ else {})
    return {
        "metadata": {"labels": labels},
        "spec": {"containers": [{"name": "playcode-app", "image": image}]},
    }


def rs(rev: int, image: str, hash_: str, ready: int = 0, owner: str = DEP_UID, **ann: str) -> dict[str, Any]:
    return {
        "metadata": {
            "name": f"playcode-app-{hash_}",
            "labels": {"app": "playcode-app", "pod-template-hash": hash_},
            "annotations": {"deployment.kubernetes.io/revision": str(rev), **ann},
            "ownerReferences": [{"uid": owner, "controller": True, "kind": "Deployment"}],
            "creationTimestamp": f"2026-11-26T0{rev}:00:00Z",
        },
        "spec": {"template": template(image, hash_)},
        "status": {"replicas": ready, "readyReplicas": ready},
    }


def deployment(rev: int, image: str, paused: bool = False) -> dict[str, Any]:
    return {
        "metadata": {
            "name": "playcode-app",
            "namespace": "playcode",
            "uid": DEP_UID,
            "annotations": {
                "deployment.kubernetes.io/revision": str(rev),
                "team": "web",
                "kubectl.kubernetes.io/last-applied-configuration": "{}",
            },
        },
        "spec": {"paused": paused, "template": template(image)},
    }


HISTORY = [
    rs(1, "app:v1", "aaa"),
    rs(2, "app:v2", "bbb", ready=3, **{"kubernetes.io/change-cause": "v2"}),
    rs(3, "app:v3", "ccc"),
    rs(9, "other", "zzz", owner="someone-else"),
]


def test_undo_goes_to_the_previous_revision_like_kubectl() -> None:
    plan = plan_rollback(deployment(3, "app:v3"), HISTORY)
    assert plan.target.number == 2 and plan.target.images == ["app:v2"]
    assert plan.current is not None and plan.current.number == 3
    assert "pod-template-hash" not in plan.template["metadata"]["labels"]
    assert plan.template == template("app:v2")
    test, replace_template, replace_ann = plan.patch
    assert test == {
        "op": "test",
        "path": "/metadata/annotations/deployment.kubernetes.io~1revision",
        "value": "3",
    }
    assert replace_template == {"op": "replace", "path": "/spec/template", "value": template("app:v2")}
    ann = replace_ann["value"]
    # kubectl keeps the skip-list annotations of the deployment and copies the others from the RS
    assert ann["deployment.kubernetes.io/revision"] == "3"
    assert ann["kubernetes.io/change-cause"] == "v2"
    assert "team" not in ann
    assert not plan.already_current


def test_to_revision_and_errors() -> None:
    assert plan_rollback(deployment(3, "app:v3"), HISTORY, to_revision=1).target.images == ["app:v1"]
    with pytest.raises(RollbackError, match="revision 7 not found"):
        plan_rollback(deployment(3, "app:v3"), HISTORY, to_revision=7)
    with pytest.raises(RollbackError, match="paused"):
        plan_rollback(deployment(3, "app:v3", paused=True), HISTORY)
    with pytest.raises(RollbackError, match="no previous revision"):
        plan_rollback(deployment(1, "app:v1"), [rs(1, "app:v1", "aaa")])


def test_skipped_when_the_template_already_matches() -> None:
    plan = plan_rollback(deployment(3, "app:v2"), HISTORY)
    assert plan.already_current


@pytest.mark.parametrize(
    ("status", "generation", "done", "failed", "words"),
    [
        ({"observedGeneration": 1}, 2, False, False, "spec update"),
        ({"observedGeneration": 2, "updatedReplicas": 1, "replicas": 3}, 2, False, False, "1 of 3 new"),
        ({"observedGeneration": 2, "updatedReplicas": 3, "replicas": 4}, 2, False, False, "old replicas"),
        (
            {"observedGeneration": 2, "updatedReplicas": 3, "replicas": 3, "availableReplicas": 2},
            2,
            False,
            False,
            "2 of 3 updated",
        ),
        (
            {"observedGeneration": 2, "updatedReplicas": 3, "replicas": 3, "availableReplicas": 3},
            2,
            True,
            False,
            "successfully",
        ),
        (
            {
                "observedGeneration": 2,
                "conditions": [{"type": "Progressing", "reason": "ProgressDeadlineExceeded"}],
            },
            2,
            False,
            True,
            "deadline",
        ),
    ],
)
def test_rollout_status(
    status: dict[str, Any], generation: int, done: bool, failed: bool, words: str
) -> None:
    dep = {"metadata": {"name": "d", "generation": generation}, "spec": {"replicas": 3}, "status": status}
    st = rollout_status(dep)
    assert (st.done, st.failed) == (done, failed)
    assert words in st.message
