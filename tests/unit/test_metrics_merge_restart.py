"""A replaced diagnosis process never makes the replica's merged counters go back (issue 15):
its last counts stay in the merge, its gauges do not (medic.telemetry.metrics_merge)."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from medic.telemetry.metrics_merge import ChildCounters, merge_expositions, retired_counters

INTAKE = """# TYPE process_cpu_seconds_total counter
process_cpu_seconds_total 40.0
# TYPE process_resident_memory_bytes gauge
process_resident_memory_bytes 100.0
# TYPE process_start_time_seconds gauge
process_start_time_seconds 1000.0
# TYPE medic_actions_total counter
medic_actions_total{action="rollout.rollback",status="succeeded"} 0.0
# TYPE medic_queue_depth gauge
medic_queue_depth 4.0
"""


def child(cpu: float, rss: float, start: float, actions: float, steps: float, queue: float) -> str:
    return f"""# TYPE process_cpu_seconds_total counter
process_cpu_seconds_total {cpu}
# TYPE process_resident_memory_bytes gauge
process_resident_memory_bytes {rss}
# TYPE process_start_time_seconds gauge
process_start_time_seconds {start}
# TYPE medic_actions_total counter
medic_actions_total{{action="rollout.rollback",status="succeeded"}} {actions}
# TYPE medic_queue_depth gauge
medic_queue_depth {queue}
# TYPE medic_step_duration_seconds histogram
medic_step_duration_seconds_bucket{{collector="k8s",le="1.0"}} {steps}
medic_step_duration_seconds_bucket{{collector="k8s",le="+Inf"}} {steps}
medic_step_duration_seconds_count{{collector="k8s"}} {steps}
medic_step_duration_seconds_sum{{collector="k8s"}} {steps / 2}
"""


OLD = child(cpu=5060.0, rss=900.0, start=1001.0, actions=7.0, steps=50.0, queue=9.0)
NEW = child(cpu=60.5, rss=200.0, start=2000.0, actions=1.0, steps=3.0, queue=2.0)


def samples(text: bytes | str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    raw = text.decode() if isinstance(text, bytes) else text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(raw)
        for s in family.samples
    }


def kinds(text: bytes) -> dict[str, str]:
    return {
        s.name: family.type
        for family in text_string_to_metric_families(text.decode())
        for s in family.samples
    }


def scrape(counters: ChildCounters, live: str | None) -> bytes:
    if live is not None:
        counters.seen(live)
    return merge_expositions([INTAKE, *counters.expositions(live)])


def test_no_counter_sample_goes_back_when_the_child_is_replaced() -> None:
    counters = ChildCounters()
    before = scrape(counters, OLD)
    counters.replaced()
    after = scrape(counters, NEW)
    types = kinds(before)
    old, new = samples(before), samples(after)
    counted = [key for key in old if types[key[0]] in {"counter", "histogram"}]
    assert len(counted) == 6
    for key in counted:
        assert new[key] >= old[key], key
    assert new[("process_cpu_seconds_total", ())] == 40.0 + 5060.0 + 60.5
    assert new[("medic_actions_total", (("action", "rollout.rollback"), ("status", "succeeded")))] == 8.0
    assert new[("medic_step_duration_seconds_count", (("collector", "k8s"),))] == 53.0


def test_gauges_are_the_live_processes_alone() -> None:
    counters = ChildCounters()
    scrape(counters, OLD)
    counters.replaced()
    after = samples(scrape(counters, NEW))
    assert after[("process_resident_memory_bytes", ())] == 100.0 + 200.0  # not the dead child's 900
    assert after[("process_start_time_seconds", ())] == 1000.0
    assert after[("medic_queue_depth", ())] == 4.0


def test_while_the_child_does_not_answer_its_last_counts_stand_in_for_it_without_its_gauges() -> None:
    counters = ChildCounters()
    before = samples(scrape(counters, OLD))
    silent = samples(scrape(counters, None))  # dead, not yet replaced, or too slow to answer
    assert silent[("process_cpu_seconds_total", ())] == before[("process_cpu_seconds_total", ())]
    assert silent[("process_resident_memory_bytes", ())] == 100.0
    counters.replaced()
    restarting = samples(scrape(counters, None))  # replaced, its successor not answering yet
    assert restarting[("process_cpu_seconds_total", ())] == 40.0 + 5060.0


def test_several_restarts_add_up_and_a_child_never_seen_adds_nothing() -> None:
    counters = ChildCounters()
    scrape(counters, OLD)
    counters.replaced()
    counters.replaced()  # the next child died before any scrape: nothing of it to keep
    scrape(counters, NEW)
    counters.replaced()
    merged = samples(
        scrape(counters, child(cpu=1.0, rss=5.0, start=3000.0, actions=0.0, steps=0.0, queue=0.0))
    )
    assert merged[("process_cpu_seconds_total", ())] == 40.0 + 5060.0 + 60.5 + 1.0
    assert merged[("medic_actions_total", (("action", "rollout.rollback"), ("status", "succeeded")))] == 8.0


def test_retired_counters_keep_no_gauge() -> None:
    kept = samples(retired_counters([OLD, NEW]))
    assert ("process_resident_memory_bytes", ()) not in kept
    assert ("medic_queue_depth", ()) not in kept
    assert ("process_start_time_seconds", ()) not in kept
    assert kept[("process_cpu_seconds_total", ())] == 5060.0 + 60.5
