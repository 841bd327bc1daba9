"""The crashloop analyzer: only a regression after a rollout argues for a rollback."""

from datetime import UTC, datetime
from typing import Any

from medic.analysis.crashloop import analyze_crashloop
from medic.domain.evidence import Evidence, StepStatus
from medic.domain.incident import Target
from medic.playbooks.contract import AnalysisInput

NOW = datetime(2026, 11, 26, 8, 30, tzinfo=UTC)
TARGET = Target(kind="deployment", namespace="playcode", name="playcode-app")


def container(
    restarts: int = 5,
    waiting: str = "CrashLoopBackOff",
    term: str = "Error",
    code: int = 1,
    image: str = "app:v2",
    message: str = "",
) -> dict[str, Any]:
    return {
        "name": "playcode-app",
        "image": image,
        "ready": False,
        "restart_count": restarts,
        "state": {"waiting": {"reason": waiting, "message": message}},
        "last_state": {"terminated": {"reason": term, "exit_code": code}} if term else {},
        "resources": {"limits": {"memory": "512Mi"}},
    }


def pod(name: str, revision: int, *containers: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "revision": revision, "containers": list(containers), "init_containers": []}


def history(current: int = 2, created: str = "2026-11-26T08:25:00Z") -> dict[str, Any]:
    return {
        "deployment": {"name": "playcode-app", "revision": current},
        "revisions": [
            {"revision": 2, "images": ["app:v2"], "created": created},
            {"revision": 1, "images": ["app:v1"], "created": "2026-11-20T10:00:00Z"},
        ],
    }


def run(
    pods: list[dict[str, Any]],
    logs: list[str] | None = None,
    hist: dict[str, Any] | None = None,
    events: list[dict[str, Any]] | None = None,
    top: dict[str, Any] | None = None,
) -> dict[str, Any]:
    ev = {
        "k8s.pod_describe": {"pods": pods},
        "k8s.pod_logs": {"logs": [{"pod": "p", "container": "c", "previous": True, "lines": logs or []}]},
        "k8s.rollout_history": hist if hist is not None else history(),
        "k8s.events": {"events": events or []},
    }
    if top is not None:
        ev["k8s.top_pods"] = top
    inp = AnalysisInput(
        target=TARGET,
        labels={"namespace": "playcode"},
        alerts=[],
        now=NOW,
        evidence={k: Evidence(step=k, collector=k, status=StepStatus.OK, data=v) for k, v in ev.items()},
    )
    findings = analyze_crashloop(inp)
    return {f.code: f for f in findings}


def test_regression_after_rollout_suggests_rollback() -> None:
    found = run(
        [pod("playcode-app-bbb-1", 2, container()), pod("playcode-app-bbb-2", 2, container())],
        logs=["TypeError: cannot read properties of undefined", "at main.js:12"],
    )
    f = found["crashloop.regression"]
    assert f.suggests == "rollback" and f.severity == "critical"
    assert "revision 2 (app:v2)" in f.summary and "became current 5 min ago" in f.summary
    assert "revision 1 (app:v1)" in f.summary
    assert "kubectl rollout undo deployment/playcode-app -n playcode" in f.next_steps
    assert f.details["log_sample"] == ["TypeError: cannot read properties of undefined"]
    assert set(f.evidence) >= {"k8s.pod_describe", "k8s.rollout_history"}


def test_crash_that_predates_the_rollout_is_not_a_regression() -> None:
    found = run([pod("a", 2, container()), pod("b", 1, container(image="app:v1"))])
    assert "crashloop.regression" not in found
    assert "older revisions (1)" in found["crashloop.predates_rollout"].summary


def test_dependency_down_is_explained_not_rolled_back() -> None:
    found = run(
        [pod("a", 2, container())], logs=["MongoServerSelectionError: connect ECONNREFUSED 10.0.0.7:27017"]
    )
    assert "crashloop.regression" not in found
    f = found["crashloop.dependency_down"]
    assert f.details["dependency"] == "mongodb" and f.suggests is None
    found = run(
        [pod("a", 2, container())],
        logs=["Error: Redis connection to redis:6379 failed - connect ECONNREFUSED"],
    )
    assert found["crashloop.dependency_down"].details["dependency"] == "redis"


def test_config_error_and_image_pull() -> None:
    found = run(
        [
            pod(
                "a",
                2,
                container(
                    waiting="CreateContainerConfigError",
                    term="",
                    restarts=0,
                    message='secret "playcode-env" not found',
                ),
            )
        ]
    )
    assert 'secret "playcode-env" not found' in found["crashloop.config_error"].summary
    # a new revision that cannot start is a regression too, proposed for approval only
    assert found["crashloop.regression"].max_mode == "approve"
    assert "cannot start" in found["crashloop.regression"].summary
    # an unpullable image on the new revision only: a bad rollout, proposed for rollback
    found = run([pod("a", 2, container(waiting="ImagePullBackOff", term="", restarts=0))])
    assert "cannot be pulled" in found["crashloop.regression"].summary
    assert "crashloop.image_pull" in found  # the same class whichever alert brought the pods
    # the same on an old revision is explained, not rolled back
    found = run(
        [pod("a", 1, container(waiting="ImagePullBackOff", term="", restarts=0))], hist=history(current=1)
    )
    assert "crashloop.image_pull" in found and "crashloop.regression" not in found


def test_oom_killed_with_usage() -> None:
    top = {
        "pods": [{"name": "a", "containers": [{"name": "playcode-app", "memory_bytes": 530 * 1024 * 1024}]}]
    }
    found = run(
        [pod("a", 1, container(term="OOMKilled", code=137, image="app:v1"))], hist=history(current=1), top=top
    )
    f = found["crashloop.oom_killed"]
    assert "limit 512Mi" in f.summary and "530Mi" in f.summary
    assert "crashloop.regression" not in found


def test_liveness_probe_and_recovered() -> None:
    events = [
        {"reason": "Unhealthy", "message": "Liveness probe failed: HTTP probe failed with statuscode: 500"}
    ]
    found = run(
        [pod("a", 1, container(term="Error", code=137, image="app:v1"))],
        hist=history(current=1),
        events=events,
    )
    assert "statuscode: 500" in found["crashloop.liveness_probe"].summary
    healthy = {"name": "x", "image": "app:v1", "ready": True, "restart_count": 0, "state": {"running": {}}}
    assert set(run([pod("a", 1, healthy)])) == {"crashloop.not_reproduced"}


def test_no_evidence_no_findings() -> None:
    inp = AnalysisInput(target=TARGET, labels={}, alerts=[], now=NOW, evidence={})
    assert analyze_crashloop(inp) == []


# ---------------------------------------------------------------------- the rollout timeline's classes


def rev(
    number: int,
    rs: str,
    created: str,
    *,
    current: bool = False,
    history: list[int] | None = None,
    ready: int = 0,
) -> dict[str, Any]:
    return {
        "revision": number,
        "replicaset": f"playcode-app-{rs}",
        "pod_template_hash": rs,
        "images": [f"registry.example/playcode-app:{rs}"],
        "created": created,
        "revision_history": history or [],
        "ready": ready,
        "current": current,
    }


def scaled(rs: str, when: str, before: int = 0, after: int = 3) -> dict[str, Any]:
    return {
        "reason": "ScalingReplicaSet",
        "message": f"Scaled up replica set playcode-app-{rs} from {before} to {after}",
        "first_seen": when,
        "last_seen": when,
    }


def hist(
    current: int, revisions: list[dict[str, Any]], events: list[dict[str, Any]] | None = None, **dep: Any
) -> dict[str, Any]:
    return {
        "deployment": {"name": "playcode-app", "revision": current, **dep},
        "revisions": revisions,
        "scaling_events": events or [],
    }


def crashing(revision: int, image: str = "x") -> dict[str, Any]:
    return pod(f"p{revision}", revision, container(image=image))


def test_a_reused_replicaset_became_current_when_the_controller_scaled_it_up_not_when_created() -> None:
    # a human rolled back to revision 1's template (now revision 3) 5 minutes ago; it crashes
    h = hist(
        3,
        [
            rev(2, "bbb", "2026-11-25T08:00:00Z", ready=3),
            rev(3, "aaa", "2026-11-01T08:00:00Z", current=True, history=[1]),
        ],
        [scaled("bbb", "2026-11-25T08:00:00Z"), scaled("aaa", "2026-11-26T08:25:00Z")],
    )
    found = run([crashing(3)], hist=h)
    f = found["crashloop.regression"]
    assert "became current 5 min ago (ScalingReplicaSet event)" in f.summary
    (row,) = [r for r in f.details["timeline"] if r["revision"] == 3]
    assert row["became_current"] == "2026-11-26T08:25:00Z" and row["reused_from"] == [1]
    assert row["images"] == ["playcode-app:aaa"]  # by tag; the registry is in the details


def test_a_reused_replicaset_without_any_time_is_not_recent() -> None:
    h = hist(
        3,
        [
            rev(2, "bbb", "2026-11-25T08:00:00Z", ready=3),
            rev(3, "aaa", "2026-11-01T08:00:00Z", current=True, history=[1]),
        ],
    )
    found = run([crashing(3)], hist=h)
    assert "crashloop.regression" not in found
    f = found["crashloop.predates_rollout"]
    assert "at an unknown time" in f.summary and "reused from revision 1" in f.summary
    assert f.details["timeline"][-1]["became_current"] is None


def test_a_redeploy_of_an_old_template_that_crashes_is_recent_by_the_progressing_condition() -> None:
    progressing = {
        "type": "Progressing",
        "reason": "ReplicaSetUpdated",
        "message": 'ReplicaSet "playcode-app-aaa" is progressing.',
        "last_update": "2026-11-26T08:27:00Z",
    }
    h = hist(
        5,
        [
            rev(4, "bbb", "2026-11-20T08:00:00Z", ready=3),
            rev(5, "aaa", "2026-10-01T08:00:00Z", current=True, history=[2]),
        ],
        conditions=[progressing],
    )
    f = run([crashing(5)], hist=h)["crashloop.regression"]
    assert "3 min ago (Progressing condition lastUpdateTime (at or before))" in f.summary
    assert "users are still served by its 3 ready pod(s)" in f.summary


def test_a_revision_current_for_days_that_starts_crashing_predates_the_rollout() -> None:
    h = hist(
        64, [rev(63, "bbb", "2026-11-15T08:00:00Z"), rev(64, "ccc", "2026-11-21T08:00:00Z", current=True)]
    )
    found = run([crashing(64)], hist=h)
    assert "crashloop.regression" not in found
    f = found["crashloop.predates_rollout"]
    assert "revision 64 became current 5 days ago" in f.summary
    assert "not a recent rollout" in f.against["rollback"]


def test_an_old_oom_killed_redis_is_not_only_the_new_revision() -> None:
    h = hist(3, [rev(2, "bbb", "2026-10-01T08:00:00Z"), rev(3, "ccc", "2026-10-20T08:00:00Z", current=True)])
    found = run([pod("redis-1", 3, container(term="OOMKilled", code=137, image="redis:7"))], hist=h)
    assert "only the new revision" not in found["crashloop.oom_killed"].summary
    assert "crashloop.regression" not in found and "crashloop.predates_rollout" in found


def test_medic_restarted_after_its_own_rollback_reads_it_from_the_cluster() -> None:
    # Medic rolled back 30 -> 29 (now revision 31, the reused ReplicaSet) a minute ago; a fresh Medic
    # (empty ledger) sees revision 31 still crash
    rollback = (
        '{"from": 30, "to": 29, "from_hash": "bbb", "to_hash": "aaa", '
        '"at": "2026-11-26T08:29:00Z", "incident": "inc-1"}'
    )
    h = hist(
        31,
        [
            rev(30, "bbb", "2026-11-26T08:20:00Z"),
            rev(31, "aaa", "2026-11-24T08:30:00Z", current=True, history=[29]),
        ],
        annotations={"medic.playcode.gg/rollback": rollback},
    )
    found = run([crashing(31)], hist=h)
    assert "crashloop.regression" not in found
    f = found["crashloop.predates_rollout"]
    assert "Medic rolled back from revision 30 to 29 at 2026-11-26T08:29:00Z (incident inc-1)" in f.summary
    assert "2880" not in f.summary
    rows = {r["revision"]: r for r in f.details["timeline"]}
    assert (
        rows[31]["source"] == "Medic's rollback annotation"
        and rows[31]["became_current"] == "2026-11-26T08:29:00Z"
    )
    assert "Medic rolled back from it" in rows[30]["note"]
    assert "the crash continues" in f.against["rollback"]


def _playbook_and_rule() -> tuple[Any, Any]:
    from medic.playbooks.compiled import CompiledAction, CompiledPlaybook
    from medic.playbooks.contract import ActionDef, NoParams
    from medic.playbooks.model import ActionSpec, Playbook
    from medic.rules.model import Rule

    async def act() -> None:  # pragma: no cover - never called by decide
        return None

    action = CompiledAction(
        "rollback", ActionSpec(use="x.rollback"), ActionDef("x.rollback", act, NoParams), NoParams()
    )
    pb = CompiledPlaybook(Playbook(name="p", target="deployment"), "f", [], [], {"rollback": action})
    r = Rule.model_validate(
        {
            "name": "r",
            "matchers": ['a="b"'],
            "playbook": "p",
            "remediation": {"action": "rollback", "mode": "auto", "when": ["crashloop.regression"]},
        }
    )
    return r, pb


def test_the_decision_names_the_finding_that_blocked_the_rollback() -> None:
    from medic.decision.decide import decide

    r, pb = _playbook_and_rule()
    found = run(
        [pod("a", 2, container())], logs=["Error: Redis connection to redis:6379 failed - ECONNREFUSED"]
    )
    d = decide(r, pb, list(found.values()), "enforce")
    assert d.action is None
    assert d.reason == "no rollback: the crash is caused by redis being down (crashloop.dependency_down)"
    # a new revision that cannot start: proposed for approval even under an auto rule
    found = run([pod("a", 2, container(waiting="ImagePullBackOff", term="", restarts=0))])
    d = decide(r, pb, list(found.values()), "enforce")
    assert d.action is not None and d.mode == "approve"


def test_not_ready_and_crashloop_classify_a_container_the_same_way() -> None:
    from medic.analysis.workload import analyze_not_ready

    for waiting, words in (
        ("ImagePullBackOff", "cannot be pulled (ImagePullBackOff)"),
        ("CreateContainerConfigError", "cannot start: CreateContainerConfigError: couldn't find key DB_URL"),
    ):
        c = container(
            waiting=waiting, term="", restarts=0, message="couldn't find key DB_URL in Secret playcode/app"
        )
        p = pod("a", 2, c) | {"phase": "Pending", "node": "n1", "conditions": {"Ready": "False"}}
        found = run([p])
        inp = AnalysisInput(
            target=TARGET,
            labels={},
            alerts=[],
            now=NOW,
            evidence={
                "k8s.pod_describe": Evidence(
                    step="k8s.pod_describe",
                    collector="k8s.pod_describe",
                    status=StepStatus.OK,
                    data={"pods": [p]},
                )
            },
        )
        (not_ready,) = analyze_not_ready(inp)
        assert words in not_ready.summary
        assert any(words in f.summary for f in found.values())
