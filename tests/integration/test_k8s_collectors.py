"""The ``k8s.*`` collectors against the fake kube-apiserver, through the real kubernetes_asyncio
client (KubeClient) and the real runner (redaction, size cap, timeouts): their data on a
crash-looping rollout, the previous-log fallback, metrics-server absent, API faults with bounded
retries, timeouts, secrets in the pod spec, the per-run memo and API calls that do not grow with
the number of crashing pods."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest

from medic.app.backends import Backends
from medic.app.catalogue import default_registry
from medic.app.settings import Settings
from medic.clients.kube.client import KubeClient
from medic.collectors.k8s.common import cpu_millicores, memory_bytes
from medic.collectors.k8s.pods import PodDescribeParams, pod_describe
from medic.domain.evidence import Evidence, StepStatus
from medic.domain.incident import IncidentAlert, Target
from medic.domain.redact import REDACTED
from medic.playbooks.contract import CollectorDef, Registry, StepContext
from medic.playbooks.runner import PlannedStep, run_step, run_steps
from tests.fakes.kube_apiserver import FakeKubeApiserver, RecordedRequest
from tests.integration.kube_support import FAST

NS = "playcode"
APP = "playcode-app"
MiB = 2**20
DB_PASSWORD = "hunter2-Sup3rSecret"
MONGO_PASSWORD = "s3cr3tMongoPw"
REDIS_PASSWORD = "r3disPassw0rd"
RESOURCES = {"requests": {"cpu": "250m", "memory": "256Mi"}, "limits": {"cpu": "1", "memory": "512Mi"}}
LIVENESS = {"httpGet": {"path": "/health", "port": 3000}, "periodSeconds": 10}
CRASH_LOG = "starting playcode-app\nError: Cannot find module '/app/server.js'\n"
APP_CONFIG = "app-config"  # the ConfigMap the app reads (envFrom)
CRASHLOOP_PLAYBOOK = {  # playbooks/crashloop (DESIGN §2), the Kubernetes part
    "k8s.pod_describe": {},
    "k8s.pod_logs": {"previous": True, "tail": 200},
    "k8s.events": {},
    "k8s.rollout_history": {},
    "k8s.top_pods": {},
    "k8s.node_describe": {},
}
ALL = {**CRASHLOOP_PLAYBOOK, "k8s.hpa_status": {}, "k8s.pvc_status": {}, "k8s.ingress": {}}


@pytest.fixture(scope="module")
def registry() -> Registry:
    return default_registry()


@dataclass
class Rollout:
    crashing: list[str]  # pods of revision 2 (bad image)
    healthy: list[str]  # pods of revision 1
    rs: dict[int, str]  # revision -> ReplicaSet name


def app_container(image: str) -> dict[str, Any]:
    return {
        "name": APP,
        "image": image,
        "ports": [{"containerPort": 3000}],
        "env": [
            {"name": "LOG_LEVEL", "value": "info"},
            {"name": "DB_PASSWORD", "value": DB_PASSWORD},
            {"name": "MONGO_URL", "value": f"mongodb://app:{MONGO_PASSWORD}@mongodb-0.mongodb:27017/userdb"},
            {"name": "CACHE_ENDPOINT", "value": f"redis://default:{REDIS_PASSWORD}@redis:6379/0"},
            {
                "name": "SESSION_SECRET",
                "valueFrom": {"secretKeyRef": {"name": "app-secrets", "key": "session"}},
            },
        ],
        "envFrom": [{"configMapRef": {"name": APP_CONFIG}}],
        "resources": RESOURCES,
        "livenessProbe": LIVENESS,
    }


def crashloop(fake: FakeKubeApiserver, replicas: int = 3, *, recreate: bool = False) -> Rollout:
    """playcode-app v1 (healthy) rolled out to v2, whose containers crash-loop."""
    fake.add_node("node-a")
    fake.add_node("node-b", conditions={"MemoryPressure": "True"})
    fake.set_image_log("app:v1", "listening on :3000\n")
    fake.set_image_log("app:v2", CRASH_LOG, previous=True)
    fake.add_configmap(NS, APP_CONFIG, {"LOG_FORMAT": "json"})
    fake.add_deployment(
        NS,
        APP,
        replicas=replicas,
        containers=[app_container("app:v1")],
        strategy={"type": "Recreate"} if recreate else None,
    )
    fake.bad_images.add("app:v2")
    fake.set_image(
        NS, APP, "app:v2", change_cause="kubectl set image deployment/playcode-app playcode-app=app:v2"
    )
    pods = fake.pods_of(NS, APP)
    by_image: dict[str, list[str]] = {}
    for pod in pods:
        by_image.setdefault(pod["spec"]["containers"][0]["image"], []).append(pod["metadata"]["name"])
    rs = {
        int(r["metadata"]["annotations"]["deployment.kubernetes.io/revision"]): r["metadata"]["name"]
        for r in fake.replicasets_of(NS, APP)
    }
    return Rollout(crashing=by_image.get("app:v2", []), healthy=by_image.get("app:v1", []), rs=rs)


def make_ctx(kube: KubeClient | None, target: Target | None, pods: list[str]) -> StepContext:
    now = datetime.now(UTC)
    alerts = [
        IncidentAlert(
            identity=f"alert-{i}",
            status="firing",
            labels={"alertname": "KubePodCrashLooping", "namespace": NS, "pod": pod, "container": APP},
            startsAt=now,
        )
        for i, pod in enumerate(pods)
    ]
    backends = Backends(settings=Settings(kube_mode="off", namespaces=[NS]).diagnosed, kube=kube)
    return StepContext(
        target=target,
        labels={"alertname": "KubePodCrashLooping", "namespace": NS},
        alerts=alerts,
        backends=backends,
        now=now,
        timeout=10.0,
    )


DEPLOYMENT = Target(kind="deployment", namespace=NS, name=APP)


def planned(registry: Registry, name: str, timeout: float = 10.0, **params: Any) -> PlannedStep:
    collector: CollectorDef = registry.collectors[name]
    return PlannedStep(name, collector, collector.params(**params), timeout)


async def run(
    registry: Registry, ctx: StepContext, name: str, timeout: float = 10.0, **params: Any
) -> Evidence:
    return await run_step(planned(registry, name, timeout, **params), ctx, max_bytes=1024 * 1024)


async def run_all(
    registry: Registry, ctx: StepContext, steps: dict[str, dict[str, Any]]
) -> dict[str, Evidence]:
    evidence = await run_steps(
        [planned(registry, name, **params) for name, params in steps.items()],
        ctx,
        deadline=30,
        max_bytes=1024 * 1024,
    )
    return {e.collector: e for e in evidence}


def ok(ev: Evidence) -> Any:
    assert ev.status == StepStatus.OK, (ev.collector, ev.status, ev.error)
    return ev.data


def logs_requests(fake: FakeKubeApiserver) -> list[RecordedRequest]:
    return fake.requests_matching("GET", r"/log$")


# ---------------------------------------------------------------------- pod_describe


async def test_pod_describe_on_a_crashlooping_rollout(
    fake: FakeKubeApiserver, kube: KubeClient, registry: Registry
) -> None:
    rollout = crashloop(fake)
    [bad] = rollout.crashing
    data = ok(await run(registry, make_ctx(kube, DEPLOYMENT, [bad]), "k8s.pod_describe"))
    assert data["total_pods"] == 4  # rolling update stuck: 3 old pods + 1 crashing new one
    first = data["pods"][0]
    assert first["name"] == bad  # the alert's pod first
    assert first["namespace"] == NS
    assert first["phase"] == "Running"
    assert first["node"] in ("node-a", "node-b")
    assert first["replicaset"] == rollout.rs[2]
    assert first["revision"] == 2
    assert first["pod_template_hash"] == rollout.rs[2].rsplit("-", 1)[1]
    assert first["conditions"]["Ready"] == "False"
    assert isinstance(first["created"], str) and first["created"].endswith("Z")
    [c] = first["containers"]
    assert c["name"] == APP and c["image"] == "app:v2"
    assert c["ready"] is False
    assert c["restart_count"] == 5
    assert c["state"]["waiting"]["reason"] == "CrashLoopBackOff"
    assert c["last_state"]["terminated"]["reason"] == "Error"
    assert c["last_state"]["terminated"]["exit_code"] == 1
    assert set(c["last_state"]["terminated"]) == {
        "reason",
        "exit_code",
        "signal",
        "started_at",
        "finished_at",
        "message",
    }
    assert c["resources"] == RESOURCES
    assert c["liveness_probe"] == LIVENESS and c["readiness_probe"] is None
    assert {"name": "LOG_LEVEL", "value": "info"} in c["env"]
    assert {"name": "DB_PASSWORD", "value": REDACTED} in c["env"]
    assert {
        "name": "SESSION_SECRET",
        "value_from": {"secretKeyRef": {"name": "app-secrets", "key": "session"}},
    } in (c["env"])
    assert first["init_containers"] == []
    others = data["pods"][1:]
    assert [p["revision"] for p in others] == [1, 1, 1]
    assert all(p["containers"][0]["ready"] for p in others)


async def test_secret_env_values_never_reach_the_evidence(
    fake: FakeKubeApiserver, kube: KubeClient, registry: Registry
) -> None:
    rollout = crashloop(fake)
    ctx = make_ctx(kube, DEPLOYMENT, rollout.crashing)
    # the collector itself redacts env values (the runner redacts again)
    raw = json.dumps((await pod_describe(ctx, PodDescribeParams())).model_dump(mode="json"))
    evidence = await run_all(registry, ctx, ALL)
    bundle = json.dumps([e.model_dump(mode="json") for e in evidence.values()])
    for text in (raw, bundle):
        assert DB_PASSWORD not in text
        assert MONGO_PASSWORD not in text
        assert REDIS_PASSWORD not in text
    assert '{"name": "MONGO_URL", "value": "[REDACTED]"}' in raw  # a secret-looking name
    assert '{"name": "CACHE_ENDPOINT", "value": "redis://default:[REDACTED]@redis:6379/0"}' in raw


# ---------------------------------------------------------------------- pod_logs


async def test_pod_logs_previous_and_the_fallback_to_the_current_log(
    fake: FakeKubeApiserver, kube: KubeClient, registry: Registry
) -> None:
    rollout = crashloop(fake)
    [bad], good = rollout.crashing, rollout.healthy[0]
    fake.clear_requests()
    data = ok(await run(registry, make_ctx(kube, DEPLOYMENT, [bad, good]), "k8s.pod_logs"))
    crash, healthy = data["logs"]
    assert crash == {
        "pod": bad,
        "container": APP,
        "previous": True,
        "lines": CRASH_LOG.splitlines(),
        "truncated": False,
        "error": None,
    }
    # the healthy pod never restarted: 400 for --previous, recorded, then its current log
    assert healthy["pod"] == good and healthy["previous"] is False
    assert healthy["lines"] == ["listening on :3000"]
    assert "previous" in healthy["error"] and "400" in healthy["error"]
    requests = logs_requests(fake)
    assert [(r.path.split("/")[-2], r.query.get("previous"), r.status) for r in requests] == [
        (bad, "true", 200),
        (good, "true", 400),
        (good, None, 200),
    ]
    assert requests[0].query["tailLines"] == "200"
    assert requests[0].query["limitBytes"] == "65536"
    assert requests[0].query["container"] == APP


async def test_pod_logs_keep_the_newest_lines_within_max_bytes(
    fake: FakeKubeApiserver, kube: KubeClient, registry: Registry
) -> None:
    rollout = crashloop(fake)
    [bad] = rollout.crashing
    text = "".join(f"line {i:04d} " + "x" * 30 + "\n" for i in range(500))
    fake.set_log(NS, bad, APP, text, previous=True)
    fake.clear_requests()
    data = ok(
        await run(registry, make_ctx(kube, DEPLOYMENT, [bad]), "k8s.pod_logs", max_pods=1, max_bytes=1024)
    )
    [entry] = data["logs"]
    assert entry["truncated"] is True and entry["error"] is None
    assert entry["lines"][-1] == "line 0499 " + "x" * 30  # the crash is at the end: kept
    assert sum(len(line) + 1 for line in entry["lines"]) <= 1024
    assert 10 < len(entry["lines"]) < 200
    assert len(logs_requests(fake)) == 2


async def test_pod_logs_of_a_named_container(
    fake: FakeKubeApiserver, kube: KubeClient, registry: Registry
) -> None:
    rollout = crashloop(fake)
    data = ok(
        await run(
            registry,
            make_ctx(kube, DEPLOYMENT, rollout.crashing),
            "k8s.pod_logs",
            container="sidecar",
            max_pods=1,
        )
    )
    [entry] = data["logs"]
    assert entry["container"] == "sidecar" and entry["lines"] == []
    assert "not valid" in entry["error"]


# ---------------------------------------------------------------------- events


async def test_events_of_the_pods_replicasets_and_deployment_newest_first(
    fake: FakeKubeApiserver, kube: KubeClient, registry: Registry
) -> None:
    rollout = crashloop(fake)
    [bad] = rollout.crashing
    fake.add_deployment(NS, "redis", "redis:7", replicas=1)  # its events are not ours
    fake.clock.advance(120)
    gone = f"{rollout.rs[2]}-zz9zz"  # a crashing pod already replaced: its events still count
    fake.add_event(
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": gone, "namespace": NS, "uid": "u-gone"}},
        "BackOff",
        "Back-off restarting failed container",
    )
    fake.clock.advance(60)
    fake.add_event(fake.get_object("Pod", NS, bad), "Unhealthy", "Liveness probe failed: connection refused")
    fake.clear_requests()
    data = ok(await run(registry, make_ctx(kube, DEPLOYMENT, [bad]), "k8s.events"))
    events = data["events"]
    assert events[0]["reason"] == "Unhealthy" and events[0]["object"] == {"kind": "Pod", "name": bad}
    assert events[1]["object"] == {"kind": "Pod", "name": gone}
    seen = [e["last_seen"] for e in events]
    assert seen == sorted(seen, reverse=True)
    objects = {(e["object"]["kind"], e["object"]["name"]) for e in events}
    assert ("Deployment", APP) in objects
    assert ("ReplicaSet", rollout.rs[1]) in objects and ("ReplicaSet", rollout.rs[2]) in objects
    assert not any("redis" in name for _, name in objects)
    backoff = next(e for e in events if e["reason"] == "BackOff" and e["object"]["name"] == bad)
    assert backoff["type"] == "Warning" and backoff["count"] == 5
    assert set(backoff) == {"type", "reason", "message", "object", "count", "first_seen", "last_seen"}
    assert fake.count("GET", r"/events$") == 1
    limited = ok(await run(registry, make_ctx(kube, DEPLOYMENT, [bad]), "k8s.events", limit=2))
    assert [e["reason"] for e in limited["events"]] == ["Unhealthy", "BackOff"]


# ---------------------------------------------------------------------- rollout_history


async def test_rollout_history(fake: FakeKubeApiserver, kube: KubeClient, registry: Registry) -> None:
    rollout = crashloop(fake)
    # a canary Deployment whose ReplicaSets and pods the main selector also matches
    fake.add_deployment(NS, "playcode-canary", "app:v1", replicas=1, labels={"app": APP, "track": "canary"})
    data = ok(await run(registry, make_ctx(kube, DEPLOYMENT, rollout.crashing), "k8s.rollout_history"))
    stored = fake.get_object("Deployment", NS, APP)
    d = data["deployment"]
    assert d["name"] == APP and d["namespace"] == NS and d["uid"] == stored["metadata"]["uid"]
    assert d["revision"] == 2
    assert d["images"] == ["app:v2"]
    assert d["replicas"] == 3 and d["updated_replicas"] == 1 and d["ready_replicas"] == 3
    assert d["paused"] is False
    assert d["generation"] == stored["metadata"]["generation"] == d["observed_generation"]
    assert {c["type"] for c in d["conditions"]} == {"Available", "Progressing"}
    assert set(d["conditions"][0]) == {
        "type",
        "status",
        "reason",
        "message",
        "last_update",
        "last_transition",
    }
    assert d["labels"] == {"app": APP}
    assert [r["revision"] for r in data["revisions"]] == [2, 1]  # only our ReplicaSets, newest first
    new, old = data["revisions"]
    assert new["replicaset"] == rollout.rs[2] and new["current"] is True
    assert new["images"] == ["app:v2"]
    assert new["change_cause"] == "kubectl set image deployment/playcode-app playcode-app=app:v2"
    assert new["desired"] == 1 and new["ready"] == 0 and new["available"] == 0
    assert new["pod_template_hash"] == rollout.rs[2].rsplit("-", 1)[1]
    assert old["current"] is False and old["images"] == ["app:v1"]
    assert old["desired"] == old["ready"] == old["available"] == 3
    assert isinstance(old["created"], str)
    assert new["revision_history"] == old["revision_history"] == []
    assert new["limits"] == {APP: {"cpu": "1", "memory": "512Mi"}}
    # the deployment controller's scale-ups, oldest first: what the rollout timeline reads
    ups = [e["message"] for e in data["scaling_events"]]
    assert ups[0] == f"Scaled up replica set {rollout.rs[1]} from 0 to 3"
    assert f"Scaled up replica set {rollout.rs[2]} from 0 to 1" in ups
    assert all(e["object"] == {"kind": "Deployment", "name": APP} for e in data["scaling_events"])


async def test_rollout_history_after_a_rollback_names_the_reused_replicaset(
    fake: FakeKubeApiserver, kube: KubeClient, registry: Registry
) -> None:
    """A rollback reuses revision 1's ReplicaSet as revision 3 (revision-history "1"): its
    creationTimestamp is old, the scale-up event says when it became current again."""
    from medic.domain.rollout import SOURCE_EVENT, build_timeline

    rollout = crashloop(fake)
    fake.set_image(NS, APP, "app:v1")
    data = ok(await run(registry, make_ctx(kube, DEPLOYMENT, []), "k8s.rollout_history"))
    current = next(r for r in data["revisions"] if r["current"])
    assert current["revision"] == 3 and current["replicaset"] == rollout.rs[1]
    assert current["revision_history"] == [1]
    timeline = build_timeline(data)
    cur = timeline.current
    assert cur is not None and cur.reused_from == (1,) and cur.source == SOURCE_EVENT
    last_up = [
        e for e in data["scaling_events"] if e["message"].startswith(f"Scaled up replica set {rollout.rs[1]}")
    ]
    assert cur.became_current is not None and cur.became_current.isoformat().startswith(
        last_up[-1]["last_seen"][:19]
    )


async def test_rollout_history_names_the_config_the_template_reads(
    fake: FakeKubeApiserver, kube: KubeClient, registry: Registry
) -> None:
    crashloop(fake)
    dep = fake.get_object("Deployment", NS, APP)
    spec = dep["spec"]["template"]["spec"]
    spec["volumes"] = [{"name": "cfg", "configMap": {"name": "app-config"}}]
    container = spec["containers"][0]
    container["envFrom"] = [{"secretRef": {"name": "app-secrets"}}]
    container["env"] = [{"name": "DB_URL", "valueFrom": {"secretKeyRef": {"name": "db", "key": "url"}}}]
    fake.update_object(dep)
    data = ok(await run(registry, make_ctx(kube, DEPLOYMENT, []), "k8s.rollout_history"))
    assert data["deployment"]["config_refs"] == [
        {"kind": "ConfigMap", "name": "app-config", "via": "volume cfg"},
        {"kind": "Secret", "name": "app-secrets", "via": "envFrom"},
        {"kind": "Secret", "name": "db", "via": "env DB_URL"},
    ]
    assert isinstance(data["deployment"]["writes"], list)


async def test_rollout_history_reads_the_configmaps_metadata_never_their_data(
    fake: FakeKubeApiserver, kube: KubeClient, registry: Registry
) -> None:
    """Issue 12.2: when each ConfigMap the pods read was last written, by whom; its data (and the
    last-applied annotation that copies it) never reaches the evidence."""
    crashloop(fake)
    fake.clock.advance(600)
    fake.set_configmap_data(NS, APP_CONFIG, {"LOG_FORMAT": "Pl4ntedConfigValue"})
    edited = fake.get_object("ConfigMap", NS, APP_CONFIG)["metadata"]
    ev = await run(registry, make_ctx(kube, DEPLOYMENT, []), "k8s.rollout_history")
    (cm,) = ok(ev)["config_maps"]
    assert cm["name"] == APP_CONFIG and cm["status"] == "ok" and cm["error"] is None
    assert cm["resource_version"] == edited["resourceVersion"]
    assert cm["created"] == edited["creationTimestamp"]
    assert [(w["manager"], w["operation"]) for w in cm["writes"]] == [
        ("kubectl-edit", "Update"),  # newest first
        ("kubectl-client-side-apply", "Update"),
    ]
    assert cm["writes"][0]["time"] > cm["writes"][1]["time"]
    dumped = ev.model_dump_json()
    assert "Pl4ntedConfigValue" not in dumped and "LOG_FORMAT" not in dumped
    assert "last-applied-configuration" not in dumped
    assert fake.count("GET", rf"/configmaps/{APP_CONFIG}$") == 1


async def test_a_missing_forbidden_or_unread_configmap_is_reported_and_the_step_succeeds(
    fake: FakeKubeApiserver, kube: KubeClient, registry: Registry
) -> None:
    crashloop(fake)
    dep = fake.get_object("Deployment", NS, APP)
    spec = dep["spec"]["template"]["spec"]
    extra = [f"cfg-{n:02d}" for n in range(11)]
    for name in extra[1:]:
        fake.add_configmap(NS, name)
    spec["volumes"] = [{"name": name, "configMap": {"name": name}} for name in extra]  # cfg-00 missing
    fake.update_object(dep)
    fake.deny("get", "configmaps", namespace=NS, name=APP_CONFIG)
    fake.clear_requests()
    data = ok(await run(registry, make_ctx(kube, DEPLOYMENT, []), "k8s.rollout_history"))
    states = {c["name"]: c for c in data["config_maps"]}
    assert list(states) == [APP_CONFIG, *extra]  # the template's order: sorted by name
    assert states[APP_CONFIG]["status"] == "forbidden" and "403" in states[APP_CONFIG]["error"]
    assert states["cfg-00"]["status"] == "missing" and "404" in states["cfg-00"]["error"]
    assert [states[n]["status"] for n in extra[1:9]] == ["ok"] * 8
    assert [states[n]["status"] for n in extra[9:]] == ["not_read", "not_read"]  # the first 10 only
    assert fake.count("GET", r"/configmaps/") == 10
    assert data["revisions"] and data["deployment"]["name"] == APP  # the history itself is intact


# ---------------------------------------------------------------------- top_pods


async def test_top_pods_and_metrics_server_absent(
    fake: FakeKubeApiserver, kube: KubeClient, registry: Registry
) -> None:
    rollout = crashloop(fake)
    [bad] = rollout.crashing
    fake.default_pod_usage = ("5m", "64Mi")
    fake.set_pod_metrics(NS, bad, ("1m", "500Mi"))
    ctx = make_ctx(kube, DEPLOYMENT, [bad])
    data = ok(await run(registry, ctx, "k8s.top_pods"))
    by_name = {p["name"]: p for p in data["pods"]}
    assert set(by_name) == {bad, *rollout.healthy}
    assert by_name[bad]["containers"] == [
        {
            "name": APP,
            "cpu_millicores": 1,
            "memory_bytes": 500 * MiB,
            "cpu_limit_millicores": 1000,
            "memory_limit_bytes": 512 * MiB,
        }
    ]
    assert by_name[rollout.healthy[0]]["containers"][0]["memory_bytes"] == 64 * MiB
    fake.metrics_mode = "absent"
    ev = await run(registry, make_ctx(kube, DEPLOYMENT, [bad]), "k8s.top_pods")
    assert ev.status == StepStatus.NOT_CONFIGURED
    assert ev.error is not None and "metrics-server" in ev.error


# ---------------------------------------------------------------------- node_describe


async def test_node_describe(fake: FakeKubeApiserver, kube: KubeClient, registry: Registry) -> None:
    rollout = crashloop(fake)
    [bad] = rollout.crashing
    pods = fake.pods_of(NS, APP)
    node_of = {p["metadata"]["name"]: p["spec"]["nodeName"] for p in pods}
    fake.clear_requests()
    data = ok(await run(registry, make_ctx(kube, DEPLOYMENT, [bad]), "k8s.node_describe"))
    nodes = {n["name"]: n for n in data["nodes"]}
    assert data["nodes"][0]["name"] == node_of[bad]  # the alert pod's node first
    assert set(nodes) == set(node_of.values()) == {"node-a", "node-b"}
    assert nodes["node-b"]["pressure"] == ["MemoryPressure"]
    assert nodes["node-a"]["pressure"] == []
    assert nodes["node-a"]["conditions"]["Ready"] == "True"
    assert nodes["node-a"]["unschedulable"] is False and nodes["node-a"]["taints"] == []
    assert nodes["node-a"]["allocatable"] == {
        "cpu_millicores": 4000,
        "memory_bytes": 16 * 1024 * MiB,
        "pods": 110,
    }
    for name, node in nodes.items():
        count = sum(1 for n in node_of.values() if n == name)
        assert node["requested"] == {
            "cpu_millicores": 250 * count,
            "memory_bytes": 256 * MiB * count,
            "pods": count,
        }
    assert fake.count("GET", r"^/api/v1/nodes/") == 2
    assert fake.count("GET", r"^/api/v1/pods$") == 2
    one = ok(await run(registry, make_ctx(kube, DEPLOYMENT, [bad]), "k8s.node_describe", max_nodes=1))
    assert [n["name"] for n in one["nodes"]] == [node_of[bad]] and one["total_nodes"] == 2


# ---------------------------------------------------------------------- hpa, pvc, ingress


async def test_hpa_status(fake: FakeKubeApiserver, kube: KubeClient, registry: Registry) -> None:
    crashloop(fake)
    fake.add_hpa(
        NS,
        APP,
        APP,
        min_replicas=2,
        max_replicas=3,
        current_replicas=3,
        desired_replicas=3,
        current_cpu_utilization=95,
    )
    fake.add_hpa(NS, "redis", "redis", max_replicas=5)
    data = ok(await run(registry, make_ctx(kube, DEPLOYMENT, []), "k8s.hpa_status"))
    [hpa] = data["hpas"]
    assert hpa["name"] == APP
    assert (hpa["min"], hpa["max"], hpa["current"], hpa["desired"], hpa["at_max"]) == (2, 3, 3, 3, True)
    assert hpa["metrics"] == [
        {
            "type": "Resource",
            "name": "cpu",
            "target": {"type": "Utilization", "averageUtilization": 80},
            "current": {"averageUtilization": 95, "averageValue": "100m"},
        }
    ]
    limited = next(c for c in hpa["conditions"] if c["type"] == "ScalingLimited")
    assert limited["status"] == "True" and limited["reason"] == "TooManyReplicas"
    by_label = make_ctx(kube, Target(kind="horizontalpodautoscaler", namespace=NS, name="redis"), [])
    assert [h["name"] for h in ok(await run(registry, by_label, "k8s.hpa_status"))["hpas"]] == ["redis"]


async def test_pvc_status(fake: FakeKubeApiserver, kube: KubeClient, registry: Registry) -> None:
    fake.add_statefulset(NS, "mongodb", "mongo:7", replicas=2, volume_claims={"data": "10Gi"})
    fake.add_pvc(NS, "unrelated", storage="1Gi")
    mongo = Target(kind="statefulset", namespace=NS, name="mongodb")
    data = ok(await run(registry, make_ctx(kube, mongo, ["mongodb-0"]), "k8s.pvc_status"))
    assert [p["name"] for p in data["pvcs"]] == ["data-mongodb-0", "data-mongodb-1"]
    pvc = data["pvcs"][0]
    assert pvc["phase"] == "Bound" and pvc["capacity"] == "10Gi"
    assert pvc["access_modes"] == ["ReadWriteOnce"] and pvc["requested"] == "10Gi"
    assert pvc["pods"] == ["mongodb-0"]
    # (the fake's StatefulSet claims are Bound without volumeName/storageClassName)
    claim = Target(kind="persistentvolumeclaim", namespace=NS, name="unrelated")
    data = ok(await run(registry, make_ctx(kube, claim, []), "k8s.pvc_status"))
    [pvc] = data["pvcs"]
    assert (pvc["name"], pvc["phase"], pvc["capacity"], pvc["storage_class"]) == (
        "unrelated",
        "Bound",
        "1Gi",
        "standard",
    )
    assert pvc["volume"].startswith("pvc-") and pvc["pods"] == []


def _service(name: str, app: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"selector": {"app": app}, "ports": [{"port": 80, "targetPort": 3000}]},
    }


def _ingress(name: str, service: str, host: str, annotations: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"name": name, "namespace": NS, "annotations": annotations},
        "spec": {
            "ingressClassName": "nginx",
            "rules": [
                {
                    "host": host,
                    "http": {
                        "paths": [
                            {
                                "path": "/",
                                "pathType": "Prefix",
                                "backend": {"service": {"name": service, "port": {"number": 80}}},
                            }
                        ]
                    },
                }
            ],
        },
    }


async def test_ingress_routing_to_the_target(
    fake: FakeKubeApiserver, kube: KubeClient, registry: Registry
) -> None:
    crashloop(fake)
    fake.add_object(_service(APP, APP))
    fake.add_object(_service("redis-commander", "redis-commander"))
    fake.add_object(
        _ingress(
            "playcode",
            APP,
            "play.playcode.gg",
            {
                "nginx.ingress.kubernetes.io/proxy-read-timeout": "3600",
                "nginx.ingress.kubernetes.io/proxy-send-timeout": "60s",
                "nginx.org/websocket-services": f"{APP}, other",
                "cert-manager.io/cluster-issuer": "letsencrypt",
                "example.com/api-token": "tok-abc123",
                "kubectl.kubernetes.io/last-applied-configuration": '{"kind":"Ingress"}',
            },
        )
    )
    fake.add_object(_ingress("admin", "redis-commander", "admin.playcode.gg", {}))
    data = ok(await run(registry, make_ctx(kube, DEPLOYMENT, []), "k8s.ingress"))
    assert data["scope"] == "target" and data["services"] == [APP]
    [ing] = data["ingresses"]
    assert ing["name"] == "playcode" and ing["class"] == "nginx" and ing["hosts"] == ["play.playcode.gg"]
    assert ing["proxy_read_timeout_s"] == 3600 and ing["proxy_send_timeout_s"] == 60
    assert ing["websocket_services"] == [APP, "other"]
    assert ing["annotations"] == {
        "nginx.ingress.kubernetes.io/proxy-read-timeout": "3600",
        "nginx.ingress.kubernetes.io/proxy-send-timeout": "60s",
        "nginx.org/websocket-services": f"{APP}, other",
        "cert-manager.io/cluster-issuer": "letsencrypt",
    }
    # services can't be listed (RBAC): every ingress of the namespace
    fake.deny("list", "services")
    data = ok(await run(registry, make_ctx(kube, DEPLOYMENT, []), "k8s.ingress"))
    assert data["scope"] == "namespace" and sorted(i["name"] for i in data["ingresses"]) == [
        "admin",
        "playcode",
    ]


# ---------------------------------------------------------------------- configuration and target errors


async def test_not_configured_and_target_errors(
    fake: FakeKubeApiserver, kube: KubeClient, registry: Registry
) -> None:
    crashloop(fake)
    for name in ALL:
        ev = await run(registry, make_ctx(None, DEPLOYMENT, []), name)
        assert ev.status == StepStatus.NOT_CONFIGURED, name
        ev = await run(registry, make_ctx(kube, None, []), name)
        assert ev.status == StepStatus.ERROR and ev.error is not None and "needs a target" in ev.error, name
    ev = await run(
        registry,
        make_ctx(kube, Target(kind="statefulset", namespace=NS, name="mongodb"), []),
        "k8s.rollout_history",
    )
    assert ev.status == StepStatus.ERROR and ev.error is not None and "works on a deployment" in ev.error
    elsewhere = Target(kind="deployment", namespace="kube-system", name="coredns")
    ev = await run(registry, make_ctx(kube, elsewhere, []), "k8s.pod_describe")
    assert ev.status == StepStatus.ERROR and ev.error is not None and "not allow-listed" in ev.error
    missing = Target(kind="deployment", namespace=NS, name="nope")
    ev = await run(registry, make_ctx(kube, missing, []), "k8s.rollout_history")
    assert ev.status == StepStatus.ERROR and ev.error is not None and "404" in ev.error
    with pytest.raises(ValueError):
        registry.collectors["k8s.pod_logs"].params(tail=0)
    with pytest.raises(ValueError):
        registry.collectors["k8s.events"].params(limits=3)


# ---------------------------------------------------------------------- memo, call counts, faults, timeouts


async def test_one_run_reads_the_deployment_its_replicasets_and_pods_once(
    fake: FakeKubeApiserver, kube: KubeClient, registry: Registry
) -> None:
    rollout = crashloop(fake)
    fake.clear_requests()
    ctx = make_ctx(kube, DEPLOYMENT, rollout.crashing)
    evidence = await run_all(registry, ctx, ALL)
    for ev in evidence.values():
        ok(ev)
    assert fake.count("GET", rf"/deployments/{APP}$") == 1
    assert fake.count("GET", r"/namespaces/playcode/replicasets$") == 1
    assert fake.count("GET", r"^/api/v1/namespaces/playcode/pods$") == 1
    assert kube.requests[f"GET /apis/apps/v1/namespaces/{NS}/deployments/{APP}"] == 1
    # a new run has its own memo
    await run(registry, make_ctx(kube, DEPLOYMENT, []), "k8s.rollout_history")
    assert fake.count("GET", rf"/deployments/{APP}$") == 2


def _shape(fake: FakeKubeApiserver) -> Counter[str]:
    """Requests by kind of call (names of pods and nodes folded)."""
    out: Counter[str] = Counter()
    for r in fake.requests:
        parts = r.path.split("/")
        if "pods" in parts and parts.index("pods") + 1 < len(parts):
            parts[parts.index("pods") + 1] = "*"
        if "nodes" in parts and parts.index("nodes") + 1 < len(parts):
            parts[parts.index("nodes") + 1] = "*"
        out[f"{r.method} {'/'.join(parts)}"] += 1
    return out


@pytest.mark.parametrize("replicas", [3, 10])
async def test_api_calls_per_incident_do_not_grow_with_crashing_pods(
    fake: FakeKubeApiserver, kube: KubeClient, registry: Registry, replicas: int
) -> None:
    rollout = crashloop(fake, replicas, recreate=True)
    assert len(rollout.crashing) == replicas
    fake.clear_requests()
    evidence = await run_all(registry, make_ctx(kube, DEPLOYMENT, rollout.crashing), ALL)
    for ev in evidence.values():
        ok(ev)
    assert len(ok(evidence["k8s.pod_describe"])["pods"]) == min(5, replicas)
    assert len(ok(evidence["k8s.pod_logs"])["logs"]) == 2
    shape = _shape(fake)
    assert shape == Counter(
        {
            f"GET /apis/apps/v1/namespaces/{NS}/deployments/{APP}": 1,
            f"GET /apis/apps/v1/namespaces/{NS}/replicasets": 1,
            f"GET /api/v1/namespaces/{NS}/pods": 1,
            f"GET /api/v1/namespaces/{NS}/pods/*/log": 2,  # max_pods=2, previous log exists
            f"GET /api/v1/namespaces/{NS}/events": 1,
            f"GET /apis/metrics.k8s.io/v1beta1/namespaces/{NS}/pods": 1,
            "GET /api/v1/nodes/*": 2,  # the pods' nodes (2 here, max_nodes=3)
            "GET /api/v1/pods": 2,  # pods per node, for requested resources
            f"GET /apis/autoscaling/v2/namespaces/{NS}/horizontalpodautoscalers": 1,
            f"GET /api/v1/namespaces/{NS}/persistentvolumeclaims": 0,  # the pods mount no PVC
            f"GET /apis/networking.k8s.io/v1/namespaces/{NS}/ingresses": 1,
            f"GET /api/v1/namespaces/{NS}/services": 1,
            f"GET /api/v1/namespaces/{NS}/configmaps/{APP_CONFIG}": 1,  # its metadata, once
        }
    )
    assert len(fake.requests) == 15


async def test_api_faults_are_retried_boundedly_and_the_run_still_completes(
    fake: FakeKubeApiserver, kube: KubeClient, registry: Registry
) -> None:
    rollout = crashloop(fake)
    fake.clear_requests()
    await run_all(registry, make_ctx(kube, DEPLOYMENT, rollout.crashing), ALL)
    clean = len(fake.requests)
    fake.clear_requests()
    # disjoint paths: a ratio rule that does not fire hides the rules after it (see the report)
    fake.inject_fault("GET", r"^/api/", 500, times=None, ratio=0.35)
    fake.inject_fault("GET", r"^/apis/", 429, times=None, ratio=0.35)
    evidence = await run_all(registry, make_ctx(kube, DEPLOYMENT, rollout.crashing), ALL)
    for ev in evidence.values():
        ok(ev)
    failed = [r for r in fake.requests if r.status >= 429]
    assert failed and {r.status for r in failed} <= {429, 500}
    assert clean < len(fake.requests) <= FAST.attempts * clean
    per_call = Counter((r.path, tuple(sorted(r.query.items()))) for r in fake.requests)
    assert max(per_call.values()) <= FAST.attempts


async def test_a_slow_api_times_the_step_out_without_cancelling_the_shared_read(
    fake: FakeKubeApiserver, kube: KubeClient, registry: Registry
) -> None:
    rollout = crashloop(fake)
    fake.inject_delay("GET", rf"/deployments/{APP}$", 1.0, times=1)
    fake.clear_requests()
    ctx = make_ctx(kube, DEPLOYMENT, rollout.crashing)
    evidence = await run_steps(
        [
            planned(registry, "k8s.pod_describe", timeout=0.3),
            planned(registry, "k8s.rollout_history", timeout=5),
        ],
        ctx,
        deadline=10,
        max_bytes=1024 * 1024,
    )
    by_name = {e.collector: e for e in evidence}
    assert by_name["k8s.pod_describe"].status == StepStatus.TIMEOUT
    assert by_name["k8s.pod_describe"].duration_ms < 900
    assert ok(by_name["k8s.rollout_history"])["deployment"]["revision"] == 2
    assert fake.count("GET", rf"/deployments/{APP}$") == 1


async def test_a_hanging_api_becomes_the_runner_timeout(
    fake: FakeKubeApiserver, kube: KubeClient, registry: Registry
) -> None:
    rollout = crashloop(fake)
    fake.inject_delay("GET", r"/events$", 5.0)
    ev = await run(registry, make_ctx(kube, DEPLOYMENT, rollout.crashing), "k8s.events", timeout=0.5)
    assert ev.status == StepStatus.TIMEOUT and ev.error == "no answer within 0.5s"
    assert ev.duration_ms < 1500


async def test_alert_pods_already_gone_are_reported_missing(
    fake: FakeKubeApiserver, kube: KubeClient, registry: Registry
) -> None:
    rollout = crashloop(fake)
    [bad] = rollout.crashing
    gone = f"{rollout.rs[2]}-zz9zz"
    fake.clear_requests()
    data = ok(await run(registry, make_ctx(kube, DEPLOYMENT, [gone, bad]), "k8s.pod_describe"))
    assert data["missing_pods"] == [gone]
    assert data["pods"][0]["name"] == bad and data["total_pods"] == 4
    assert [r.status for r in fake.requests_matching("GET", rf"/pods/{gone}$")] == [404]


def test_kubernetes_quantities() -> None:
    assert [cpu_millicores(v) for v in ("250m", "1", "1.5", "1500000n", "12u", None, "lots")] == [
        250,
        1000,
        1500,
        2,
        1,
        None,
        None,
    ]
    assert [memory_bytes(v) for v in ("64Mi", "1Gi", "129e6", "128974848", "1k", "2E")] == [
        64 * MiB,
        1024 * MiB,
        129_000_000,
        128_974_848,
        1000,
        2 * 10**18,
    ]
