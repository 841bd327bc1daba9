"""kubectl rollout undo / rollout status semantics over plain API objects."""

from typing import Any

import pytest

from medic.remediation.actions.kube_objects import Deployment, Event, ReplicaSet
from medic.remediation.actions.rollout import RollbackError, plan_rollback, rollout_status

DEP_UID = "dep-uid"


def dep_view(obj: dict[str, Any]) -> Deployment:
    """The view the rollback action reads an API object as (the pure helpers take views)."""
    return Deployment.model_validate(obj)


def rs_views(objs: list[dict[str, Any]]) -> list[ReplicaSet]:
    return [ReplicaSet.model_validate(o) for o in objs]


def event_views(objs: list[dict[str, Any]]) -> list[Event]:
    return [Event.model_validate(o) for o in objs]


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
    plan = plan_rollback(dep_view(deployment(3, "app:v3")), rs_views(HISTORY))
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
    back_to_1 = plan_rollback(dep_view(deployment(3, "app:v3")), rs_views(HISTORY), to_revision=1)
    assert back_to_1.target.images == ["app:v1"]
    with pytest.raises(RollbackError, match="revision 7 not found"):
        plan_rollback(dep_view(deployment(3, "app:v3")), rs_views(HISTORY), to_revision=7)
    with pytest.raises(RollbackError, match="paused"):
        plan_rollback(dep_view(deployment(3, "app:v3", paused=True)), rs_views(HISTORY))
    with pytest.raises(RollbackError, match="no previous revision"):
        plan_rollback(dep_view(deployment(1, "app:v1")), rs_views([rs(1, "app:v1", "aaa")]))


def test_skipped_when_the_template_already_matches() -> None:
    plan = plan_rollback(dep_view(deployment(3, "app:v2")), rs_views(HISTORY))
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
    st = rollout_status(dep_view(dep))
    assert (st.done, st.failed) == (done, failed)
    assert words in st.message


# ---------------------------------------------------------------------- the plan's pure parts


def _at(text: str) -> Any:
    from datetime import datetime

    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_the_rollback_writes_medics_own_annotation_read_back_by_the_timeline() -> None:
    from medic.domain.rollout import medic_rollback

    plan = plan_rollback(
        dep_view(deployment(3, "app:v3")), rs_views(HISTORY), at=_at("2026-11-26T08:00:00Z"), incident="inc-1"
    )
    ann = plan.patch[2]["value"]
    assert ann["medic.playcode.gg/rolled-back"] == "from revision 3 to 2"
    mine = medic_rollback(ann)
    assert mine is not None and (mine.from_revision, mine.to_revision) == (3, 2)
    assert (mine.from_hash, mine.to_hash, mine.incident) == ("ccc", "bbb", "inc-1")
    assert mine.at == _at("2026-11-26T08:00:00Z")


def _after_medics_rollback() -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]:
    """The cluster a minute after Medic rolled back 3 -> 2: the controller reused revision 2's
    ReplicaSet as revision 4 (revision-history 2); no event survives."""
    plan = plan_rollback(
        dep_view(deployment(3, "app:v3")), rs_views(HISTORY), at=_at("2026-11-26T08:00:00Z"), incident="inc-1"
    )
    dep = deployment(4, "app:v2")
    dep["metadata"]["annotations"] = dict(
        plan.patch[2]["value"], **{"deployment.kubernetes.io/revision": "4"}
    )
    reused = rs(4, "app:v2", "bbb", ready=3, **{"deployment.kubernetes.io/revision-history": "2"})
    return dep, [rs(1, "app:v1", "aaa"), reused, rs(3, "app:v3", "ccc")], []


def test_after_medics_own_rollback_the_timeline_knows_it_without_the_ledger() -> None:
    from datetime import timedelta

    from medic.remediation.actions.rollout import (
        previous_healthy_precondition,
        recent_rollout_precondition,
        timeline_of,
    )

    dep, rss, events = _after_medics_rollback()
    tl = timeline_of(dep_view(dep), rs_views(rss), event_views(events))
    cur = tl.current
    assert cur is not None and cur.revision == 4 and cur.restored_by_medic
    # the reused ReplicaSet was created at 02:00, but became current at Medic's rollback
    assert cur.became_current == _at("2026-11-26T08:00:00Z")
    now = _at("2026-11-26T08:01:00Z")
    assert recent_rollout_precondition(tl, timedelta(minutes=30), now).ok
    # the next "previous" is revision 3, the one Medic rolled back from: never healthy
    again = plan_rollback(dep_view(dep), rs_views(rss))
    assert again.target.number == 3
    pre = previous_healthy_precondition(tl, again, now)
    assert not pre.ok and "the one Medic rolled back from" in pre.reason


def test_an_unknown_time_is_not_recent() -> None:
    from datetime import timedelta

    from medic.remediation.actions.rollout import recent_rollout_precondition, timeline_of

    reused = rs(4, "app:v1", "aaa", ready=0, **{"deployment.kubernetes.io/revision-history": "1"})
    tl = timeline_of(
        dep_view(deployment(4, "app:v1")), rs_views([reused, rs(3, "app:v3", "ccc")]), event_views([])
    )
    pre = recent_rollout_precondition(tl, timedelta(minutes=30), _at("2026-11-26T08:01:00Z"))
    assert not pre.ok and "unknown" in pre.reason and "not treated as recent" in pre.reason
    # a ScalingReplicaSet event gives the time
    event = {
        "reason": "ScalingReplicaSet",
        "message": "Scaled up replica set playcode-app-aaa from 0 to 3",
        "firstTimestamp": "2026-11-26T07:55:00Z",
        "lastTimestamp": "2026-11-26T07:55:00Z",
    }
    tl = timeline_of(
        dep_view(deployment(4, "app:v1")), rs_views([reused, rs(3, "app:v3", "ccc")]), event_views([event])
    )
    pre = recent_rollout_precondition(tl, timedelta(minutes=30), _at("2026-11-26T08:01:00Z"))
    assert pre.ok and "6 min ago (ScalingReplicaSet event)" in pre.reason


def test_identical_images_say_what_else_differs() -> None:
    from medic.remediation.actions.rollout import rollback_summary, template_diff

    a, b = template("app:v2"), template("app:v2")
    b["spec"]["containers"][0]["livenessProbe"] = {"httpGet": {"path": "/health", "port": 3000}}
    b["spec"]["containers"][0]["env"] = [{"name": "PORT", "value": "3000"}]
    assert template_diff(a, b) == ["container playcode-app: env", "container playcode-app: liveness probe"]
    hist = [rs(1, "registry.example/app:v2", "aaa"), rs(2, "registry.example/app:v2", "bbb")]
    hist[0]["spec"]["template"] = b | {
        "metadata": {"labels": {"app": "playcode-app", "pod-template-hash": "aaa"}}
    }
    hist[0]["spec"]["template"]["spec"]["containers"][0]["image"] = "registry.example/app:v2"
    plan = plan_rollback(dep_view(deployment(2, "registry.example/app:v2")), rs_views(hist))
    diff = template_diff(deployment(2, "registry.example/app:v2")["spec"]["template"], plan.template)
    text = rollback_summary("playcode", "playcode-app", plan, diff)
    assert "(app:v2) to revision 1 (app:v2)" in text  # by tag, registry shortened
    assert "same images, the templates differ in: container playcode-app: env, " in text
    assert text.endswith("container playcode-app: liveness probe")


def test_scale_up_events_in_any_order_give_the_latest_switch() -> None:
    """A namespace LIST is not in time order: the timeline sorts by time, then resourceVersion."""
    from medic.remediation.actions.rollout import timeline_of

    def up(rs_hash: str, when: str, rv: str) -> dict[str, Any]:
        return {
            "metadata": {"resourceVersion": rv},
            "reason": "ScalingReplicaSet",
            "message": f"Scaled up replica set playcode-app-{rs_hash} from 0 to 3",
            "firstTimestamp": when,
            "lastTimestamp": when,
        }

    events = [
        up("aaa", "2026-11-26T08:00:00Z", "30"),  # the re-deploy, listed first
        up("ccc", "2026-11-23T08:00:00Z", "20"),
        up("aaa", "2026-11-23T08:00:00Z", "10"),  # same second as ccc's, stored before it
    ]
    reused = rs(4, "app:v1", "aaa", **{"deployment.kubernetes.io/revision-history": "1"})
    tl = timeline_of(
        dep_view(deployment(4, "app:v1")), rs_views([reused, rs(3, "app:v3", "ccc")]), event_views(events)
    )
    assert tl.current is not None and tl.current.became_current == _at("2026-11-26T08:00:00Z")
    tl = timeline_of(
        dep_view(deployment(4, "app:v1")), rs_views([reused, rs(3, "app:v3", "ccc")]), event_views(events[1:])
    )
    # without the re-deploy's event: aaa was current before ccc in that second, then ccc
    assert tl.current is not None and tl.current.became_current == _at("2026-11-23T08:00:00Z")


def test_a_later_redeploy_of_the_template_medic_restored_is_timed_by_its_event() -> None:
    from medic.remediation.actions.rollout import timeline_of

    dep, rss, _ = _after_medics_rollback()  # Medic restored revision 2's template at 08:00
    event = {
        "metadata": {"resourceVersion": "99"},
        "reason": "ScalingReplicaSet",
        "message": "Scaled up replica set playcode-app-bbb from 0 to 3",
        "firstTimestamp": "2026-11-27T08:00:00Z",
        "lastTimestamp": "2026-11-27T08:00:00Z",
    }
    # a day later someone deploys v3 (revision 5) and then v2 again: revision 6, not Medic's 4
    dep["metadata"]["annotations"]["deployment.kubernetes.io/revision"] = "6"
    rss[1]["metadata"]["annotations"]["deployment.kubernetes.io/revision"] = "6"
    rss[1]["metadata"]["annotations"]["deployment.kubernetes.io/revision-history"] = "2,4"
    rss[2]["metadata"]["annotations"]["deployment.kubernetes.io/revision"] = "5"
    tl = timeline_of(dep_view(dep), rs_views(rss), event_views([event]))
    assert tl.current is not None and tl.current.became_current == _at("2026-11-27T08:00:00Z")
    assert tl.current.source == "ScalingReplicaSet event" and not tl.current.restored_by_medic
