"""Shared by the tests that talk to the fake kube-apiserver through Medic's KubeClient (a pytest
plugin, see tests/conftest.py): a fast retry policy, the ``fake``/``kube`` fixtures, and running
a shipped playbook's collectors."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime
from pathlib import Path

import pytest

from medic.app.backends import Backends
from medic.app.catalogue import default_registry
from medic.app.config import load_config
from medic.clients.kube.client import KubeClient, RetryPolicy
from medic.domain.evidence import Evidence
from medic.domain.incident import Target
from medic.playbooks.compiled import CompiledPlaybook
from medic.playbooks.contract import StepContext
from medic.playbooks.runner import PlannedStep, run_steps
from tests.fakes.kube_apiserver import FakeKubeApiserver

ROOT = Path(__file__).resolve().parents[2]
FAST = RetryPolicy(attempts=4, base_delay=0.01, max_delay=0.05, request_timeout=2.0)


@pytest.fixture
async def fake() -> AsyncIterator[FakeKubeApiserver]:
    async with FakeKubeApiserver(token="t0k3n") as server:
        yield server


@pytest.fixture
async def kube(fake: FakeKubeApiserver) -> AsyncIterator[KubeClient]:
    client = await KubeClient.from_configuration(fake.client_configuration(), retry=FAST)
    yield client
    await client.close()


async def run_shipped_playbook(
    name: str, backends: Backends, target: Target, labels: Mapping[str, str]
) -> tuple[CompiledPlaybook, dict[str, Evidence]]:
    """The repo's playbook ``name`` and the evidence of all its collectors, run as the pipeline does."""
    pb = load_config([ROOT / "rules"], [ROOT / "playbooks"], default_registry()).playbooks[name]
    ctx = StepContext(target, labels, [], backends, datetime.now(UTC), 5)
    steps = [PlannedStep(s.step_id, s.collector, s.params, 5) for s in pb.steps]
    return pb, {e.step: e for e in await run_steps(steps, ctx, deadline=15, max_bytes=256 * 1024)}
