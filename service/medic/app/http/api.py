"""Read API: health, readiness, metrics, incidents (JSON and Markdown)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from medic.domain.incident import Incident
from medic.domain.redact import redact_async
from medic.inbox.base import Inbox
from medic.incidents.base import IncidentQuery, IncidentStore
from medic.incidents.report.links import LinkSettings
from medic.incidents.report.markdown import render_markdown
from medic.incidents.views import incident_view
from medic.intake.http_errors import query_int
from medic.intake.problem import problem
from medic.telemetry.metrics import Metrics


def incident_summary(inc: Incident) -> dict[str, Any]:
    return {
        "id": inc.id,
        "title": inc.title,
        "status": inc.status,
        "phase": inc.phase.value,
        "severity": inc.severity,
        "rule": inc.rule,
        "playbook": inc.playbook,
        "target": inc.target.model_dump() if inc.target else None,
        "alerts": inc.alerts_total,
        "firing": inc.alerts_firing,
        "top_finding": inc.findings[0].summary if inc.findings else None,
        "actions": [{"action": a.action, "status": a.status.value} for a in inc.actions],
        "created_at": inc.created_at.isoformat(),
        "updated_at": inc.updated_at.isoformat(),
        "resolved_at": inc.resolved_at.isoformat() if inc.resolved_at else None,
    }


Readiness = Callable[[], Awaitable[tuple[str, dict[str, str]]]]


class ReadApi:
    def __init__(
        self,
        store: IncidentStore,
        inbox: Inbox,
        metrics: Metrics,
        *,
        readiness: Readiness,
        links: LinkSettings | None = None,
    ) -> None:
        self.store = store
        self.links = links  # base URLs of the report's Prometheus/Grafana/Alertmanager links
        self.inbox = inbox
        self.metrics = metrics
        self.readiness = readiness

    async def healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(self, request: web.Request) -> web.Response:
        """200 while deliveries can be accepted ("ready", or "degraded": one of Medic's own
        backends is down and a fallback holds), 503 otherwise; a status per backend."""
        status, report = await self.readiness()
        return web.json_response(
            {"status": status, "checks": report}, status=503 if status == "not ready" else 200
        )

    async def metrics_endpoint(self, request: web.Request) -> web.Response:
        try:
            self.metrics.queue_depth.set(await self.inbox.depth())
            self.metrics.dead_letters.set(await self.inbox.dead_letters())
        except Exception:  # metrics must still be served when the store is down
            pass
        resp = web.Response(body=generate_latest(self.metrics.registry))
        resp.content_type = CONTENT_TYPE_LATEST.split(";")[0]
        return resp

    async def list_incidents(self, request: web.Request) -> web.Response:
        status = request.query.get("status")
        if status not in (None, "open", "resolved"):
            return problem(400, "Bad Request", "status must be open or resolved", field="status")
        q = IncidentQuery(
            status=status,
            rule=request.query.get("rule"),
            namespace=request.query.get("namespace"),
            limit=query_int(request, "limit", 50, 1, 500),
            offset=query_int(request, "offset", 0, 0, 10**9),
        )
        items, total = await self.store.query(q)
        return web.json_response(
            {
                "items": await redact_async([incident_summary(i) for i in items]),
                "total": total,
                "limit": q.limit,
                "offset": q.offset,
            }
        )

    async def get_incident(self, request: web.Request) -> web.Response:
        fmt = request.query.get("format", "json")
        if fmt not in ("json", "md", "markdown"):
            return problem(400, "Bad Request", "format must be json or md", field="format")
        view = await incident_view(self.store, request.match_info["id"])
        if view is None:
            return problem(404, "Not Found", f"no incident {request.match_info['id']!r}")
        view = await view.redacted_async()  # what the JSON and the Markdown show
        if fmt != "json":
            return web.Response(text=render_markdown(view, self.links), content_type="text/markdown")
        return web.json_response(view.document())

    async def list_alerts(self, request: web.Request) -> web.Response:
        """A page of an incident's alerts (``status``, ``limit``, ``offset``), first seen first."""
        status = request.query.get("status")
        if status not in (None, "firing", "resolved"):
            return problem(400, "Bad Request", "status must be firing or resolved", field="status")
        limit = query_int(request, "limit", 100, 1, 1000)
        offset = query_int(request, "offset", 0, 0, 10**9)
        incident_id = request.match_info["id"]
        if await self.store.get(incident_id) is None:
            return problem(404, "Not Found", f"no incident {incident_id!r}")
        alerts, total = await self.store.alerts(incident_id, status=status, limit=limit, offset=offset)
        return web.json_response(
            {
                "items": await redact_async([a.model_dump(mode="json") for a in alerts]),
                "total": total,
                "limit": limit,
                "offset": offset,
            }
        )
