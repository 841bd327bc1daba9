"""Assembly: settings → stores, backends, pipeline, workers → the aiohttp application."""

from __future__ import annotations

import asyncio
import enum
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import structlog
from aiohttp import web

from medic import __version__
from medic.app.approvals import ApprovalService
from medic.app.backend_select import EmbeddedBackend, ProductionBackend, StateBackend, open_backend
from medic.app.backends import Backends
from medic.app.catalogue import default_registry
from medic.app.config import Config, load_config
from medic.app.http.admin import AdminApi
from medic.app.http.api import ReadApi
from medic.app.http.approval_api import ApprovalApi
from medic.app.http.dead_letters import DeadLetterApi
from medic.app.http.verifications import VerificationApi
from medic.app.http.web.access import ReadAccess
from medic.app.http.web.pages import Pages
from medic.app.pipeline import Pipeline
from medic.app.settings import Settings, ensure_data_dir
from medic.app.verification import Verifications
from medic.app.worker import Worker
from medic.app.worker_process import DiagnosisProcess, inbox_socket, merged_metrics
from medic.clients.kube.watch import DeploymentWatch
from medic.collectors.k8s.resolver import KubeTargetResolver
from medic.coordination.base import RemediationState
from medic.coordination.marks import Marks
from medic.domain.incident import utcnow
from medic.inbox.base import Inbox
from medic.incidents.base import IncidentStore
from medic.incidents.journal import IncidentJournal
from medic.incidents.report.links import LinkSettings
from medic.intake.auth import Credentials
from medic.intake.handlers import Wakeable, WebhookIntake
from medic.intake.heap import settle_heap_on_start
from medic.intake.http_errors import edge_middleware, handler_args
from medic.notify.config import check_routes
from medic.notify.dispatcher import NotifyDispatcher, build_notifiers
from medic.playbooks.contract import Registry
from medic.remediation.executor import GuardedRemediator
from medic.remediation.reconcile import reconcile_at_start
from medic.rules.targets import LabelTargetResolver, TargetResolver
from medic.telemetry.metrics import Metrics

log = structlog.get_logger("medic.app.runtime")


class Role(enum.Enum):
    """What a Medic process does (see :mod:`medic.app.worker_process`)."""

    ALL = "all"  # intake and diagnosis in one process
    INTAKE = "intake"  # HTTP and upkeep; diagnosis runs in a child process
    DIAGNOSIS = "diagnosis"  # the child: claims deliveries and runs the pipeline


@dataclass
class Runtime:
    """Everything one Medic process holds; closed in reverse order of creation."""

    settings: Settings
    registry: Registry
    config: Config
    backend: StateBackend  # Medic's own state: embedded SQLite, or Redis + MongoDB
    inbox: Inbox
    store: IncidentStore
    state: RemediationState
    backends: Backends
    metrics: Metrics
    pipeline: Pipeline
    worker: Worker
    wake: asyncio.Event
    dispatcher: NotifyDispatcher
    approvals: ApprovalService
    verifications: Verifications
    role: Role = Role.ALL
    diagnosis: DiagnosisProcess | None = None  # the INTAKE role's child

    @classmethod
    async def open(
        cls, settings: Settings, registry: Registry | None = None, *, role: Role = Role.ALL
    ) -> Runtime:
        """Assemble a Medic in stages, each handing the next what it needs: configuration, Medic's
        own state and the clients, the pipeline, notifications and approvals, the workers."""
        registry = registry or default_registry()
        config = _load_config(settings, registry)
        backend, backends, approval = await _open_state(settings, role)
        metrics = Metrics()
        metrics.set_mode(settings.remediation.mode)
        remediator = GuardedRemediator(
            settings=settings.remediation, state=backend.state, store=backend.store, kube=backends.kube
        )
        pipeline = Pipeline(
            settings=settings.pipeline,
            config=config,
            registry=registry,
            store=backend.store,
            backends=backends,
            resolver=_resolver(backends),
            metrics=metrics,
            remediator=remediator,
            locker=backend.locker,
        )
        journal = IncidentJournal(backend.store, pipeline.lock_for)
        await reconcile_at_start(backend.state, backend.store, journal, utcnow())  # the ledger is the truth
        dispatcher = _dispatcher(settings, config, backend, journal, metrics)
        approvals = _approvals(settings, config, journal, approval, remediator, metrics, dispatcher)
        pipeline.notifier = dispatcher
        verifications = Verifications.attach(pipeline)
        wake = asyncio.Event()
        worker = Worker(
            backend.inbox,
            pipeline,
            metrics,
            concurrency=settings.process.workers,
            wake=wake,
            poll_seconds=backend.poll_seconds,
        )
        return cls(
            settings=settings,
            registry=registry,
            config=config,
            backend=backend,
            inbox=backend.inbox,
            store=backend.store,
            state=backend.state,
            backends=backends,
            metrics=metrics,
            pipeline=pipeline,
            worker=worker,
            wake=wake,
            dispatcher=dispatcher,
            approvals=approvals,
            verifications=verifications,
            role=role,
            diagnosis=_diagnosis_process(settings, backend, role, metrics),
        )

    def __post_init__(self) -> None:
        if self.diagnosis is not None:  # a verification begun here wakes the verifier
            self.verifications.poke = self.diagnosis.verifier_waker.set

    async def readiness(self) -> tuple[str, dict[str, str]]:
        """The backend's readiness, and the diagnosis process's: while it is down (it is being
        started again) deliveries are still accepted, so Medic is degraded, not unready."""
        status, checks = await self.backend.readiness()
        if self.diagnosis is not None:
            checks["diagnosis"] = "ok" if self.diagnosis.alive else "restarting"
            if not self.diagnosis.alive and status == "ready":
                status = "degraded"
        return status, checks

    @property
    def accepted(self) -> Wakeable:
        """What the intake pokes when it accepted a delivery: the workers, here or in the child."""
        return self.diagnosis.waker if self.diagnosis is not None else self.wake

    async def start(self) -> None:
        """Start the work that runs beside the HTTP server: the workers (here, or in the
        diagnosis process) and the backend's upkeep."""
        if self.diagnosis is not None:
            await self.diagnosis.start()
        else:
            self.start_diagnosis()
        self.backend.start()

    def start_diagnosis(self) -> None:
        """The diagnosing side's work: the workers, the deploy verifier and its Deployment watch
        (MEDIC_VERIFY_DEPLOYS: on by default when Kubernetes is configured)."""
        self.worker.start()
        self.verifications.start()
        kube = self.backends.kube
        verification = self.settings.verification
        if kube is not None and verification.verify_deploys != "off":
            self.verifications.watch(
                DeploymentWatch(kube, verification.namespaces, self.verifications.on_new_revision)
            )

    async def close(self) -> None:
        """Graceful shutdown (intake already stopped): finish in-flight work or hand it back to
        the other replicas, deliver pending notifications, close every client."""
        grace = self.settings.process.shutdown_grace_seconds
        if self.diagnosis is not None:
            await self.diagnosis.stop(grace=grace)
        await self.verifications.stop(grace=grace)
        await self.worker.stop(grace=grace)
        await self.dispatcher.close()
        await self.backend.close()
        await self.backends.close()


# ---------------------------------------------------------------- the stages of Runtime.open
def _load_config(settings: Settings, registry: Registry) -> Config:
    """Rules and playbooks loaded and cross-checked, notification routes checked, the data dir
    writable: every configuration error before anything is opened."""
    config = load_config([settings.rules.rules_dir], [settings.rules.playbooks_dir], registry)
    check_routes({r.name: r.notify for r in config.rules}, settings.notify.notifiers)
    ensure_data_dir(settings.inbox.data_dir)  # a path Medic cannot write is a config error, not a traceback
    return config


@dataclass(frozen=True)
class _ApprovalState:
    marks: Marks  # the once-only decisions
    secret: bytes  # signs the approval links


async def _open_state(settings: Settings, role: Role) -> tuple[StateBackend, Backends, _ApprovalState]:
    """Medic's own state (inbox, store, coordination), the clients of the diagnosed systems and
    the approval secret; what was opened is closed again when a later part fails."""
    backend = await open_backend(
        settings,
        shared=role is not Role.ALL,
        inbox_socket=inbox_socket(settings.inbox.data_dir) if role is Role.DIAGNOSIS else None,
    )
    backends: Backends | None = None
    try:
        approval_marks = backend.marks("approval:")
        approval_secret = await ApprovalService.load_secret(settings.tokens.approval_secret, approval_marks)
        backends = await Backends.from_settings(settings.diagnosed)
    except BaseException:
        if backends is not None:
            await backends.close()
        await backend.close()
        raise
    return backend, backends, _ApprovalState(approval_marks, approval_secret)


def _resolver(backends: Backends) -> TargetResolver:
    """Targets from the API server when Kubernetes is configured, else from the labels alone."""
    if backends.kube is not None:
        return KubeTargetResolver(backends.kube, backends.namespaces)
    return LabelTargetResolver()


def _dispatcher(
    settings: Settings, config: Config, backend: StateBackend, journal: IncidentJournal, metrics: Metrics
) -> NotifyDispatcher:
    notify = settings.notify
    dispatcher = NotifyDispatcher(
        notifiers=build_notifiers(notify.notifiers, settings.tokens.notifiers),
        rule_notify={r.name: r.notify for r in config.rules},
        marks=backend.marks("notify:"),
        journal=journal,
        metrics=metrics,
        public_url=notify.public_url,
        link_settings=LinkSettings.from_settings(settings.links),
    )
    if dispatcher.enabled and not notify.public_url:
        log.warning("notifications carry no links: set MEDIC_PUBLIC_URL to Medic's external URL")
    return dispatcher


def _approvals(
    settings: Settings,
    config: Config,
    journal: IncidentJournal,
    approval: _ApprovalState,
    remediator: GuardedRemediator,
    metrics: Metrics,
    dispatcher: NotifyDispatcher,
) -> ApprovalService:
    """The approval service; the notifications it sends carry its approval links."""
    approvals = ApprovalService(
        secret=approval.secret,
        ttl_seconds=settings.notify.approval_ttl_seconds,
        config=config,
        journal=journal,
        store=journal.store,
        marks=approval.marks,
        remediator=remediator,
        metrics=metrics,
        notifier=dispatcher,
        public_url=settings.notify.public_url,
    )
    dispatcher.approval_link = approvals.link
    return approvals


def _diagnosis_process(
    settings: Settings, backend: StateBackend, role: Role, metrics: Metrics
) -> DiagnosisProcess | None:
    """The INTAKE role's child process (embedded backend with a local inbox only)."""
    if role is Role.INTAKE and isinstance(backend, EmbeddedBackend) and backend.local_inbox:
        return DiagnosisProcess(
            settings.inbox.data_dir, backend.local_inbox, recover_dead=backend.recover, metrics=metrics
        )
    return None


def build_app(runtime: Runtime) -> web.Application:
    """The HTTP application: the webhook, the read API and pages, approvals, admin, dead letters."""
    s = runtime.settings
    http = s.http
    app = web.Application(
        middlewares=[edge_middleware(body_read_timeout=http.body_read_timeout.total_seconds())],
        client_max_size=http.max_body_bytes,
        handler_args=handler_args(
            keepalive_timeout=http.keepalive_timeout.total_seconds(),
            body_read_timeout=http.body_read_timeout.total_seconds(),
        ),
    )
    admin_token = s.tokens.admin_token
    links = LinkSettings.from_settings(s.links)
    api = ReadApi(runtime.store, runtime.inbox, runtime.metrics, readiness=runtime.readiness, links=links)
    pages = _pages(runtime, links, admin_token)
    app.router.add_post("/api/v1/alerts", _intake(runtime).handle)
    verify_api = VerificationApi(runtime.verifications, _webhook_credentials(s), http.public_url)
    app.router.add_post("/api/v1/verifications", verify_api.create)
    app.router.add_get("/healthz", api.healthz)
    app.router.add_get("/readyz", api.readyz)
    app.router.add_get("/metrics", _scrape(runtime, api))
    app.router.add_get("/api/v1/incidents", pages.guard_api(api.list_incidents))
    app.router.add_get("/api/v1/incidents/{id}", pages.guard_api(api.get_incident))
    app.router.add_get("/api/v1/incidents/{id}/alerts", pages.guard_api(api.list_alerts))
    approval_api = ApprovalApi(runtime.approvals, admin_token)
    app.router.add_post("/api/v1/incidents/{id}/approve", approval_api.approve)
    app.router.add_post("/api/v1/incidents/{id}/reject", approval_api.reject)
    app.router.add_get("/", pages.index)
    app.router.add_get("/incidents", pages.list_page)
    app.router.add_get("/incidents/{id}", pages.detail_page)
    app.router.add_get("/incidents/{id}/approve", pages.approve_page)
    app.router.add_post("/incidents/{id}/approve", pages.approve_post)
    app.router.add_post("/incidents/{id}/reject", pages.reject_post)
    admin = AdminApi(runtime.state, runtime.store, admin_token)
    app.router.add_get("/api/v1/admin/kill-switch", admin.get_kill_switch)
    app.router.add_put("/api/v1/admin/kill-switch", admin.put_kill_switch)
    app.router.add_get("/api/v1/admin/audit", admin.audit)
    dead = DeadLetterApi(runtime.inbox, runtime.metrics, admin_token)
    app.router.add_get("/api/v1/dead-letters", pages.guard_api(dead.list))
    app.router.add_post("/api/v1/dead-letters/{id}/retry", dead.retry)
    app.router.add_delete("/api/v1/dead-letters/{id}", dead.drop)
    return app


def _webhook_credentials(s: Settings) -> Credentials:
    """The webhook's credentials (Alertmanager's, and a CI pipeline's for verifications)."""
    tokens = s.tokens
    return Credentials(
        token=tokens.webhook_token, username=tokens.webhook_username, password=tokens.webhook_password
    )


def _intake(runtime: Runtime) -> WebhookIntake:
    s = runtime.settings
    credentials = _webhook_credentials(s)
    return WebhookIntake(runtime.inbox, runtime.metrics, credentials, s.http.max_body_bytes, runtime.accepted)


def _pages(runtime: Runtime, links: LinkSettings, admin_token: str | None) -> Pages:
    s = runtime.settings
    return Pages(
        store=runtime.store,
        access=ReadAccess(s.tokens.read_token, s.http.auth_proxy_header, admin_token),
        approvals=runtime.approvals,
        namespaces=runtime.backends.namespaces,
        rules=[r.name for r in runtime.config.rules],
        secure_cookies=s.http.public_url.startswith("https://"),
        links=links,
    )


async def create_app(settings: Settings, registry: Registry | None = None) -> web.Application:
    """The served application: opens the runtime on start-up, closes it on shutdown. With the
    embedded backend diagnosis runs in a child process unless MEDIC_DIAGNOSIS_PROCESS=false."""
    role = Role.INTAKE if settings.inbox.embedded and settings.process.diagnosis_process else Role.ALL
    runtime = await Runtime.open(settings, registry, role=role)
    app = build_app(runtime)
    app["runtime"] = runtime

    async def lifecycle(_: web.Application) -> AsyncIterator[None]:
        await runtime.start()
        log.info("medic started", **start_fields(runtime))
        yield
        log.info("medic stopping", grace_seconds=settings.process.shutdown_grace_seconds)
        started = time.monotonic()
        await runtime.close()
        log.info("medic stopped", seconds=round(time.monotonic() - started, 2))

    app.cleanup_ctx.append(lifecycle)
    app.on_startup.append(settle_heap_on_start)  # once started: the GC stops the acknowledgement less
    return app


def start_fields(runtime: Runtime) -> dict[str, object]:
    """What the start line says: which Medic, where it listens, how far it may act, on what."""
    s = runtime.settings
    clients = runtime.backends
    diagnosed = {
        "kubernetes": clients.kube is not None,
        "prometheus": clients.prometheus is not None,
        "loki": clients.loki is not None,
        "mongodb": clients.mongo is not None,
        "redis": clients.redis is not None,
    }
    return {
        "version": __version__,
        "listen": f"{s.http.host}:{s.http.port}",
        "mode": s.remediation.mode,
        "backend": runtime.backend.kind,
        "data_dir": str(s.inbox.data_dir),
        "diagnoses": [name for name, on in diagnosed.items() if on],
        "notifiers": sorted(s.notify.notifiers),
        "rules": len(runtime.config.rules),
        "playbooks": len(runtime.config.playbooks),
    }


def _scrape(runtime: Runtime, api: ReadApi) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """``/metrics``: the gauges read from Medic's state are refreshed, then the registry served."""

    async def kill_switch() -> bool:
        return (await runtime.state.kill_switch()).enabled

    backend = runtime.backend
    spool = backend.spool.counts if isinstance(backend, ProductionBackend) else None

    async def handler(request: web.Request) -> web.StreamResponse:
        await runtime.metrics.refresh_state(
            kill_switch=kill_switch, readiness=backend.readiness, spool_counts=spool
        )
        response = await api.metrics_endpoint(request)
        if runtime.diagnosis is not None and isinstance(response, web.Response) and response.body:
            response.body = await merged_metrics(bytes(response.body), runtime.diagnosis)  # type: ignore[arg-type]
        return response

    return handler
