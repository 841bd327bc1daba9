"""Pins the fake kube-apiserver's behaviour against the real ``kubernetes_asyncio`` client."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from kubernetes_asyncio import config as kube_config
from kubernetes_asyncio import watch
from kubernetes_asyncio.client import (
    ApiClient,
    AppsV1Api,
    AutoscalingV2Api,
    BatchV1Api,
    Configuration,
    CoreV1Api,
    CustomObjectsApi,
    NetworkingV1Api,
    V1ConfigMap,
    V1DeleteOptions,
    V1Job,
    V1ObjectMeta,
    V1OwnerReference,
)
from kubernetes_asyncio.client.exceptions import ApiException

from tests.fakes.kube_apiserver import FakeKubeApiserver
from tests.fakes.kube_patch import (
    PatchApplyError,
    PatchDecodeError,
    apply_json_patch,
    apply_merge_patch,
    apply_strategic_merge_patch,
)
from tests.fakes.kube_selectors import SelectorError, match_labels, parse_label_selector

NS = "playcode"
APP = "playcode-app"
REVISION = "deployment.kubernetes.io/revision"
REVISION_PTR = "/metadata/annotations/deployment.kubernetes.io~1revision"

# What kube-apiserver answers when a JSON patch does not apply (e.g. a failed ``test`` op):
# errors.NewGenericServerResponse(422, "", GroupResource{}, "", err.Error(), 0, false) in
# k8s.io/apiserver/pkg/endpoints/handlers/patch.go -> reason Invalid, generic message, the
# jsonpatch error itself is dropped, details is an empty object.
PATCH_TEST_FAILED_STATUS = {
    "kind": "Status",
    "apiVersion": "v1",
    "metadata": {},
    "status": "Failure",
    "message": "the server rejected our request due to an error in our request",
    "reason": "Invalid",
    "details": {},
    "code": 422,
}


@pytest.fixture
async def kube() -> AsyncIterator[FakeKubeApiserver]:
    async with FakeKubeApiserver() as fake:
        yield fake


@pytest.fixture
async def api(kube: FakeKubeApiserver) -> AsyncIterator[ApiClient]:
    async with kube.api_client() as client:
        yield client


def body_of(exc: ApiException) -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads(exc.body or "null")
    return parsed


# --------------------------------------------------------------------------- selectors


async def test_list_pods_with_label_selectors(kube: FakeKubeApiserver, api: ApiClient) -> None:
    for name, labels in {
        "web-1": {"app": "web", "tier": "front", "track": "stable"},
        "web-2": {"app": "web", "tier": "front", "track": "canary"},
        "api-1": {"app": "api", "tier": "back"},
        "db-1": {"app": "db"},
    }.items():
        kube.add_object({"apiVersion": "v1", "kind": "Pod",
                         "metadata": {"name": name, "namespace": NS, "labels": labels},
                         "spec": {"containers": [{"name": "c", "image": "img:1"}]}})
    kube.add_object({"apiVersion": "v1", "kind": "Pod",
                     "metadata": {"name": "other", "namespace": "staging",
                                  "labels": {"app": "web"}},
                     "spec": {"containers": [{"name": "c", "image": "img:1"}]}})
    core = CoreV1Api(api)

    async def names(selector: str, namespace: str | None = NS) -> list[str]:
        if namespace is None:
            result = await core.list_pod_for_all_namespaces(label_selector=selector)
        else:
            result = await core.list_namespaced_pod(namespace, label_selector=selector)
        return sorted(p.metadata.name for p in result.items)

    assert await names("app=web") == ["web-1", "web-2"]
    assert await names("app==web,track!=canary") == ["web-1"]
    assert await names("tier!=front") == ["api-1", "db-1"]  # != matches missing keys
    assert await names("app in (api, db)") == ["api-1", "db-1"]
    assert await names("app notin (web),tier") == ["api-1"]
    assert await names("!tier") == ["db-1"]
    assert await names("track") == ["web-1", "web-2"]
    assert await names("app=web", namespace=None) == ["other", "web-1", "web-2"]
    with pytest.raises(ApiException) as err:
        await names("app in (web")
    assert err.value.status == 400
    assert body_of(err.value)["reason"] == "BadRequest"


async def test_field_selectors(kube: FakeKubeApiserver, api: ApiClient) -> None:
    kube.add_node("node-a")
    kube.add_node("node-b")
    kube.add_deployment(NS, APP, "app:v1", replicas=4)
    core = CoreV1Api(api)
    pods = (await core.list_namespaced_pod(NS)).items
    node_of = {p.metadata.name: p.spec.node_name for p in pods}
    assert set(node_of.values()) == {"node-a", "node-b"}
    on_a = await core.list_namespaced_pod(NS, field_selector="spec.nodeName=node-a")
    assert sorted(p.metadata.name for p in on_a.items) == sorted(
        n for n, node in node_of.items() if node == "node-a")
    everywhere = await core.list_pod_for_all_namespaces(
        field_selector="status.phase=Running,spec.nodeName!=node-a")
    assert {p.spec.node_name for p in everywhere.items} == {"node-b"}
    first = pods[0].metadata.name
    by_name = await core.list_namespaced_pod(NS, field_selector=f"metadata.name={first}")
    assert [p.metadata.name for p in by_name.items] == [first]
    with pytest.raises(ApiException) as err:
        await core.list_namespaced_pod(NS, field_selector="spec.bogus=1")
    assert err.value.status == 400
    assert body_of(err.value)["message"] == "field label not supported: spec.bogus"


async def test_list_pagination(kube: FakeKubeApiserver, api: ApiClient) -> None:
    for n in range(5):
        kube.add_object({"apiVersion": "v1", "kind": "ConfigMap",
                         "metadata": {"name": f"cm-{n}", "namespace": NS}})
    core = CoreV1Api(api)
    page = await core.list_namespaced_config_map(NS, limit=2)
    seen = [c.metadata.name for c in page.items]
    while page.metadata._continue:
        page = await core.list_namespaced_config_map(NS, limit=2,
                                                     _continue=page.metadata._continue)
        seen += [c.metadata.name for c in page.items]
    assert seen == [f"cm-{n}" for n in range(5)]


# --------------------------------------------------------------------------- pod logs


async def test_pod_log_previous_tail_container_and_limit(kube: FakeKubeApiserver,
                                                         api: ApiClient) -> None:
    kube.add_object({"apiVersion": "v1", "kind": "Pod",
                     "metadata": {"name": "p", "namespace": NS},
                     "spec": {"containers": [{"name": "app", "image": "app:v1"},
                                             {"name": "sidecar", "image": "proxy:1"}]}})
    kube.set_log(NS, "p", "app", "one\ntwo\nthree\n")
    kube.set_log(NS, "p", "app", "boom: connect ECONNREFUSED\nexit 1\n", previous=True)
    kube.set_log(NS, "p", "sidecar", "proxy up\n")
    core = CoreV1Api(api)

    assert await core.read_namespaced_pod_log("p", NS, container="app") == "one\ntwo\nthree\n"
    assert await core.read_namespaced_pod_log("p", NS, container="app",
                                              tail_lines=2) == "two\nthree\n"
    previous = await core.read_namespaced_pod_log("p", NS, container="app", previous=True)
    assert previous == "boom: connect ECONNREFUSED\nexit 1\n"
    assert await core.read_namespaced_pod_log("p", NS, container="app", previous=True,
                                              tail_lines=1) == "exit 1\n"
    assert await core.read_namespaced_pod_log("p", NS, container="app",
                                              limit_bytes=5) == "one\nt"
    assert await core.read_namespaced_pod_log("p", NS, container="sidecar") == "proxy up\n"
    sent = kube.requests_matching("GET", r"/pods/p/log$")[2].query
    assert sent == {"container": "app", "previous": "True"}

    with pytest.raises(ApiException) as err:  # two containers: must name one
        await core.read_namespaced_pod_log("p", NS)
    assert err.value.status == 400
    assert "a container name must be specified for pod p" in body_of(err.value)["message"]
    with pytest.raises(ApiException) as err:  # never restarted, nothing seeded
        await core.read_namespaced_pod_log("p", NS, container="sidecar", previous=True)
    assert err.value.status == 400
    assert body_of(err.value)["message"] == (
        'previous terminated container "sidecar" in pod "p" not found')
    with pytest.raises(ApiException) as err:
        await core.read_namespaced_pod_log("nope", NS, container="app")
    assert err.value.status == 404


async def test_image_logs_for_controller_pods(kube: FakeKubeApiserver, api: ApiClient) -> None:
    kube.set_image_fault("app:v2", "CrashLoopBackOff", restart_count=3)
    kube.set_image_log("app:v2", "Error: MONGO_URL is not set\n", previous=True)
    kube.add_deployment(NS, APP, "app:v2", replicas=1)
    pod = kube.pods_of(NS, APP)[0]["metadata"]["name"]
    log = await CoreV1Api(api).read_namespaced_pod_log(pod, NS, previous=True, tail_lines=200)
    assert log == "Error: MONGO_URL is not set\n"


async def test_json_log_line_needs_a_raw_read(kube: FakeKubeApiserver, api: ApiClient) -> None:
    """kubernetes_asyncio json.loads() every response body: a log that happens to be one JSON
    document comes back as the repr() of a dict. Read logs with _preload_content=False."""
    kube.add_object({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": NS},
                     "spec": {"containers": [{"name": "app", "image": "app:v1"}]}})
    kube.set_log(NS, "p", "app", '{"level":"info"}\n{"level":"error","res_status":500}\n')
    core = CoreV1Api(api)
    mangled = await core.read_namespaced_pod_log("p", NS, tail_lines=1)
    assert mangled == "{'level': 'error', 'res_status': 500}"
    raw = await core.read_namespaced_pod_log("p", NS, tail_lines=1, _preload_content=False)
    assert await raw.text() == '{"level":"error","res_status":500}\n'


# --------------------------------------------------------------------------- patches


async def test_json_patch_test_op_success_and_failure(kube: FakeKubeApiserver,
                                                      api: ApiClient) -> None:
    kube.add_deployment(NS, APP, "app:v1", replicas=1,
                        annotations={"team": "core"})
    apps = AppsV1Api(api)
    ok = await apps.patch_namespaced_deployment(APP, NS, [
        {"op": "test", "path": REVISION_PTR, "value": "1"},
        {"op": "replace", "path": "/metadata/annotations/team", "value": "sre"},
    ])
    assert ok.metadata.annotations["team"] == "sre"
    assert kube.requests[-1].content_type == "application/json-patch+json"
    before = kube.get_object("Deployment", NS, APP)

    with pytest.raises(ApiException) as err:
        await apps.patch_namespaced_deployment(APP, NS, [
            {"op": "test", "path": REVISION_PTR, "value": "2"},
            {"op": "replace", "path": "/metadata/annotations/team", "value": "oops"},
        ])
    assert err.value.status == 422
    assert body_of(err.value) == PATCH_TEST_FAILED_STATUS
    after = kube.get_object("Deployment", NS, APP)
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    assert after["metadata"]["annotations"]["team"] == "sre"

    with pytest.raises(ApiException) as err:  # remove of a missing member: same answer
        await apps.patch_namespaced_deployment(APP, NS, [
            {"op": "remove", "path": "/spec/template/spec/affinity"}])
    assert body_of(err.value) == PATCH_TEST_FAILED_STATUS
    with pytest.raises(ApiException) as err:  # not a JSON array: 400
        await apps.patch_namespaced_deployment(  # type: ignore[call-arg]
            APP, NS, {"op": "test"}, _content_type="application/json-patch+json")
    assert err.value.status == 400
    assert body_of(err.value)["reason"] == "BadRequest"


async def test_concurrent_guarded_patches_apply_once(kube: FakeKubeApiserver,
                                                     api: ApiClient) -> None:
    kube.add_deployment(NS, APP, "app:v1", replicas=1)
    apps = AppsV1Api(api)
    marker = "/metadata/annotations/medic.playcode.gg~1action"

    def guarded(n: int) -> list[dict[str, Any]]:
        # `test` against null passes while the member is absent (evanphx/json-patch v4)
        return [{"op": "test", "path": marker, "value": None},
                {"op": "add", "path": marker, "value": f"action-{n}"}]

    results = await asyncio.gather(
        *(apps.patch_namespaced_deployment(APP, NS, guarded(n)) for n in range(3)),
        return_exceptions=True)
    failures = [r for r in results if isinstance(r, ApiException)]
    assert len(failures) == 2
    assert all(f.status == 422 for f in failures)
    winner = next(r for r in results if not isinstance(r, BaseException))
    stored = kube.get_object("Deployment", NS, APP)["metadata"]["annotations"]
    assert stored["medic.playcode.gg/action"] == winner.metadata.annotations[
        "medic.playcode.gg/action"]
    assert kube.count("PATCH", rf"/deployments/{APP}$") == 3


async def test_merge_patch(kube: FakeKubeApiserver, api: ApiClient) -> None:
    kube.add_deployment(NS, APP, "app:v1", replicas=1, annotations={"a": "1", "b": "2"},
                        env={"A": "1"})
    apps = AppsV1Api(api)
    patched = await apps.patch_namespaced_deployment(
        APP, NS, {"metadata": {"annotations": {"a": None, "c": "3"}},
                  "spec": {"template": {"spec": {"containers": [
                      {"name": APP, "image": "app:v9"}]}}}},
        _content_type="application/merge-patch+json")  # type: ignore[call-arg]  # not in stubs
    assert kube.requests[-1].content_type == "application/merge-patch+json"
    annotations = patched.metadata.annotations
    assert "a" not in annotations and annotations["b"] == "2" and annotations["c"] == "3"
    containers = patched.spec.template.spec.containers
    assert [(c.name, c.image) for c in containers] == [(APP, "app:v9")]
    assert containers[0].env is None  # merge patch replaces lists wholesale
    assert containers[0].image_pull_policy == "IfNotPresent"  # defaulted again


async def test_strategic_merge_patch_merges_containers_by_name(kube: FakeKubeApiserver,
                                                               api: ApiClient) -> None:
    kube.add_deployment(NS, APP, containers=[
        {"name": APP, "image": "app:v1", "env": [{"name": "A", "value": "1"}]},
        {"name": "proxy", "image": "envoy:1"}], replicas=1)
    apps = AppsV1Api(api)
    patched = await apps.patch_namespaced_deployment(APP, NS, {"spec": {"template": {
        "metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": "now"}},
        "spec": {"containers": [{"name": APP, "image": "app:v2",
                                 "env": [{"name": "B", "value": "2"}]}]}}}})
    assert kube.requests[-1].content_type == "application/strategic-merge-patch+json"
    containers = {c.name: c for c in patched.spec.template.spec.containers}
    assert containers[APP].image == "app:v2"
    assert [(e.name, e.value) for e in containers[APP].env] == [("A", "1"), ("B", "2")]
    assert containers["proxy"].image == "envoy:1"
    assert patched.metadata.generation == 2
    removed = await apps.patch_namespaced_deployment(APP, NS, {"spec": {"template": {"spec": {
        "containers": [{"name": "proxy", "$patch": "delete"}]}}}})
    assert [c.name for c in removed.spec.template.spec.containers] == [APP]


def test_json_patch_semantics_of_evanphx_v4() -> None:
    doc = {"a": {"b": 1}, "l": [1, 2], "t": True}
    assert apply_json_patch(doc, [{"op": "replace", "path": "/a/new", "value": 2}])["a"] == {
        "b": 1, "new": 2}  # replace of a missing member acts as add
    apply_json_patch(doc, [{"op": "test", "path": "/a/missing", "value": None}])
    with pytest.raises(PatchApplyError):
        apply_json_patch(doc, [{"op": "test", "path": "/t", "value": 1}])  # true is not 1
    with pytest.raises(PatchApplyError):
        apply_json_patch(doc, [{"op": "remove", "path": "/a/missing"}])
    with pytest.raises(PatchApplyError):
        apply_json_patch(doc, [{"op": "add", "path": "/x/y", "value": 1}])
    with pytest.raises(PatchApplyError):
        apply_json_patch(doc, [{"op": "bogus", "path": "/a"}])
    with pytest.raises(PatchDecodeError):
        apply_json_patch(doc, {"op": "add"})
    out = apply_json_patch(doc, [
        {"op": "add", "path": "/l/-", "value": 3},
        {"op": "add", "path": "/l/0", "value": 0},
        {"op": "move", "from": "/a/b", "path": "/m"},
        {"op": "copy", "from": "/l", "path": "/k"},
        {"op": "test", "path": "/k", "value": [0, 1, 2, 3]},
        {"op": "add", "path": "/esc~1aped~0", "value": "v"},
    ])
    assert out == {"a": {}, "l": [0, 1, 2, 3], "t": True, "m": 1, "k": [0, 1, 2, 3],
                   "esc/aped~": "v"}
    assert doc == {"a": {"b": 1}, "l": [1, 2], "t": True}  # input untouched
    assert apply_merge_patch({"a": {"b": 1, "c": 2}}, {"a": {"b": None}}) == {"a": {"c": 2}}
    merged = apply_strategic_merge_patch(
        {"ports": [{"containerPort": 80, "name": "http"}]},
        {"ports": [{"containerPort": 80, "protocol": "TCP"}, {"containerPort": 81}]})
    assert merged == {"ports": [{"containerPort": 80, "name": "http", "protocol": "TCP"},
                                {"containerPort": 81}]}


def test_label_selector_parser() -> None:
    reqs = parse_label_selector("app.kubernetes.io/name=web, tier in (a,b),!legacy,env")
    assert match_labels(reqs, {"app.kubernetes.io/name": "web", "tier": "a", "env": "x"})
    assert not match_labels(reqs, {"app.kubernetes.io/name": "web", "tier": "a"})
    for bad in ("a=b=c", "in (x)", "a in ()", "=x"):
        with pytest.raises(SelectorError):
            parse_label_selector(bad)


# --------------------------------------------------------------------------- writes


async def test_replace_with_stale_resource_version_conflicts(kube: FakeKubeApiserver,
                                                             api: ApiClient) -> None:
    kube.add_deployment(NS, APP, "app:v1", replicas=1)
    apps = AppsV1Api(api)
    first = await apps.read_namespaced_deployment(APP, NS)
    second = await apps.read_namespaced_deployment(APP, NS)
    first.spec.replicas = 2
    updated = await apps.replace_namespaced_deployment(APP, NS, first)
    assert int(updated.metadata.resource_version) > int(second.metadata.resource_version)
    assert updated.metadata.generation == 2
    second.spec.replicas = 5
    with pytest.raises(ApiException) as err:
        await apps.replace_namespaced_deployment(APP, NS, second)
    assert err.value.status == 409
    assert body_of(err.value) == {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": f'Operation cannot be fulfilled on deployments.apps "{APP}": the object '
                   "has been modified; please apply your changes to the latest version and "
                   "try again",
        "reason": "Conflict",
        "details": {"name": APP, "group": "apps", "kind": "deployments"},
        "code": 409}
    # a merge patch carrying a stale resourceVersion is a precondition too
    with pytest.raises(ApiException) as err:
        await apps.patch_namespaced_deployment(
            APP, NS, {"metadata": {"resourceVersion": second.metadata.resource_version},
                      "spec": {"replicas": 7}},
            _content_type="application/merge-patch+json")  # type: ignore[call-arg]
    assert err.value.status == 409
    assert kube.get_object("Deployment", NS, APP)["spec"]["replicas"] == 2


async def test_create_conflicts_and_missing_namespace(kube: FakeKubeApiserver,
                                                      api: ApiClient) -> None:
    core = CoreV1Api(api)
    body = V1ConfigMap(metadata=V1ObjectMeta(name="cm"), data={"k": "v"})
    kube.add_namespace(NS)
    created = await core.create_namespaced_config_map(NS, body)
    assert created.metadata.uid and created.metadata.resource_version
    assert kube.requests[-1].status == 201
    with pytest.raises(ApiException) as err:
        await core.create_namespaced_config_map(NS, body)
    assert err.value.status == 409
    assert body_of(err.value)["reason"] == "AlreadyExists"
    assert body_of(err.value)["message"] == 'configmaps "cm" already exists'
    with pytest.raises(ApiException) as err:
        await core.create_namespaced_config_map("nowhere", body)
    assert err.value.status == 404
    assert body_of(err.value)["message"] == 'namespaces "nowhere" not found'


async def test_not_found_status_shapes(kube: FakeKubeApiserver, api: ApiClient) -> None:
    apps = AppsV1Api(api)
    with pytest.raises(ApiException) as err:
        await apps.read_namespaced_deployment("ghost", NS)
    assert err.value.status == 404
    assert body_of(err.value) == {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": 'deployments.apps "ghost" not found', "reason": "NotFound",
        "details": {"name": "ghost", "group": "apps", "kind": "deployments"}, "code": 404}
    with pytest.raises(ApiException) as err:
        await api.call_api("/apis/nope.example.com/v1/things", "GET",
                           response_types_map={200: "object"})
    assert body_of(err.value)["message"] == "the server could not find the requested resource"


async def test_delete_pod_and_cascades(kube: FakeKubeApiserver, api: ApiClient) -> None:
    kube.add_deployment(NS, APP, "app:v1", replicas=2)
    core, batch = CoreV1Api(api), BatchV1Api(api)
    victim = kube.pods_of(NS, APP)[0]["metadata"]["name"]
    deleted = await core.delete_namespaced_pod(victim, NS)
    assert deleted.metadata.name == victim and deleted.metadata.deletion_timestamp
    names = [p["metadata"]["name"] for p in kube.pods_of(NS, APP)]
    assert victim not in names and len(names) == 2  # the ReplicaSet replaced it
    with pytest.raises(ApiException) as err:
        await core.delete_namespaced_pod(victim, NS)
    assert err.value.status == 404

    kube.add_job(NS, "backup", "mongo:7")
    assert len(kube.pods_of(NS, "backup", kind="Job")) == 1
    status = await batch.delete_namespaced_job("backup", NS, body=V1DeleteOptions(
        propagation_policy="Background"))
    assert status.status == "Success" and status.details.name == "backup"
    assert not kube.list_objects("Pod", NS, label_selector="job-name=backup")
    kube.add_job(NS, "orphaning", "mongo:7")
    await batch.delete_namespaced_job("orphaning", NS)  # batch/v1 default: orphan
    orphans = kube.list_objects("Pod", NS, label_selector="job-name=orphaning")
    assert len(orphans) == 1 and "ownerReferences" not in orphans[0]["metadata"]
    with pytest.raises(ApiException) as err:
        await batch.delete_namespaced_job("backup", NS)
    assert err.value.status == 404


async def test_an_object_with_finalizers_is_only_marked_until_the_last_one_goes(
    kube: FakeKubeApiserver, api: ApiClient
) -> None:
    """kube-apiserver: DELETE of an object with finalizers sets deletionTimestamp and answers 200
    with the object; it stays ("Terminating", same uid) and its ReplicaSet replaces it at once;
    a second DELETE changes nothing; an update that removes the last finalizer deletes it."""
    kube.add_deployment(NS, APP, "app:v1", replicas=2)
    core = CoreV1Api(api)
    victim = kube.pods_of(NS, APP)[0]
    name, uid = victim["metadata"]["name"], victim["metadata"]["uid"]
    kube.patch_object("Pod", NS, name, {"metadata": {"finalizers": ["example.com/hold"]}})
    deleted = await core.delete_namespaced_pod(name, NS, grace_period_seconds=5)
    assert deleted.metadata.uid == uid and deleted.metadata.deletion_timestamp
    assert deleted.metadata.deletion_grace_period_seconds == 5
    stuck = await core.read_namespaced_pod(name, NS)
    assert stuck.metadata.uid == uid and stuck.metadata.finalizers == ["example.com/hold"]
    assert stuck.metadata.deletion_timestamp == deleted.metadata.deletion_timestamp
    live = [p for p in kube.pods_of(NS, APP) if "deletionTimestamp" not in p["metadata"]]
    assert len(live) == 2 and name not in [p["metadata"]["name"] for p in live]
    again = await core.delete_namespaced_pod(name, NS)
    assert again.metadata.deletion_timestamp == deleted.metadata.deletion_timestamp
    await core.patch_namespaced_pod(name, NS, {"metadata": {"finalizers": None}})
    with pytest.raises(ApiException) as err:
        await core.read_namespaced_pod(name, NS)
    assert err.value.status == 404
    assert len(kube.pods_of(NS, APP)) == 2
    kube.add_cronjob(NS, "backup", "backup:1")  # any kind, and the Python helper too
    kube.patch_object("CronJob", NS, "backup", {"metadata": {"finalizers": ["example.com/hold"]}})
    await BatchV1Api(api).delete_namespaced_cron_job("backup", NS)
    assert kube.get_object("CronJob", NS, "backup")["metadata"]["deletionTimestamp"]
    kube.patch_object("CronJob", NS, "backup", {"metadata": {"finalizers": []}})
    assert kube.find_object("CronJob", NS, "backup") is None


async def test_dry_run_changes_nothing(kube: FakeKubeApiserver, api: ApiClient) -> None:
    kube.add_deployment(NS, APP, "app:v1", replicas=1)
    apps = AppsV1Api(api)
    before = kube.get_object("Deployment", NS, APP)
    preview = await apps.patch_namespaced_deployment(APP, NS, {"spec": {"replicas": 4}},
                                                     dry_run="All")
    assert preview.spec.replicas == 4
    assert kube.get_object("Deployment", NS, APP) == before


async def test_forbidden_and_bearer_token(tmp_path: Path) -> None:
    async with FakeKubeApiserver(token="s3cret") as kube:
        kube.add_deployment(NS, APP, "app:v1", replicas=1)
        kube.deny("patch", "deployments", namespace=NS)
        path = kube.write_kubeconfig(tmp_path / "kubeconfig", namespace=NS)
        config = Configuration()
        await kube_config.load_kube_config(config_file=str(path), client_configuration=config)
        async with ApiClient(configuration=config) as api:
            apps = AppsV1Api(api)
            assert (await apps.read_namespaced_deployment(APP, NS)).metadata.name == APP
            with pytest.raises(ApiException) as err:
                await apps.patch_namespaced_deployment(APP, NS, {"spec": {"replicas": 2}})
            assert err.value.status == 403
            assert body_of(err.value)["message"] == (
                f'deployments.apps "{APP}" is forbidden: User '
                '"system:serviceaccount:medic:medic" cannot patch resource "deployments" in '
                f'API group "apps" in the namespace "{NS}"')
        assert kube.requests[0].headers.get("Content-Type") == "application/json"
        kube.token = "rotated"
        async with ApiClient(configuration=config) as api:
            with pytest.raises(ApiException) as err:
                await CoreV1Api(api).list_namespace()
            assert err.value.status == 401


# --------------------------------------------------------------------------- controller


async def test_rollout_creates_revision_two_that_crash_loops(kube: FakeKubeApiserver,
                                                             api: ApiClient) -> None:
    kube.bad_images.add("app:v2")
    kube.add_deployment(NS, APP, "app:v1", replicas=3)
    apps, core = AppsV1Api(api), CoreV1Api(api)
    # what `kubectl set image deployment/playcode-app playcode-app=app:v2` sends
    await apps.patch_namespaced_deployment(APP, NS, {"spec": {"template": {"spec": {
        "containers": [{"name": APP, "image": "app:v2"}]}}}})
    deployment = await apps.read_namespaced_deployment(APP, NS)
    assert deployment.metadata.annotations[REVISION] == "2"
    rss = (await apps.list_namespaced_replica_set(NS, label_selector=f"app={APP}")).items
    by_rev = {rs.metadata.annotations[REVISION]: rs for rs in rss}
    assert set(by_rev) == {"1", "2"}
    new, old = by_rev["2"], by_rev["1"]
    template_hash = new.metadata.labels["pod-template-hash"]
    assert new.metadata.name == f"{APP}-{template_hash}"
    owner = new.metadata.owner_references[0]
    assert (owner.kind, owner.name, owner.controller) == ("Deployment", APP, True)
    assert owner.uid == deployment.metadata.uid
    # maxSurge 25% -> 1 new pod; maxUnavailable 25% of 3 -> 0, so old pods stay up
    assert (new.spec.replicas, old.spec.replicas) == (1, 3)
    status = deployment.status
    assert status.observed_generation == deployment.metadata.generation == 2
    assert (status.replicas, status.updated_replicas, status.available_replicas) == (4, 1, 3)
    assert kube.rollout_status(NS, APP) == (False, (
        f'Waiting for deployment "{APP}" rollout to finish: 1 out of 3 new replicas have been '
        "updated..."))
    pods = (await core.list_namespaced_pod(
        NS, label_selector=f"pod-template-hash={template_hash}")).items
    assert len(pods) == 1
    pod = pods[0]
    assert pod.metadata.owner_references[0].name == new.metadata.name
    assert pod.metadata.labels == {"app": APP, "pod-template-hash": template_hash}
    cs = pod.status.container_statuses[0]
    assert pod.status.phase == "Running" and cs.ready is False and cs.restart_count > 0
    assert cs.state.waiting.reason == "CrashLoopBackOff"
    assert (cs.last_state.terminated.exit_code, cs.last_state.terminated.reason) == (1, "Error")
    events = (await core.list_namespaced_event(
        NS, field_selector=f"involvedObject.name={pod.metadata.name},involvedObject.kind=Pod"
    )).items
    backoff = [e for e in events if e.reason == "BackOff"]
    assert len(backoff) == 1 and backoff[0].type == "Warning"
    assert backoff[0].message.startswith(f"Back-off restarting failed container {APP}")
    assert backoff[0].involved_object.field_path == f"spec.containers{{{APP}}}"


async def test_rollback_by_json_patch_reuses_old_replicaset(kube: FakeKubeApiserver,
                                                            api: ApiClient) -> None:
    kube.bad_images.add("app:v2")
    kube.add_deployment(NS, APP, "app:v1", replicas=3)
    kube.set_image(NS, APP, "app:v2")
    apps = AppsV1Api(api)
    rss = (await apps.list_namespaced_replica_set(NS)).items
    previous = next(rs for rs in rss if rs.metadata.annotations[REVISION] == "1")
    template = api.sanitize_for_serialization(previous.spec.template)
    del template["metadata"]["labels"]["pod-template-hash"]
    undo = [{"op": "test", "path": REVISION_PTR, "value": "2"},
            {"op": "replace", "path": "/spec/template", "value": template}]

    result = await apps.patch_namespaced_deployment(APP, NS, undo)
    assert result.spec.template.spec.containers[0].image == "app:v1"
    deployment = await apps.read_namespaced_deployment(APP, NS)
    assert deployment.metadata.annotations[REVISION] == "3"
    by_name = {rs.metadata.name: rs
               for rs in (await apps.list_namespaced_replica_set(NS)).items}
    assert len(by_name) == 2  # no third ReplicaSet: the old one was reused
    reused = by_name[previous.metadata.name]
    assert reused.metadata.annotations[REVISION] == "3"
    assert reused.metadata.annotations["deployment.kubernetes.io/revision-history"] == "1"
    assert reused.spec.replicas == 3
    bad = next(rs for name, rs in by_name.items() if name != previous.metadata.name)
    assert bad.spec.replicas == 0 and bad.metadata.annotations[REVISION] == "2"
    assert kube.rollout_complete(NS, APP)
    assert all(p["spec"]["containers"][0]["image"] == "app:v1" for p in kube.pods_of(NS, APP))
    # a retry of the same guarded patch (another replica, or after a crash) cannot apply
    with pytest.raises(ApiException) as err:
        await apps.patch_namespaced_deployment(APP, NS, undo)
    assert err.value.status == 422
    assert kube.count("PATCH", rf"/deployments/{APP}$") == 2


async def test_recreate_paused_and_history_limit(kube: FakeKubeApiserver) -> None:
    kube.add_deployment(NS, "worker", "w:1", replicas=2, strategy={"type": "Recreate"},
                        revision_history_limit=1)
    for tag in ("w:2", "w:3", "w:4"):
        kube.set_image(NS, "worker", tag)
    rss = kube.replicasets_of(NS, "worker")
    assert [rs["metadata"]["annotations"][REVISION] for rs in rss] == ["3", "4"]
    assert [rs["spec"]["replicas"] for rs in rss] == [0, 2]
    kube.add_deployment(NS, "paused", "p:1", replicas=1, paused=True)
    assert kube.replicasets_of(NS, "paused") == []
    status = kube.get_object("Deployment", NS, "paused")["status"]
    assert status["conditions"][1]["reason"] == "DeploymentPaused"


async def test_progress_deadline_exceeded(kube: FakeKubeApiserver) -> None:
    kube.bad_images.add("app:v2")
    kube.add_deployment(NS, APP, "app:v1", replicas=2, progress_deadline_seconds=60)
    kube.set_image(NS, APP, "app:v2")
    assert not kube.rollout_complete(NS, APP)
    kube.clock.advance(120)
    await kube.settle()
    progressing = kube.get_object("Deployment", NS, APP)["status"]["conditions"][1]
    assert (progressing["status"], progressing["reason"]) == ("False",
                                                              "ProgressDeadlineExceeded")
    with pytest.raises(RuntimeError, match="exceeded its progress deadline"):
        kube.rollout_status(NS, APP)
    kube.clear_image_fault("app:v2")  # e.g. the dependency came back
    assert kube.rollout_complete(NS, APP)


async def test_other_image_faults(kube: FakeKubeApiserver, api: ApiClient) -> None:
    kube.set_image_fault("oom:1", "OOMKilled", restart_count=2)
    kube.set_image_fault("cfg:1", "CreateContainerConfigError",
                         message='secret "db-credentials" not found')
    kube.set_image_fault("pull:1", "ImagePullBackOff")
    for name in ("oom", "cfg", "pull"):
        kube.add_deployment(NS, name, f"{name}:1", replicas=1)
    core = CoreV1Api(api)

    async def pod_of(app: str) -> Any:
        return (await core.list_namespaced_pod(NS, label_selector=f"app={app}")).items[0]

    oom = (await pod_of("oom")).status.container_statuses[0]
    assert oom.last_state.terminated.reason == "OOMKilled"
    assert oom.last_state.terminated.exit_code == 137 and oom.restart_count == 2
    cfg = await pod_of("cfg")
    assert cfg.status.phase == "Pending"
    waiting = cfg.status.container_statuses[0].state.waiting
    assert (waiting.reason, waiting.message) == ("CreateContainerConfigError",
                                                 'secret "db-credentials" not found')
    with pytest.raises(ApiException) as err:
        await core.read_namespaced_pod_log(cfg.metadata.name, NS)
    assert err.value.status == 400 and "is waiting to start" in body_of(err.value)["message"]
    failed = (await core.list_namespaced_event(
        NS, field_selector=f"involvedObject.uid={cfg.metadata.uid},reason=Failed")).items
    assert [e.message for e in failed] == ['Error: secret "db-credentials" not found']
    pull = await pod_of("pull")
    assert pull.status.container_statuses[0].state.waiting.reason == "ImagePullBackOff"


async def test_statefulset_pods_and_pvcs(kube: FakeKubeApiserver, api: ApiClient) -> None:
    kube.add_statefulset(NS, "mongodb", "mongo:7", replicas=2, volume_claims={"data": "20Gi"})
    core, apps = CoreV1Api(api), AppsV1Api(api)
    pods = (await core.list_namespaced_pod(NS, label_selector="app=mongodb")).items
    assert sorted(p.metadata.name for p in pods) == ["mongodb-0", "mongodb-1"]
    pvc = await core.read_namespaced_persistent_volume_claim("data-mongodb-0", NS)
    assert pvc.status.phase == "Bound" and pvc.status.capacity == {"storage": "20Gi"}
    sts = await apps.read_namespaced_stateful_set("mongodb", NS)
    assert (sts.status.ready_replicas, sts.status.current_revision) == (
        2, sts.status.update_revision)
    kube.bad_images.add("mongo:8")
    kube.set_image(NS, "mongodb", "mongo:8", kind="StatefulSet")
    sts = await apps.read_namespaced_stateful_set("mongodb", NS)
    assert sts.status.updated_replicas == 1 and sts.status.ready_replicas == 1
    broken = await core.read_namespaced_pod("mongodb-1", NS)  # highest ordinal goes first
    assert broken.status.container_statuses[0].state.waiting.reason == "CrashLoopBackOff"


async def test_job_created_from_cronjob_completes(kube: FakeKubeApiserver,
                                                  api: ApiClient) -> None:
    kube.add_cronjob(NS, "mongodb-backup", "backup:1")
    batch = BatchV1Api(api)
    cron = await batch.read_namespaced_cron_job("mongodb-backup", NS)
    job_body = V1Job(  # what `kubectl create job --from=cronjob/mongodb-backup` sends
        metadata=V1ObjectMeta(
            name="mongodb-backup-manual",
            annotations={"cronjob.kubernetes.io/instantiate": "manual"},
            owner_references=[V1OwnerReference(api_version="batch/v1", kind="CronJob",
                                               name="mongodb-backup", uid=cron.metadata.uid,
                                               controller=True)]),
        spec=cron.spec.job_template.spec)
    created = await batch.create_namespaced_job(NS, job_body)
    assert created.spec.selector.match_labels == {
        "batch.kubernetes.io/controller-uid": created.metadata.uid}
    job = await batch.read_namespaced_job("mongodb-backup-manual", NS)
    assert job.status.succeeded == 1
    assert [c.type for c in job.status.conditions] == ["SuccessCriteriaMet", "Complete"]
    pods = kube.list_objects("Pod", NS, label_selector="job-name=mongodb-backup-manual")
    assert [p["status"]["phase"] for p in pods] == ["Succeeded"]


async def test_typed_reads_of_other_resources(kube: FakeKubeApiserver,
                                              api: ApiClient) -> None:
    kube.add_node("worker-1", conditions={"MemoryPressure": "True"}, memory="8Gi")
    kube.add_pvc(NS, "uploads", storage="5Gi")
    kube.add_hpa(NS, APP, APP, min_replicas=2, max_replicas=4, current_replicas=4,
                 desired_replicas=6, current_cpu_utilization=180)
    kube.add_object({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
                     "metadata": {"name": "web", "namespace": NS, "annotations": {
                         "nginx.ingress.kubernetes.io/proxy-read-timeout": "3600"}},
                     "spec": {"rules": [{"host": "playcode.gg"}]}})
    node = await CoreV1Api(api).read_node("worker-1")
    pressure = {c.type: c.status for c in node.status.conditions}
    assert pressure["MemoryPressure"] == "True" and pressure["Ready"] == "True"
    assert node.status.allocatable["memory"] == "8Gi"
    pvc = await CoreV1Api(api).read_namespaced_persistent_volume_claim("uploads", NS)
    assert pvc.spec.resources.requests == {"storage": "5Gi"}
    hpa = await AutoscalingV2Api(api).read_namespaced_horizontal_pod_autoscaler(APP, NS)
    assert hpa.status.desired_replicas == 6 and hpa.spec.max_replicas == 4
    assert hpa.status.current_metrics[0].resource.current.average_utilization == 180
    ing = await NetworkingV1Api(api).list_namespaced_ingress(NS)
    assert ing.items[0].spec.rules[0].host == "playcode.gg"


async def test_scale_subresource(kube: FakeKubeApiserver, api: ApiClient) -> None:
    kube.add_deployment(NS, APP, "app:v1", replicas=1)
    apps = AppsV1Api(api)
    scale = await apps.patch_namespaced_deployment_scale(APP, NS, {"spec": {"replicas": 3}})
    assert scale.spec.replicas == 3
    scale = await apps.read_namespaced_deployment_scale(APP, NS)
    assert (scale.status.replicas, scale.status.selector) == (3, f"app={APP}")
    assert len(kube.pods_of(NS, APP)) == 3


# --------------------------------------------------------------------------- faults


async def test_fault_injection_and_request_counters(kube: FakeKubeApiserver,
                                                    api: ApiClient) -> None:
    kube.add_deployment(NS, APP, "app:v1", replicas=1)
    apps = AppsV1Api(api)
    kube.inject_fault("PATCH", rf"/deployments/{APP}$", 500)
    kube.inject_fault("PATCH", rf"/deployments/{APP}$", 429)
    with pytest.raises(ApiException) as err:
        await apps.patch_namespaced_deployment(APP, NS, {"spec": {"replicas": 2}})
    assert err.value.status == 500 and body_of(err.value)["reason"] == "InternalError"
    with pytest.raises(ApiException) as err:
        await apps.patch_namespaced_deployment(APP, NS, {"spec": {"replicas": 2}})
    assert err.value.status == 429
    assert err.value.headers is not None and err.value.headers["Retry-After"] == "1"
    assert kube.get_object("Deployment", NS, APP)["spec"]["replicas"] == 1
    await apps.patch_namespaced_deployment(APP, NS, {"spec": {"replicas": 2}})
    assert kube.get_object("Deployment", NS, APP)["spec"]["replicas"] == 2
    patches = kube.requests_matching("PATCH", rf"/deployments/{APP}$")
    assert [r.status for r in patches] == [500, 429, 200]
    assert patches[-1].body == {"spec": {"replicas": 2}}
    assert kube.count("GET") == 0

    # the write lands, then the client sees an error: a retry must not double-apply
    kube.inject_fault("PATCH", rf"/deployments/{APP}$", 500, after=True)
    with pytest.raises(ApiException):
        await apps.patch_namespaced_deployment(APP, NS, [
            {"op": "test", "path": "/spec/replicas", "value": 2},
            {"op": "replace", "path": "/spec/replicas", "value": 3}])
    assert kube.get_object("Deployment", NS, APP)["spec"]["replicas"] == 3

    rule = kube.inject_fault("GET", r"/deployments", 404, times=None, ratio=0.5)
    outcomes = []
    for _ in range(40):
        try:
            await apps.read_namespaced_deployment(APP, NS)
            outcomes.append(200)
        except ApiException as exc:
            outcomes.append(exc.status)
    assert 5 < outcomes.count(404) < 35 and rule.hits == outcomes.count(404)
    kube.clear_faults()
    kube.clear_requests()
    assert kube.count() == 0


async def test_injected_delay_makes_client_time_out(kube: FakeKubeApiserver,
                                                    api: ApiClient) -> None:
    kube.add_deployment(NS, APP, "app:v1", replicas=1)
    kube.inject_delay("GET", rf"/deployments/{APP}$", 5.0, times=1)
    apps = AppsV1Api(api)
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(asyncio.TimeoutError):
        await apps.read_namespaced_deployment(APP, NS, _request_timeout=0.2)
    assert loop.time() - started < 2
    assert (await apps.read_namespaced_deployment(APP, NS)).metadata.name == APP
    assert kube.count("GET", rf"/deployments/{APP}$") == 2


# --------------------------------------------------------------------------- metrics, events


async def test_metrics_api_present_absent_unavailable(kube: FakeKubeApiserver,
                                                      api: ApiClient) -> None:
    kube.add_deployment(NS, APP, "app:v1", replicas=2)
    pods = [p["metadata"]["name"] for p in kube.pods_of(NS, APP)]
    kube.set_pod_metrics(NS, pods[0], {APP: ("250m", "300Mi")})
    kube.set_pod_metrics(NS, pods[1], ("900m", "1Gi"))
    kube.set_node_metrics("node-1", "1500m", "6Gi")
    custom = CustomObjectsApi(api)
    listed = await custom.list_namespaced_custom_object("metrics.k8s.io", "v1beta1", NS, "pods",
                                                        label_selector=f"app={APP}")
    assert listed["kind"] == "PodMetricsList"
    usage = {i["metadata"]["name"]: i["containers"][0]["usage"] for i in listed["items"]}
    assert usage == {pods[0]: {"cpu": "250m", "memory": "300Mi"},
                     pods[1]: {"cpu": "900m", "memory": "1Gi"}}
    one = await custom.get_namespaced_custom_object("metrics.k8s.io", "v1beta1", NS, "pods",
                                                    pods[0])
    assert one["kind"] == "PodMetrics" and one["window"] == "15s"
    nodes = await custom.list_cluster_custom_object("metrics.k8s.io", "v1beta1", "nodes")
    assert nodes["items"][0]["usage"] == {"cpu": "1500m", "memory": "6Gi"}
    with pytest.raises(ApiException) as err:
        await custom.get_namespaced_custom_object("metrics.k8s.io", "v1beta1", NS, "pods",
                                                  "ghost")
    assert err.value.status == 404
    assert body_of(err.value)["message"] == f'podmetrics.metrics.k8s.io "{NS}/ghost" not found'

    kube.metrics_mode = "absent"  # no metrics-server installed
    with pytest.raises(ApiException) as err:
        await custom.list_namespaced_custom_object("metrics.k8s.io", "v1beta1", NS, "pods")
    assert err.value.status == 404
    assert body_of(err.value)["message"] == "the server could not find the requested resource"
    groups = await api.call_api("/apis", "GET", response_types_map={200: "object"},
                                _return_http_data_only=True)
    assert "metrics.k8s.io" not in {g["name"] for g in groups["groups"]}
    kube.metrics_mode = "unavailable"  # APIService registered, metrics-server down
    with pytest.raises(ApiException) as err:
        await custom.list_cluster_custom_object("metrics.k8s.io", "v1beta1", "nodes")
    assert err.value.status == 503
    assert body_of(err.value)["reason"] == "ServiceUnavailable"


async def test_events_field_selector(kube: FakeKubeApiserver, api: ApiClient) -> None:
    kube.add_deployment(NS, APP, "app:v1", replicas=1)
    deployment = kube.get_object("Deployment", NS, APP)
    kube.add_event(deployment, "Custom", "seeded by the test", type_="Normal",
                   component="medic")
    core = CoreV1Api(api)
    by_name = (await core.list_namespaced_event(
        NS, field_selector=f"involvedObject.name={APP},involvedObject.kind=Deployment")).items
    assert {e.reason for e in by_name} == {"ScalingReplicaSet", "Custom"}
    scaled = next(e for e in by_name if e.reason == "ScalingReplicaSet")
    assert scaled.message.startswith(f"Scaled up replica set {APP}-")
    assert scaled.source.component == "deployment-controller"
    by_uid = (await core.list_namespaced_event(
        NS, field_selector=f"involvedObject.uid={deployment['metadata']['uid']},type=Normal"
    )).items
    assert sorted(e.metadata.name for e in by_uid) == sorted(e.metadata.name for e in by_name)
    none = await core.list_namespaced_event(NS, field_selector="involvedObject.kind=Node")
    assert none.items == []
    every = await core.list_event_for_all_namespaces(field_selector="reason=Scheduled")
    assert len(every.items) == 1 and every.items[0].source.component == "default-scheduler"


async def test_discovery_and_custom_resources(kube: FakeKubeApiserver, api: ApiClient) -> None:
    kube.register_resource("cert-manager.io", "v1", "certificates", "Certificate")
    kube.add_object({"apiVersion": "cert-manager.io/v1", "kind": "Certificate",
                     "metadata": {"name": "playcode-tls", "namespace": NS},
                     "spec": {"secretName": "playcode-tls"},
                     "status": {"notAfter": "2030-01-01T00:00:00Z", "conditions": [
                         {"type": "Ready", "status": "True"}]}})
    cert = await CustomObjectsApi(api).get_namespaced_custom_object(
        "cert-manager.io", "v1", NS, "certificates", "playcode-tls")
    assert cert["status"]["conditions"][0]["status"] == "True"
    version = await api.call_api("/version", "GET", response_types_map={200: "object"},
                                 _return_http_data_only=True)
    assert version["gitVersion"].startswith("v1.30")
    resources = await api.call_api("/apis/apps/v1", "GET", response_types_map={200: "object"},
                                   _return_http_data_only=True)
    assert "deployments/scale" in {r["name"] for r in resources["resources"]}


# --------------------------------------------------------------------------- cert-manager, CronJobs


async def test_cert_manager_kinds_list_get_and_status_patch(
    kube: FakeKubeApiserver, api: ApiClient
) -> None:
    from tests.fakes.kube_certmanager import CertManager

    cm = CertManager(kube)
    cm.add_issuer(None, "letsencrypt")
    cm.add_certificate(NS, "playcode-tls", dns_names=("playcode.example",))
    custom = CustomObjectsApi(api)
    listed = await custom.list_namespaced_custom_object("cert-manager.io", "v1", NS, "certificates")
    assert [c["metadata"]["name"] for c in listed["items"]] == ["playcode-tls"]
    issuers = await custom.list_cluster_custom_object("cert-manager.io", "v1", "clusterissuers")
    assert issuers["items"][0]["status"]["conditions"][0]["status"] == "True"
    for group, plural in (("cert-manager.io", "certificaterequests"), ("acme.cert-manager.io", "orders"),
                          ("acme.cert-manager.io", "challenges")):
        assert (await custom.list_namespaced_custom_object(group, "v1", NS, plural))["items"] == []
    cert = await custom.get_namespaced_custom_object(
        "cert-manager.io", "v1", NS, "certificates", "playcode-tls")
    assert cert["status"]["revision"] == 1
    # a spec write keeps the status; the status subresource takes a JSON patch with a `test`
    await custom.patch_namespaced_custom_object(
        "cert-manager.io", "v1", NS, "certificates", "playcode-tls",
        [{"op": "replace", "path": "/spec/secretName", "value": "x"}])
    assert kube.get_object("Certificate", NS, "playcode-tls")["status"]["revision"] == 1
    stale = cert["metadata"]["resourceVersion"]
    ops = [{"op": "test", "path": "/metadata/resourceVersion", "value": stale},
           {"op": "add", "path": "/status/conditions/-", "value": {"type": "Issuing", "status": "True"}}]
    with pytest.raises(ApiException) as exc:
        await api.call_api(f"/apis/cert-manager.io/v1/namespaces/{NS}/certificates/playcode-tls/status",
                           "PATCH", body=ops, header_params={"Content-Type": "application/json-patch+json"},
                           response_types_map={200: "object"})
    assert exc.value.status == 422
    assert kube.get_object("Certificate", NS, "playcode-tls")["status"]["revision"] == 1
    # through the status subresource only the status changes (as the CRD's subresource does)
    await api.call_api(f"/apis/cert-manager.io/v1/namespaces/{NS}/certificates/playcode-tls/status",
                       "PATCH", body={"spec": {"secretName": "ignored"}, "status": {"revision": 7}},
                       header_params={"Content-Type": "application/merge-patch+json"},
                       response_types_map={200: "object"})
    after = kube.get_object("Certificate", NS, "playcode-tls")
    assert after["status"]["revision"] == 7 and after["spec"]["secretName"] == "x"


async def test_cert_manager_controller_issues_or_fails_at_the_acme_challenge(kube: FakeKubeApiserver) -> None:
    from tests.fakes.kube_certmanager import CertManager, get_condition

    cm = CertManager(kube)
    cm.add_issuer(None, "letsencrypt")
    cm.add_certificate(NS, "playcode-tls", dns_names=("playcode.example",))
    cm.fail_acme(NS, "playcode-tls", challenge_type="DNS-01", reason="NXDOMAIN looking up TXT")
    cm.trigger(NS, "playcode-tls")
    cert = kube.get_object("Certificate", NS, "playcode-tls")
    issuing = get_condition(cert, "Issuing")
    assert issuing is not None and (issuing["status"], issuing["reason"]) == ("False", "Failed")
    assert cert["status"]["revision"] == 1 and cert["status"]["failedIssuanceAttempts"] == 1
    [cr] = kube.list_objects("CertificateRequest", NS)
    assert cr["metadata"]["ownerReferences"][0]["uid"] == cert["metadata"]["uid"]
    assert cr["metadata"]["annotations"]["cert-manager.io/certificate-revision"] == "2"
    [order] = kube.list_objects("Order", NS)
    [challenge] = kube.list_objects("Challenge", NS)
    assert order["status"]["state"] == challenge["status"]["state"] == "invalid"
    assert challenge["spec"]["type"] == "DNS-01"
    assert challenge["status"]["reason"] == "NXDOMAIN looking up TXT"
    assert challenge["metadata"]["ownerReferences"][0]["uid"] == order["metadata"]["uid"]
    cm.heal(NS, "playcode-tls")
    cm.trigger(NS, "playcode-tls")
    cert = kube.get_object("Certificate", NS, "playcode-tls")
    assert cert["status"]["revision"] == 2 and get_condition(cert, "Issuing") is None
    assert get_condition(cert, "Ready")["status"] == "True"  # type: ignore[index]


async def test_cert_manager_controller_waits_for_a_missing_issuer(kube: FakeKubeApiserver) -> None:
    from tests.fakes.kube_certmanager import CertManager, get_condition

    cm = CertManager(kube)
    cm.add_certificate(NS, "playcode-tls", issuer="gone")
    cm.trigger(NS, "playcode-tls")
    [cr] = kube.list_objects("CertificateRequest", NS)
    ready = get_condition(cr, "Ready")
    assert ready is not None and ready["reason"] == "Pending" and '"gone" not found' in ready["message"]
    assert get_condition(kube.get_object("Certificate", NS, "playcode-tls"), "Issuing")["status"] == "True"  # type: ignore[index]


async def test_cronjob_runs_own_their_jobs_and_record_the_last_success(
    kube: FakeKubeApiserver, api: ApiClient
) -> None:
    from tests.fakes.kube_cronjobs import CronJobs

    cron = CronJobs(kube)
    kube.add_object({"apiVersion": "batch/v1", "kind": "CronJob",
                     "metadata": {"name": "mongodb-backup", "namespace": NS},
                     "spec": {"schedule": "0 3 * * *", "jobTemplate": {"spec": {
                         "backoffLimit": 0, "template": {"spec": {"restartPolicy": "Never", "containers": [
                             {"name": "mongodb-backup", "image": "backup:1"}]}}}}}})
    job = cron.run(NS, "mongodb-backup")
    cj = kube.get_object("CronJob", NS, "mongodb-backup")
    assert job["metadata"]["ownerReferences"][0]["uid"] == cj["metadata"]["uid"]
    assert job["metadata"]["name"].startswith("mongodb-backup-") and cj["status"]["lastScheduleTime"]
    done = kube.get_object("Job", NS, job["metadata"]["name"])["status"]["completionTime"]
    assert done and cj["status"]["lastSuccessfulTime"] == done and "active" not in cj["status"]
    kube.set_image_fault("backup:1", "OOMKilled")
    failed = cron.run(NS, "mongodb-backup", scheduled=kube.clock.now().replace(year=2030))
    batch = BatchV1Api(api)
    got = await batch.read_namespaced_job(failed["metadata"]["name"], NS)
    assert [c.type for c in got.status.conditions if c.status == "True"][-1] == "Failed"
    pods = (await CoreV1Api(api).list_namespaced_pod(
        NS, label_selector=f"job-name={failed['metadata']['name']}")).items
    assert pods[0].status.container_statuses[0].state.terminated.reason == "OOMKilled"
    kube.set_log(NS, pods[0].metadata.name, "mongodb-backup", "mongodump: writing\n")
    log = await CoreV1Api(api).read_namespaced_pod_log(pods[0].metadata.name, NS, tail_lines=5)
    assert log == "mongodump: writing\n"
    assert kube.get_object("CronJob", NS, "mongodb-backup")["status"]["lastSuccessfulTime"] == cj["status"][
        "lastSuccessfulTime"]


# --------------------------------------------------------------------------- what a rollout timeline reads
# (pinned on the real controller's behaviour: pkg/controller/deployment/sync.go and progress.go,
# and the API server's managedFields)


async def test_a_rollback_reuses_the_replicaset_with_its_history_and_the_deployments_annotations(
        kube: FakeKubeApiserver, api: ApiClient) -> None:
    """SetNewReplicaSetAnnotations: the reused ReplicaSet gets the next revision, keeps its old
    numbers in revision-history, and receives the Deployment's annotations (Medic's own too);
    its creationTimestamp stays the old one. The controller logs each scale-up as an event."""
    kube.clock.hold()  # the interval between the two scale-ups is exactly what the test advances
    kube.add_deployment(NS, APP, "app:v1", replicas=2)
    created = next(rs for rs in kube.replicasets_of(NS, APP))["metadata"]["creationTimestamp"]
    kube.clock.advance(3600)
    kube.set_image(NS, APP, "app:v2")
    kube.clock.advance(60)
    dep = kube.get_object("Deployment", NS, APP)
    dep["metadata"]["annotations"]["medic.playcode.gg/rollback"] = '{"from": 2, "to": 1}'
    dep["spec"]["template"]["spec"]["containers"][0]["image"] = "app:v1"
    kube.update_object(dep)
    by_rev = {int(rs["metadata"]["annotations"][REVISION]): rs for rs in kube.replicasets_of(NS, APP)}
    assert sorted(by_rev) == [2, 3]
    reused = by_rev[3]["metadata"]
    assert reused["annotations"]["deployment.kubernetes.io/revision-history"] == "1"
    assert reused["annotations"]["medic.playcode.gg/rollback"] == '{"from": 2, "to": 1}'
    assert reused["creationTimestamp"] == created
    events = (await CoreV1Api(api).list_namespaced_event(
        NS, field_selector=f"involvedObject.name={APP},reason=ScalingReplicaSet")).items
    from_zero = sorted(e.last_timestamp for e in events
                       if e.message.startswith(f"Scaled up replica set {reused['name']} from 0 to "))
    assert len(from_zero) == 2  # the first rollout, then the re-deploy with its own time
    assert (from_zero[1] - from_zero[0]).total_seconds() == 3660


async def test_the_progressing_condition_names_the_new_replicaset(kube: FakeKubeApiserver) -> None:
    kube.bad_images.add("app:v2")
    kube.add_deployment(NS, APP, "app:v1", replicas=2)
    done = {c["type"]: c for c in kube.get_object("Deployment", NS, APP)["status"]["conditions"]}
    rs1 = kube.replicasets_of(NS, APP)[0]["metadata"]["name"]
    assert done["Progressing"]["reason"] == "NewReplicaSetAvailable"
    assert done["Progressing"]["message"] == f'ReplicaSet "{rs1}" has successfully progressed.'
    kube.clock.advance(120)
    kube.set_image(NS, APP, "app:v2")
    cond = {c["type"]: c for c in kube.get_object("Deployment", NS, APP)["status"]["conditions"]}
    rs2 = next(rs["metadata"]["name"] for rs in kube.replicasets_of(NS, APP) if rs["metadata"]["name"] != rs1)
    assert cond["Progressing"]["reason"] == "ReplicaSetUpdated"
    assert cond["Progressing"]["message"] == f'ReplicaSet "{rs2}" is progressing.'
    assert cond["Progressing"]["lastUpdateTime"] > done["Progressing"]["lastUpdateTime"]


async def test_managed_fields_record_who_wrote_and_when(kube: FakeKubeApiserver, api: ApiClient) -> None:
    """One entry per manager and operation; a write moves its writer's time only when it changed
    the object; an HTTP write is recorded under ?fieldManager= (else the User-Agent's product)."""
    kube.add_deployment(NS, APP, "app:v1", replicas=1)
    first = kube.get_object("Deployment", NS, APP)["metadata"]["managedFields"]
    assert [(f["manager"], f["operation"]) for f in first] == [("kubectl-create", "Update")]
    kube.clock.advance(60)
    kube.set_image(NS, APP, "app:v2")
    kube.clock.advance(60)
    kube.set_image(NS, APP, "app:v2")  # no change: no new time
    fields = {f["manager"]: f for f in kube.get_object("Deployment", NS, APP)["metadata"]["managedFields"]}
    assert set(fields) == {"kubectl-create", "kubectl-set"}
    assert fields["kubectl-set"]["time"] > fields["kubectl-create"]["time"]
    set_time = fields["kubectl-set"]["time"]
    await AppsV1Api(api).patch_namespaced_deployment(
        APP, NS, {"metadata": {"labels": {"team": "web"}}}, field_manager="medic")
    fields = {f["manager"]: f for f in kube.get_object("Deployment", NS, APP)["metadata"]["managedFields"]}
    assert fields["kubectl-set"]["time"] == set_time and "medic" in fields
    assert fields["medic"]["apiVersion"] == "apps/v1" and fields["medic"]["fieldsType"] == "FieldsV1"


# --------------------------------------------------------------------------- watch


async def raw_watch(kube: FakeKubeApiserver, path: str, **params: str) -> tuple[int, list[Any]]:
    """GET ``path?watch=1&...`` and read the stream to its end: (HTTP status, parsed lines)."""
    async with aiohttp.ClientSession() as session, session.get(
            kube.url + path, params={"watch": "1", **params}) as resp:
        lines = [json.loads(line) async for line in resp.content if line.strip()]
        return resp.status, lines


DEPLOYMENTS = f"/apis/apps/v1/namespaces/{NS}/deployments"


def revision_of(obj: dict[str, Any]) -> str | None:
    return (obj["metadata"].get("annotations") or {}).get(REVISION)


async def test_watch_replays_every_write_after_a_resource_version_in_order(
        kube: FakeKubeApiserver) -> None:
    start = kube.store.resource_version
    kube.add_deployment(NS, APP, "app:v1", replicas=1)
    kube.set_image(NS, APP, "app:v2")
    kube.delete_object("Deployment", NS, APP)
    status, events = await raw_watch(kube, DEPLOYMENTS, resourceVersion=start,
                                     timeoutSeconds="1")
    assert status == 200
    types = [e["type"] for e in events]
    assert types[0] == "ADDED" and types[-1] == "DELETED"
    assert set(types[1:-1]) == {"MODIFIED"}
    versions = [int(e["object"]["metadata"]["resourceVersion"]) for e in events]
    assert versions == sorted(set(versions)) and versions[0] > int(start)
    assert versions[-1] <= int(kube.store.resource_version)  # the deletion has its own version
    assert {e["object"]["kind"] for e in events} == {"Deployment"}  # objects carry their kind
    assert [revision_of(e["object"]) for e in events].count("2") >= 1
    # from the middle: only what came after
    middle = str(versions[2])
    _, rest = await raw_watch(kube, DEPLOYMENTS, resourceVersion=middle, timeoutSeconds="1")
    assert [int(e["object"]["metadata"]["resourceVersion"]) for e in rest] == versions[3:]


async def test_watch_without_resource_version_starts_with_the_current_objects(
        kube: FakeKubeApiserver, api: ApiClient) -> None:
    kube.add_deployment(NS, APP, "app:v1", replicas=1)
    kube.add_deployment(NS, "worker", "worker:v1", replicas=1)
    kube.add_deployment("staging", APP, "app:v1", replicas=1)
    apps = AppsV1Api(api)
    seen: list[tuple[str, str, str]] = []
    async with watch.Watch() as w:
        async for event in w.stream(apps.list_namespaced_deployment, NS, timeout_seconds=1):
            seen.append((event["type"], event["object"].metadata.name,
                         event["object"].metadata.namespace))
    assert seen == [("ADDED", APP, NS), ("ADDED", "worker", NS)]  # typed, this namespace only
    _, everywhere = await raw_watch(kube, "/apis/apps/v1/deployments", resourceVersion="0",
                                    timeoutSeconds="1")
    assert sorted((e["object"]["metadata"]["namespace"], e["object"]["metadata"]["name"])
                  for e in everywhere) == [(NS, APP), (NS, "worker"), ("staging", APP)]


async def test_watch_streams_live_changes_and_resumes_after_a_dropped_connection(
        kube: FakeKubeApiserver, api: ApiClient) -> None:
    kube.add_deployment(NS, APP, "app:v1", replicas=1)
    apps = AppsV1Api(api)
    listed = await apps.list_namespaced_deployment(NS)
    last = listed.metadata.resource_version
    seen: list[str] = []

    async def deploy() -> None:
        await kube.watching(1)
        kube.set_image(NS, APP, "app:v2")

    deployer = asyncio.create_task(deploy())
    w = watch.Watch(return_type="object")
    with pytest.raises(aiohttp.ClientPayloadError):
        async for event in w.stream(apps.list_namespaced_deployment, NS, resource_version=last,
                                    timeout_seconds=30):
            seen.append(event["raw_object"]["metadata"]["resourceVersion"])
            last = event["raw_object"]["metadata"]["resourceVersion"]
            if len(seen) == 1:
                assert kube.drop_watches("/namespaces/staging/") == 0  # only those matching
                assert kube.drop_watches() == 1
    await deployer
    assert seen and kube.open_watches == 0
    kube.set_image(NS, APP, "app:v3")  # while nobody watches
    _, missed = await raw_watch(kube, DEPLOYMENTS, resourceVersion=last, timeoutSeconds="1")
    assert missed, "the writes made while disconnected are replayed"
    assert all(int(e["object"]["metadata"]["resourceVersion"]) > int(last) for e in missed)
    assert revision_of(missed[-1]["object"]) == "3"


async def test_the_clients_own_reconnect_resumes_from_its_resource_version(
        kube: FakeKubeApiserver, api: ApiClient) -> None:
    """kubernetes_asyncio's Watch without timeout_seconds reconnects by itself when the stream
    ends, with the resourceVersion of the last event: the fake serves that resume."""
    kube.add_deployment(NS, APP, "app:v1", replicas=1)
    apps = AppsV1Api(api)
    start = (await apps.list_namespaced_deployment(NS)).metadata.resource_version
    kube.set_image(NS, APP, "app:v2")

    async def end_then_deploy() -> None:
        await kube.watching(1)
        await asyncio.sleep(0.2)
        kube.drop_watches(abort=False)  # nothing more is sent on that stream
        at_drop.append(int(kube.store.resource_version))
        kube.set_image(NS, APP, "app:v3")

    at_drop: list[int] = []
    task = asyncio.create_task(end_then_deploy())
    seen: list[tuple[str, str | None]] = []
    w = watch.Watch(return_type="object")
    async with asyncio.timeout(10):
        async for event in w.stream(apps.list_namespaced_deployment, NS, resource_version=start):
            seen.append((event["raw_object"]["metadata"]["resourceVersion"],
                         revision_of(event["raw_object"])))
            if seen[-1][1] == "3":
                w.stop()
    await task
    await w.close()
    before_drop = max((rv for rv, _ in seen if int(rv) <= at_drop[0]), key=int)
    watches = kube.requests_matching("GET", DEPLOYMENTS + "$")[1:]
    assert [r.query.get("resourceVersion") for r in watches] == [start, before_drop]
    assert [rv for rv, _ in seen] == sorted(set(rv for rv, _ in seen), key=int)  # no repeat


async def test_watch_bookmarks_when_asked(kube: FakeKubeApiserver) -> None:
    kube.bookmark_interval = 0.1
    kube.add_deployment(NS, APP, "app:v1", replicas=1)
    now = kube.store.resource_version
    _, events = await raw_watch(kube, DEPLOYMENTS, resourceVersion=now,
                                allowWatchBookmarks="true", timeoutSeconds="1")
    assert events and {e["type"] for e in events} == {"BOOKMARK"}
    assert events[0]["object"] == {"kind": "Deployment", "apiVersion": "apps/v1",
                                   "metadata": {"resourceVersion": now}}
    _, quiet = await raw_watch(kube, DEPLOYMENTS, resourceVersion=now, timeoutSeconds="1")
    assert quiet == []


async def test_watch_from_a_compacted_resource_version_is_410_expired(
        kube: FakeKubeApiserver, api: ApiClient) -> None:
    kube.add_deployment(NS, APP, "app:v1", replicas=1)
    old = kube.store.resource_version
    kube.set_image(NS, APP, "app:v2")
    kube.compact_history()
    status, events = await raw_watch(kube, DEPLOYMENTS, resourceVersion=old, timeoutSeconds="5")
    assert status == 200  # the error comes in the stream, as from the watch cache
    assert events == [{"type": "ERROR", "object": {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": f"too old resource version: {old} ({kube.store.resource_version})",
        "reason": "Expired", "details": {}, "code": 410}}]
    with pytest.raises(ApiException) as err:
        async with watch.Watch() as w:
            async for _ in w.stream(AppsV1Api(api).list_namespaced_deployment, NS,
                                    resource_version=old, timeout_seconds=5):
                pass
    assert err.value.status == 410 and "Expired" in str(err.value.reason)
    # the current version is still served
    now = kube.store.resource_version
    kube.scale(NS, APP, 2)
    _, fresh = await raw_watch(kube, DEPLOYMENTS, resourceVersion=now, timeoutSeconds="1")
    assert fresh and fresh[0]["type"] == "MODIFIED"


async def test_the_history_is_bounded(kube: FakeKubeApiserver) -> None:
    kube.store.history_limit = 5
    start = kube.store.resource_version
    kube.add_deployment(NS, APP, "app:v1", replicas=2)  # many writes: RS, pods, status
    _, events = await raw_watch(kube, DEPLOYMENTS, resourceVersion=start, timeoutSeconds="5")
    assert [e["object"]["reason"] for e in events] == ["Expired"]


async def test_watch_selectors_with_the_caches_transitions(kube: FakeKubeApiserver) -> None:
    start = kube.store.resource_version
    kube.add_object({"apiVersion": "v1", "kind": "ConfigMap",
                     "metadata": {"name": "a", "namespace": NS, "labels": {"team": "web"}}})
    kube.add_object({"apiVersion": "v1", "kind": "ConfigMap",
                     "metadata": {"name": "b", "namespace": NS, "labels": {"team": "db"}}})
    kube.patch_object("ConfigMap", NS, "a", {"metadata": {"labels": {"team": "db"}}})
    kube.patch_object("ConfigMap", NS, "b", {"metadata": {"labels": {"team": "web"}}})
    kube.patch_object("ConfigMap", NS, "b", {"data": {"k": "v"}})
    kube.add_object({"apiVersion": "v1", "kind": "ConfigMap",
                     "metadata": {"name": "c", "namespace": "staging", "labels": {"team": "web"}}})
    path = f"/api/v1/namespaces/{NS}/configmaps"
    _, web = await raw_watch(kube, path, resourceVersion=start, timeoutSeconds="1",
                             labelSelector="team=web")
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in web] == [
        ("ADDED", "a"), ("DELETED", "a"), ("ADDED", "b"), ("MODIFIED", "b")]
    gone = web[1]["object"]
    assert gone["metadata"]["labels"] == {"team": "web"}  # the last state that matched
    assert int(gone["metadata"]["resourceVersion"]) > int(web[0]["object"]["metadata"]["resourceVersion"])
    _, by_name = await raw_watch(kube, path, resourceVersion=start, timeoutSeconds="1",
                                 fieldSelector="metadata.name=b")
    assert {e["object"]["metadata"]["name"] for e in by_name} == {"b"} and len(by_name) == 3
    _, legacy = await raw_watch(kube, f"{path}/b", resourceVersion=start, timeoutSeconds="1")
    assert legacy == by_name
    _, cluster = await raw_watch(kube, "/api/v1/configmaps", resourceVersion=start,
                                 timeoutSeconds="1", labelSelector="team=web")
    assert ("ADDED", "c") in [(e["type"], e["object"]["metadata"]["name"]) for e in cluster]
    status, _ = await raw_watch(kube, path, labelSelector="team in (web")
    assert status == 400


async def test_watch_ends_at_its_timeout_and_refuses_what_it_should(
        kube: FakeKubeApiserver) -> None:
    async with asyncio.timeout(10):  # a guard, not a speed goal: the stream ends by itself
        status, events = await raw_watch(kube, DEPLOYMENTS, timeoutSeconds="1")
    assert (status, events) == (200, [])
    assert kube.open_watches == 0
    status, _ = await raw_watch(kube, DEPLOYMENTS, resourceVersion="latest")
    assert status == 400
    status, _ = await raw_watch(kube, f"/apis/metrics.k8s.io/v1beta1/namespaces/{NS}/pods")
    assert status == 405
    kube.deny("watch", "deployments", namespace=NS)
    async with aiohttp.ClientSession() as session, session.get(
            kube.url + DEPLOYMENTS, params={"watch": "true"}) as resp:
        assert resp.status == 403
        body = await resp.json()
    assert 'cannot watch resource "deployments"' in body["message"]
    status, _ = await raw_watch(kube, "/apis/apps/v1/namespaces/staging/deployments",
                                timeoutSeconds="1")
    assert status == 200


def test_a_held_clock_moves_only_when_advanced() -> None:
    from tests.fakes.kube_store import FakeClock

    clock = FakeClock()
    clock.hold()
    start = clock.now()
    time.sleep(1.1)  # a second boundary passes on the wall clock
    assert clock.now() == start
    clock.advance(60)
    assert (clock.now() - start).total_seconds() == 60
    clock.reset()
    assert abs((clock.now() - datetime.now(UTC)).total_seconds()) < 2
