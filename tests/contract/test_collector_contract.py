"""The one contract every shipped collector passes (the catalogue in ``default_registry()``),
each run as the pipeline runs it (``medic.playbooks.runner.run_step``: timeout, redaction, size
cap) against its real backend or wire-level fake:

* ``not_configured`` when its client is not configured;
* ``timeout`` when its backend accepts the connection and never answers, within its timeout
  (plus a generous margin: correctness, not speed);
* ``error`` with a message, never an exception, when the backend answers garbage, a 500 or closes
  the connection; the message names no secret and is not a Python bug's (KeyError, TypeError...);
* ``ok`` on a backend whose answers carry planted secrets: none of them in the evidence, and the
  data is plain JSON (what is stored is what the analyzers read, offline too);
* its data matches its declared output model (issue 16.3: ``CollectorDef.output``, the model its
  analyzers read).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import time
import typing
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import pytest
from kubernetes_asyncio.client import Configuration

from medic.app.backends import Backends
from medic.app.catalogue import default_registry
from medic.app.settings import Settings
from medic.clients.kube.client import KubeClient
from medic.clients.loki import LokiBackend
from medic.clients.mongo import MongoBackend
from medic.clients.prometheus import PrometheusBackend
from medic.clients.redis import RedisBackend
from medic.domain.evidence import Evidence, StepStatus
from medic.domain.incident import IncidentAlert, Target
from medic.domain.redact import REDACTED
from medic.domain.verification import RevisionWindow
from medic.playbooks.contract import CollectorDef, StepContext
from medic.playbooks.runner import PlannedStep, run_step
from tests.fakes.kube_apiserver import FakeKubeApiserver
from tests.fakes.loki import FakeLoki
from tests.fakes.mongo_server import FakeMongoServer
from tests.integration.kube_support import FAST
from tests.integration.test_dataplane_secrets import plant_loki, plant_mongo, plant_redis
from tests.integration.test_k8s_collectors import APP, APP_CONFIG, NS, crashloop
from tests.servers.fixtures import PrometheusFactory, RedisServerFactory
from tests.servers.openmetrics import Series
from tests.servers.playcode_series import Timeline, gauge_series

pytestmark = pytest.mark.integration

SECRET = "Pl4ntedContractPw"
# Every secret the planted worlds hold (the data-plane helpers plant their own).
PLANTED = (
    SECRET,
    "hunter2-Sup3rSecret",
    "s3cr3tMongoPw",
    "r3disPassw0rd",
    "Pl4ntedMongoPw",
    "Pl4ntedHbPw",
    "Pl4ntedProfilePw",
    "Pl4ntedRedisPw",
    "Pl4ntedValuePw",
    "Pl4ntedLinePw",
)
PYTHON_BUGS = (
    "KeyError",
    "TypeError",
    "AttributeError",
    "IndexError",
    "AssertionError",
    "NameError",
    "UnboundLocalError",
    "ZeroDivisionError",
)
COLLECTORS: dict[str, CollectorDef[Any, Any]] = default_registry().collectors
FAMILIES = {"k8s": "kube", "mongo": "mongo", "redis": "redis", "loki": "loki", "prometheus": "prometheus"}
HTTP_FAMILIES = {"k8s", "loki", "prometheus"}
PARAMS: dict[str, dict[str, Any]] = {  # what a playbook gives the collectors that need params
    "prometheus.query": {"queries": [{"name": "planted", "expr": "planted_info{namespace=$namespace}"}]},
    "loki.query": {"query": "app_errors"},
}
TARGET = Target(kind="deployment", namespace=NS, name=APP)
# The collectors that work on another kind of target than the app's Deployment, and on what.
TARGETS: dict[str, Target] = {
    "k8s.cronjob_runs": Target(kind="namespace", name=NS),  # runbook 5.1: the backup CronJob
    "k8s.certificate_status": Target(kind="certificate", namespace=NS, name="playcode-tls"),  # runbook 6.3
}
# A deploy verification's revision: the collectors that compare a revision with its baseline
# (medic.collectors.revision) read it; every other collector ignores it.
REVISION = RevisionWindow(
    namespace=NS,
    deployment=APP,
    revision=2,
    replicaset=f"{APP}-7d9c8f",
    baseline_revision=1,
    baseline_replicaset=f"{APP}-5b6c7d",
    started_at=datetime.now(UTC),
    baseline_s=3600,
)
SILENT_TIMEOUT = 1.0
MARGIN = 5.0


def family(name: str) -> str:
    return name.split(".", 1)[0]


def test_every_collector_belongs_to_a_backend_this_suite_drives() -> None:
    assert COLLECTORS and {family(n) for n in COLLECTORS} <= set(FAMILIES)


# ---------------------------------------------------------------- running one collector


async def run(name: str, backends: Backends, timeout: float, pods: Sequence[str] = ()) -> Evidence:
    collector = COLLECTORS[name]
    now = datetime.now(UTC)
    alerts = [
        IncidentAlert(
            identity=f"a{i}",
            status="firing",
            labels={"alertname": "KubePodCrashLooping", "namespace": NS, "pod": pod, "container": APP},
            startsAt=now,
        )
        for i, pod in enumerate(pods)
    ]
    target = TARGETS.get(name, TARGET)
    labels = {"namespace": NS, "alertname": "Contract"}
    ctx = StepContext(target, labels, alerts, backends, now, timeout, revision=REVISION)
    step = PlannedStep(name, collector, collector.params(**PARAMS.get(name, {})), timeout)
    return await run_step(step, ctx, max_bytes=1024 * 1024)


def settings() -> Settings:
    return Settings(kube_mode="off", namespaces=[NS])


async def backends_for(name: str, url: str, selection: float = 2.0) -> Backends:
    """Backends with only ``name``'s client, pointed at ``url``."""
    fam = family(name)
    b = Backends(settings=settings().diagnosed)
    if fam == "k8s":
        b.kube = await KubeClient.from_configuration(Configuration(host=url), retry=FAST)
    elif fam == "mongo":
        b.mongo = MongoBackend(
            url.replace("http://", "mongodb://") + "/?directConnection=true",
            server_selection_timeout=selection,
        )
    elif fam == "redis":
        b.redis = RedisBackend(url.replace("http://", "redis://") + "/0")
    elif fam == "loki":
        b.loki = LokiBackend(url)
    else:
        b.prometheus = PrometheusBackend(url)
    return b


# ---------------------------------------------------------------- misbehaving backends

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@contextlib.asynccontextmanager
async def tcp_server(handler: Handler) -> AsyncIterator[str]:
    """A TCP listener on 127.0.0.1 (a free port); yields ``http://127.0.0.1:PORT``."""
    tasks: set[asyncio.Task[None]] = set()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        tasks.add(task)
        try:
            await handler(reader, writer)
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()
            tasks.discard(task)

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()
        for task in list(tasks):
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()


async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while await reader.read(65536):  # accepts, reads, never answers
        pass
    await asyncio.Event().wait()


async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.close()


def answering(data: bytes) -> Handler:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(65536)
        writer.write(data)
        await writer.drain()

    return answer


def http(status: str, body: str, content_type: str = "application/json") -> bytes:
    raw = body.encode()
    head = (
        f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(raw)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + raw


def broken_backends(name: str) -> dict[str, Handler]:
    """The ways ``name``'s backend answers wrong, by mode."""
    modes: dict[str, Handler] = {"closes-the-connection": hang_up}
    if family(name) in HTTP_FAMILIES:
        leak = f"upstream mongodb://app:{SECRET}@db:27017 said password={SECRET}"
        modes["http-500"] = answering(http("500 Internal Server Error", leak, "text/plain"))
        modes["http-garbage"] = answering(http("200 OK", "{this is not json" + leak))
        modes["http-wrong-shape"] = answering(http("200 OK", json.dumps({"unexpected": [leak]})))
    else:
        modes["garbage-bytes"] = answering(b"\x00\xffgarbage\r\n-ERR what\r\n" + SECRET.encode() * 8)
    return modes


ERROR_CASES = [(name, mode) for name in sorted(COLLECTORS) for mode in broken_backends(name)]


# ---------------------------------------------------------------- the contract


@pytest.mark.parametrize("name", sorted(COLLECTORS))
async def test_not_configured_without_its_client(name: str) -> None:
    ev = await run(name, Backends(settings=settings().diagnosed), 5.0)
    assert ev.status == StepStatus.NOT_CONFIGURED, (ev.status, ev.error)
    assert ev.error and ev.data is None


@pytest.mark.parametrize("name", sorted(COLLECTORS))
async def test_a_backend_that_never_answers_is_a_timeout_within_the_step_timeout(name: str) -> None:
    async with tcp_server(silent) as url:
        backends = await backends_for(name, url)
        try:
            started = time.monotonic()
            ev = await run(name, backends, SILENT_TIMEOUT)
            took = time.monotonic() - started
        finally:
            await backends.close()
    assert ev.status == StepStatus.TIMEOUT, (ev.status, ev.error)
    assert ev.error and took < SILENT_TIMEOUT + MARGIN


@pytest.mark.parametrize(("name", "mode"), ERROR_CASES)
async def test_a_backend_answering_wrong_is_an_error_with_a_message(name: str, mode: str) -> None:
    async with tcp_server(broken_backends(name)[mode]) as url:
        # a server that answers but is no MongoDB is never selected: give up in 0.3 s, not 2 s
        backends = await backends_for(name, url, selection=0.3)
        try:
            ev = await run(name, backends, 15.0)
        finally:
            await backends.close()
    assert ev.status == StepStatus.ERROR, (ev.status, ev.error, ev.data)
    assert ev.error and ev.error.strip()
    assert not ev.error.startswith(PYTHON_BUGS), ev.error  # a bad answer, not a collector bug
    assert SECRET not in ev.model_dump_json()


# ---------------------------------------------------------------- planted secrets


@contextlib.asynccontextmanager
async def planted(
    name: str, redis_factory: RedisServerFactory, prometheus_factory: PrometheusFactory
) -> AsyncIterator[tuple[Backends, list[str]]]:
    """A backend for ``name`` whose answers carry secrets; yields the backends and the pods the
    alerts name."""
    fam = family(name)
    b = Backends(settings=settings().diagnosed)
    pods: list[str] = []
    async with contextlib.AsyncExitStack() as stack:
        if fam == "k8s":
            fake = await stack.enter_async_context(FakeKubeApiserver(token="t0k3n"))
            pods = plant_kube(fake)
            b.kube = await KubeClient.from_configuration(fake.client_configuration(), retry=FAST)
        elif fam == "mongo":
            mongo = await stack.enter_async_context(FakeMongoServer())
            plant_mongo(mongo)
            b.mongo = MongoBackend(mongo.url)
        elif fam == "redis":
            b.redis = RedisBackend(await plant_redis(await redis_factory()))
        elif fam == "loki":
            loki = await stack.enter_async_context(FakeLoki())
            plant_loki(loki)
            b.loki = LokiBackend(loki.url.replace("http://", f"http://medic:{SECRET}@"))
        else:
            series: list[Series] = [
                gauge_series(
                    "planted_info",
                    {"namespace": NS, "dsn": f"postgres://app:{SECRET}@db:5432/app"},
                    Timeline.recent(minutes=40),
                    lambda _: 1.0,
                )
            ]
            b.prometheus = PrometheusBackend((await prometheus_factory(series)).url)
        try:
            yield b, pods
        finally:
            await b.close()


def plant_kube(fake: FakeKubeApiserver) -> list[str]:
    rollout = crashloop(fake)  # secrets in the pod spec's env
    fake.set_configmap_data(NS, APP_CONFIG, {"DB_PASSWORD": SECRET})  # k8s.rollout_history reads its metadata
    for pod in rollout.crashing:
        fake.set_log(NS, pod, APP, f"connecting to mongodb://app:{SECRET}@mongodb-0:27017\n", previous=True)
    dsn = f"postgres://app:{SECRET}@db:5432/app"
    fake.patch_object("Deployment", NS, APP, {"metadata": {"annotations": {"example.com/dsn": dsn}}})
    fake.add_event(fake.get_object("Deployment", NS, APP), "Failed", f"cannot reach {dsn}")
    fake.add_hpa(NS, APP, APP)
    fake.add_pvc(NS, f"data-{APP}")
    fake.add_object(
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "Ingress",
            "metadata": {
                "name": APP,
                "namespace": NS,
                "annotations": {"example.com/auth": f"password={SECRET}"},
            },
            "spec": {
                "rules": [
                    {
                        "host": "playcode.example",
                        "http": {
                            "paths": [
                                {
                                    "path": "/",
                                    "pathType": "Prefix",
                                    "backend": {"service": {"name": APP, "port": {"number": 3000}}},
                                }
                            ]
                        },
                    }
                ]
            },
        }
    )
    plant_backup_and_certificate(fake)
    return rollout.crashing


def plant_backup_and_certificate(fake: FakeKubeApiserver) -> None:
    """The backup CronJob with a failed run whose log names a DSN with a password, and a
    certificate whose ACME challenge failed (runbook 5.1 and 6.3)."""
    from tests.fakes.kube_certmanager import CertManager
    from tests.fakes.kube_cronjobs import CronJobs, cronjob

    fake.add_object(cronjob(NS, "mongodb-backup", image="backup:planted", container="mongodb-backup"))
    fake.set_image_fault("backup:planted", "CrashLoopBackOff")
    fake.set_image_log("backup:planted", f"mongodump --uri mongodb://backup:{SECRET}@mongodb-0:27017\n")
    CronJobs(fake).run(NS, "mongodb-backup")
    cm = CertManager.installed(fake)
    cm.add_issuer(None, "letsencrypt")
    cm.add_certificate(NS, "playcode-tls", dns_names=("playcode.example",))
    cm.fail_acme(NS, "playcode-tls")
    cm.trigger(NS, "playcode-tls")


@pytest.fixture
async def planted_evidence(
    request: pytest.FixtureRequest,
    redis_server_factory: RedisServerFactory,
    prometheus_factory: PrometheusFactory,
) -> Evidence:
    name: str = request.param
    async with planted(name, redis_server_factory, prometheus_factory) as (backends, pods):
        return await run(name, backends, 10.0, pods)


def leaks(ev: Evidence) -> list[str]:
    text = ev.model_dump_json()
    return [s for s in PLANTED if s in text]


# The collectors whose output carries a planted secret (scrubbed): the others report nothing the
# plant reaches (counts, names, metrics), so for them only the absence is checked.
SCRUBBED = {
    "k8s.cronjob_runs",
    "k8s.events",
    "k8s.pod_describe",
    "k8s.pod_logs",
    "k8s.rollout_history",
    "loki.query",
    "mongo.current_op",
    "mongo.profiler",
    "mongo.rs_status",
    "prometheus.query",
    "redis.slowlog",
}


@pytest.mark.parametrize("planted_evidence", sorted(COLLECTORS), indirect=True)
async def test_output_is_redacted_and_plain_json(planted_evidence: Evidence) -> None:
    ev = planted_evidence
    assert ev.status == StepStatus.OK, (ev.collector, ev.status, ev.error)
    assert ev.data is not None and not ev.truncated
    assert leaks(ev) == []
    assert (REDACTED in ev.model_dump_json()) == (ev.collector in SCRUBBED)
    assert json.loads(json.dumps(ev.data)) == ev.data  # plain JSON: no datetimes, tuples, bytes


def test_every_collector_declares_its_output_model() -> None:
    """Issue 16.3: the analyzers read a collector's data through its model, so a collector
    without one is not shipped."""
    assert [name for name, c in sorted(COLLECTORS.items()) if c.output is None] == []


def test_the_declared_params_and_output_models_are_the_ones_fn_reads_and_returns() -> None:
    """``CollectorDef.params`` is what the loader validates a playbook step's params with, and
    ``CollectorDef.output`` what the analyzers read the stored data with: ``fn`` must read exactly
    that params model and return exactly that output model (mypy checks it where each collector
    is declared; this checks the catalogue as shipped)."""
    for name, definition in sorted(COLLECTORS.items()):
        hints = typing.get_type_hints(definition.fn)
        ctx_name, params_name = list(inspect.signature(definition.fn).parameters)
        assert hints[ctx_name] is StepContext, (name, hints[ctx_name])
        assert hints[params_name] is definition.params, (name, hints[params_name], definition.params)
        assert hints["return"] is definition.output, (name, hints["return"], definition.output)


@pytest.mark.parametrize("planted_evidence", sorted(COLLECTORS), indirect=True)
async def test_output_matches_its_declared_model(planted_evidence: Evidence) -> None:
    model = COLLECTORS[planted_evidence.collector].output
    assert model is not None, f"{planted_evidence.collector} declares no output model"
    assert planted_evidence.status == StepStatus.OK, planted_evidence.error
    parsed = model.model_validate(planted_evidence.data)
    assert set(planted_evidence.data) == set(model.model_fields)  # every key declared, none extra
    assert json.loads(parsed.model_dump_json()) == json.loads(json.dumps(planted_evidence.data))


async def test_the_kubernetes_collectors_need_only_what_the_default_chart_grants() -> None:
    """Every request of every ``k8s.*`` collector is allowed by the read-only Role and the nodes
    ClusterRole of a default install (``helm install`` without values): no write, nothing more."""
    from tests.contract.test_action_contract import permission_of
    from tests.integration.helm_chart import permissions, render

    chart = render({"namespaces": [NS]})
    granted = set().union(*(permissions(role) for role in chart.rbac_roles()))
    names = sorted(n for n in COLLECTORS if family(n) == "k8s")
    async with FakeKubeApiserver(token="t0k3n") as fake:
        pods = plant_kube(fake)
        kube = await KubeClient.from_configuration(fake.client_configuration(), retry=FAST)
        backends = Backends(settings=settings().diagnosed, kube=kube)
        fake.clear_requests()
        try:
            for name in names:
                assert (await run(name, backends, 10.0, pods)).status == StepStatus.OK, name
        finally:
            await backends.close()
        used = {p for r in fake.requests if (p := permission_of(r)) is not None}
    assert {verb for _, _, verb in used} <= {"get", "list"}
    assert used <= granted, used - granted
