"""``loki.revision_errors`` against the Loki fake: error lines per minute of a verified revision's
pods since the start, and of the baseline's pods over the hour before it; other pods, other
namespaces and lines that are no error do not count."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from medic.analysis.verification import limit_breach
from medic.app.backends import Backends
from medic.app.catalogue import default_registry
from medic.domain.evidence import Evidence, StepStatus
from medic.domain.incident import Target
from medic.domain.verification import Pair, RevisionWindow, Thresholds, Verification, VerificationSpec
from medic.playbooks.contract import StepContext
from medic.playbooks.runner import PlannedStep, run_step
from tests.fakes.loki import FakeLoki
from tests.integration import test_dataplane_loki

loki = test_dataplane_loki.loki  # the Loki fake and Backends pointed at it: the same fixtures
backends = test_dataplane_loki.backends
NEW, OLD = "playcode-app-7d9c8f", "playcode-app-5b6c7d"
COLLECTOR = default_registry().collectors["loki.revision_errors"]
SEC = 1_000_000_000


def ns(when: datetime) -> int:
    return int(when.timestamp() * SEC)


def window(start: datetime, *, baseline_s: float) -> RevisionWindow:
    """Revision 8 (NEW) verified since ``start`` against revision 7 (OLD)."""
    v = Verification(
        namespace="playcode",
        deployment="playcode-app",
        revision=8,
        replicaset=NEW,
        baseline_revision=7,
        baseline_replicaset=OLD,
        started_at=start,
        window_s=600,
        interval_s=60,
        ends_at=start + timedelta(minutes=10),
        next_at=start,
        baseline_s=baseline_s,
    )
    return RevisionWindow.of(v, VerificationSpec())


async def errors_of(backends: Backends, rev: RevisionWindow, now: datetime) -> Evidence:
    target = Target(kind="deployment", namespace="playcode", name="playcode-app")
    ctx = StepContext(target, {}, [], backends, now, 5.0, revision=rev)
    return await run_step(
        PlannedStep("loki.revision_errors", COLLECTOR, COLLECTOR.params(), 5.0), ctx, max_bytes=65536
    )


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
    ev = await errors_of(backends, window(start, baseline_s=3600), now)
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


async def test_a_short_lived_baseline_is_not_diluted_over_the_whole_hour(
    loki: FakeLoki, backends: Backends
) -> None:
    """Both revisions log 5 error lines a minute; the baseline ran for only 10 minutes before the
    start (begin() keeps baseline_s 600 from its ReplicaSet's age): the same rate, no breach."""
    now = datetime.now(UTC).replace(microsecond=0)
    start = now - timedelta(minutes=4)
    loki.push(
        {"namespace": "playcode", "pod": f"{OLD}-fghij"},
        [(ns(start - timedelta(seconds=12 * i + 5)), f"ERROR #{i}") for i in range(50)],  # 10 min
    )
    loki.push(
        {"namespace": "playcode", "pod": f"{NEW}-abcde"},
        [(ns(start + timedelta(seconds=12 * i + 5)), f"ERROR #{i}") for i in range(19)],  # 4 min
    )
    rev = window(start, baseline_s=600)
    assert rev.baseline_s == 600
    ev = await errors_of(backends, rev, now)
    pair = Pair(new=ev.data["new_per_minute"], baseline=ev.data["baseline_per_minute"])
    assert pair.baseline == pytest.approx(5.0)
    assert limit_breach("error_logs_per_minute", Thresholds().error_logs_per_minute, pair) is None
