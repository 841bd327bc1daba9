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
    assert found["crashloop.regression"].details["max_mode"] == "approve"
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
