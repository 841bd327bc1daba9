"""The one contract every shipped action passes (``medic.playbooks.action.Action`` as the
catalogue registers it), against the fake kube-apiserver through Medic's real KubeClient:

* ``plan`` reads only (no write request reaches the API server);
* ``apply`` sends exactly one write, and it is one the action declares (``kube_permissions``);
* ``verify`` reports success once the cluster converged, and failure (or a timeout, within its
  bound) when it did not, without raising;
* at most once: a re-attempt after a lost answer changes nothing when the write carries its own
  precondition (``guarded_write``), and the executor's ledger stops any other re-attempt;
* every request it makes (reads included) is allowed by the chart's Role with only that action
  enabled, and the writes are exactly what it declares;
* its declared params model is the one its ``plan`` reads, and its plan's facts model the one its
  ``apply`` and ``verify`` read;
* without Kubernetes every step raises NotConfigured before it reads anything (never a KeyError
  on a plan), and through the executor that is a record, never an exception.
"""

from __future__ import annotations

import re
import time
import typing
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from medic.app.catalogue import default_registry
from medic.app.settings import Settings
from medic.clients.kube.client import KubeClient
from medic.clients.sqlite import SqliteDB
from medic.coordination.sqlite import SqliteRemediationState
from medic.decision.decide import Decision
from medic.domain.actions import ActionMark
from medic.domain.errors import NotConfigured
from medic.domain.incident import ActionStatus, Incident, Target, new_incident_id
from medic.incidents.sqlite import SqliteIncidentStore
from medic.playbooks.action import ActionContext, ActionPlan, ApplyResult
from medic.playbooks.compiled import CompiledAction
from medic.playbooks.contract import ActionDef
from medic.playbooks.model import ActionSpec, VerifySpec
from medic.remediation.executor import GuardedRemediator
from medic.rules.model import Budget, Remediation, Rule
from tests.fakes.kube_apiserver import FakeKubeApiserver, RecordedRequest
from tests.integration.kube_support import FAST

pytestmark = pytest.mark.integration

NS = "playcode"
APP = "playcode-app"
ACTIONS: dict[str, ActionDef] = default_registry().actions
GUARDED = sorted(name for name, action in ACTIONS.items() if action.guarded_write)
WRITES = {"POST", "PUT", "PATCH", "DELETE"}
VERBS = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}
# The chart's `actions.<flag>` value that grants each action's write verb.
CHART_FLAGS = {
    "k8s.rollback_deployment": "rollback",
    "k8s.restart_deployment": "restart",
    "k8s.set_image": "setImage",
    "k8s.delete_pod": "deletePod",
    "k8s.create_job_from_cronjob": "createJobFromCronjob",
    "certs.renew_certificate": "renewCertificate",
}


# ---------------------------------------------------------------- one world per action


@dataclass
class Scenario:
    """Builds the cluster an action is meant for; ``break_it`` (called before apply) makes
    the outcome never converge."""

    setup: Callable[[FakeKubeApiserver], Target]
    break_it: Callable[[FakeKubeApiserver, Target], None]
    params: dict[str, Any] = field(default_factory=dict)
    written: tuple[str, str] = ("Deployment", APP)  # (kind, name) of the object a guarded write changes


def healthy_deployment(fake: FakeKubeApiserver) -> Target:
    fake.add_deployment(NS, APP, "app:v1", replicas=2, container_name=APP)
    return Target(kind="deployment", namespace=NS, name=APP)


def crashlooping_rollout(fake: FakeKubeApiserver) -> Target:
    target = healthy_deployment(fake)
    fake.bad_images.add("app:v2")
    fake.set_image(NS, APP, "app:v2")
    return target


def a_pod_of_a_deployment(fake: FakeKubeApiserver) -> Target:
    healthy_deployment(fake)
    pod = fake.pods_of(NS, APP)[0]["metadata"]["name"]
    return Target(kind="pod", namespace=NS, name=pod)


def a_backup_cronjob(fake: FakeKubeApiserver) -> Target:
    fake.add_namespace(NS)
    fake.add_cronjob(NS, "mongodb-backup", "backup:1")
    return Target(kind="namespace", name=NS)


def an_expiring_certificate(fake: FakeKubeApiserver) -> Target:
    from tests.fakes.kube_certmanager import CertManager

    cm = CertManager.installed(fake)
    cm.add_issuer(None, "letsencrypt")
    cm.add_certificate(NS, "playcode-tls", not_after=fake.clock.now() + timedelta(days=5))
    return Target(kind="certificate", namespace=NS, name="playcode-tls")


def acme_fails(fake: FakeKubeApiserver, target: Target) -> None:
    from tests.fakes.kube_certmanager import CertManager

    CertManager.installed(fake).fail_acme(target.namespace, target.name)


def crashes(image: str) -> Callable[[FakeKubeApiserver, Target], None]:
    def break_it(fake: FakeKubeApiserver, target: Target) -> None:
        fake.bad_images.add(image)

    return break_it


def stuck_terminating(fake: FakeKubeApiserver, target: Target) -> None:
    fake.patch_object("Pod", NS, target.name, {"metadata": {"finalizers": ["example.com/hold"]}})


SCENARIOS: dict[str, Scenario] = {
    "k8s.rollback_deployment": Scenario(crashlooping_rollout, crashes("app:v1")),
    "k8s.restart_deployment": Scenario(healthy_deployment, crashes("app:v1")),
    "k8s.set_image": Scenario(healthy_deployment, crashes("app:v3"), {"container": APP, "image": "app:v3"}),
    "k8s.delete_pod": Scenario(a_pod_of_a_deployment, stuck_terminating),
    "k8s.create_job_from_cronjob": Scenario(a_backup_cronjob, crashes("backup:1")),
    "certs.renew_certificate": Scenario(
        an_expiring_certificate, acme_fails, written=("Certificate", "playcode-tls")
    ),
}


def test_every_shipped_action_has_a_scenario_and_a_chart_flag() -> None:
    assert set(SCENARIOS) == set(ACTIONS) == set(CHART_FLAGS)
    assert GUARDED  # else the guarded re-attempt test has nothing to run


# ---------------------------------------------------------------- harness


@pytest.fixture
async def kube(fake: FakeKubeApiserver) -> AsyncIterator[KubeClient]:
    client = await KubeClient.from_configuration(fake.client_configuration(), retry=FAST)
    yield client
    await client.close()


def rule(action: str) -> Rule:
    return Rule(
        name="contract",
        matchers=['alertname="Contract"'],
        playbook="contract",
        remediation=Remediation(
            action="act", mode="auto", cooldown=timedelta(0), budget=Budget(count=10, per=timedelta(hours=1))
        ),
    )


@dataclass
class Run:
    name: str
    definition: ActionDef
    scenario: Scenario
    fake: FakeKubeApiserver
    kube: KubeClient
    target: Target
    params: BaseModel
    ctx: ActionContext

    async def plan(self) -> ActionPlan:
        plan: ActionPlan = await self.definition.impl.plan(self.ctx, self.params)
        return plan

    async def apply(self, plan: ActionPlan) -> ApplyResult:
        result: ApplyResult = await self.definition.impl.apply(self.ctx, plan)
        return result

    async def verify(self, plan: ActionPlan, timeout: float) -> tuple[bool, str]:
        ok, message = await self.definition.impl.verify(self.ctx, plan, timeout)
        return ok, message


def writes(fake: FakeKubeApiserver, *, succeeded: bool = False) -> list[RecordedRequest]:
    return [r for r in fake.requests if r.method in WRITES and (not succeeded or 200 <= r.status < 300)]


@pytest.fixture(params=sorted(ACTIONS))
async def run(request: pytest.FixtureRequest, fake: FakeKubeApiserver, kube: KubeClient) -> Run:
    name: str = request.param
    definition, scenario = ACTIONS[name], SCENARIOS[name]
    target = scenario.setup(fake)
    await fake.settle()
    now = datetime.now(UTC)
    incident = Incident(id=new_incident_id(now), key=f"contract|{target.key}", rule="contract", target=target)
    ctx = ActionContext(kube=kube, target=target, incident=incident, rule=rule(name), now=now)
    fake.clear_requests()
    return Run(name, definition, scenario, fake, kube, target, definition.params(**scenario.params), ctx)


# ---------------------------------------------------------------- plan, apply, verify


async def test_plan_reads_only(run: Run) -> None:
    plan = await run.plan()
    assert run.fake.requests, "a plan reads the target"
    assert writes(run.fake) == []
    assert plan.summary and plan.skip_reason is None
    assert all(p.ok for p in plan.preconditions), plan.preconditions
    assert plan.payload is not None and plan.idempotency_scope
    assert run.target.kind in run.definition.target_kinds


async def test_apply_writes_exactly_once_and_verify_sees_it_converge(run: Run) -> None:
    plan = await run.plan()
    run.fake.clear_requests()
    result = await run.apply(plan)
    assert result.applied is True, result
    (write,) = writes(run.fake)
    assert 200 <= write.status < 300, write
    await run.fake.settle()
    ok, message = await run.verify(plan, 10.0)
    assert ok, message
    assert writes(run.fake) == [write]  # verify reads only


async def test_verify_reports_what_did_not_converge_within_its_timeout(run: Run) -> None:
    plan = await run.plan()
    run.scenario.break_it(run.fake, run.target)
    await run.apply(plan)
    await run.fake.settle()
    started = time.monotonic()
    ok, message = await run.verify(plan, 1.5)
    assert not ok and message
    assert time.monotonic() - started < 1.5 + 5  # honours its timeout (a generous margin)


@pytest.mark.parametrize("run", GUARDED, indirect=True)
async def test_a_re_attempt_of_a_guarded_write_changes_nothing(run: Run) -> None:
    """The answer to the first write was lost (or the process crashed after it): the same plan
    applied again must not change the cluster a second time. (The other actions are not
    re-attempted at all: the executor's ledger stops them, see below.)"""
    plan = await run.plan()
    await run.apply(plan)
    await run.fake.settle()
    kind, name = run.scenario.written
    before = run.fake.get_object(kind, NS, name)
    run.fake.clear_requests()
    again = await run.apply(plan)
    assert again.applied is False and again.already is True, again
    assert writes(run.fake, succeeded=True) == []
    assert run.fake.get_object(kind, NS, name)["metadata"]["resourceVersion"] == (
        before["metadata"]["resourceVersion"]
    )
    ok, message = await run.verify(plan, 10.0)
    assert ok, message


# ---------------------------------------------------------------- at most once, through the executor


async def remediator(
    tmp_path: Path, kube: KubeClient | None
) -> tuple[GuardedRemediator, SqliteRemediationState]:
    db = SqliteDB(tmp_path / "medic.sqlite3")
    await db.open()
    state = SqliteRemediationState(db)
    settings = Settings(mode="enforce", namespaces=[NS], kube_mode="off")
    return GuardedRemediator(settings=settings, state=state, store=SqliteIncidentStore(db), kube=kube), state


def decision(run: Run) -> Decision:
    spec = ActionSpec(use=run.name, verify=VerifySpec(timeout=timedelta(seconds=10)))
    return Decision(CompiledAction("act", spec, run.definition, run.params), "auto", "contract")


async def test_the_executor_acts_once_and_records_it(run: Run, tmp_path: Path) -> None:
    executor, state = await remediator(tmp_path, run.kube)
    record = await executor.handle(run.ctx.incident, run.ctx.rule, None, decision(run))  # type: ignore[arg-type]
    assert record is not None and record.status == ActionStatus.SUCCEEDED, (record.status, record.reason)
    assert len(writes(run.fake, succeeded=True)) == 1
    last = await state.last_action(run.target.key)
    assert last is not None and last.status == "succeeded" and last.idempotency_key == record.idempotency_key


async def test_a_re_attempt_the_ledger_knows_of_writes_at_most_once(run: Run, tmp_path: Path) -> None:
    """An earlier attempt recorded its mark and died before (or while) writing: a guarded write
    may go ahead (its precondition decides), any other action is not repeated."""
    executor, state = await remediator(tmp_path, run.kube)
    plan = await run.plan()
    key = f"{run.name}|{run.target.key}|{plan.idempotency_scope}"
    mark = ActionMark(
        key, run.target.key, "act", run.ctx.incident.id, run.ctx.now, "started", plan.facts.record()
    )
    assert await state.begin_action(mark)
    run.fake.clear_requests()
    record = await executor.handle(run.ctx.incident, run.ctx.rule, None, decision(run))  # type: ignore[arg-type]
    assert record is not None
    if run.definition.guarded_write:
        assert record.status == ActionStatus.SUCCEEDED, record.reason
        assert len(writes(run.fake, succeeded=True)) == 1
    else:
        assert record.status == ActionStatus.SKIPPED and "already attempted" in record.reason
        assert writes(run.fake) == []


# ---------------------------------------------------------------- RBAC


def permission_of(request: RecordedRequest) -> tuple[str, str, str] | None:
    """(apiGroup, resource, verb) of a request to a resource path; None for discovery."""
    m = re.fullmatch(
        r"/(?:api/(?P<core>v1)|apis/(?P<group>[^/]+)/[^/]+)"
        r"(?:/namespaces/[^/]+)?/(?P<resource>[^/]+)(?:/(?P<name>[^/]+)(?:/(?P<sub>[^/]+))?)?",
        request.path,
    )
    if m is None:
        assert request.path in ("/api", "/apis", "/version") or request.path.startswith("/apis/"), (
            request.path
        )
        return None
    resource = m["resource"] + (f"/{m['sub']}" if m["sub"] else "")
    verb = ("get" if m["name"] else "list") if request.method == "GET" else VERBS[request.method]
    if request.method == "GET" and request.query.get("watch", "").lower() in ("1", "true"):
        verb = "watch"  # RBAC's own verb, granted apart from list
    return (m["group"] or "", resource, verb)


@pytest.fixture(scope="module")
def chart_roles() -> dict[str, set[tuple[str, str, str]]]:
    """The chart's Role in the namespace, rendered with each action alone enabled."""
    from tests.integration.helm_chart import permissions, render

    return {
        name: permissions(render({"actions": {flag: True}, "namespaces": [NS]}).one("Role"))
        for name, flag in CHART_FLAGS.items()
    }


async def test_the_rbac_it_declares_is_what_it_uses(
    run: Run, chart_roles: dict[str, set[tuple[str, str, str]]]
) -> None:
    plan = await run.plan()
    await run.apply(plan)
    await run.fake.settle()
    await run.verify(plan, 10.0)
    used = {p for r in run.fake.requests if (p := permission_of(r)) is not None}
    written = {p for p in used if p[2] not in ("get", "list", "watch")}
    assert written == set(run.definition.kube_permissions)
    assert used <= chart_roles[run.name], used - chart_roles[run.name]
    role_writes = {p for p in chart_roles[run.name] if p[2] not in ("get", "list", "watch")}
    assert role_writes == set(run.definition.kube_permissions)  # the chart grants no more


async def test_without_kubernetes_every_step_says_not_configured_before_reading_the_plan(run: Run) -> None:
    """No kube client: plan, apply and verify each raise NotConfigured (the StepError the executor
    records), before they read anything of the plan: even a plan whose facts were never set
    gives NotConfigured, not a KeyError or an AttributeError. Nothing reaches the API server."""
    plan = await run.plan()
    run.fake.clear_requests()
    ctx = ActionContext(
        kube=None, target=run.target, incident=run.ctx.incident, rule=run.ctx.rule, now=run.ctx.now
    )
    bare = ActionPlan(summary="", facts=type(plan.facts).model_construct())  # no fact set at all
    with pytest.raises(NotConfigured):
        await run.definition.impl.plan(ctx, run.params)
    for some_plan in (plan, bare):
        with pytest.raises(NotConfigured):
            await run.definition.impl.apply(ctx, some_plan)
        with pytest.raises(NotConfigured):
            await run.definition.impl.verify(ctx, some_plan, 1.0)
    assert run.fake.requests == []


async def test_without_kubernetes_the_executor_records_not_configured(run: Run, tmp_path: Path) -> None:
    executor, state = await remediator(tmp_path, None)
    record = await executor.handle(run.ctx.incident, run.ctx.rule, None, decision(run))  # type: ignore[arg-type]
    assert record is not None and record.status == ActionStatus.REFUSED, (record.status, record.reason)
    assert record.reason == "could not plan act: Kubernetes is not configured: no action can run"
    assert await state.last_action(run.target.key) is None  # nothing began
    assert run.fake.requests == []


def test_the_declared_params_model_is_the_one_plan_reads() -> None:
    """``ActionDef.params`` is what the loader validates a playbook's params with; ``plan`` must
    read exactly that model (mypy checks it where the catalogue is built; this checks the
    catalogue as shipped). And apply/verify read the facts model plan returns."""
    for name, definition in ACTIONS.items():
        impl = type(definition.impl)
        plan_hints = typing.get_type_hints(impl.plan)
        assert plan_hints["params"] is definition.params, (name, plan_hints["params"], definition.params)
        facts = plan_hints["return"]
        assert typing.get_origin(facts) is ActionPlan, (name, facts)
        for step in (impl.apply, impl.verify):
            assert typing.get_type_hints(step)["plan"] == facts, (name, step.__name__)


# ---------------------------------------------------------------- failures are records, not exceptions


def denied_write(run: Run) -> tuple[str, str]:
    _group, resource, verb = run.definition.kube_permissions[0]
    return verb, resource


async def test_a_forbidden_write_is_a_failed_record_naming_what_was_refused(run: Run, tmp_path: Path) -> None:
    executor, state = await remediator(tmp_path, run.kube)
    verb, resource = denied_write(run)
    run.fake.deny(verb, resource)
    record = await executor.handle(run.ctx.incident, run.ctx.rule, None, decision(run))  # type: ignore[arg-type]
    assert record is not None and record.status == ActionStatus.FAILED, (record.status, record.reason)
    assert resource in record.reason and ("forbidden" in record.reason.lower() or "403" in record.reason)
    assert writes(run.fake, succeeded=True) == []
    last = await state.last_action(run.target.key)
    assert last is not None and last.status == "failed"  # the ledger knows it was attempted


async def test_an_api_failing_before_the_plan_is_a_refusal_after_bounded_retries(
    run: Run, tmp_path: Path
) -> None:
    executor, _ = await remediator(tmp_path, run.kube)
    run.fake.inject_fault(None, r".", 500, times=None)  # every request fails from now on
    record = await executor.handle(run.ctx.incident, run.ctx.rule, None, decision(run))  # type: ignore[arg-type]
    assert record is not None and record.status == ActionStatus.REFUSED, (record.status, record.reason)
    assert "could not plan" in record.reason and "500" in record.reason
    assert 1 <= len(run.fake.requests) <= FAST.attempts  # the plan's first read, retried boundedly
    assert writes(run.fake) == []


async def test_a_write_failing_with_500_is_a_failed_record_after_bounded_retries(
    run: Run, tmp_path: Path
) -> None:
    executor, state = await remediator(tmp_path, run.kube)
    for method in sorted(WRITES):
        run.fake.inject_fault(method, r".", 500, times=None)
    record = await executor.handle(run.ctx.incident, run.ctx.rule, None, decision(run))  # type: ignore[arg-type]
    assert record is not None and record.status == ActionStatus.FAILED, (record.status, record.reason)
    assert "500" in record.reason
    assert 1 <= len(writes(run.fake)) <= FAST.attempts
    assert writes(run.fake, succeeded=True) == []
    last = await state.last_action(run.target.key)
    assert last is not None and last.status == "failed"
