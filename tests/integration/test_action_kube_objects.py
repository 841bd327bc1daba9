"""An action reading an object from the (fake) kube-apiserver whose field has the wrong type
fails its plan with a StepError naming the object and the field, and the executor records it as
a refusal in those words: never a KeyError/TypeError/ValueError out of the step (a defect), never
a silently wrong reading (a Certificate revision that is not a number was read as 0)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import BaseModel

from medic.app.catalogue import default_registry
from medic.app.settings import Settings
from medic.clients.kube.client import KubeClient
from medic.clients.sqlite import SqliteDB
from medic.coordination.sqlite import SqliteRemediationState
from medic.decision.decide import Decision
from medic.domain.errors import StepError
from medic.domain.incident import ActionStatus, Incident, Target, new_incident_id
from medic.incidents.sqlite import SqliteIncidentStore
from medic.playbooks.action import ActionContext
from medic.playbooks.compiled import CompiledAction
from medic.playbooks.model import ActionSpec, VerifySpec
from medic.remediation.executor import GuardedRemediator
from medic.rules.model import Budget, Remediation, Rule
from tests.fakes.kube_apiserver import FakeKubeApiserver
from tests.fakes.kube_certmanager import CertManager

NS, APP = "playcode", "playcode-app"


@dataclass(frozen=True)
class Case:
    action: str
    setup: Callable[[FakeKubeApiserver], Target]
    words: tuple[str, ...]  # what the refusal names: the object, then the field


def cronjob_labels_not_a_map(fake: FakeKubeApiserver) -> Target:
    fake.add_namespace(NS)
    fake.add_cronjob(NS, "mongodb-backup", "backup:1")
    cj = fake.get_object("CronJob", NS, "mongodb-backup")
    cj["spec"]["jobTemplate"]["metadata"] = {"labels": ["backup"]}
    fake.update_object(cj)
    return Target(kind="namespace", name=NS)


def certificate_revision_not_a_number(fake: FakeKubeApiserver) -> Target:
    cm = CertManager.installed(fake)
    cm.add_issuer(None, "letsencrypt")
    cm.add_certificate(NS, "playcode-tls", not_after=fake.clock.now() + timedelta(days=5))
    cert = fake.get_object("Certificate", NS, "playcode-tls")
    cert["status"]["revision"] = "two"
    fake.update_object(cert)
    return Target(kind="certificate", namespace=NS, name="playcode-tls")


def deployment_annotation_not_a_string(fake: FakeKubeApiserver) -> Target:
    fake.add_deployment(NS, APP, "app:v1", replicas=1, container_name=APP)
    dep = fake.get_object("Deployment", NS, APP)
    dep["metadata"]["annotations"]["team"] = ["web"]
    fake.update_object(dep)
    return Target(kind="deployment", namespace=NS, name=APP)


CASES = {
    "cronjob": Case(
        "k8s.create_job_from_cronjob",
        cronjob_labels_not_a_map,
        ("CronJob playcode/mongodb-backup", "spec.jobTemplate.metadata.labels: "),
    ),
    "certificate": Case(
        "certs.renew_certificate",
        certificate_revision_not_a_number,
        ("Certificate playcode/playcode-tls", "status.revision: "),
    ),
    "deployment": Case(
        "k8s.restart_deployment",
        deployment_annotation_not_a_string,
        ("Deployment playcode/playcode-app", "metadata.annotations.team: "),
    ),
}


def rule() -> Rule:
    return Rule(
        name="views",
        matchers=['alertname="Views"'],
        playbook="views",
        remediation=Remediation(
            action="act", mode="auto", cooldown=timedelta(0), budget=Budget(count=10, per=timedelta(hours=1))
        ),
    )


@pytest.mark.parametrize("case", sorted(CASES))
async def test_a_wrong_typed_field_is_a_refusal_naming_the_object_and_the_field(
    case: str, fake: FakeKubeApiserver, kube: KubeClient, tmp_path: Path
) -> None:
    c = CASES[case]
    target = c.setup(fake)
    await fake.settle()
    definition = default_registry().actions[c.action]
    params: BaseModel = definition.params()
    now = datetime.now(UTC)
    incident = Incident(id=new_incident_id(now), key=f"views|{target.key}", rule="views", target=target)

    ctx = ActionContext(kube=kube, target=target, incident=incident, rule=rule(), now=now)
    with pytest.raises(StepError) as caught:
        await definition.impl.plan(ctx, params)
    assert all(w in str(caught.value) for w in c.words), str(caught.value)

    db = SqliteDB(tmp_path / "medic.sqlite3")
    await db.open()
    settings = Settings(mode="enforce", namespaces=[NS], kube_mode="off")
    executor = GuardedRemediator(
        settings=settings, state=SqliteRemediationState(db), store=SqliteIncidentStore(db), kube=kube
    )
    spec = ActionSpec(use=c.action, verify=VerifySpec(timeout=timedelta(seconds=5)))
    decision = Decision(CompiledAction("act", spec, definition, params), "auto", "views")
    record = await executor.handle(incident, rule(), None, decision)  # type: ignore[arg-type]
    assert record is not None and record.status == ActionStatus.REFUSED
    assert record.reason is not None and record.reason.startswith(f"could not plan act: the {c.words[0]} ")
    assert all(w in record.reason for w in c.words), record.reason
    assert not [r for r in fake.requests if r.method in {"POST", "PUT", "PATCH", "DELETE"}]  # nothing written
