"""One ``/metrics`` for a replica made of several processes (the intake and its diagnosis
processes, see :mod:`medic.app.worker_process`): their expositions merged into one.

Pure: Prometheus text in, Prometheus text out. Each process counts what it does, so counters,
histograms and summaries are added up sample by sample (the intake counts deliveries, the
diagnosis processes incidents, steps and actions). Process gauges (``process_*``: memory, CPU,
file descriptors) add up too (the replica's total), except the start time (the earliest). Any
other gauge states a fact that every process may know (the mode, the kill switch, the queue
depth, a backend's health): the first exposition (the intake's, which serves ``/metrics``) wins,
and a process adds only what the first does not have.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from prometheus_client.core import Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector, CollectorRegistry

SUMMED_TYPES = frozenset({"counter", "histogram", "summary", "gaugehistogram"})
EARLIEST = frozenset({"process_start_time_seconds"})

SampleKey = tuple[str, tuple[tuple[str, str], ...]]


def merge_expositions(texts: Iterable[str]) -> bytes:
    """The expositions as one (the first is the serving process's); unparsable ones are skipped
    by the caller's choice of what to pass (see :func:`parse_or_none`)."""
    merged: dict[str, Metric] = {}
    values: dict[str, dict[SampleKey, float]] = {}
    for text in texts:
        for family in text_string_to_metric_families(text):
            _fold(family, merged, values)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(merged, values))
    return generate_latest(registry)


def parse_or_none(text: str) -> str | None:
    """``text`` if it is a valid exposition, else None (a half-written answer of a dying process
    must not break the replica's ``/metrics``)."""
    try:
        for _ in text_string_to_metric_families(text):
            pass
    except ValueError:
        return None
    return text


def _fold(family: Metric, merged: dict[str, Metric], values: dict[str, dict[SampleKey, float]]) -> None:
    first = family.name not in merged
    if first:
        merged[family.name] = Metric(family.name, family.documentation, family.type, family.unit)
        values[family.name] = {}
    samples = values[family.name]
    for sample in family.samples:
        key: SampleKey = (sample.name, tuple(sorted(sample.labels.items())))
        if key not in samples:
            samples[key] = sample.value
        elif family.type in SUMMED_TYPES or _summed_process_gauge(sample.name):
            samples[key] += sample.value
        elif sample.name in EARLIEST:
            samples[key] = min(samples[key], sample.value)


def _summed_process_gauge(name: str) -> bool:
    return name.startswith("process_") and name not in EARLIEST and not name.endswith("_max_fds")


class _Families(Collector):
    def __init__(self, families: dict[str, Metric], values: dict[str, dict[SampleKey, float]]) -> None:
        self.families = families
        self.values = values

    def collect(self) -> Iterator[Metric]:
        for name, family in self.families.items():
            for (sample_name, labels), value in self.values[name].items():
                family.add_sample(sample_name, dict(labels), value)
            yield family
