"""Which labels of an alert name its subject (issue 12.9), and the configured LogQL selector."""

from __future__ import annotations

import pytest

from medic.domain.incident import Target
from medic.rules.labels import loki_stream_selector, template_vars
from medic.rules.targets import subject_label, target_from_labels

KSM = {
    "alertname": "KubeDeploymentReplicasMismatch",
    "namespace": "playcode",
    "pod": "kube-prometheus-stack-kube-state-metrics-6d4f8b7c9-x2x4p",
    "container": "kube-state-metrics",
    "job": "kube-state-metrics",
    "service": "kube-prometheus-stack-kube-state-metrics",
}


@pytest.mark.parametrize(
    ("labels", "key", "subject"),
    [
        (KSM, "pod", ""),  # kube-state-metrics' own pod
        (KSM, "service", ""),
        ({**KSM, "pod": "playcode-app-7d9f8b6c5d-x2k9p", "container": "playcode-app"}, "pod",
         "playcode-app-7d9f8b6c5d-x2k9p"),  # KubePodCrashLooping: the metric's pod
        ({"pod": "redis-6d4cf56db6-k9x2p", "container": "redis-exporter", "job": "redis"}, "pod",
         "redis-6d4cf56db6-k9x2p"),  # a sidecar exporter: the pod is Redis's own
        ({"pod": "redis-exporter-5c9d8-abcde", "job": "redis-exporter"}, "pod", ""),
        ({"pod": "mongo-metrics-0", "container": "mongo-metrics", "job": "mongo-metrics"}, "pod", ""),
        ({"pod": "../etc"}, "pod", ""),
    ],
)  # fmt: skip
def test_subject_label(labels: dict[str, str], key: str, subject: str) -> None:
    assert subject_label(labels, key) == subject


def test_the_exporters_pod_gives_no_target_by_name() -> None:
    assert target_from_labels("deployment", KSM) is None  # was deployment kube-prometheus-stack-kube-…
    assert target_from_labels("pod", KSM) is None
    assert target_from_labels("deployment", {**KSM, "deployment": "playcode-app"}) == Target(
        kind="deployment", namespace="playcode", name="playcode-app"
    )


def test_query_variables_never_carry_the_exporters_pod() -> None:
    variables = template_vars(None, KSM)
    assert "pod" not in variables and "container" not in variables and "service" not in variables
    assert variables["namespace"] == "playcode"


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ('{namespace="ingress-nginx"}', '{namespace="ingress-nginx"}'),
        (' { namespace = "kube-system" , app=~"rke2-ingress-nginx|nginx" } ',
         '{namespace="kube-system", app=~"rke2-ingress-nginx|nginx"}'),
    ],
)  # fmt: skip
def test_loki_stream_selector_accepts(text: str, canonical: str) -> None:
    assert loki_stream_selector(text) == canonical


@pytest.mark.parametrize(
    "text",
    ['namespace="x"', "{}", '{a!="x"}', '{a="x" b="y"}', "{a=x}", '{a="x"} |= "y"', '{a="x"}) or vector(1'],
)
def test_loki_stream_selector_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        loki_stream_selector(text)
