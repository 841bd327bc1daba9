"""Runbook 5.1 (backup) and 6.3 (certificates) end to end: alerts through Medic's real pipeline
(intake, rules, playbook collectors against the fake kube-apiserver, analyzers, the guarded
executor, approvals through the admin API). Both remediations wait for an approval; once approved
they write exactly once."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.e2e.pages_world import ADMIN_TOKEN
from tests.fakes.kube_apiserver import FakeKubeApiserver
from tests.fakes.kube_certmanager import CertManager, get_condition
from tests.fakes.kube_cronjobs import CronJobs, cronjob
from tests.fakes.kube_store import format_time
from tests.integration.crashloop_world import TOKEN, World
from tests.medic_app import REPO, medic_settings, running_medic
from tests.payloads import alert

pytestmark = pytest.mark.integration

NS = "playcode"
CRONJOB = "mongodb-backup"
IMAGE = "registry.example/mongodb-backup:1"
CERT = "playcode-tls"
AUTH_FAILED = (
    "2026-12-01T03:00:02.118+0000\tFailed: can't create session: could not connect to server: "
    "connection() error occurred during connection handshake: auth error: sasl conversation error: "
    'unable to authenticate using mechanism "SCRAM-SHA-256": (AuthenticationFailed) Authentication failed.\n'
)
HTTP01 = "Waiting for HTTP-01 challenge propagation: wrong status code '404', expected '200'"


@dataclass
class Cluster:
    kube: FakeKubeApiserver
    cron: CronJobs
    cm: CertManager


@contextlib.asynccontextmanager
async def world(tmp_path: Path) -> AsyncIterator[tuple[Cluster, World]]:
    async with FakeKubeApiserver(token="medic-sa-token") as kube:
        kube.add_namespace(NS)
        cluster = Cluster(kube, CronJobs(kube), CertManager(kube))
        config = medic_settings(
            tmp_path,
            mode="enforce",
            kube_mode="kubeconfig",
            kubeconfig=str(kube.write_kubeconfig(tmp_path / "kubeconfig")),
            webhook_token=TOKEN,
            admin_token=ADMIN_TOKEN,
        )
        async with running_medic(config) as medic:
            yield cluster, World(kube, medic)


def add_backup_cronjob(kube: FakeKubeApiserver) -> None:
    kube.add_object(cronjob(NS, CRONJOB, image=IMAGE))


async def approve(w: World, incident_id: str, by: str = "alice") -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession(headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as s,
        s.post(f"{w.medic.url}/api/v1/incidents/{incident_id}/approve", json={"by": by}) as r,
    ):
        return r.status, await r.json(content_type=None)


def backup_jobs(kube: FakeKubeApiserver) -> list[dict[str, Any]]:
    uid = kube.get_object("CronJob", NS, CRONJOB)["metadata"]["uid"]
    return [
        j
        for j in kube.list_objects("Job", NS)
        if any(r.get("uid") == uid for r in j["metadata"].get("ownerReferences") or [])
    ]


async def test_a_failed_backup_is_diagnosed_and_re_run_once_after_approval(tmp_path: Path) -> None:
    async with world(tmp_path) as (c, w):
        add_backup_cronjob(c.kube)
        c.kube.patch_object(
            "CronJob",
            NS,
            CRONJOB,
            {"status": {"lastSuccessfulTime": format_time(c.kube.clock.now() - timedelta(hours=30))}},
        )
        c.kube.set_image_fault(IMAGE, "CrashLoopBackOff", exit_code=1)  # mongodump exits 1
        c.kube.set_image_log(IMAGE, AUTH_FAILED)
        failed = c.cron.run(NS, CRONJOB)
        job = failed["metadata"]["name"]
        assert c.kube.get_object("Job", NS, job)["status"]["failed"] == 1
        c.kube.clear_requests()

        await w.post(
            [alert("KubeJobFailed", namespace=NS, job_name=job, job="kube-state-metrics", severity="warning")]
        )
        inc = await w.diagnosed()
        assert inc["rule"] == "backup-job-failed" and inc["target"]["kind"] == "namespace"
        findings = {f["code"]: f for f in inc["findings"]}
        assert findings["backup.failed"]["details"]["cause"] == "mongo_auth", findings
        assert findings["backup.failed"]["details"]["job"] == job
        assert findings["backup.overdue"]["details"]["hours_since_success"] >= 30
        [act] = inc["actions"]
        assert (act["status"], act["use"], act["action"]) == (
            "awaiting_approval",
            "k8s.create_job_from_cronjob",
            "backup_now",
        ), act
        assert c.kube.count("POST", r"/jobs$") == 0 and len(backup_jobs(c.kube)) == 1
        assert c.kube.count("GET", rf"/pods/{job}-[a-z0-9]+/log$") == 1  # the failed pod's log was read

        c.kube.clear_image_fault(IMAGE)  # the credentials were fixed: now the re-run can succeed
        status, body = await approve(w, inc["id"])
        assert status == 200, body
        assert body["action"]["status"] == "succeeded", body["action"]
        assert body["action"]["approved_by"] == "alice"
        assert c.kube.count("POST", r"/jobs$") == 1
        jobs = backup_jobs(c.kube)
        assert len(jobs) == 2
        manual = next(j for j in jobs if j["metadata"]["name"] != job)
        assert manual["metadata"]["annotations"]["cronjob.kubernetes.io/instantiate"] == "manual"
        assert get_condition(manual, "Complete") is not None
        # the CronJob now knows of a fresh success; a second approval is refused and writes nothing
        assert (
            c.kube.get_object("CronJob", NS, CRONJOB)["status"]["lastSuccessfulTime"]
            == manual["status"]["completionTime"]
        )
        assert (await approve(w, inc["id"], "bob"))[0] == 409
        assert c.kube.count("POST", r"/jobs$") == 1


async def test_a_failing_acme_challenge_is_diagnosed_and_a_renewal_proposed_then_made_once(
    tmp_path: Path,
) -> None:
    async with world(tmp_path) as (c, w):
        c.cm.add_issuer(None, "letsencrypt")
        c.cm.add_certificate(
            NS, CERT, dns_names=("playcode.example",), not_after=c.kube.clock.now() + timedelta(days=12)
        )
        c.cm.fail_acme(NS, CERT, challenge_type="HTTP-01", reason=HTTP01)
        c.cm.trigger(NS, CERT)  # cert-manager's scheduled renewal, which fails at the challenge
        await w.post([alert("CertManagerCertExpirySoon", namespace=NS, name=CERT, severity="warning")])
        inc = await w.diagnosed()
        assert inc["rule"] == "certificate-renewal"
        assert inc["target"] == {"kind": "certificate", "namespace": NS, "name": CERT, "inferred": False}
        findings = {f["code"]: f for f in inc["findings"]}
        challenge = findings["cert.challenge_failed"]
        assert challenge["details"]["reason"] == HTTP01 and challenge["details"]["type"] == "HTTP-01"
        assert HTTP01 in challenge["summary"]
        assert findings["cert.expiring"]["details"]["days_left"] <= 12
        [act] = inc["actions"]
        assert (act["status"], act["use"]) == ("awaiting_approval", "certs.renew_certificate"), act
        assert c.kube.count("PATCH") == 0

        c.cm.heal(NS, CERT)  # the ingress serves the solver again
        status, body = await approve(w, inc["id"])
        assert status == 200, body
        assert body["action"]["status"] == "succeeded", body["action"]
        [patch] = c.kube.requests_matching("PATCH")
        assert patch.path.endswith(f"/certificates/{CERT}/status")
        assert patch.body[0]["op"] == "test" and patch.body[1]["value"][-1]["reason"] == "ManuallyTriggered"
        cert = c.kube.get_object("Certificate", NS, CERT)
        assert cert["status"]["revision"] == 2 and get_condition(cert, "Ready")["status"] == "True"  # type: ignore[index]
        assert (await approve(w, inc["id"], "bob"))[0] == 409
        assert c.kube.count("PATCH") == 1


async def test_medic_check_passes_on_the_shipped_backup_and_certificate_rules() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "medic",
        "check",
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={
            **os.environ,
            "MEDIC_RULES_DIR": str(REPO / "rules"),
            "MEDIC_PLAYBOOKS_DIR": str(REPO / "playbooks"),
        },
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    text = out.decode() + err.decode()
    assert proc.returncode == 0, text
    for name in ("backup-job-failed", "backup-overdue", "certificate-renewal"):
        assert (
            f"Checking rule '{name}'" in text and "SUCCESS" in text.split(f"Checking rule '{name}'")[1][:200]
        )
    for playbook in ("backup", "certificates"):
        assert f"Checking playbook '{playbook}'" in text


async def test_a_failed_job_and_a_missed_schedule_are_two_proposals_but_one_backup_run(
    tmp_path: Path,
) -> None:
    async with world(tmp_path) as (c, w):
        add_backup_cronjob(c.kube)
        c.kube.set_image_fault(IMAGE, "OOMKilled")
        job = c.cron.run(NS, CRONJOB)["metadata"]["name"]
        await w.post(
            [
                alert("KubeJobFailed", namespace=NS, job_name=job, severity="warning"),
                alert("KubeCronJobLastSuccessTooOld", namespace=NS, cronjob=CRONJOB, severity="critical"),
            ]
        )
        await w.medic.drain()
        items = await w.incidents()
        assert sorted(i["rule"] for i in items) == ["backup-job-failed", "backup-overdue"], items
        incidents = [await w.incident(i["id"]) for i in items]
        for inc in incidents:
            assert [a["status"] for a in inc["actions"]] == ["awaiting_approval"], inc["actions"]
            assert "oom_killed" in {f["details"].get("cause") for f in inc["findings"]}
        c.kube.clear_image_fault(IMAGE)
        first = await approve(w, incidents[0]["id"])
        assert first[0] == 200 and first[1]["action"]["status"] == "succeeded", first
        status, body = await approve(w, incidents[1]["id"])
        assert status == 200 and body["action"]["status"] == "refused", body  # same target, in its cooldown
        assert body["action"]["reason"].startswith("cooldown"), body["action"]
        assert c.kube.count("POST", r"/jobs$") == 1 and len(backup_jobs(c.kube)) == 2
