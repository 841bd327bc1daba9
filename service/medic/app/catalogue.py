"""The catalogue of the plugins Medic ships: an explicit list, no import-time side effects."""

from __future__ import annotations

from medic.playbooks.contract import Registry


def default_registry() -> Registry:
    """Every collector, analyzer and action Medic ships."""
    from medic.analysis import (
        backup,
        certificates,
        crashloop,
        latency,
        mongodb,
        redis_health,
        verification,
        websocket,
        workload,
    )
    from medic.analysis import builtin as builtin_analyzers
    from medic.collectors import loki, mongo, prometheus, revision
    from medic.collectors import redis as redis_target
    from medic.collectors.k8s import certs as k8s_certs
    from medic.collectors.k8s import cluster as k8s_cluster
    from medic.collectors.k8s import jobs as k8s_jobs
    from medic.collectors.k8s import pods as k8s_pods
    from medic.collectors.k8s import revision as k8s_revision
    from medic.collectors.k8s import workload as k8s_workload
    from medic.remediation.actions import certs as cert_actions
    from medic.remediation.actions import k8s as k8s_actions

    registry = Registry()
    registry.add(*prometheus.COLLECTORS)
    registry.add(*mongo.COLLECTORS, *redis_target.COLLECTORS, *loki.COLLECTORS)
    registry.add(*k8s_pods.COLLECTORS, *k8s_workload.COLLECTORS, *k8s_cluster.COLLECTORS)
    registry.add(*k8s_jobs.COLLECTORS, *k8s_certs.COLLECTORS)
    registry.add(*revision.COLLECTORS, *k8s_revision.COLLECTORS)
    registry.add(*builtin_analyzers.ANALYZERS)
    registry.add(*latency.ANALYZERS, *mongodb.ANALYZERS, *redis_health.ANALYZERS, *websocket.ANALYZERS)
    registry.add(*crashloop.ANALYZERS, *workload.ANALYZERS)
    registry.add(*backup.ANALYZERS, *certificates.ANALYZERS, *verification.ANALYZERS)
    registry.add(*k8s_actions.ACTIONS)
    registry.add(*cert_actions.ACTIONS)
    return registry
