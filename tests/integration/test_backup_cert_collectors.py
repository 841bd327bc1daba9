"""The runbook 5.1 / 6.3 playbooks' collectors through Medic's KubeClient against the fake
kube-apiserver: what they read, and that the number of API requests does not grow with the
history (many backup Jobs, many certificate issuances)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from medic.app.backends import Backends
from medic.app.settings import Settings
from medic.clients.kube.client import KubeClient
from medic.domain.incident import Target
from tests.fakes.kube_apiserver import FakeKubeApiserver
from tests.fakes.kube_certmanager import CertManager
from tests.fakes.kube_cronjobs import CronJobs, cronjob
from tests.integration.kube_support import run_shipped_playbook

pytestmark = pytest.mark.integration
NS = "playcode"


def backends(kube: KubeClient) -> Backends:
    return Backends(settings=Settings(kube_mode="off", namespaces=[NS]).diagnosed, kube=kube)


def add_cronjob(fake: FakeKubeApiserver, image: str) -> None:
    fake.add_object(cronjob(NS, "mongodb-backup", image=image))


@pytest.mark.parametrize("history", [3, 30])
async def test_backup_runs_cost_the_same_requests_whatever_the_history(
    fake: FakeKubeApiserver, kube: KubeClient, history: int
) -> None:
    cron = CronJobs(fake)
    add_cronjob(fake, "backup:ok")
    start = fake.clock.now() - timedelta(days=history)
    for day in range(history - 1):
        cron.run(NS, "mongodb-backup", scheduled=start + timedelta(days=day))
    fake.add_job(NS, "unrelated-job", "other:1")  # not the CronJob's
    fake.set_image_fault("backup:bad", "OOMKilled")
    fake.patch_object(
        "CronJob",
        NS,
        "mongodb-backup",
        {
            "spec": {
                "jobTemplate": {
                    "spec": {
                        "template": {"spec": {"containers": [{"name": "mongodump", "image": "backup:bad"}]}}
                    }
                }
            }
        },
    )
    newest = cron.run(NS, "mongodb-backup")["metadata"]["name"]
    fake.clear_requests()

    _, evidence = await run_shipped_playbook("backup", backends(kube), Target(kind="namespace", name=NS), {})
    data = evidence["k8s.cronjob_runs"].data
    assert evidence["k8s.cronjob_runs"].ok, evidence["k8s.cronjob_runs"].error
    assert data["jobs_total"] == history and len(data["jobs"]) == min(5, history)
    assert data["jobs"][0]["name"] == newest and data["jobs"][0]["state"] == "failed"
    assert "unrelated-job" not in {j["name"] for j in data["jobs"]}
    [failed_pod] = [p for p in data["pods"] if p["job"] == newest]
    assert failed_pod["containers"][0]["reason"] == "OOMKilled"
    assert data["cronjob"]["last_successful"] is not None if history > 1 else True
    assert any(e["reason"] == "BackoffLimitExceeded" for e in data["events"])
    # one GET (CronJob), LISTs of jobs, pods and events, one log: the same for 3 and 30 runs
    assert fake.count() == 5, [f"{r.method} {r.path}" for r in fake.requests]
    assert fake.count("GET", r"/log$") == 1


@pytest.mark.parametrize("attempts", [1, 6])
async def test_certificate_status_costs_the_same_requests_whatever_the_attempts(
    fake: FakeKubeApiserver, kube: KubeClient, attempts: int
) -> None:
    cm = CertManager(fake)
    cm.add_issuer(NS, "letsencrypt")
    cm.add_certificate(NS, "playcode-tls", issuer="letsencrypt", issuer_kind="Issuer")
    cm.add_certificate(NS, "other-tls", issuer="letsencrypt", issuer_kind="Issuer")
    cm.fail_acme(NS, "other-tls")
    cm.trigger(NS, "other-tls")  # another certificate's failed chain: not ours
    for _ in range(attempts - 1):  # renewals that worked
        cm.trigger(NS, "playcode-tls")
    cm.fail_acme(NS, "playcode-tls", challenge_type="DNS-01", reason="NXDOMAIN")
    cm.trigger(NS, "playcode-tls")
    fake.clear_requests()

    target = Target(kind="certificate", namespace=NS, name="playcode-tls")
    _, evidence = await run_shipped_playbook("certificates", backends(kube), target, {})
    ev = evidence["k8s.certificate_status"]
    assert ev.ok, ev.error
    data = ev.data
    assert data["certificate"]["revision"] == attempts
    assert [r["revision"] for r in data["requests"]] == list(range(attempts + 1, max(attempts - 2, 1), -1))
    assert [c["reason"] for c in data["challenges"]] == ["NXDOMAIN"] and data["challenges"][0][
        "type"
    ] == "DNS-01"
    assert data["issuer"]["kind"] == "Issuer" and data["issuer"]["type"] == "acme"
    assert data["issuer"]["conditions"][0]["status"] == "True"
    # the Certificate, three LISTs (requests, orders, challenges) and the Issuer
    assert fake.count() == 5, [f"{r.method} {r.path}" for r in fake.requests]
