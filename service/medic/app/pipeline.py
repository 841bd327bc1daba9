"""The worker's pipeline: an accepted delivery → incidents → diagnosis → decision.

Idempotent by construction, so an item processed twice (a crash after the work and before the
ack) changes nothing the second time: alerts merge by identity, an incident is opened once per
(rule, target) key, and a diagnosis runs until its incident reaches phase ``diagnosed``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

import structlog

from medic.app.backends import Backends
from medic.app.config import Config
from medic.app.settings import PipelineGroup
from medic.coordination.keylock import KeyLocker, LocalKeyLocker
from medic.decision.decide import Decision, decide
from medic.domain.alert import Alert
from medic.domain.errors import BackendUnavailable
from medic.domain.evidence import Evidence
from medic.domain.incident import (
    SEVERITY_ORDER,
    ActionRecord,
    ActionStatus,
    Finding,
    Incident,
    IncidentAlert,
    Phase,
    Target,
    highest_severity,
    utcnow,
)
from medic.domain.redact import redact_async, redact_text
from medic.domain.verification import RevisionWindow
from medic.inbox.base import InboxItem
from medic.incidents.base import IncidentStore
from medic.incidents.views import first_alerts
from medic.intake.model import WebhookPayload
from medic.playbooks.compiled import CompiledPlaybook
from medic.playbooks.contract import AnalysisInput, AnalyzerDef, Registry, StepContext
from medic.playbooks.runner import PlannedStep, run_steps
from medic.rules.model import Rule
from medic.rules.routing import coalescing_key, matching_rules
from medic.rules.targets import TargetResolver
from medic.telemetry.metrics import Metrics

log = structlog.get_logger("medic.app.pipeline")


DIAGNOSIS_ALERTS = 500  # alerts a diagnosis reads (collectors take pod names from their labels)
ALWAYS_ANALYZER = "coverage"  # run for every playbook: the checks that gave no data
ANALYZER_ERROR = "analyzer.error"  # the finding of an analyzer that failed


class Remediator(Protocol):
    async def handle(
        self, incident: Incident, rule: Rule, playbook: CompiledPlaybook, decision: Decision
    ) -> ActionRecord | None: ...


class VerificationHook(Protocol):
    async def begin(self, incident: Incident, rule: Rule | None, playbook: CompiledPlaybook) -> None:
        """Store a deploy verification's window on its incident (medic.app.verification)."""
        ...


class IncidentNotifier(Protocol):
    def submit(self, incident: Incident, kind: str) -> None:
        """Queue a notification about the incident as it is now; must return at once."""
        ...


class PlanOnlyRemediator:
    """Records what would be done; used where no action may run (replay, or no executor)."""

    async def handle(
        self, incident: Incident, rule: Rule, playbook: CompiledPlaybook, decision: Decision
    ) -> ActionRecord | None:
        if decision.action is None or incident.target is None:
            return None
        return ActionRecord(
            action=decision.action.name,
            use=decision.action.action.name,
            target=incident.target,
            mode=decision.mode,
            status=ActionStatus.PLANNED,
            params=decision.action.params.model_dump(mode="json"),
            reason=f"planned only (mode {decision.mode}): {decision.reason}",
        )


@dataclass
class Group:
    key: str
    rule: Rule | None
    playbook: CompiledPlaybook | None
    target: Target | None
    alerts: list[Alert] = field(default_factory=list)
    sources: dict[str, str] = field(default_factory=dict)  # alert identity -> sender's externalURL


def _first_failure(failed: ExceptionGroup[Exception]) -> Exception:
    """The error a worker should see: an unreachable backend of Medic's own first (the batch
    then waits instead of counting an attempt), else the first failure."""
    leaves: list[Exception] = []

    def walk(group: ExceptionGroup[Exception]) -> None:
        for exc in group.exceptions:
            if isinstance(exc, ExceptionGroup):
                walk(exc)
            else:
                leaves.append(exc)

    walk(failed)
    return next((e for e in leaves if isinstance(e, BackendUnavailable)), leaves[0])


async def redacted_alerts(alerts: list[Alert]) -> list[Alert]:
    """The alerts as Medic keeps them: secrets in labels (names too), annotations and URLs scrubbed
    before anything is grouped, titled or stored (in a thread when large: redact_async). Each keeps
    the identity it arrived with (a fingerprint-less alert's identity hashes its raw labels)."""
    docs = [a.model_dump(mode="json") for a in alerts]
    clean = await redact_async(docs)
    return [
        a if c == d else Alert.model_validate(c | {"fingerprint": a.identity})
        for a, d, c in zip(alerts, docs, clean, strict=True)
    ]


def incident_severity(rule: Rule | None, current: str | None, alerts: Sequence[IncidentAlert]) -> str:
    """The highest of the alerts' ``severity`` labels, the rule's and ``current``
    (:func:`medic.domain.incident.highest_severity`)."""
    return highest_severity(rule.severity if rule else None, current, alerts)


class Pipeline:
    def __init__(
        self,
        *,
        settings: PipelineGroup,
        config: Config,
        registry: Registry,
        store: IncidentStore,
        backends: Backends,
        resolver: TargetResolver,
        metrics: Metrics,
        remediator: Remediator | None = None,
        clock: Callable[[], datetime] = utcnow,
        notifier: IncidentNotifier | None = None,
        locker: KeyLocker | None = None,
    ) -> None:
        self.settings = settings
        self.config = config
        self.registry = registry
        self.store = store
        self.backends = backends
        self.resolver = resolver
        self.metrics = metrics
        self.remediator: Remediator = remediator or PlanOnlyRemediator()
        self.clock = clock
        self.notifier = notifier
        # one task per incident key at a time: in this process, or across replicas (Redis)
        self.locker: KeyLocker = locker or LocalKeyLocker()
        self.in_flight = asyncio.Semaphore(settings.max_in_flight)
        # deploy verifications (a playbook with verify:) are sampled over a window by this hook;
        # without it (replay, rule tests) their evidence is judged once, as a whole window
        self.verifications: VerificationHook | None = None

    def lock_for(self, key: str) -> AbstractAsyncContextManager[None]:
        """The lock held while an incident of this coalescing key is changed (shared with
        everyone else who saves incidents: approvals, notification outcomes)."""
        return self.locker.hold(key)

    def notify(self, incident: Incident, kind: str) -> None:
        """The notification hook: after the incident is saved; never blocks, never raises."""
        if self.notifier is not None:
            try:
                self.notifier.submit(incident, kind)
            except Exception:
                log.exception("notification hook failed", incident_id=incident.id)

    async def process(self, *items: InboxItem) -> list[str]:
        """Handle accepted deliveries together (a storm's many deliveries for one target become
        one update of its incident); return the ids of the incidents they touched."""
        alerts: list[Alert] = []
        sources: dict[str, str] = {}
        for item in items:
            payload = WebhookPayload.model_validate(item.payload)
            wanted = set(item.new_episodes)
            new = [a.to_domain() for a in payload.alerts if a.episode_key in wanted]
            alerts += new
            sources.update((a.identity, redact_text(payload.externalURL)) for a in new if payload.externalURL)
        alerts = await redacted_alerts(alerts)
        groups = await self.group(alerts)
        for group in groups.values():
            group.sources = sources
        try:
            async with asyncio.TaskGroup() as tg:  # the batch's incidents side by side
                tasks = [tg.create_task(self._apply_in_turn(group)) for group in groups.values()]
        except ExceptionGroup as failed:
            first = _first_failure(failed)
            raise first from first.__cause__  # not "from None": that would drop its own cause
        return [incident.id for task in tasks if (incident := task.result()) is not None]

    async def _apply_in_turn(self, group: Group) -> Incident | None:
        """One group under its key's lock (in this process or across replicas), within the
        replica's bound of incidents in flight (MEDIC_MAX_IN_FLIGHT)."""
        async with self.lock_for(group.key), self.in_flight:
            return await self.apply(group)

    async def group(self, alerts: list[Alert]) -> dict[str, Group]:
        groups: dict[str, Group] = {}
        for alert in alerts:
            candidates: list[Rule | None] = [*matching_rules(alert, self.config.rules)] or [None]
            for rule in candidates:
                playbook = self.config.playbook_of(rule)
                kind = playbook.playbook.target if playbook else "none"
                target = await self.resolver.resolve(kind, alert.labels)
                key = coalescing_key(rule, target, alert.labels)
                group = groups.setdefault(key, Group(key, rule, playbook, target))
                group.alerts.append(alert)
        return groups

    async def apply(self, group: Group) -> Incident | None:
        now = self.clock()
        rule = group.rule
        firing = [a for a in group.alerts if a.status == "firing"]
        incident = await self.store.find_open(group.key)
        created = False
        if incident is None:
            opens = bool(firing) or (rule is not None and "resolved" in rule.status)
            if rule is not None and firing and "firing" not in rule.status:
                opens = False
            incident = self._new_incident(group, now)
            if opens:
                incident, created = await self.store.create_or_get_open(incident)
                if created:
                    self.metrics.incidents.labels(rule=rule.name if rule else "-").inc()
                    log.info("incident opened", incident_id=incident.id, key=group.key)
            else:
                why = (
                    "resolved before Medic saw it firing"
                    if not firing
                    else f"rule {rule.name if rule else '-'} opens incidents only on resolved"
                )
                incident.record_unopened(why, now)
                await self.store.save(incident)  # first: its alerts never point at nothing
                await self._merge_new(incident, rule, group, now)
                await self.store.save(incident)
                return incident
        with structlog.contextvars.bound_contextvars(incident_id=incident.id):
            if created:
                await self._merge_new(incident, rule, group, now)
            else:
                await self._merge(incident, rule, group, now)
            incident.updated_at = now
            needs_diagnosis = (
                group.playbook is not None and incident.phase != Phase.DIAGNOSED and bool(firing)
            )
            resolved_now = incident.resolve_if_quiet(now)
            if resolved_now:
                self.metrics.incidents_resolved.labels(rule=rule.name if rule else "-").inc()
                log.info("incident resolved")
            await self.store.save(incident)
            if created:
                self.notify(incident, "opened")
            if resolved_now:
                self.notify(incident, "resolved")
            if needs_diagnosis and group.playbook is not None:
                await self.diagnose(incident, rule, group.playbook)
        return incident

    async def _merge_new(self, incident: Incident, rule: Rule | None, group: Group, now: datetime) -> None:
        """The first merge into an incident just stored: if it fails, the incident goes too
        (a delivery that cannot be processed must not leave an incident with no alerts)."""
        try:
            await self._merge(incident, rule, group, now)
        except BaseException:
            with contextlib.suppress(Exception):
                if await self.store.discard_if_empty(incident.id):
                    log.warning("incident discarded: its first alerts could not be stored")
            raise

    async def _merge(self, incident: Incident, rule: Rule | None, group: Group, now: datetime) -> None:
        """Fold the group's alerts into the incident's (kept beside the bundle) and bring the
        bundle's counts, shared labels, severity and timeline up to date."""
        arriving = [IncidentAlert.from_alert(a, now, group.sources.get(a.identity, "")) for a in group.alerts]
        merge = await self.store.merge_alerts(incident.id, arriving)
        incident.merge_alerts(merge, arriving, rule.severity if rule else None, now)

    def _new_incident(self, group: Group, now: datetime) -> Incident:
        return Incident.open(
            group.key,
            first=group.alerts[0],
            rule=group.rule.name if group.rule else None,
            rule_playbook=group.rule.playbook if group.rule else None,
            playbook=group.playbook.name if group.playbook else None,
            target=group.target,
            now=now,
        )

    async def diagnose(self, incident: Incident, rule: Rule | None, playbook: CompiledPlaybook) -> None:
        if playbook.playbook.verify is not None and self.verifications is not None:
            await self.verifications.begin(incident, rule, playbook)
            return
        now = self.clock()
        incident.start_diagnosis(playbook.name, now)
        await self.store.save(incident)
        alerts = await first_alerts(self.store, incident.id, DIAGNOSIS_ALERTS)
        evidence = await self.collect(incident, alerts, playbook, now)
        findings = analyze(self.registry, incident, alerts, playbook, evidence, now)
        decision = decide(rule, playbook, findings, self.settings.mode)
        incident.conclude(evidence, findings, decision.reason, decision.mode, self.clock())
        await self.carry_out(incident, rule, playbook, decision)
        incident.finish_diagnosis(self.clock())
        await self.store.save(incident)
        self.notify(incident, "diagnosed")
        log.info(
            "incident diagnosed",
            findings=len(incident.findings),
            top=incident.findings[0].code if incident.findings else None,
        )

    async def carry_out(
        self, incident: Incident, rule: Rule | None, playbook: CompiledPlaybook, decision: Decision
    ) -> None:
        """The decision's action through the remediator (its record on the incident), or, when
        the rule has a remediation the evidence does not warrant, that "no" in the audit log."""
        if rule is not None and decision.action is not None:
            record = await self.remediator.handle(incident, rule, playbook, decision)
            if record is not None:
                self.metrics.actions.labels(action=record.use, status=record.status.value).inc()
                incident.add_action(record, self.clock())
        elif rule is not None and rule.remediation is not None:
            # a "no" from the evidence is a decision too: audited like the guards' refusals
            await self.store.append_audit(
                incident.id,
                "decision",
                {
                    "rule": rule.name,
                    "action": rule.remediation.action,
                    "mode": decision.mode,
                    "reason": decision.reason,
                    "findings": [f.code for f in incident.findings],
                },
            )

    async def collect(
        self,
        incident: Incident,
        alerts: list[IncidentAlert],
        playbook: CompiledPlaybook,
        now: datetime,
        revision: RevisionWindow | None = None,
    ) -> list[Evidence]:
        ctx = StepContext(
            revision=revision,
            target=incident.target,
            labels=dict(incident.labels),
            alerts=alerts,
            backends=self.backends,
            now=now,
            timeout=self.settings.collector_timeout_seconds,
        )
        steps = [
            PlannedStep(
                s.step_id,
                s.collector,
                s.params,
                s.timeout or self.settings.collector_timeout_seconds,
            )
            for s in playbook.steps
        ]
        deadline = min(playbook.playbook.deadline.total_seconds(), self.settings.playbook_deadline_seconds)

        def observe(ev: Evidence) -> None:
            self.metrics.steps.labels(collector=ev.collector, status=ev.status.value).inc()
            self.metrics.step_duration.labels(collector=ev.collector, status=ev.status.value).observe(
                ev.duration_ms / 1000
            )
            log.info("step finished", step=ev.step, status=ev.status.value, ms=ev.duration_ms)

        return await run_steps(
            steps,
            ctx,
            deadline=deadline,
            max_bytes=self.settings.evidence_max_bytes,
            observe=observe,
        )


def analyzers_of(registry: Registry, playbook: CompiledPlaybook) -> list[AnalyzerDef]:
    """The analyzers a diagnosis runs: the playbook's, and ``coverage`` always."""
    analyzers = list(playbook.analyzers)
    if ALWAYS_ANALYZER not in {a.name for a in analyzers}:
        analyzers.append(registry.analyzers[ALWAYS_ANALYZER])
    return analyzers


def analyze(
    registry: Registry,
    incident: Incident,
    alerts: list[IncidentAlert],
    playbook: CompiledPlaybook,
    evidence: list[Evidence],
    now: datetime,
) -> list[Finding]:
    """Run the playbook's analyzers (and ``coverage``) over the evidence; most severe first."""
    inp = AnalysisInput(
        target=incident.target,
        labels=dict(incident.labels),
        alerts=alerts,
        evidence={e.step: e for e in evidence},
        now=now,
    )
    analyzers = analyzers_of(registry, playbook)
    findings: list[Finding] = []
    for analyzer in analyzers:
        try:
            findings.extend(analyzer.fn(inp))
        except Exception as exc:  # an analyzer bug must not cost the rest of the diagnosis
            log.exception("analyzer failed", analyzer=analyzer.name)
            findings.append(
                Finding(
                    analyzer=analyzer.name,
                    code=ANALYZER_ERROR,
                    severity="info",
                    summary=f"analyzer {analyzer.name} failed: {type(exc).__name__}: {exc}",
                )
            )
    findings.sort(key=lambda f: -SEVERITY_ORDER[f.severity])
    return findings
