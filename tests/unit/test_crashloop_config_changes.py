"""Issue 12.2: a crash that predates the rollout says when the ConfigMaps the pods read last
changed against the first crash (a change inside the window is the leading suspect, named
first), and says so when it cannot know (403, not read, Secrets) instead of implying nothing
changed. Pure: evidence data in, findings out."""

from __future__ import annotations

from typing import Any

from medic.analysis.crashloop.config_changes import SECRET_WHY
from medic.domain.incident import Finding
from tests.unit.test_crashloop_analyzer import NOW, container, hist, pod, rev, run

# revision 64 became current 5 days before NOW (2026-11-26T08:30Z); the pods crash since 08:10
FIRST_CRASH = "2026-11-26T08:10:00Z"
BACKOFF = {
    "type": "Warning",
    "reason": "BackOff",
    "message": "Back-off restarting failed container playcode-app",
    "object": {"kind": "Pod", "name": "p64"},
    "first_seen": FIRST_CRASH,
    "last_seen": "2026-11-26T08:29:00Z",
}


def cm(
    name: str, *writes: tuple[str, str], created: str = "2026-11-01T08:00:00Z", **kw: Any
) -> dict[str, Any]:
    """A ConfigMap's metadata as k8s.rollout_history stores it; writes are (manager, time)."""
    return {
        "name": name,
        "resource_version": "42",
        "created": created,
        "writes": [{"manager": m, "operation": "Update", "time": t} for m, t in writes],
        **kw,
    }


def ref(name: str, kind: str = "ConfigMap", via: str = "envFrom") -> dict[str, str]:
    return {"kind": kind, "name": name, "via": via}


def predates(
    refs: list[dict[str, str]],
    config_maps: list[dict[str, Any]] | None,
    *,
    events: list[dict[str, Any]] | None = None,
    revisions: list[dict[str, Any]] | None = None,
    current: int = 64,
    **dep: Any,
) -> Finding:
    h = hist(
        current,
        revisions
        or [rev(63, "bbb", "2026-11-15T08:00:00Z"), rev(64, "ccc", "2026-11-21T08:00:00Z", current=True)],
        config_refs=refs,
        **dep,
    )
    if config_maps is not None:
        h["config_maps"] = config_maps
    found = run(
        [pod(f"p{current}", current, container())], hist=h, events=[BACKOFF] if events is None else events
    )
    assert "crashloop.regression" not in found
    return found["crashloop.predates_rollout"]


def test_a_configmap_changed_in_the_window_is_the_leading_suspect_named_first() -> None:
    f = predates(
        [ref("flags", via="volume flags"), ref("app-config")],
        [
            cm("flags", ("kubectl-client-side-apply", "2026-11-02T08:00:00Z")),
            cm(
                "app-config",
                ("kubectl-client-side-apply", "2026-11-02T08:00:00Z"),
                ("kubectl-edit", "2026-11-26T08:02:00Z"),
            ),
        ],
        writes=[{"manager": "kubectl-patch", "operation": "Update", "time": "2026-11-26T08:00:00Z"}],
    )
    assert (
        "; what else changed: ConfigMap app-config changed 8 min before the first crash "
        "(by kubectl-edit, Update); the Deployment was written by kubectl-patch (Update) 30 min ago"
    ) in f.summary
    assert (
        "ConfigMap flags unchanged since 2026-11-02T08:00:00Z (24 days before the first crash)" in f.summary
    )
    assert f.details["changed"][0].startswith("ConfigMap app-config changed 8 min before")
    assert [(r["name"], r["state"]) for r in f.details["config"]] == [
        ("app-config", "suspect"),
        ("flags", "unchanged"),
    ]
    assert f.details["config"][0]["changed_at"] == "2026-11-26T08:02:00Z"
    assert f.details["config"][0]["manager"] == "kubectl-edit"
    assert f.details["first_crash"] == FIRST_CRASH
    assert f.details["window_start"] == "2026-11-21T08:00:00Z"  # revision 64 became current
    assert not any("configmap" in step for step in f.next_steps)  # its times are known


def test_the_latest_change_before_the_crash_comes_first_and_a_change_after_it_is_no_suspect() -> None:
    f = predates(
        [ref("a"), ref("b"), ref("c")],
        [
            cm("a", ("helm", "2026-11-25T08:00:00Z")),
            cm("b", ("argocd-controller", "2026-11-26T08:20:00Z")),
            cm("c", ("kubectl-edit", "2026-11-26T07:40:00Z")),
        ],
    )
    assert [(r["name"], r["state"]) for r in f.details["config"]] == [
        ("c", "suspect"),
        ("a", "suspect"),
        ("b", "changed_after_crash"),
    ]
    assert f.details["changed"] == [
        "ConfigMap c changed 30 min before the first crash (by kubectl-edit, Update)",
        "ConfigMap a changed 24 h before the first crash (by helm, Update)",
        "ConfigMap b changed 10 min after the first crash (by argocd-controller, Update)",
    ]


def test_configmaps_changed_long_before_the_window_are_unchanged_since() -> None:
    f = predates([ref("app-config")], [cm("app-config", ("helm", "2026-11-10T08:10:00Z"))])
    assert f.summary.endswith(
        "; no other change found; ConfigMap app-config unchanged since 2026-11-10T08:10:00Z "
        "(16 days before the first crash)"
    ), f.summary
    assert f.details["changed"] == []


def test_a_configmap_without_writes_is_dated_by_its_creation() -> None:
    f = predates([ref("fresh")], [cm("fresh", created="2026-11-26T07:55:00Z")])
    assert f.details["changed"] == ["ConfigMap fresh changed 15 min before the first crash (created)"]


def test_a_forbidden_configmap_is_unknown_never_unchanged() -> None:
    f = predates(
        [ref("app-config")],
        [{"name": "app-config", "status": "forbidden", "error": "GET …: 403 Forbidden"}],
    )
    assert "no other change found in what Medic could read" in f.summary
    assert "last change of ConfigMap app-config unknown (403 forbidden" in f.summary
    assert "unchanged" not in f.summary
    assert f.details["config"][0]["state"] == "unknown"
    assert any(
        s.startswith("kubectl get configmap app-config -n playcode -o jsonpath=") for s in f.next_steps
    )


def test_a_missing_configmap_is_said_missing() -> None:
    f = predates([ref("gone")], [{"name": "gone", "status": "missing"}])
    assert "ConfigMap gone does not exist (404)" in f.summary
    assert f.details["config"][0]["state"] == "missing"


def test_secrets_are_not_read_and_the_finding_says_why_and_how_to_look() -> None:
    f = predates(
        [ref("app-secrets", "Secret"), ref("db", "Secret", "env DB_URL"), ref("app-config")],
        [cm("app-config", ("helm", "2026-11-10T08:10:00Z"))],
    )
    assert f"last change of Secrets app-secrets, db unknown ({SECRET_WHY})" in f.summary
    assert "no other change found in what Medic could read" in f.summary
    rows = {r["name"]: r for r in f.details["config"]}
    assert rows["db"]["state"] == "unknown" and SECRET_WHY in rows["db"]["note"]
    assert [s.split(" -n ")[0] for s in f.next_steps if s.startswith("kubectl get secret")] == [
        "kubectl get secret app-secrets",
        "kubectl get secret db",
    ]


def test_a_bundle_stored_before_configmaps_were_read_says_not_read() -> None:
    f = predates([ref("app-config")], None)
    assert "last change of ConfigMap app-config unknown (not read)" in f.summary


def test_an_unknown_rollout_time_bounds_the_window_at_two_hours_before_the_first_crash() -> None:
    # revision 3 reuses revision 1's ReplicaSet and no source dates it: the window is the 2 h
    # before the first crash
    revisions = [
        rev(2, "bbb", "2026-11-25T08:00:00Z", ready=3),
        rev(3, "aaa", "2026-11-01T08:00:00Z", current=True, history=[1]),
    ]
    h_refs = [ref("recent"), ref("older")]
    metas = [
        cm("recent", ("kubectl-edit", "2026-11-26T07:10:00Z")),
        cm("older", ("helm", "2026-11-26T05:00:00Z")),
    ]
    f = predates(
        h_refs,
        metas,
        revisions=revisions,
        current=3,
        events=[dict(BACKOFF, object={"kind": "Pod", "name": "p3"})],
    )
    assert f.details["window_start"] == "2026-11-26T06:10:00Z"
    assert [(r["name"], r["state"]) for r in f.details["config"]] == [
        ("recent", "suspect"),
        ("older", "unchanged"),
    ]


def test_without_events_the_first_crash_is_the_last_exit_and_without_either_now() -> None:
    exited = container()
    exited["last_state"]["terminated"]["finished_at"] = "2026-11-26T08:20:00Z"
    h = hist(
        64,
        [rev(63, "bbb", "2026-11-15T08:00:00Z"), rev(64, "ccc", "2026-11-21T08:00:00Z", current=True)],
        config_refs=[ref("app-config")],
    )
    h["config_maps"] = [cm("app-config", ("kubectl-edit", "2026-11-26T08:05:00Z"))]
    f = run([pod("p64", 64, exited)], hist=h)["crashloop.predates_rollout"]
    assert f.details["changed"] == [
        "ConfigMap app-config changed 15 min before the first crash (by kubectl-edit, Update)"
    ]
    f = run([pod("p64", 64, container())], hist=h)["crashloop.predates_rollout"]
    assert f.details["first_crash"] is None
    assert f.details["changed"] == ["ConfigMap app-config changed 25 min ago (by kubectl-edit, Update)"]
    assert NOW.isoformat().startswith("2026-11-26T08:30")


def test_a_crash_that_began_under_an_older_revision_looks_before_the_first_crash() -> None:
    # revision 64 became current 30 min ago, but pods of 63 crashed first (07:30): a ConfigMap
    # edited 10 min before that is the suspect, though it predates revision 64
    revisions = [rev(63, "bbb", "2026-11-15T08:00:00Z"), rev(64, "ccc", "2026-11-26T08:00:00Z", current=True)]
    h = hist(64, revisions, config_refs=[ref("app-config")])
    h["config_maps"] = [cm("app-config", ("kubectl-edit", "2026-11-26T07:20:00Z"))]
    early = dict(BACKOFF, first_seen="2026-11-26T07:30:00Z", object={"kind": "Pod", "name": "p63"})
    found = run([pod("p63", 63, container()), pod("p64", 64, container())], hist=h, events=[early])
    f = found["crashloop.predates_rollout"]
    assert "older revisions (63)" in f.summary
    assert f.details["window_start"] == "2026-11-26T05:30:00Z"
    assert f.details["changed"] == [
        "ConfigMap app-config changed 10 min before the first crash (by kubectl-edit, Update)"
    ]
