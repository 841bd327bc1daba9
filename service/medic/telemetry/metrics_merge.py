"""One ``/metrics`` for a replica made of several processes (the intake and its diagnosis
processes, see :mod:`medic.app.worker_process`): their expositions merged into one.

Pure: Prometheus text in, Prometheus text out. Each process counts what it does, so counters,
histograms and summaries are added up sample by sample (the intake counts deliveries, the
diagnosis processes incidents, steps and actions). Process gauges (``process_*``: memory, CPU,
file descriptors) add up too (the replica's total), except the start time (the earliest). Any
other gauge states a fact that every process may know (the mode, the kill switch, the queue
depth, a backend's health): the first exposition (the intake's, which serves ``/metrics``) wins,
and a process adds only what the first does not have.

A diagnosis process that dies and is replaced starts counting again at 0: its last counts are kept
(:func:`retired_counters`, :class:`ChildCounters`) and added to every later merge, so that a merged
counter never goes back (Prometheus would read that as a reset: ``rate()`` and ``increase()``
would miscount). Its gauges are not kept: a gauge is what is now.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from prometheus_client.core import Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector, CollectorRegistry

SUMMED_TYPES = frozenset({"counter", "histogram", "summary", "gaugehistogram"})
EARLIEST = frozenset({"process_start_time_seconds"})

SampleKey = tuple[str, tuple[tuple[str, str], ...]]


def merge_expositions(texts: Iterable[str], *, counters_only: bool = False) -> bytes:
    """The expositions as one (the first is the serving process's); unparsable ones are skipped
    by the caller's choice of what to pass (see :func:`parse_or_none`). ``counters_only``: the
    counters, histograms and summaries alone (no gauge)."""
    merged: dict[str, Metric] = {}
    values: dict[str, dict[SampleKey, float]] = {}
    for text in texts:
        for family in text_string_to_metric_families(text):
            if family.type in SUMMED_TYPES or not counters_only:
                _fold(family, merged, values)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(merged, values))
    return generate_latest(registry)


def retired_counters(texts: Iterable[str]) -> str:
    """What processes that are gone had counted: the counter, histogram and summary samples of
    their last expositions added up, without any gauge (a dead process's gauge is no fact now)."""
    return merge_expositions(texts, counters_only=True).decode()


@dataclass
class ChildCounters:
    """What a child process's counters add to the merge across its replacements: its last
    exposition (``seen``) stands in for it while it does not answer, and becomes, when it is
    ``replaced``, part of the retired baseline added to every later merge."""

    last: str | None = None
    retired: str | None = None

    def seen(self, text: str) -> None:
        self.last = text

    def replaced(self) -> None:
        if self.last is not None:
            self.retired = retired_counters(t for t in (self.retired, self.last) if t is not None)
        self.last = None

    def expositions(self, live: str | None) -> list[str]:
        """What to merge after the serving process's own exposition: the live child's (or, when
        it does not answer, the counters of its last one) and the retired baseline."""
        current = [live] if live is not None else ([retired_counters([self.last])] if self.last else [])
        return current + ([self.retired] if self.retired is not None else [])


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
