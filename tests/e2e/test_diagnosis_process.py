"""``medic serve`` (embedded backend) runs diagnosis in a child process: deliveries accepted by the
intake are diagnosed by the child, /metrics is one merged exposition, a child that dies is started
again (and what was accepted meanwhile is processed), and the child does not outlive its parent."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.e2e.medic_process import MedicProcess
from tests.payloads import alert, payload

pytestmark = pytest.mark.e2e


def children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as fh:
            return [int(p) for p in fh.read().split()]
    except FileNotFoundError:
        return []


def diagnosis_pid(medic: MedicProcess) -> int:
    assert medic.proc.pid is not None
    for pid in children(medic.proc.pid):
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            if b"medic.app.diagnosis_child" in fh.read():
                return pid
    raise AssertionError("medic serve has no diagnosis process")


def niceness(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as fh:  # field 19, counted after the command's ")"
        return int(fh.read().rsplit(")", 1)[1].split()[16])


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


async def get(url: str) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as s, s.get(url) as r:
        text = await r.text()
        return r.status, json.loads(text) if "json" in r.headers.get("Content-Type", "") else text


async def post_alert(url: str, deployment: str) -> None:
    body = payload([alert("PlayCodeHighLatency", namespace="playcode", deployment=deployment)])
    async with aiohttp.ClientSession() as s, s.post(f"{url}/api/v1/alerts", json=body) as r:
        assert r.status == 200, await r.text()


async def diagnosed(url: str, count: int, within: float = 30.0) -> list[dict[str, Any]]:
    loop = asyncio.get_running_loop()
    end = loop.time() + within
    while True:
        _, listing = await get(f"{url}/api/v1/incidents")
        done = [i for i in listing["items"] if i["phase"] == "diagnosed"]
        if len(done) >= count or loop.time() > end:
            return done
        await asyncio.sleep(0.1)


async def until(check: Any, within: float = 20.0) -> bool:
    loop = asyncio.get_running_loop()
    end = loop.time() + within
    while loop.time() < end:
        if await check():
            return True
        await asyncio.sleep(0.1)
    return False


async def test_the_child_diagnoses_metrics_merge_and_a_dead_child_is_replaced(tmp_path: Path) -> None:
    medic = MedicProcess(tmp_path, {})
    await medic.start()
    try:
        child = diagnosis_pid(medic)
        assert niceness(child) == min(19, os.nice(0) + 10)  # yields the cores to the intake (19: max)
        assert os.sched_getscheduler(child) == os.SCHED_IDLE  # and runs on what the intake leaves
        assert os.sched_getscheduler(medic.proc.pid or 0) == os.SCHED_OTHER
        await post_alert(medic.url, "app-a")
        assert len(await diagnosed(medic.url, 1)) == 1
        assert "diagnosis process ready" in medic.log()

        # one exposition: the intake counted the alert, the child opened the incident
        _, metrics = await get(f"{medic.url}/metrics")
        assert "medic_alerts_received_total 1.0" in metrics
        assert 'medic_incidents_total{rule="high-latency"} 1.0' in metrics
        assert metrics.count("# TYPE medic_incidents_total counter") == 1
        assert "medic_intake_loop_busy_ratio " in metrics  # what puts claims off when flooded
        assert "medic_diagnosis_claims_deferred_total 0.0" in metrics

        # the child dies: the intake still accepts (degraded), a new child processes the backlog
        os.kill(child, signal.SIGKILL)

        async def restarting() -> bool:
            status, ready = await get(f"{medic.url}/readyz")
            return status == 200 and ready["checks"].get("diagnosis") == "restarting"

        assert await until(restarting, 5)
        _, metrics = await get(f"{medic.url}/metrics")  # the dead child's counts stay: none goes back
        assert 'medic_incidents_total{rule="high-latency"} 1.0' in metrics
        await post_alert(medic.url, "app-b")
        assert len(await diagnosed(medic.url, 2)) == 2
        _, metrics = await get(f"{medic.url}/metrics")  # the old child's 1 and the new child's 1
        assert 'medic_incidents_total{rule="high-latency"} 2.0' in metrics
        assert "medic_diagnosis_process_restarts_total 1.0" in metrics

        async def ready_again() -> bool:
            _, ready = await get(f"{medic.url}/readyz")
            return bool(ready["status"] == "ready" and ready["checks"]["diagnosis"] == "ok")

        assert await until(ready_again)
        assert diagnosis_pid(medic) != child
    finally:
        await medic.stop()


async def test_the_child_does_not_outlive_its_parent(tmp_path: Path) -> None:
    medic = MedicProcess(tmp_path, {})
    await medic.start()
    child = diagnosis_pid(medic)
    await medic.kill()  # SIGKILL: no shutdown of its own

    async def gone() -> bool:
        return not alive(child)

    assert await until(gone, 10), "the diagnosis process outlived medic serve"


async def test_one_process_when_asked(tmp_path: Path) -> None:
    medic = MedicProcess(tmp_path, {"MEDIC_DIAGNOSIS_PROCESS": "false"})
    await medic.start()
    try:
        assert medic.proc.pid is not None and children(medic.proc.pid) == []
        await post_alert(medic.url, "app-a")
        assert len(await diagnosed(medic.url, 1)) == 1
        _, ready = await get(f"{medic.url}/readyz")
        assert "diagnosis" not in ready["checks"]
    finally:
        await medic.stop()
