"""Assembly: settings → stores, backends, pipeline, workers → the aiohttp application."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import structlog
from aiohttp import web

from medic.admin import AdminApi
from medic.api import ReadApi
from medic.backends import Backends
from medic.config import Config, load_config
from medic.intake.auth import Credentials
from medic.intake.handlers import WebhookIntake
from medic.kube.resolver import KubeTargetResolver
from medic.metrics import Metrics
from medic.pipeline import Pipeline
from medic.playbooks.registry import Registry, default_registry
from medic.problem import problem_middleware
from medic.remediation.executor import GuardedRemediator
from medic.rules.targets import LabelTargetResolver, TargetResolver
from medic.settings import Settings
from medic.sqlitedb import SqliteDB
from medic.state.sqlite import SqliteInbox, SqliteRemediationState
from medic.store.sqlite import SqliteIncidentStore
from medic.worker import Worker

log = structlog.get_logger("medic.app")


@dataclass
class Runtime:
    """Everything one Medic process holds; closed in reverse order of creation."""

    settings: Settings
    registry: Registry
    config: Config
    db: SqliteDB
    inbox: SqliteInbox
    store: SqliteIncidentStore
    state: SqliteRemediationState
    backends: Backends
    metrics: Metrics
    pipeline: Pipeline
    worker: Worker
    wake: asyncio.Event

    @classmethod
    async def open(cls, settings: Settings, registry: Registry | None = None) -> Runtime:
        registry = registry or default_registry()
        config = load_config([settings.rules_dir], [settings.playbooks_dir], registry)
        db = SqliteDB(settings.db_path)
        db.lock_exclusive()
        backends: Backends | None = None
        try:
            await db.open()
            inbox = SqliteInbox(db, dedup_ttl=settings.dedup_ttl_seconds)
            recovered = await inbox.recover()
            if recovered:
                log.warning("re-queued deliveries left unfinished by a previous run", count=recovered)
            store = SqliteIncidentStore(db)
            state = SqliteRemediationState(db)
            backends = await Backends.from_settings(settings)
        except BaseException:
            if backends is not None:
                await backends.close()
            await db.close()
            raise
        resolver: TargetResolver = (
            KubeTargetResolver(backends.kube, settings.namespaces)
            if backends.kube is not None
            else LabelTargetResolver()
        )
        metrics = Metrics()
        remediator = GuardedRemediator(settings=settings, state=state, store=store, kube=backends.kube)
        pipeline = Pipeline(
            settings=settings,
            config=config,
            registry=registry,
            store=store,
            backends=backends,
            resolver=resolver,
            metrics=metrics,
            remediator=remediator,
        )
        wake = asyncio.Event()
        worker = Worker(inbox, pipeline, metrics, concurrency=settings.workers, wake=wake)
        return cls(
            settings, registry, config, db, inbox, store, state, backends, metrics, pipeline, worker, wake
        )

    async def close(self) -> None:
        await self.worker.stop()
        await self.backends.close()
        await self.db.close()


def build_app(runtime: Runtime) -> web.Application:
    s = runtime.settings
    app = web.Application(middlewares=[problem_middleware], client_max_size=s.max_body_bytes + 1)
    intake = WebhookIntake(
        runtime.inbox,
        runtime.metrics,
        Credentials(
            token=s.webhook_token.get_secret_value() if s.webhook_token else None,
            username=s.webhook_username,
            password=s.webhook_password.get_secret_value() if s.webhook_password else None,
        ),
        s.max_body_bytes,
        runtime.wake,
    )
    api = ReadApi(runtime.store, runtime.inbox, runtime.metrics)
    app.router.add_post("/api/v1/alerts", intake.handle)
    app.router.add_get("/healthz", api.healthz)
    app.router.add_get("/readyz", api.readyz)
    app.router.add_get("/metrics", api.metrics_endpoint)
    app.router.add_get("/api/v1/incidents", api.list_incidents)
    app.router.add_get("/api/v1/incidents/{id}", api.get_incident)
    admin = AdminApi(
        runtime.state, runtime.store, s.admin_token.get_secret_value() if s.admin_token else None
    )
    app.router.add_get("/api/v1/admin/kill-switch", admin.get_kill_switch)
    app.router.add_put("/api/v1/admin/kill-switch", admin.put_kill_switch)
    app.router.add_get("/api/v1/admin/audit", admin.audit)
    return app


async def create_app(settings: Settings, registry: Registry | None = None) -> web.Application:
    """The served application: opens the runtime on start-up, closes it on shutdown."""
    runtime = await Runtime.open(settings, registry)
    app = build_app(runtime)
    app["runtime"] = runtime

    async def lifecycle(_: web.Application) -> AsyncIterator[None]:
        runtime.worker.start()
        log.info(
            "medic started",
            mode=settings.mode,
            rules=len(runtime.config.rules),
            playbooks=len(runtime.config.playbooks),
            data=str(settings.db_path),
        )
        yield
        await runtime.close()

    app.cleanup_ctx.append(lifecycle)
    return app
