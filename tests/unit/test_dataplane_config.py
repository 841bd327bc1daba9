"""The shipped data-plane playbooks and rules: they load, route the usual alerts, never remediate."""

from __future__ import annotations

from pathlib import Path

import pytest

from medic.app.catalogue import default_registry
from medic.app.config import Config, load_config
from medic.collectors.loki import CATALOG as LOGQL
from medic.collectors.loki import render_logql
from medic.collectors.prometheus import CATALOG, render_query
from medic.domain.incident import Target
from medic.intake.model import Alert
from medic.rules.labels import template_vars
from medic.rules.routing import matching_rules
from medic.rules.targets import target_from_labels
from tests.payloads import alert

ROOT = Path(__file__).resolve().parents[2]
DATA_PLANE = ("high-latency", "mongodb-down", "redis-down", "websocket")


@pytest.fixture(scope="module")
def config() -> Config:
    return load_config([ROOT / "rules"], [ROOT / "playbooks"], default_registry())


def test_playbooks_load_with_their_collectors_and_analyzers(config: Config) -> None:
    steps = {name: [s.step_id for s in config.playbooks[name].steps] for name in DATA_PLANE}
    assert steps["high-latency"] == [
        "prometheus.query",
        "k8s.top_pods",
        "k8s.hpa_status",
        "mongo.current_op",
        "mongo.profiler",
        "redis.info",
        "redis.slowlog",
        "loki.errors",
    ]
    assert steps["mongodb-down"] == [
        "mongo.rs_status",
        "mongo.server_status",
        "mongo.db_stats",
        "mongo.current_op",
        "k8s.pod_describe",
        "k8s.pvc_status",
        "k8s.events",
        "prometheus.query",
    ]
    assert steps["redis-down"] == [
        "redis.ping",
        "redis.info",
        "redis.dbsize",
        "redis.slowlog",
        "k8s.pod_describe",
        "k8s.events",
    ]
    assert steps["websocket"] == [
        "prometheus.query",
        "k8s.ingress",
        "loki.socket",
        "loki.redis_adapter",
        "loki.ingress",
        "redis.ping",
        "redis.info",
    ]
    assert [a.name for a in config.playbooks["high-latency"].analyzers] == ["metric_thresholds", "latency"]
    assert config.playbooks["mongodb-down"].playbook.target == "statefulset"
    for name in DATA_PLANE:
        assert config.playbooks[name].actions == {}, f"{name} must be diagnosis only"


@pytest.mark.parametrize(
    ("alertname", "labels", "rule", "target"),
    [
        (
            "PlayCodeHighLatency",
            {"deployment": "playcode-app"},
            "high-latency",
            "deployment/playcode/playcode-app",
        ),
        (
            "PlayCodeHigh5xxRate",
            {"deployment": "playcode-app"},
            "high-latency",
            "deployment/playcode/playcode-app",
        ),
        ("MongodbDown", {"pod": "mongodb-0"}, "mongodb-down", "statefulset/playcode/mongodb"),
        (
            "MongodbReplicaMemberUnhealthy",
            {"pod": "mongodb-1"},
            "mongodb-down",
            "statefulset/playcode/mongodb",
        ),
        ("RedisDown", {"deployment": "redis"}, "redis-down", "deployment/playcode/redis"),
        (
            "RedisOutOfConfiguredMaxmemory",
            {"pod": "redis-6d4cf56db6-k9x2p"},
            "redis-down",
            "deployment/playcode/redis",
        ),
        *[
            (name, {"deployment": "redis"}, "redis-persistence", "deployment/playcode/redis")
            for name in (
                "RedisRdbLastBgsaveFailed",
                "RedisAofLastWriteFailed",
                "RedisAofLastRewriteFailed",
                "RedisMissingBackup",
                "RedisPersistenceFailing",
                "redis_rdb_last_bgsave_status",
            )
        ],
        (
            "PlayCodeWebSocketConnectionDrop",
            {"deployment": "playcode-app"},
            "websocket-drop",
            "deployment/playcode/playcode-app",
        ),
    ],
)
def test_usual_alerts_route_to_the_data_plane_rules(
    config: Config, alertname: str, labels: dict[str, str], rule: str, target: str
) -> None:
    a = Alert.model_validate(alert(alertname, namespace="playcode", **labels))
    (matched,) = matching_rules(a, config.rules)
    assert matched.name == rule
    assert matched.remediation is None
    assert matched.playbook is not None
    kind = config.playbooks[matched.playbook].playbook.target
    resolved = target_from_labels(kind, a.labels)
    assert resolved is not None and resolved.key == target


def test_other_namespaces_do_not_match(config: Config) -> None:
    a = Alert.model_validate(alert("RedisDown", namespace="monitoring", deployment="redis"))
    assert [r.name for r in matching_rules(a, config.rules)] == []


def test_catalog_queries_render_with_the_targets_names() -> None:
    variables = template_vars(Target(kind="deployment", namespace="playcode", name="playcode-app"), {})
    cpu = render_query(CATALOG["pod_cpu_limit_ratio"], variables)
    assert 'container_cpu_usage_seconds_total{namespace="playcode",container="playcode-app"}' in cpu
    assert 'resource="cpu"' in cpu
    change = render_query(CATALOG["websocket_connections_change_30m"], variables)
    assert change.count('websocket_connections_active{namespace="playcode"} offset 30m') == 2
    hpa = render_query(CATALOG["hpa_replicas_ratio"], variables)
    assert "kube_horizontalpodautoscaler_spec_max_replicas" in hpa
    variables["container"] = "playcode-app"
    assert render_logql(LOGQL["app_errors"].expr, variables) == (
        '{namespace="playcode", container="playcode-app"} | json | level="error"'
    )
    assert render_logql(LOGQL["http_5xx"].expr, variables).endswith("| json | res_status >= 500")
