"""Values taken from alert labels, validated before they reach a query or an API path."""

from __future__ import annotations

import re
from collections.abc import Mapping

from medic.domain.errors import StepError
from medic.domain.incident import Target

_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_DNS1123_SUBDOMAIN = re.compile(
    r"^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
)


_SELECTOR_MATCHER = re.compile(r'\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\\n]|\\.)*)"\s*')


def loki_stream_selector(text: str) -> str:
    """A LogQL stream selector (``{namespace="ingress-nginx", app=~"ingress-nginx|nginx"}``) as
    configured, checked: label names, one of = != =~ !~, double-quoted values, and at least one
    ``=`` matcher with a value (Loki refuses selectors that match every stream). Raises ValueError."""
    body = text.strip()
    if not (body.startswith("{") and body.endswith("}")):
        raise ValueError(f"{text!r} is not a LogQL stream selector: write {{label=\"value\", ...}}")
    parts, pos, inner = [], 0, body[1:-1]
    while True:
        m = _SELECTOR_MATCHER.match(inner, pos)
        if m is None:
            raise ValueError(f"{text!r}: expected label=\"value\" at character {pos + 2}")
        parts.append((m.group(1), m.group(2), m.group(3)))
        pos = m.end()
        if pos == len(inner):
            break
        if inner[pos] != ",":
            raise ValueError(f"{text!r}: expected ',' or '}}' at character {pos + 2}")
        pos += 1
    if not any(op == "=" and value for _, op, value in parts):
        raise ValueError(f"{text!r}: at least one matcher must be label=\"value\" with a value")
    return "{" + ", ".join(f'{name}{op}"{value}"' for name, op, value in parts) + "}"


EXPORTED = "exported_"


def subject_labels(labels: Mapping[str, str]) -> dict[str, str]:
    """The labels as they describe the alert's subject. When a scraped series carries a label its
    scrape target also sets (honor_labels: false, the ServiceMonitor default), Prometheus keeps the
    series' value as ``exported_<name>`` and gives ``<name>`` the target's: cert-manager's
    certificate metrics say ``exported_namespace="playcode"``, ``namespace="cert-manager"``. The
    ``exported_`` value is the subject's, so it stands for ``<name>`` here (the rest is kept;
    applying this twice changes nothing)."""
    out = dict(labels)
    for key, value in labels.items():
        if key.startswith(EXPORTED) and len(key) > len(EXPORTED) and value:
            out[key[len(EXPORTED) :]] = value
    return out


# Exporters whose scrape-target labels (pod, container, service) end up on alerts about other objects.
_EXPORTER = re.compile(r"(?i)(kube-state-metrics|exporter|blackbox|cadvisor|metrics-server)")
_SCRAPE_TARGET_LABELS = ("pod", "container", "service")


def is_exporter_label(labels: Mapping[str, str], key: str) -> bool:
    """True when ``labels[key]`` (pod, container or service) names the exporter that was scraped,
    not the object the alert is about: the value names an exporter (kube-state-metrics, *-exporter)
    or the ``container`` label is the scrape ``job`` itself and the value carries it."""
    value = labels.get(key, "")
    if not value or key not in _SCRAPE_TARGET_LABELS:
        return False
    if _EXPORTER.search(value):
        return True
    job, container = labels.get("job", ""), labels.get("container", "")
    return bool(job) and container == job and job in value


def is_dns1123_label(value: str) -> bool:
    return bool(_DNS1123_LABEL.match(value))


def is_k8s_name(value: str) -> bool:
    return bool(_DNS1123_SUBDOMAIN.match(value))


def promql_string(value: str) -> str:
    """Quote a value as a PromQL double-quoted string literal."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def template_vars(target: Target | None, labels: Mapping[str, str]) -> dict[str, str]:
    """Names a query template may use; only values that are valid Kubernetes names are offered."""
    labels = subject_labels(labels)
    out: dict[str, str] = {}
    for key in (
        "namespace",
        "deployment",
        "statefulset",
        "job",
        "instance",
        "node",
        "persistentvolumeclaim",
        "horizontalpodautoscaler",
    ):
        value = labels.get(key, "")
        if value and (is_k8s_name(value) or key == "instance"):
            out[key] = value
    for key in ("pod", "container", "service"):  # the subject's, never the scraped exporter's
        if (value := labels.get(key, "")) and is_k8s_name(value) and not is_exporter_label(labels, key):
            out[key] = value
    if target is not None:
        if target.namespace:
            out["namespace"] = target.namespace
        out[target.kind] = target.name
        out["target"] = target.name
    return out


def require_var(variables: Mapping[str, str], name: str) -> str:
    if name not in variables:
        raise StepError(f"the query needs ${name}, which neither the target nor the alert labels give")
    return variables[name]
