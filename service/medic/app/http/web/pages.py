"""Page handlers: incident list and detail, approval confirmation, approve/reject (POST only).

Every page renders a redacted copy of the incident; HTML refusals carry the HTTP status that says
why (401 no access, 403 bad token, 404, 409 already decided, 410 expired), never an action.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from medic.app.approvals import ApprovalRefused, ApprovalService, Decision
from medic.app.http.web.access import COOKIE, COOKIE_MAX_AGE, ReadAccess, Viewer
from medic.app.http.web.render import render
from medic.app.http.web.views import (
    awaiting,
    evidence_view,
    finding_views,
    page_query,
    pretty,
    safe_url,
    verification_view,
)
from medic.domain.errors import InputError
from medic.domain.incident import ActionRecord, ActionStatus, Incident
from medic.domain.redact import redact_async
from medic.incidents.base import IncidentQuery, IncidentStore
from medic.incidents.report.links import LinkSettings
from medic.incidents.report.oncall import oncall
from medic.incidents.views import incident_view
from medic.intake.http_errors import form_body, query_int
from medic.intake.problem import problem

PAGE_SIZE = 25
MAX_PAGE = 10**9 // PAGE_SIZE  # the read API's largest offset
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def html(template: str, status: int = 200, **context: Any) -> web.Response:
    body, headers = render(template, **context)
    return web.Response(text=body, status=status, content_type="text/html", charset="utf-8", headers=headers)


def message(status: int, title: str, detail: str, *, tone: str = "bad", **context: Any) -> web.Response:
    context.setdefault("record", None)
    context.setdefault("incident_id", "")
    context.setdefault("login", False)
    return html("message.html", status, title=title, detail=detail, tone=tone, **context)


def refused(exc: ApprovalRefused, incident_id: str) -> web.Response:
    return message(exc.status, exc.title, exc.detail, incident_id=incident_id)


async def shown_without_evidence(incidents: list[Incident]) -> list[Incident]:
    """Redacted copies for the pages that show no evidence (the list, the approval form): leaving
    it out keeps a page view from redacting megabytes it does not show (off the loop when large)."""
    docs = [i.model_dump(mode="json", exclude={"evidence"}) for i in incidents]
    return [Incident.model_validate(doc) for doc in await redact_async(docs)]


class Pages:
    def __init__(
        self,
        *,
        store: IncidentStore,
        access: ReadAccess,
        approvals: ApprovalService | None,
        namespaces: Sequence[str],
        rules: Sequence[str],
        secure_cookies: bool = False,
        links: LinkSettings | None = None,
    ) -> None:
        self.store = store
        self.access = access
        self.approvals = approvals
        self.namespaces = list(namespaces)
        self.rules = list(rules)
        self.secure_cookies = secure_cookies
        self.links = links  # base URLs of the Prometheus/Grafana/Alertmanager links

    # ------------------------------------------------------------------ access
    def _viewer(self, request: web.Request) -> Viewer | web.Response:
        query_token = request.query.get("token")
        viewer = self.access.check(request.headers, request.cookies, query_token)
        if viewer is None:
            return message(
                401,
                "Sign in to read incidents",
                "This Medic requires a read token or a sign-in through its auth proxy.",
                login=True,
            )
        if viewer.via == "query":  # set the cookie, and drop the token from the address bar
            rest = request.rel_url.query.copy()
            rest.popall("token", None)
            clean = request.rel_url.with_query(rest)
            resp = web.Response(status=303, headers={"Location": str(clean), "Cache-Control": "no-store"})
            resp.set_cookie(
                COOKIE,
                self.access.cookie_value,
                max_age=COOKIE_MAX_AGE,
                httponly=True,
                samesite="Lax",
                secure=self.secure_cookies or request.secure,
                path="/",
            )
            return resp
        return viewer

    def guard_api(self, handler: Handler) -> Handler:
        """The read API under the same access rule as the pages (problem+json when denied)."""

        async def guarded(request: web.Request) -> web.StreamResponse:
            if self.access.check(request.headers, request.cookies) is None:
                return problem(
                    401,
                    "Unauthorized",
                    "incident data needs the read token (Authorization: Bearer) or the auth proxy",
                    headers={"WWW-Authenticate": 'Bearer realm="medic-read"'},
                )
            return await handler(request)

        return guarded

    # ------------------------------------------------------------------ pages
    async def index(self, request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound("/incidents")

    async def list_page(self, request: web.Request) -> web.StreamResponse:
        viewer = self._viewer(request)
        if isinstance(viewer, web.StreamResponse):
            return viewer
        filters = {k: request.query.get(k, "").strip()[:253] for k in ("status", "namespace", "rule")}
        if filters["status"] not in ("", "open", "resolved"):
            return message(400, "Bad filter", "status must be open or resolved")
        try:
            page = query_int(request, "page", 1, 1, MAX_PAGE)
        except InputError as exc:
            return message(400, "Bad page", exc.detail)
        offset = (page - 1) * PAGE_SIZE
        items, total = await self.store.query(
            IncidentQuery(
                status=filters["status"] or None,
                rule=filters["rule"] or None,
                namespace=filters["namespace"] or None,
                limit=PAGE_SIZE,
                offset=offset,
            )
        )
        namespaces = sorted({*self.namespaces, *([filters["namespace"]] if filters["namespace"] else [])})
        rules = sorted({*self.rules, *([filters["rule"]] if filters["rule"] else [])})
        return html(
            "list.html",
            items=await shown_without_evidence(items),
            total=total,
            offset=offset,
            filters=filters,
            namespaces=namespaces,
            rules=rules,
            prev_query=page_query(filters, page=page - 1) if page > 1 else None,
            next_query=page_query(filters, page=page + 1) if offset + len(items) < total else None,
        )

    async def detail_page(self, request: web.Request) -> web.StreamResponse:
        viewer = self._viewer(request)
        if isinstance(viewer, web.StreamResponse):
            return viewer
        incident_id = request.match_info["id"]
        view = await incident_view(self.store, incident_id)
        if view is None:
            return message(404, "No such incident", f"Medic has no incident {incident_id!r}.", tone="")
        incident = view.incident
        approve_paths: dict[int, str] = {}
        if self.approvals is not None and self.access.required:
            approve_paths = {i: self.approvals.path(incident, i) for i in awaiting(incident)}
        shown = await view.redacted_async()
        inc = shown.incident
        decisions = [t.message for t in inc.timeline if t.kind == "decision"]
        return html(
            "detail.html",
            inc=inc,
            alerts=shown.alerts,
            more_alerts=shown.more_alerts,
            findings=finding_views(inc),
            evidence=[evidence_view(e) for e in inc.evidence],
            awaiting=awaiting(inc),
            approve_paths=approve_paths,
            decision=decisions[-1] if decisions else "",
            pretty=pretty,
            safe_url=safe_url,
            oncall=oncall(shown, self.links, datetime.now(UTC)),
            verification=verification_view(inc.verification),
        )

    # ------------------------------------------------------------------ approvals
    async def approve_page(self, request: web.Request) -> web.StreamResponse:
        viewer = self._viewer(request)
        if isinstance(viewer, web.StreamResponse):
            return viewer
        incident_id = request.match_info["id"]
        if self.approvals is None:
            return message(404, "Approvals are not available", "this Medic has no approval service")
        token = request.query.get("approval", "")
        try:
            pending = await self.approvals.pending(incident_id, token)
        except ApprovalRefused as exc:
            return refused(exc, incident_id)
        (shown,) = await shown_without_evidence([pending.incident])
        return html(
            "approve.html",
            inc=shown,
            record=shown.actions[pending.index],
            token=token,
            expires=datetime.fromtimestamp(pending.claims.expires, UTC),
            identity=viewer.identity,
        )

    async def approve_post(self, request: web.Request) -> web.StreamResponse:
        return await self._decide(request, "approved")

    async def reject_post(self, request: web.Request) -> web.StreamResponse:
        return await self._decide(request, "rejected")

    async def _decide(self, request: web.Request, decision: Decision) -> web.StreamResponse:
        viewer = self._viewer(request)
        if isinstance(viewer, web.StreamResponse):
            return viewer
        incident_id = request.match_info["id"]
        if self.approvals is None:
            return message(404, "Approvals are not available", "this Medic has no approval service")
        form = await form_body(request)
        token, by, reason = (form.get(k, "") for k in ("approval", "by", "reason"))
        try:
            outcome = await self.approvals.decide(
                incident_id,
                decision,
                by=viewer.identity or by,
                via="web (auth proxy)" if viewer.identity else "web",
                token=token,
                reason=reason.strip()[:500],
            )
        except ApprovalRefused as exc:
            return refused(exc, incident_id)
        (shown,) = await shown_without_evidence([outcome.incident])
        record = shown.actions[outcome.index]
        good = record.status in (ActionStatus.SUCCEEDED, ActionStatus.PLANNED, ActionStatus.SKIPPED)
        if decision == "rejected":
            title, tone = "Rejected", ""
            detail = (
                f"The proposal is closed: {record.action} will not run. Recorded as rejected by {outcome.by}."
            )
        else:
            title, tone = _approved_title(record), "good" if good else "bad"
            detail = f"Approved by {outcome.by}. Every guard was checked again before acting."
        return message(200, title, detail, tone=tone, record=record, incident_id=incident_id)


def _approved_title(record: ActionRecord) -> str:
    return {
        ActionStatus.SUCCEEDED: f"Approved: {record.action} done",
        ActionStatus.FAILED: f"Approved, but {record.action} failed",
        ActionStatus.REFUSED: f"Approved, but a guard stopped {record.action}",
        ActionStatus.PLANNED: f"Approved: {record.action} planned only (dry-run)",
        ActionStatus.SKIPPED: f"Approved: {record.action} had nothing to do",
    }.get(record.status, f"Approved: {record.action} {record.status.value}")
