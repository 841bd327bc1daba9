"""The replica's /metrics merged from its processes' expositions (medic.telemetry.metrics_merge)."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from medic.telemetry.metrics_merge import merge_expositions, parse_or_none

INTAKE = """# HELP medic_alerts_received_total Alerts received
# TYPE medic_alerts_received_total counter
medic_alerts_received_total 10.0
# HELP medic_incidents_total Incidents opened
# TYPE medic_incidents_total counter
medic_incidents_total{rule="crashloop"} 0.0
# HELP medic_queue_depth Accepted deliveries not yet processed
# TYPE medic_queue_depth gauge
medic_queue_depth 4.0
# HELP medic_build_info Medic's version
# TYPE medic_build_info gauge
medic_build_info{python="3.11.7",version="0.1.0"} 1.0
# HELP process_resident_memory_bytes Resident memory size in bytes.
# TYPE process_resident_memory_bytes gauge
process_resident_memory_bytes 100.0
# HELP process_max_fds Maximum number of open file descriptors.
# TYPE process_max_fds gauge
process_max_fds 1024.0
# HELP process_start_time_seconds Start time of the process since unix epoch in seconds.
# TYPE process_start_time_seconds gauge
process_start_time_seconds 1000.0
# HELP medic_step_duration_seconds Collector run time
# TYPE medic_step_duration_seconds histogram
medic_step_duration_seconds_bucket{collector="x",le="1.0"} 0.0
medic_step_duration_seconds_bucket{collector="x",le="+Inf"} 0.0
medic_step_duration_seconds_count{collector="x"} 0.0
medic_step_duration_seconds_sum{collector="x"} 0.0
"""

DIAGNOSIS = """# HELP medic_alerts_received_total Alerts received
# TYPE medic_alerts_received_total counter
medic_alerts_received_total 0.0
# HELP medic_incidents_total Incidents opened
# TYPE medic_incidents_total counter
medic_incidents_total{rule="crashloop"} 3.0
medic_incidents_total{rule="high-latency"} 2.0
# HELP medic_queue_depth Accepted deliveries not yet processed
# TYPE medic_queue_depth gauge
medic_queue_depth 0.0
# HELP medic_build_info Medic's version
# TYPE medic_build_info gauge
medic_build_info{python="3.11.7",version="0.1.0"} 1.0
# HELP process_resident_memory_bytes Resident memory size in bytes.
# TYPE process_resident_memory_bytes gauge
process_resident_memory_bytes 250.0
# HELP process_max_fds Maximum number of open file descriptors.
# TYPE process_max_fds gauge
process_max_fds 1024.0
# HELP process_start_time_seconds Start time of the process since unix epoch in seconds.
# TYPE process_start_time_seconds gauge
process_start_time_seconds 1002.0
# HELP medic_step_duration_seconds Collector run time
# TYPE medic_step_duration_seconds histogram
medic_step_duration_seconds_bucket{collector="x",le="1.0"} 2.0
medic_step_duration_seconds_bucket{collector="x",le="+Inf"} 3.0
medic_step_duration_seconds_count{collector="x"} 3.0
medic_step_duration_seconds_sum{collector="x"} 4.5
"""


def samples(text: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text.decode())
        for s in family.samples
    }


def test_counters_and_histograms_add_up_facts_come_from_the_serving_process() -> None:
    merged = samples(merge_expositions([INTAKE, DIAGNOSIS]))
    assert merged[("medic_alerts_received_total", ())] == 10.0
    assert merged[("medic_incidents_total", (("rule", "crashloop"),))] == 3.0
    assert merged[("medic_incidents_total", (("rule", "high-latency"),))] == 2.0  # only the child has it
    assert merged[("medic_step_duration_seconds_count", (("collector", "x"),))] == 3.0
    assert merged[("medic_step_duration_seconds_bucket", (("collector", "x"), ("le", "1.0")))] == 2.0
    assert merged[("medic_step_duration_seconds_sum", (("collector", "x"),))] == 4.5
    assert merged[("medic_queue_depth", ())] == 4.0  # the intake's reading, not 4 + 0
    assert merged[("medic_build_info", (("python", "3.11.7"), ("version", "0.1.0")))] == 1.0
    assert merged[("process_resident_memory_bytes", ())] == 350.0  # the replica's memory
    assert merged[("process_max_fds", ())] == 1024.0  # a limit, not a sum
    assert merged[("process_start_time_seconds", ())] == 1000.0  # the earliest


def test_the_merged_exposition_is_valid_with_one_help_and_type_per_family() -> None:
    text = merge_expositions([INTAKE, DIAGNOSIS]).decode()
    assert text.count("# TYPE medic_incidents_total counter") == 1
    assert text.count("# HELP medic_queue_depth ") == 1
    assert parse_or_none(text) == text
    assert merge_expositions([INTAKE]).decode().count("\n") >= INTAKE.count("\n") - 1


def test_a_broken_exposition_is_recognised() -> None:
    assert parse_or_none("medic_x{unclosed 1\n") is None
    assert parse_or_none(INTAKE) == INTAKE
