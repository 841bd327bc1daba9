"""Why does it crash-loop? (runbook 3.1) Pure: evidence in, findings out.

:func:`classify` reads the evidence once into facts; one function per finding
(:mod:`.findings`) draws its conclusion: config error, image pull, dependency down, OOMKilled,
liveness probe, then the rollout verdict — a **regression** only when the revision that became
current recently (per the rollout timeline, :mod:`medic.domain.rollout`) fails while its
predecessor ran healthy; otherwise the crash **predates** the rollout and the finding says what
else changed. Only a regression suggests a rollback.
"""

from __future__ import annotations

from collections.abc import Callable

from medic.analysis.crashloop import findings as F
from medic.analysis.crashloop.classify import CrashFacts, classify, container_trouble
from medic.domain.incident import Finding
from medic.playbooks.contract import AnalysisInput, AnalyzerDef

Finder = Callable[[CrashFacts, AnalysisInput], Finding | list[Finding] | None]
# In the order the findings are listed: the causes, then the rollout verdict.
FINDERS: tuple[Finder, ...] = (
    F.config_error,
    F.image_pull,
    F.dependency_down,  # one finding per dependency whose failure the logs show
    F.oom_killed,
    F.liveness_probe,
    F.rollout_verdict,
)


def analyze_crashloop(inp: AnalysisInput) -> list[Finding]:
    facts = classify(inp)
    if not facts.crashes:
        return [F.not_reproduced(facts, inp)] if facts.described else []
    found: list[Finding] = []
    for finder in FINDERS:
        said = finder(facts, inp)
        found += said if isinstance(said, list) else [said] if said is not None else []
    return found or [F.crash(facts, inp)]


ANALYZERS = [
    AnalyzerDef(
        "crashloop",
        analyze_crashloop,
        "why a workload crash-loops; rollback only for a regression",
        codes=tuple(
            f"crashloop.{c}"
            for c in (
                "regression",
                "predates_rollout",
                "oom_killed",
                "liveness_probe",
                "image_pull",
                "config_error",
                "dependency_down",
                "crash",
                "not_reproduced",
            )
        ),
    )
]

__all__ = ["ANALYZERS", "analyze_crashloop", "classify", "container_trouble"]
