"""``loki.revision_errors`` against the Loki fake: error lines per minute of a verified revision's
pods since the start, and of the baseline's pods over the hour before it; other pods, other
namespaces and lines that are no error do not count."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from medic.app.backends import Backends
from medic.app.catalogue import default_registry
from medic.app.settings import Settings
from medic.domain.evidence import StepStatus
from medic.domain.incident import Target
from medic.domain.verification import RevisionWindow
from medic.playbooks.contract import StepContext
from medic.playbooks.runner import PlannedStep, run_step
from tests.fakes.loki import FakeLoki

NEW, OLD = "playcode-app-7d9c8f", "playcode-app-5b6c7d"
COLLECTOR = default_registry().collectors["loki.revision_errors"]
SEC = 1_000_000_000


@pytest.fixture
async def loki() -> AsyncIterator[FakeLoki]:
    async with FakeLoki() as fake:
        yield fake


@pytest.fixture
async def backends(loki: FakeLoki) -> AsyncIterator[Backends]:
    b = await Backends.from_settings(Settings(loki_url=loki.url))
    try:
        yield b
    finally:
        await b.close()


def ns(when: datetime) -> int:
    return int(when.timestamp() * SEC)


async def test_error_lines_per_minute_of_the_revision_and_its_baseline(
    loki: FakeLoki, backends: Backends
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    start = now - timedelta(minutes=4)
    pod_new, pod_old = f"{NEW}-abcde", f"{OLD}-fghij"
    # the new revision: 12 error lines since the start (4 min), 30 info lines, 5 errors before it began
    loki.push(
        {"namespace": "playcode", "pod": pod_new},
        [(ns(start + timedelta(seconds=10 + 15 * i)), f"ERROR db timeout #{i}") for i in range(12)]
        + [(ns(start + timedelta(seconds=5 + 7 * i)), f"GET /health 200 #{i}") for i in range(30)]
        + [(ns(start - timedelta(seconds=30 + i)), f"Error early #{i}") for i in range(5)],
    )
    # the baseline: 60 errors over the hour before the start, 9 after it (not its window)
    loki.push(
        {"namespace": "playcode", "pod": pod_old},
        [(ns(start - timedelta(seconds=30 + 59 * i)), f"exception in handler #{i}") for i in range(60)]
        + [(ns(start + timedelta(seconds=20 + i)), f"error after #{i}") for i in range(9)],
    )
    loki.push(
        {"namespace": "other", "pod": f"{NEW}-zzzzz"}, [(ns(now - timedelta(seconds=5)), "ERROR elsewhere")]
    )
    loki.push({"namespace": "playcode", "pod": "redis-0"}, [(ns(now - timedelta(seconds=5)), "ERROR redis")])
    rev = RevisionWindow(
        namespace="playcode",
        deployment="playcode-app",
        revision=8,
        replicaset=NEW,
        baseline_revision=7,
        baseline_replicaset=OLD,
        started_at=start,
        baseline_s=3600,
    )
    target = Target(kind="deployment", namespace="playcode", name="playcode-app")
    ctx = StepContext(target, {}, [], backends, now, 5.0, revision=rev)
    ev = await run_step(
        PlannedStep("loki.revision_errors", COLLECTOR, COLLECTOR.params(), 5.0), ctx, max_bytes=65536
    )
    assert ev.status is StepStatus.OK, ev.error
    assert ev.data["new_lines"] == 12
    assert ev.data["new_per_minute"] == pytest.approx(3.0)  # 12 lines over 4 minutes
    assert ev.data["baseline_per_minute"] == pytest.approx(1.0)  # 60 lines over the hour before
    assert 'pod=~"playcode-app-7d9c8f-[a-z0-9]{5}"' in ev.data["query"].replace("\\\\-", "-")


async def test_outside_a_verification_it_is_not_configured(backends: Backends) -> None:
    ctx = StepContext(None, {}, [], backends, datetime.now(UTC), 5.0)
    ev = await run_step(
        PlannedStep("loki.revision_errors", COLLECTOR, COLLECTOR.params(), 5.0), ctx, max_bytes=65536
    )
    assert ev.status is StepStatus.NOT_CONFIGURED and "deploy verification" in (ev.error or "")
