"""Pods that are not ready, HPAs at their ceiling, volumes filling up (runbook 3.1–3.3). Pure."""

from __future__ import annotations

from medic.analysis.crashloop.classify import container_trouble
from medic.analysis.dataplane import typed, typed_first
from medic.analysis.volumes import describe as describe_volume
from medic.analysis.volumes import steps as volume_steps
from medic.analysis.volumes import volumes
from medic.collectors.k8s.pods_output import PodDescribeOutput
from medic.collectors.k8s.workload_output import EventsOutput, HpaStatusOutput, PvcStatusOutput
from medic.domain.incident import Finding
from medic.playbooks.contract import AnalysisInput, AnalyzerDef

VOLUME_WARN = 0.80
VOLUME_CRIT = 0.90


def _steps(inp: AnalysisInput, collector: str) -> list[str]:
    return [e.step for e in inp.of(collector) if e.ok]


def analyze_not_ready(inp: AnalysisInput) -> list[Finding]:
    describe = typed_first(inp, "k8s.pod_describe", PodDescribeOutput) or PodDescribeOutput()
    ns = inp.target.namespace if inp.target else inp.labels.get("namespace", "")
    events = (typed_first(inp, "k8s.events", EventsOutput) or EventsOutput()).events
    findings: list[Finding] = []
    for pod in describe.pods:
        if pod.conditions.get("Ready") == "True":
            continue
        name = pod.name or ""
        probe = next((e for e in events if e.reason == "Unhealthy" and name in (e.object.name or "")), None)
        waiting = [
            f"{c.name}: {c.state.waiting.reason or ''}" for c in pod.containers if c.state.waiting is not None
        ]
        # the crashloop analyzer's classifier: the same container state reads the same everywhere
        trouble = [
            f"{c.name} {t[1]}" for c in [*pod.init_containers, *pod.containers] if (t := container_trouble(c))
        ]
        if pod.phase == "Pending" and not pod.node:
            why = "not scheduled"
            sched = next((e for e in events if e.reason == "FailedScheduling"), None)
            if sched:
                why += f": {(sched.message or '')[:200]}"
        elif trouble:
            why = "; ".join(trouble)
        elif probe:
            why = f"readiness probe failing: {(probe.message or '')[:200]}"
        elif waiting:
            why = "waiting: " + ", ".join(waiting)
        else:
            why = f"phase {pod.phase or '?'}"
        findings.append(
            Finding(
                analyzer="not_ready",
                code="pod.not_ready",
                severity="warning",
                summary=f"pod {name} is not ready: {why}",
                details={"pod": name, "phase": pod.phase, "node": pod.node},
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
    AnalyzerDef("not_ready", analyze_not_ready, "why pods are not ready", codes=("pod.not_ready",)),
    AnalyzerDef("hpa", analyze_hpa, "HPA at its maximum", codes=("hpa.maxed_out",)),
    AnalyzerDef("pvc", analyze_pvc, "PVC not bound or filling up", codes=("pvc.not_bound", "pvc.filling_up")),
]
