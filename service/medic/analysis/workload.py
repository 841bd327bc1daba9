"""Pods that are not ready, HPAs at their ceiling, volumes filling up (runbook 3.1–3.3). Pure."""

from __future__ import annotations

from medic.analysis.crashloop.classify import container_trouble
from medic.analysis.dataplane import typed
from medic.analysis.volumes import describe as describe_volume
from medic.analysis.volumes import steps as volume_steps
from medic.analysis.volumes import volumes
from medic.collectors.k8s.workload_output import HpaStatusOutput, PvcStatusOutput
from medic.domain.incident import Finding
from medic.playbooks.contract import AnalysisInput, AnalyzerDef

VOLUME_WARN = 0.80
VOLUME_CRIT = 0.90


def _steps(inp: AnalysisInput, collector: str) -> list[str]:
    return [e.step for e in inp.of(collector) if e.ok]


def analyze_not_ready(inp: AnalysisInput) -> list[Finding]:
    describe = inp.data("k8s.pod_describe") or {}
    ns = inp.target.namespace if inp.target else inp.labels.get("namespace", "")
    events = (inp.data("k8s.events") or {}).get("events", [])
    findings: list[Finding] = []
    for pod in describe.get("pods", []):
        if (pod.get("conditions") or {}).get("Ready") == "True":
            continue
        name = pod.get("name", "")
        probe = next(
            (
                e
                for e in events
                if e.get("reason") == "Unhealthy" and name in (e.get("object") or {}).get("name", "")
            ),
            None,
        )
        waiting = [
            f"{c.get('name')}: {((c.get('state') or {}).get('waiting') or {}).get('reason', '')}"
            for c in pod.get("containers", [])
            if (c.get("state") or {}).get("waiting")
        ]
        # the crashloop analyzer's classifier: the same container state reads the same everywhere
        trouble = [
            f"{c.get('name')} {t[1]}"
            for c in [*pod.get("init_containers", []), *pod.get("containers", [])]
            if (t := container_trouble(c))
        ]
        if pod.get("phase") == "Pending" and not pod.get("node"):
            why = "not scheduled"
            sched = next((e for e in events if e.get("reason") == "FailedScheduling"), None)
            if sched:
                why += f": {sched.get('message', '')[:200]}"
        elif trouble:
            why = "; ".join(trouble)
        elif probe:
            why = f"readiness probe failing: {probe.get('message', '')[:200]}"
        elif waiting:
            why = "waiting: " + ", ".join(waiting)
        else:
            why = f"phase {pod.get('phase', '?')}"
        findings.append(
            Finding(
                analyzer="not_ready",
                code="pod.not_ready",
                severity="warning",
                summary=f"pod {name} is not ready: {why}",
                details={"pod": name, "phase": pod.get("phase"), "node": pod.get("node")},
                evidence=_steps(inp, "k8s.pod_describe") + (_steps(inp, "k8s.events") if probe else []),
                next_steps=[
                    f"kubectl describe pod {name} -n {ns}",
                    f"kubectl logs {name} -n {ns}",
                    f"kubectl get events -n {ns} --field-selector involvedObject.name={name}",
                ],
            )
        )
    return findings[:10]


def analyze_hpa(inp: AnalysisInput) -> list[Finding]:
    ns = inp.target.namespace if inp.target else inp.labels.get("namespace", "")
    findings = []
    status = next(typed(inp, "k8s.hpa_status", HpaStatusOutput), None)
    for hpa in status[1].hpas if status else []:
        if not hpa.at_max:
            continue
        findings.append(
            Finding(
                analyzer="hpa",
                code="hpa.maxed_out",
                severity="warning",
                summary=f"HPA {hpa.name} runs at its maximum of {hpa.max} replicas "
                f"(wants {hpa.desired}): load exceeds what it may scale to",
                details=hpa.model_dump(
                    mode="json", include={"name", "min", "max", "current", "desired", "metrics"}
                ),
                evidence=_steps(inp, "k8s.hpa_status"),
                next_steps=[
                    f"kubectl get hpa -n {ns}",
                    f"kubectl top pods -n {ns}",
                    f"kubectl describe hpa {hpa.name} -n {ns}",
                ],
            )
        )
    return findings


def analyze_pvc(inp: AnalysisInput) -> list[Finding]:
    ns = inp.target.namespace if inp.target else inp.labels.get("namespace", "")
    findings: list[Finding] = []
    status = next(typed(inp, "k8s.pvc_status", PvcStatusOutput), None)
    for pvc in status[1].pvcs if status else []:
        if pvc.phase not in (None, "Bound"):
            findings.append(
                Finding(
                    analyzer="pvc",
                    code="pvc.not_bound",
                    severity="critical",
                    summary=f"PVC {pvc.name} is {pvc.phase}, not Bound: the pods that mount "
                    f"it cannot start until a volume is provisioned or bound "
                    f"(storage class {pvc.storage_class or 'default'}, "
                    f"requested {pvc.requested or '?'})",
                    details=pvc.model_dump(mode="json", exclude_unset=True),  # as stored
                    evidence=_steps(inp, "k8s.pvc_status"),
                    next_steps=[
                        f"kubectl describe pvc {pvc.name} -n {ns}",
                        f"kubectl get pvc -n {ns}",
                    ],
                )
            )
    for claim, volume in volumes(inp).items():
        ratio = volume.used_ratio
        if ratio is None or ratio < VOLUME_WARN:
            continue
        findings.append(
            Finding(
                analyzer="pvc",
                code="pvc.filling_up",
                severity="critical" if ratio >= VOLUME_CRIT else "warning",
                summary=f"volume {claim} is {ratio:.0%} full{describe_volume(volume)}",
                details=volume.details(),
                evidence=_steps(inp, "prometheus.query")
                + (_steps(inp, "k8s.pvc_status") if volume.phase else []),
                next_steps=volume_steps(volume, ns),
            )
        )
    return findings


ANALYZERS = [
    AnalyzerDef("not_ready", analyze_not_ready, "why pods are not ready"),
    AnalyzerDef("hpa", analyze_hpa, "HPA at its maximum"),
    AnalyzerDef("pvc", analyze_pvc, "PVC not bound or filling up"),
]
