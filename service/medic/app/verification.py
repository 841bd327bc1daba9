"""Deploy verifications (runbook 1.3): started by the Deployment watch, the API or the CLI, sampled
every interval of their window by the verifier, concluded through the guarded executor.

- **Start** (:meth:`Verifications.request`): a verification is an alert Medic makes itself
  (``alertname=MedicDeployVerification`` with the namespace, Deployment and revision), routed by
  the rules like any other, so the incident, its page and its notifications are the usual ones.
  The incident is keyed by rule and Deployment: one verification per Deployment at a time; a
  request for the revision under verification answers that incident; a newer revision
  supersedes it (concluded ``inconclusive``, resolved).
- **Begin** (:meth:`Verifications.begin`, the pipeline's hook for a playbook with ``verify:``):
  the revision's ReplicaSet and the baseline's (the highest older revision) are read, the window
  is stored on the incident (phase ``verifying``).
- **Sample** (:meth:`Verifications.evaluate`): under the incident's lock, every ``interval``, the
  playbook's steps run with the revision in their context, the ``deploy_verify`` analyzer judges
  the samples so far (:mod:`medic.analysis.verification`); an early failure ends the window.
- **Conclude**: the verdict's findings go to the decision and the guarded executor (rule mode,
  cooldown, budget, flap, kill switch, opt-out, GitOps skip); a rollback targets the verified
  baseline revision. A passed or inconclusive verification resolves its incident; a failed one
  stays open until the Deployment leaves the revision (a rollback, a fix), checked every minute.

Everything lives in the store: a restarted Medic (or another replica) picks up every open
verification where it was, at its ``next_at``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta
from typing import Any

import structlog

from medic.analysis.verification import WINDOW_STEP
from medic.app.pipeline import Group, Pipeline, analyze
from medic.clients.kube.client import KubeClient, ns_path
from medic.clients.kube.errors import KubeError
from medic.clients.kube.reads import annotations_of, meta, replicasets, revision
from medic.clients.kube.watch import DeploymentWatch
from medic.decision.decide import Decision, aim_at_baseline, decide
from medic.domain.alert import Alert
from medic.domain.deploy_changes import RevisionChange
from medic.domain.durations import format_duration, parse_duration
from medic.domain.errors import MedicError
from medic.domain.evidence import Evidence, StepStatus
from medic.domain.incident import ActionStatus, Incident, Phase, highest_severity, utcnow
from medic.domain.rollout import REVISION_HISTORY, parse_time
from medic.domain.verification import (
    MAX_WINDOW,
    MIN_BASELINE_S,
    VERIFY_ALERTNAME,
    Revisions,
    RevisionWindow,
    Sample,
    Verification,
    VerificationSpec,
    judge_revisions,
)
from medic.incidents.base import IncidentQuery
from medic.incidents.views import first_alerts
from medic.playbooks.compiled import CompiledPlaybook
from medic.rules.model import Rule

log = structlog.get_logger("medic.app.verification")

FOLLOW_UP = timedelta(minutes=1)  # how often a failed, open verification checks the Deployment
MAX_SAMPLES = 400
POLL = 5.0  # the verifier looks for due verifications at least this often (and when woken)
CONCURRENCY = 8
# A verdict raises its incident's severity (the rule's is the floor): a channel with
# min_severity warning hears of failed and inconclusive verifications, not of every deploy that passed.
VERDICT_SEVERITY = {"failed": "critical", "inconclusive": "warning", "passed": "info"}
WATCH_RETRIES = 4  # a new revision the API could not be asked about: tried again after 1, 2, 4 s
STEP_RETRY = (5.0, 300.0)  # a failed step is tried again after 5 s, doubling up to 5 min
STEP_GIVE_UP = 6  # failures in a row after which a verification past its window ends inconclusive
SCAN_EVERY = timedelta(minutes=10)  # how often every open incident is looked at for verifications


def _settled(incident: Incident, v: Verification) -> str | None:
    """Why a finished verification's incident is resolved now (None: it stays open). A failed
    one stays open while the failing revision runs: until a rollback succeeded, or the
    Deployment leaves the revision (checked every minute, :meth:`Verifications._follow_up`)."""
    if v.state != "failed":
        return f"verification {v.state}"
    done = [a for a in incident.actions if a.status is ActionStatus.SUCCEEDED]
    if done:
        return f"{done[-1].action} succeeded: the failed revision {v.revision} no longer runs"
    return None


class VerificationError(Exception):
    """A request that cannot start a verification; ``status`` is the HTTP status to answer."""

    def __init__(self, status: int, title: str, detail: str, field: str | None = None) -> None:
        super().__init__(detail)
        self.status, self.title, self.detail, self.field = status, title, detail, field


def verification_alert(
    namespace: str, deployment: str, rev: int, window: timedelta | None, trigger: str, now: datetime
) -> Alert:
    """The alert that stands for a verification request (one identity per revision)."""
    ident = hashlib.sha256(f"{namespace}/{deployment}/{rev}".encode()).hexdigest()[:16]
    annotations = {
        "summary": f"verify revision {rev} of deployment {namespace}/{deployment}",
        "trigger": trigger,
    }
    if window is not None:
        annotations["window"] = format_duration(window)
    return Alert(
        status="firing",
        labels={
            "alertname": VERIFY_ALERTNAME,
            "namespace": namespace,
            "deployment": deployment,
            "revision": str(rev),
        },
        annotations=annotations,
        startsAt=now,
        fingerprint=f"verify-{ident}",
    )


async def revisions_of(kube: KubeClient, namespace: str, name: str, rev: int, now: datetime) -> Revisions:
    """The ReplicaSet of revision ``rev`` and its baseline (:func:`judge_revisions`)."""
    memo: dict[str, Any] = {}
    deployment = await kube.get(ns_path("apps/v1", namespace, "deployments", name))
    rows = [
        (
            revision(rs),
            meta(rs).get("name", ""),
            parse_time(meta(rs).get("creationTimestamp")),
            bool(annotations_of(rs).get(REVISION_HISTORY)),
        )
        for rs in await replicasets(kube, memo, deployment)
    ]
    found = judge_revisions(rev, rows, now)
    if found is None:
        raise VerificationError(
            409, "Conflict", f"revision {rev} of deployment {namespace}/{name} has no ReplicaSet"
        )
    return found


class Verifications:
    """Starts, samples and concludes deploy verifications (see the module's docstring)."""

    def __init__(self, pipeline: Pipeline, *, clock: Callable[[], datetime] = utcnow) -> None:
        self.pipeline = pipeline
        self.clock = clock
        self.wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._watch: DeploymentWatch | None = None
        self._watch_task: asyncio.Task[None] | None = None
        self._stopping = False
        self._running: set[str] = set()
        self._steps: set[asyncio.Task[None]] = set()  # the steps in flight
        self._failing: dict[str, tuple[int, datetime]] = {}  # incident -> (failures, retry at)
        self._known: set[str] = set()  # open verifications seen (found by rule or by the scan)
        self._scanned_at: datetime | None = None
        # wakes the verifier when it runs elsewhere (the diagnosis process): set by the runtime
        self.poke: Callable[[], None] = self.wake.set

    @classmethod
    def attach(cls, pipeline: Pipeline) -> Verifications:
        """Verifications for ``pipeline``, which hands them its verification incidents."""
        pipeline.verifications = verifications = cls(pipeline)
        return verifications

    # ------------------------------------------------------------------ start
    async def request(
        self,
        namespace: str,
        deployment: str,
        rev: int | None = None,
        window: timedelta | None = None,
        trigger: str = "api",
    ) -> tuple[Incident, bool]:
        """Open the verification of ``rev`` (default: the current revision); (incident, created).
        Raises :class:`VerificationError` when it cannot be started."""
        kube = self._kube()
        if namespace not in self.pipeline.backends.namespaces:
            raise VerificationError(
                403, "Forbidden", f"namespace {namespace!r} is not in MEDIC_NAMESPACES", "namespace"
            )
        if window is not None and not timedelta(minutes=1) <= window <= MAX_WINDOW:
            raise VerificationError(
                422,
                "Unprocessable Content",
                f"window must be from 1m to {format_duration(MAX_WINDOW)}",
                "window",
            )
        current = await self._current_revision(kube, namespace, deployment)
        rev = rev or current
        if rev != current:
            raise VerificationError(
                409,
                "Conflict",
                f"revision {rev} is not current: deployment {namespace}/{deployment} is at {current}",
                "revision",
            )
        now = self.clock()
        group = await self._group(verification_alert(namespace, deployment, rev, window, trigger, now))
        async with self.pipeline.lock_for(group.key):
            existing = await self.pipeline.store.find_open(group.key)
            running = existing.verification if existing is not None else None
            if existing is not None and running is not None and running.revision == rev:
                return existing, False
            if running is not None and running.revision > rev:  # a slower replica, a late request
                raise VerificationError(
                    409,
                    "Conflict",
                    f"revision {rev} is older than revision {running.revision}, verified since "
                    f"{running.started_at:%H:%M:%S} UTC",
                    "revision",
                )
            if existing is not None:
                await self._supersede(existing, rev)
            incident = await self.pipeline.apply(group)
        self.poke()  # once the incident's lock is free: the verifier (maybe in another process) takes it
        if incident is None:  # cannot happen for a firing alert; keeps the type honest
            raise VerificationError(500, "Internal Server Error", "the verification incident was not opened")
        log.info(
            "verification requested",
            incident_id=incident.id,
            deployment=f"{namespace}/{deployment}",
            revision=rev,
            trigger=trigger,
        )
        return incident, True

    def _kube(self) -> KubeClient:
        kube = self.pipeline.backends.kube
        if kube is None:
            raise VerificationError(
                503, "Service Unavailable", "Kubernetes access is not configured (MEDIC_KUBE_MODE)"
            )
        return kube

    @staticmethod
    async def _current_revision(kube: KubeClient, namespace: str, name: str) -> int:
        try:
            obj = await kube.get(ns_path("apps/v1", namespace, "deployments", name))
        except KubeError as exc:
            if exc.status == 404:
                raise VerificationError(
                    404, "Not Found", f"deployment {namespace}/{name} not found", "deployment"
                ) from None
            raise VerificationError(503, "Service Unavailable", f"the Kubernetes API failed: {exc}") from None
        rev = revision(obj)
        if rev <= 0:
            raise VerificationError(409, "Conflict", f"deployment {namespace}/{name} has no revision yet")
        return rev

    async def _group(self, alert: Alert) -> Group:
        groups = await self.pipeline.group([alert])
        for group in groups.values():
            if group.playbook is not None and group.playbook.playbook.verify is not None:
                return group
        raise VerificationError(
            422,
            "Unprocessable Content",
            f"no rule routes {VERIFY_ALERTNAME} to a playbook with verify: (rules/deploy-verify.yaml)",
        )

    async def on_new_revision(self, change: RevisionChange) -> None:
        """The Deployment watch's callback: verify the revision that became current (the API
        server unreachable for a moment is retried: the watch has consumed the change)."""
        where = f"{change.namespace}/{change.deployment}"
        try:
            for attempt in range(WATCH_RETRIES):
                try:
                    await self.request(change.namespace, change.deployment, change.revision, None, "watch")
                    return
                except VerificationError as exc:
                    if exc.status != 503 or attempt == WATCH_RETRIES - 1:
                        raise
                except MedicError:  # Medic's own store or locks, for a moment
                    if attempt == WATCH_RETRIES - 1:
                        raise
                await asyncio.sleep(2**attempt)
        except VerificationError as exc:
            log.warning(
                "no verification of the new revision",
                deployment=where,
                revision=change.revision,
                reason=exc.detail,
            )
        except Exception:
            log.exception(
                "starting a verification failed", deployment=f"{change.namespace}/{change.deployment}"
            )

    # ------------------------------------------------------------------ begin (the pipeline's hook)
    async def begin(self, incident: Incident, rule: Rule | None, playbook: CompiledPlaybook) -> None:
        """Store the window on a freshly opened verification incident (idempotent)."""
        if incident.verification is not None or playbook.playbook.verify is None:
            return
        spec = playbook.playbook.verify
        now = self.clock()
        labels = incident.labels
        namespace, name = labels.get("namespace", ""), labels.get("deployment", "")
        rev = int(labels.get("revision", "0") or 0)
        firsts = await first_alerts(self.pipeline.store, incident.id, 1)
        annotations = firsts[0].annotations if firsts else {}
        window = spec.window
        with contextlib.suppress(ValueError, TypeError):
            if annotations.get("window"):
                window = min(parse_duration(annotations["window"]), MAX_WINDOW)
        v = Verification(
            namespace=namespace,
            deployment=name,
            revision=rev,
            trigger=annotations.get("trigger", "api"),
            started_at=now,
            window_s=window.total_seconds(),
            interval_s=min(spec.interval, window).total_seconds(),
            ends_at=now + window,
            next_at=now,
        )
        try:
            found = await revisions_of(self._kube(), namespace, name, rev, now)
            v.replicaset, v.rollout_at, v.restored = found.replicaset, found.rollout_at, found.restored
            v.baseline_revision, v.baseline_replicaset = found.baseline_revision, found.baseline_replicaset
            if found.baseline_since is not None:  # the baseline ran only this long before the start
                v.baseline_s = max(MIN_BASELINE_S, (now - found.baseline_since).total_seconds())
        except VerificationError as exc:  # the revision has no ReplicaSet: nothing to verify
            v.state, v.reason = "inconclusive", exc.detail
        except KubeError as exc:  # for a moment, maybe: the verifier begins it again (backoff)
            log.warning("verification not begun: the Kubernetes API failed", error=str(exc))
            self.wake.set()
            return
        incident.verification = v
        incident.phase = Phase.VERIFYING
        if v.baseline_revision:
            against = f" against revision {v.baseline_revision}"
        elif v.restored:
            against = " (it restores an older template: absolute thresholds only, never rolled back)"
        else:
            against = " (no older revision: absolute thresholds only)"
        incident.note("verification", f"verifying revision {rev}{against} for {format_duration(window)}", now)
        if v.final:
            await self._finish(incident, rule, playbook, [], [], now)
            return
        await self.pipeline.store.save(incident)
        self.wake.set()

    # ------------------------------------------------------------------ the verifier loop
    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="medic-verifier")

    def watch(self, deployments: DeploymentWatch) -> None:
        """Run the Deployment watch that starts a verification for each new revision."""
        self._watch = deployments
        self._watch_task = asyncio.create_task(deployments.run(), name="medic-deploy-watch")

    async def stop(self, grace: float = 10.0) -> None:
        """Stop the watch and the loop; let the steps in flight finish (up to ``grace`` seconds,
        then they are cancelled: a step is taken again at its ``next_at`` after a restart)."""
        self._stopping = True
        self.wake.set()
        if self._watch is not None:
            self._watch.stop()
        for task in (self._watch_task, self._task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self._steps:
            _, pending = await asyncio.wait(self._steps, timeout=grace)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    async def _loop(self) -> None:
        limit = asyncio.Semaphore(CONCURRENCY)
        tasks = self._steps
        while not self._stopping:
            self.wake.clear()
            delay = POLL
            try:
                due, soonest = await self.due(self.clock())
                for incident_id in due:
                    failing = self._failing.get(incident_id)
                    if failing is not None and failing[1] > self.clock():
                        continue
                    if incident_id not in self._running:
                        self._running.add(incident_id)
                        task = asyncio.create_task(self._evaluate_bounded(incident_id, limit))
                        tasks.add(task)
                        task.add_done_callback(tasks.discard)
                if soonest is not None:
                    delay = min(POLL, max(0.05, (soonest - self.clock()).total_seconds()))
            except Exception:
                log.exception("the verifier could not list due verifications")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), delay)

    async def _evaluate_bounded(self, incident_id: str, limit: asyncio.Semaphore) -> None:
        """One step; a step that fails (Medic's store, a bug) is tried again later and later
        (5 s doubling, at most 5 min), never every poll."""
        try:
            async with limit:
                await self.evaluate(incident_id)
            self._failing.pop(incident_id, None)
        except Exception as exc:
            failures = self._failing.get(incident_id, (0, self.clock()))[0] + 1
            pause = min(STEP_RETRY[0] * 2 ** (failures - 1), STEP_RETRY[1])
            self._failing[incident_id] = (failures, self.clock() + timedelta(seconds=pause))
            log.exception(
                "verification step failed", incident_id=incident_id, failures=failures, retry_in=pause
            )
            if failures >= STEP_GIVE_UP:
                await self._give_up(incident_id, f"{type(exc).__name__}: {exc}")
        finally:
            self._running.discard(incident_id)

    async def _give_up(self, incident_id: str, error: str) -> None:
        """A verification whose step keeps failing past its window ends inconclusive."""
        with contextlib.suppress(Exception):
            incident = await self.pipeline.store.get(incident_id)
            v = incident.verification if incident is not None else None
            if incident is None or incident.status != "open" or (v is not None and v.final):
                return
            if v is not None and self.clock() < v.ends_at:
                return
            async with self.pipeline.lock_for(incident.key):
                await self._conclude_without(incident, f"its steps kept failing ({error[:300]})")

    def _verify_rules(self) -> list[str]:
        config = self.pipeline.config
        return [
            r.name
            for r in config.rules
            if r.playbook
            and (pb := config.playbooks.get(r.playbook)) is not None
            and pb.playbook.verify is not None
        ]

    async def _open(self, rule: str | None) -> AsyncIterator[Incident]:
        offset = 0
        while True:
            page, total = await self.pipeline.store.query(
                IncidentQuery(status="open", rule=rule, limit=200, offset=offset)
            )
            for incident in page:
                yield incident
            offset += len(page)
            if not page or offset >= total:
                return

    async def due(self, now: datetime) -> tuple[list[str], datetime | None]:
        """Open verification incidents whose next step is due, and when the next one falls due:
        those of the rules routing to a verify playbook, and every open verification seen by the
        scan of all open incidents (at start, then every SCAN_EVERY), so that one whose rule was
        renamed or whose playbook lost ``verify:`` is still concluded."""
        found: dict[str, Incident] = {}
        if self._scanned_at is None or now - self._scanned_at >= SCAN_EVERY:
            self._scanned_at = now
            async for incident in self._open(None):
                if incident.verification is not None:
                    found[incident.id] = incident
        for rule in self._verify_rules():
            async for incident in self._open(rule):
                found[incident.id] = incident
        for incident_id in self._known - found.keys():
            if (known := await self.pipeline.store.get(incident_id)) is not None and known.status == "open":
                found[incident_id] = known
        self._known = {i for i, inc in found.items() if inc.verification is not None}
        due: list[str] = []
        soonest: datetime | None = None
        for incident in found.values():
            at = incident.verification.next_at if incident.verification else now
            if at <= now:
                due.append(incident.id)
            elif soonest is None or at < soonest:
                soonest = at
        return due, soonest

    async def evaluate(self, incident_id: str) -> None:
        """One step of one verification, under its incident's lock."""
        incident = await self.pipeline.store.get(incident_id)
        if incident is None or incident.status != "open":
            return
        async with self.pipeline.lock_for(incident.key):
            incident = await self.pipeline.store.get(incident_id)
            if incident is None or incident.status != "open":
                return
            with structlog.contextvars.bound_contextvars(incident_id=incident.id):
                await self._step(incident)

    async def _step(self, incident: Incident) -> None:
        config = self.pipeline.config
        playbook = config.playbooks.get(incident.playbook or "")
        rule = next((r for r in config.rules if r.name == incident.rule), None)
        v = incident.verification
        if playbook is None or playbook.playbook.verify is None:
            if v is not None and not v.final:
                why = f"playbook {incident.playbook!r} is no longer a verification (configuration changed)"
                await self._conclude_without(incident, why)
            return
        if v is None:  # opened, but its window was never stored (a crash, the API server away)
            await self.begin(incident, rule, playbook)
            if incident.verification is None:
                raise VerificationError(503, "Service Unavailable", "the verification could not begin")
            return
        now = self.clock()
        if v.next_at > now:
            return
        if v.final:
            await self._follow_up(incident, v, now)
            return
        await self._sample(incident, v, rule, playbook, playbook.playbook.verify, now)

    async def _sample(
        self,
        incident: Incident,
        v: Verification,
        rule: Rule | None,
        playbook: CompiledPlaybook,
        spec: VerificationSpec,
        now: datetime,
    ) -> None:
        p = self.pipeline
        alerts = await first_alerts(p.store, incident.id, 10)
        evidence = await p.collect(incident, alerts, playbook, now, revision=RevisionWindow.of(v, spec))
        window = Evidence(
            step=WINDOW_STEP,
            collector=WINDOW_STEP,
            status=StepStatus.OK,
            started_at=now,
            data={"spec": spec.model_dump(mode="json"), "verification": v.model_dump(mode="json")},
        )
        findings = analyze(p.registry, incident, alerts, playbook, [window, *evidence], now)
        head = next((f for f in findings if f.analyzer == "deploy_verify" and "state" in f.details), None)
        if head is None:  # the playbook's analyzers gave no verdict: the window cannot be judged
            v.state, v.reason = (
                "inconclusive",
                "the playbook's analyzers gave no verdict (analyze: [deploy_verify])",
            )
            await self._finish(incident, rule, playbook, [window, *evidence], findings, now)
            return
        v.samples = [*v.samples, Sample.model_validate(head.details["sample"])][-MAX_SAMPLES:]
        state = head.details["state"]
        log.info("verification sampled", state=state, interval=len(v.samples))
        p.metrics.verification_samples.inc()
        if state == "verifying":
            incident.evidence, incident.findings = [window, *evidence], findings
            v.next_at = min(now + timedelta(seconds=v.interval_s), v.ends_at)
            incident.updated_at = now
            await p.store.save(incident)
            return
        v.state, v.reason = state, head.details.get("reason") or head.summary.split(" — ", 1)[-1]
        await self._finish(incident, rule, playbook, [window, *evidence], findings, now)

    async def _finish(
        self,
        incident: Incident,
        rule: Rule | None,
        playbook: CompiledPlaybook,
        evidence: list[Evidence],
        findings: list[Any],
        now: datetime,
    ) -> None:
        """Conclude: decision and action (a failed one), resolution (the others), notification."""
        p = self.pipeline
        v = incident.verification
        assert v is not None
        v.finished_at = now
        v.next_at = now + FOLLOW_UP
        p.metrics.verifications.labels(outcome=v.state).inc()
        decision = self._decision(rule, playbook, findings, v)
        incident.conclude(evidence, findings, decision.reason, decision.mode, now)
        incident.note("verification", f"revision {v.revision} {v.state}: {v.reason}", now)
        await p.carry_out(incident, rule, playbook, decision)
        incident.finish_diagnosis(self.clock())
        incident.severity = highest_severity(VERDICT_SEVERITY.get(v.state), incident.severity, [])  # type: ignore[assignment]
        resolved = await self._resolve(incident, why) if (why := _settled(incident, v)) else False
        await p.store.save(incident)
        p.notify(incident, "diagnosed")
        if resolved:
            p.notify(incident, "resolved")
        log.info("verification finished", state=v.state, reason=v.reason, revision=v.revision)

    def _decision(
        self, rule: Rule | None, playbook: CompiledPlaybook, findings: list[Any], v: Verification
    ) -> Decision:
        decision = decide(rule, playbook, findings, self.pipeline.settings.mode)
        return aim_at_baseline(decision, v.revision, v.baseline_revision, restored=v.restored)

    async def _resolve(self, incident: Incident, why: str) -> bool:
        """Resolve the verification's alert, and so its incident."""
        now = self.clock()
        alerts, _ = await self.pipeline.store.alerts(incident.id, status="firing", limit=100)
        ended = [a.model_copy(update={"status": "resolved", "endsAt": now, "last_seen": now}) for a in alerts]
        if ended:
            merge = await self.pipeline.store.merge_alerts(incident.id, ended)
            incident.merge_alerts(merge, ended, None, now)
        if incident.resolve_if_quiet(now):
            incident.note("verification", why, now)
            self.pipeline.metrics.incidents_resolved.labels(rule=incident.rule or "-").inc()
            return True
        return False

    async def _follow_up(self, incident: Incident, v: Verification, now: datetime) -> None:
        """A failed verification stays open until the Deployment leaves the revision."""
        try:
            current = await self._current_revision(self._kube(), v.namespace, v.deployment)
        except VerificationError as exc:
            if exc.status != 404:
                v.next_at = now + FOLLOW_UP
                await self.pipeline.store.save(incident)
                return
            current = -1
        if current == v.revision:
            v.next_at = now + FOLLOW_UP
            await self.pipeline.store.save(incident)
            return
        where = "deleted" if current < 0 else f"at revision {current}"
        if await self._resolve(incident, f"the Deployment left revision {v.revision}: it is {where} now"):
            await self.pipeline.store.save(incident)
            self.pipeline.notify(incident, "resolved")

    async def _conclude_without(self, incident: Incident, why: str) -> None:
        """End a verification that cannot be judged: inconclusive, resolved, nothing done."""
        now = self.clock()
        v = incident.verification
        if v is not None:
            v.state, v.reason, v.finished_at = "inconclusive", why, now
            self.pipeline.metrics.verifications.labels(outcome=v.state).inc()
        incident.note("verification", f"inconclusive: {why}", now)
        incident.finish_diagnosis(now)
        await self._resolve(incident, why)
        await self.pipeline.store.save(incident)
        self.pipeline.notify(incident, "resolved")

    async def _supersede(self, incident: Incident, rev: int) -> None:
        """An older verification of the Deployment gives way to revision ``rev``."""
        now = self.clock()
        v = incident.verification
        if v is not None and not v.final:
            v.state, v.reason, v.finished_at = (
                "inconclusive",
                f"superseded by revision {rev} before the window ended",
                now,
            )
            incident.finish_diagnosis(now)
        if await self._resolve(incident, f"superseded by revision {rev}"):
            await self.pipeline.store.save(incident)
            self.pipeline.notify(incident, "resolved")
