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


# cert-manager's ServiceMonitor keeps honor_labels false: the certificate's namespace arrives as
# exported_namespace, the scraped cert-manager pod's as namespace.
CERT = {
    "alertname": "CertManagerCertExpirySoon",
    "name": "playcode-tls",
    "exported_namespace": "playcode",
    "namespace": "cert-manager",
    "pod": "cert-manager-7d9f8b6c5d-x2k9p",
    "container": "cert-manager-controller",
}


def test_an_exported_label_is_the_subjects() -> None:
    from medic.rules.labels import subject_labels

    subject = subject_labels(CERT)
    assert subject["namespace"] == "playcode" and subject["name"] == "playcode-tls"
    assert subject_labels(subject) == subject  # applying it twice changes nothing
    assert subject_labels({"namespace": "a", "exported_namespace": ""})["namespace"] == "a"
    assert target_from_labels("certificate", CERT) == Target(
        kind="certificate", namespace="playcode", name="playcode-tls"
    )
    assert template_vars(None, CERT)["namespace"] == "playcode"


def test_rules_match_on_the_subjects_labels() -> None:
    from pathlib import Path

    from medic.app.catalogue import default_registry
    from medic.app.config import load_config
    from medic.domain.alert import Alert
    from medic.rules.routing import coalescing_key, matching_rules

    repo = Path(__file__).resolve().parents[2]
    config = load_config([repo / "rules"], [repo / "playbooks"], default_registry())
    alert = Alert(status="firing", labels=CERT, startsAt="2026-12-01T10:00:00Z")  # type: ignore[arg-type]
    (rule,) = matching_rules(alert, config.rules)[:1]
    assert rule.playbook == "certificates"  # namespace=~"playcode|…" matched exported_namespace
    assert "/playcode/" in coalescing_key(None, None, CERT)
