"""The typed views the remediation actions read Kubernetes objects as: they read what the
(fake) API server really sends, keep the parts a write copies verbatim, and a field of the wrong
type is a StepError naming the object and the field (never a KeyError/TypeError later)."""

from __future__ import annotations

from typing import Any

import pytest

from medic.domain.errors import StepError
from medic.remediation.actions.k8s import job_status
from medic.remediation.actions.kube_objects import (
    Certificate,
    CronJob,
    Deployment,
    Event,
    Job,
    KubeObjectInvalid,
    Pod,
    ReplicaSet,
    condition,
    view,
)
from medic.remediation.actions.rollout import images, owned_by, revision, rollout_status
from tests.fakes.kube_apiserver import FakeKubeApiserver
from tests.fakes.kube_certmanager import CertManager

NS, APP = "playcode", "playcode-app"


@pytest.fixture
def fake() -> FakeKubeApiserver:  # the cluster state only: no server is started
    cluster = FakeKubeApiserver()
    cluster.add_deployment(NS, APP, "app:v1", replicas=2, container_name=APP)
    cluster.set_image(NS, APP, "app:v2", change_cause="v2")
    return cluster


def test_a_deployment_reads_as_the_api_server_sends_it(fake: FakeKubeApiserver) -> None:
    raw = fake.get_object("Deployment", NS, APP)
    dep = view(Deployment, raw)
    meta, status = raw["metadata"], raw["status"]
    assert (dep.metadata.name, dep.metadata.namespace, dep.metadata.uid) == (APP, NS, meta["uid"])
    assert dep.metadata.resource_version == meta["resourceVersion"]
    assert dep.metadata.generation == meta["generation"] == 2
    assert dep.metadata.creation_timestamp == meta["creationTimestamp"]
    assert dep.metadata.annotations == meta["annotations"] and revision(dep) == 2
    assert dep.metadata.labels == {"app": APP}
    assert dep.spec.replicas == 2 and dep.spec.paused is False
    assert dep.spec.selector.match_labels == {"app": APP}
    assert dep.spec.revision_history_limit == raw["spec"]["revisionHistoryLimit"]
    # the pod template: verbatim (what the rollback's JSON Patch copies) and read
    assert dep.spec.template == raw["spec"]["template"]
    assert images(dep.spec.pod) == ["app:v2"] and dep.spec.pod.spec.containers[0].name == APP
    assert (dep.status.observed_generation, dep.status.replicas) == (2, 2)
    st = dep.status
    assert (st.updated_replicas, st.ready_replicas, st.available_replicas) == (2, 2, 2)
    progressing = condition(dep.status.conditions, "Progressing")
    raw_progressing = next(c for c in status["conditions"] if c["type"] == "Progressing")
    assert progressing is not None and progressing.reason == raw_progressing["reason"]
    assert progressing.last_update_time == raw_progressing["lastUpdateTime"]
    assert rollout_status(dep).done


def test_replicasets_and_pods_read_with_their_owners(fake: FakeKubeApiserver) -> None:
    dep = view(Deployment, fake.get_object("Deployment", NS, APP))
    raws = fake.replicasets_of(NS, APP)
    rss = [view(ReplicaSet, r) for r in raws]
    assert [revision(r) for r in rss] == [1, 2] and all(owned_by(r, dep) for r in rss)
    assert [images(r.spec.pod) for r in rss] == [["app:v1"], ["app:v2"]]
    assert [r.spec.template for r in rss] == [r["spec"]["template"] for r in raws]
    assert rss[1].status.ready_replicas == raws[1]["status"]["readyReplicas"] == 2
    assert rss[1].metadata.annotations["kubernetes.io/change-cause"] == "v2"
    assert rss[1].metadata.created is not None
    raw_pod = fake.pods_of(NS, APP)[0]
    pod = view(Pod, raw_pod)
    assert pod.metadata.uid == raw_pod["metadata"]["uid"]
    [owner] = pod.metadata.controllers
    assert (owner.kind, owner.name, owner.uid) == ("ReplicaSet", rss[1].metadata.name, rss[1].metadata.uid)


def test_a_cronjob_keeps_its_job_spec_verbatim_and_a_job_reads_its_status(fake: FakeKubeApiserver) -> None:
    fake.add_cronjob(NS, "mongodb-backup", "backup:1")
    raw = fake.get_object("CronJob", NS, "mongodb-backup")
    cj = view(CronJob, raw)
    assert cj.metadata.uid == raw["metadata"]["uid"]
    assert cj.spec.job_template.spec == raw["spec"]["jobTemplate"]["spec"]  # copied whole into the Job
    fake.add_job(NS, "mongodb-backup-manual", "backup:1", owner=raw)
    fake.settle()
    raw_job = fake.get_object("Job", NS, "mongodb-backup-manual")
    job = view(Job, raw_job)
    assert job.metadata.owner_references[0].uid == cj.metadata.uid
    assert [(c.type, c.status) for c in job.status.conditions] == [
        (c["type"], c["status"]) for c in raw_job.get("status", {}).get("conditions", [])
    ]
    assert job.status.completion_time == raw_job.get("status", {}).get("completionTime")
    assert job_status(job).message.startswith("job mongodb-backup-manual")


def test_a_certificate_reads_its_status_and_keeps_its_conditions_verbatim(fake: FakeKubeApiserver) -> None:
    cm = CertManager(fake)
    cm.add_issuer(None, "letsencrypt")
    cm.add_certificate(NS, "playcode-tls", revision=3)
    raw = fake.get_object("Certificate", NS, "playcode-tls")
    cert = view(Certificate, raw)
    assert cert.status is not None
    assert (cert.status.revision, cert.status.not_after) == (3, raw["status"]["notAfter"])
    assert cert.status.conditions_raw == raw["status"]["conditions"]
    ready = condition(cert.status.conditions, "Ready")
    assert ready is not None and ready.status == "True"
    assert cert.metadata.resource_version == raw["metadata"]["resourceVersion"]
    del raw["status"]
    assert view(Certificate, raw).status is None  # a Certificate not yet seen by cert-manager


def test_an_event_reads_its_times(fake: FakeKubeApiserver) -> None:
    involved = fake.get_object("Deployment", NS, APP)
    raw = fake.add_event(involved, "ScalingReplicaSet", "Scaled up", type_="Normal")
    event = view(Event, raw)
    assert (event.reason, event.message) == ("ScalingReplicaSet", "Scaled up")
    assert event.first_timestamp == raw.get("firstTimestamp")
    assert event.last_timestamp == raw.get("lastTimestamp")
    assert event.metadata.resource_version == raw["metadata"]["resourceVersion"]


def test_a_null_or_absent_field_is_its_default() -> None:
    dep = view(Deployment, {"metadata": {"name": "d", "annotations": None}, "spec": {"template": None}})
    assert dep.metadata.annotations == {} and dep.spec.template == {} and dep.spec.pod.spec.containers == []
    assert dep.spec.replicas is None and dep.status.conditions == [] and revision(dep) == 0


def _deployment() -> dict[str, Any]:
    fake = FakeKubeApiserver()
    return fake.add_deployment(NS, APP, "app:v1", replicas=2, container_name=APP)


def _set(obj: dict[str, Any], path: str, value: object) -> dict[str, Any]:
    at: Any = obj
    *parents, last = path.split(".")
    for key in parents:
        at = at[int(key)] if key.isdigit() else at.setdefault(key, {})
    at[int(last) if last.isdigit() else last] = value
    return obj


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        ("spec.replicas", "three", "spec.replicas"),
        ("spec.paused", "s3cr3t", "spec.paused"),
        ("metadata.annotations", ["s3cr3t"], "metadata.annotations"),
        ("metadata.annotations.team", 7, "metadata.annotations.team"),
        ("spec.template.spec.containers.0.image", 42, "spec.template.spec.containers[0].image"),
        ("metadata.ownerReferences", {"uid": "x"}, "metadata.ownerReferences"),
        ("status", "s3cr3t", "status"),
    ],
)
def test_a_wrong_typed_field_is_a_step_error_naming_the_object_and_the_field(
    path: str, value: object, field: str
) -> None:
    obj = _set(_deployment(), path, value)
    with pytest.raises(KubeObjectInvalid) as caught:
        view(Deployment, obj)
    assert isinstance(caught.value, StepError)
    message = str(caught.value)
    assert f"Deployment {NS}/{APP}" in message
    assert f"{field}: " in message
    assert "s3cr3t" not in message  # the type it got, never the value (it may be a secret)


def test_a_wrong_typed_certificate_revision_is_not_read_as_zero() -> None:
    # before the views, a revision that is not a number was read as 0 (a renewal from revision 0)
    raw = {"metadata": {"name": "tls", "namespace": NS}, "status": {"revision": "two", "conditions": []}}
    with pytest.raises(KubeObjectInvalid, match=r"Certificate playcode/tls .*status\.revision: "):
        view(Certificate, raw)
    with pytest.raises(KubeObjectInvalid, match=r"status\.conditions\[0\]: "):
        view(Certificate, {"metadata": {"name": "tls"}, "status": {"conditions": ["Ready"]}})
