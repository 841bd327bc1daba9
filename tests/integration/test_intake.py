"""The webhook intake over HTTP: auth, limits, bad input, dedup, durability, the incidents API."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.medic_app import RunningMedic, medic_settings, running_medic
from tests.payloads import alert, payload

TOKEN = "s3cret-webhook-token"


@pytest.fixture
async def medic(tmp_path: Path) -> Any:
    settings = medic_settings(tmp_path, webhook_token=TOKEN)
    async with running_medic(settings) as m:
        yield m


async def post(
    m: RunningMedic,
    body: Any,
    *,
    token: str | None = TOKEN,
    raw: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, Any], str]:
    hdrs = {"Content-Type": "application/json", **(headers or {})}
    if token:
        hdrs["Authorization"] = f"Bearer {token}"
    data = raw if raw is not None else json.dumps(body).encode()
    async with aiohttp.ClientSession() as s, s.post(f"{m.url}/api/v1/alerts", data=data, headers=hdrs) as r:
        text = await r.text()
        try:
            parsed = json.loads(text)
        except json.JSONDecodeError:
            parsed = {}
        return r.status, parsed, r.headers.get("Content-Type", "")


async def get(m: RunningMedic, path: str) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as s, s.get(f"{m.url}{path}") as r:
        ctype = r.headers.get("Content-Type", "")
        return r.status, (await r.json()) if "json" in ctype else await r.text()


def latency_alert(**kw: Any) -> dict[str, Any]:
    return alert("PlayCodeHighLatency", namespace="playcode", deployment="playcode-app", **kw)


async def test_accepts_and_builds_an_incident(medic: RunningMedic) -> None:
    status, body, _ = await post(medic, payload([latency_alert()]))
    assert status == 200 and body == {"status": "accepted", "alerts": 1, "new": 1, "duplicates": 0}
    await medic.drain()
    status, listing = await get(medic, "/api/v1/incidents")
    assert status == 200 and listing["total"] == 1
    item = listing["items"][0]
    assert item["rule"] == "high-latency" and item["phase"] == "diagnosed"
    assert item["target"]["name"] == "playcode-app"
    status, full = await get(medic, f"/api/v1/incidents/{item['id']}")
    assert full["evidence"][0]["status"] == "not_configured"
    status, md = await get(medic, f"/api/v1/incidents/{item['id']}?format=md")
    assert status == 200 and "# " in md and "high-latency" in md


@pytest.mark.parametrize(
    ("token", "headers", "expected"),
    [
        (None, {}, 401),
        ("wrong-token", {}, 401),
        (None, {"Authorization": "Basic " + base64.b64encode(b"u:p").decode()}, 401),
        (None, {"Authorization": "Bearer"}, 401),
        (TOKEN, {}, 200),
    ],
)
async def test_bearer_auth_is_required(
    medic: RunningMedic, token: str | None, headers: dict[str, str], expected: int
) -> None:
    status, body, ctype = await post(medic, payload([latency_alert()]), token=token, headers=headers)
    assert status == expected
    if expected == 401:
        assert ctype.startswith("application/problem+json") and body["status"] == 401


async def test_basic_auth(tmp_path: Path) -> None:
    settings = medic_settings(tmp_path, webhook_username="am", webhook_password="pw")
    async with running_medic(settings) as m:
        good = {"Authorization": "Basic " + base64.b64encode(b"am:pw").decode()}
        bad = {"Authorization": "Basic " + base64.b64encode(b"am:nope").decode()}
        assert (await post(m, payload([latency_alert()]), token=None, headers=good))[0] == 200
        assert (await post(m, payload([latency_alert()]), token=None, headers=bad))[0] == 401


@pytest.mark.parametrize(
    ("raw", "field", "title"),
    [
        (b"{not json", None, "Malformed JSON"),
        (b"[1, 2]", None, "Invalid webhook payload"),
        (
            json.dumps({**payload([alert("A")]), "version": "3"}).encode(),
            "version",
            "Unsupported webhook version",
        ),
        (
            json.dumps({k: v for k, v in payload([alert("A")]).items() if k != "alerts"}).encode(),
            "alerts",
            None,
        ),
        (json.dumps(payload([{**alert("A"), "startsAt": 42}])).encode(), "alerts.0.startsAt", None),
        (json.dumps(payload([{**alert("A"), "labels": {"a": ["x"]}}])).encode(), "alerts.0.labels.a", None),
        ('{"version": "4", "x": "\udcff"}'.encode("utf-8", "surrogatepass"), None, "Malformed JSON"),
    ],
)
async def test_bad_input_is_a_400_problem_naming_the_field(
    medic: RunningMedic, raw: bytes, field: str | None, title: str | None
) -> None:
    status, body, ctype = await post(medic, None, raw=raw)
    assert status == 400
    assert ctype.startswith("application/problem+json")
    if field:
        assert body["field"] == field
    if title:
        assert body["title"] == title


async def test_wrong_method_type_and_size(medic: RunningMedic) -> None:
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{medic.url}/api/v1/alerts") as r:
            assert r.status == 405
            assert r.headers["Content-Type"].startswith("application/problem+json")
            assert "POST" in r.headers.get("Allow", "")
        hdrs = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "text/plain"}
        async with s.post(f"{medic.url}/api/v1/alerts", data=b"{}", headers=hdrs) as r:
            assert r.status == 415
        big = json.dumps(payload([latency_alert(annotations={"x": "y" * (2 * 1024 * 1024)})])).encode()
        hdrs["Content-Type"] = "application/json"
        async with s.post(f"{medic.url}/api/v1/alerts", data=big, headers=hdrs) as r:
            assert r.status == 413
            assert (await r.json(content_type=None))["title"] == "Payload Too Large"

        async def chunks() -> Any:
            for _ in range(40):
                yield b" " * 65536

        async with s.post(f"{medic.url}/api/v1/alerts", data=chunks(), headers=hdrs) as r:
            assert r.status == 413  # chunked, no Content-Length: still bounded
    assert (await get(medic, "/api/v1/incidents"))[1]["total"] == 0


async def test_redeliveries_are_acknowledged_but_processed_once(medic: RunningMedic) -> None:
    body = payload([latency_alert()])
    results = await asyncio.gather(*(post(medic, body) for _ in range(10)))
    assert all(r[0] == 200 for r in results)
    assert sum(r[1]["new"] for r in results) == 1
    assert sum(r[1]["duplicates"] for r in results) == 9
    await medic.drain()
    listing = (await get(medic, "/api/v1/incidents"))[1]
    assert listing["total"] == 1
    inc = (await get(medic, f"/api/v1/incidents/{listing['items'][0]['id']}"))[1]
    assert len(inc["alerts"]) == 1
    assert sum(1 for t in inc["timeline"] if t["kind"] == "diagnosis") == 1


async def test_resolution_closes_the_incident(medic: RunningMedic) -> None:
    await post(medic, payload([latency_alert()]))
    await medic.drain()
    resolved = latency_alert(status="resolved", endsAt="2026-11-26T08:30:00Z")
    await post(medic, payload([resolved]))
    await medic.drain()
    listing = (await get(medic, "/api/v1/incidents?status=resolved"))[1]
    assert listing["total"] == 1
    assert (await get(medic, "/api/v1/incidents?status=open"))[1]["total"] == 0
    assert listing["items"][0]["resolved_at"] is not None


def pod_name(i: int) -> str:
    """A Deployment pod name as the ReplicaSet controller makes it (its suffix alphabet)."""
    alphabet = "bcdfghjklmnpqrstvwxz2456789"
    suffix = ""
    for _ in range(5):
        i, r = divmod(i, len(alphabet))
        suffix += alphabet[r]
    return f"playcode-app-7d9f8b6c5d-{suffix}"


async def test_thousand_alerts_in_one_payload(medic: RunningMedic) -> None:
    alerts = [alert("KubePodCrashLooping", namespace="playcode", pod=pod_name(i)) for i in range(1000)]
    alerts += [latency_alert()]
    status, body, _ = await post(medic, payload(alerts))
    assert status == 200 and body["new"] == 1001
    await medic.drain()
    listing = (await get(medic, "/api/v1/incidents?limit=500"))[1]
    # 1000 crash-looping pods of one Deployment: one incident (target inferred from the pod names,
    # no Kubernetes access here), one playbook run; the latency alert: another
    assert listing["total"] == 2
    by_rule = {i["rule"]: i for i in listing["items"]}
    assert by_rule["crashloop-rollback"]["alerts"] == 1000
    assert by_rule["crashloop-rollback"]["target"]["name"] == "playcode-app"
    assert by_rule["high-latency"]["alerts"] == 1
    # the bundle carries the first 100 alerts; the rest are paged
    crash_id = by_rule["crashloop-rollback"]["id"]
    status, doc = await get(medic, f"/api/v1/incidents/{crash_id}")
    assert status == 200 and doc["alerts_total"] == 1000 and doc["alerts_firing"] == 1000
    assert [a["labels"]["pod"] for a in doc["alerts"]] == [pod_name(i) for i in range(100)]
    assert doc["labels"] == {"alertname": "KubePodCrashLooping", "namespace": "playcode"}
    status, page = await get(medic, f"/api/v1/incidents/{crash_id}/alerts?limit=400&offset=900")
    assert status == 200 and page["total"] == 1000
    assert [a["labels"]["pod"] for a in page["items"]] == [pod_name(i) for i in range(900, 1000)]
    status, md = await get(medic, f"/api/v1/incidents/{crash_id}?format=md")
    assert "**Alerts**: 1000 firing of 1000" in md
    assert f"… and 900 more: `GET /api/v1/incidents/{crash_id}/alerts`" in md
    # a resolution of half of them: counts and the status filter follow
    resolved = [
        alert("KubePodCrashLooping", namespace="playcode", pod=pod_name(i), status="resolved")
        for i in range(0, 1000, 2)
    ]
    assert (await post(medic, payload(resolved)))[0] == 200
    await medic.drain()
    status, doc = await get(medic, f"/api/v1/incidents/{crash_id}")
    assert (doc["status"], doc["alerts_total"], doc["alerts_firing"]) == ("open", 1000, 500)
    assert [t["message"] for t in doc["timeline"] if t["kind"] == "alerts"][-1] == "500 alert(s) resolved"
    status, page = await get(medic, f"/api/v1/incidents/{crash_id}/alerts?status=resolved&limit=1")
    assert page["total"] == 500 and page["items"][0]["labels"]["pod"] == pod_name(0)


async def test_alert_pages_validate_their_query(medic: RunningMedic) -> None:
    await post(medic, payload([latency_alert()]))
    await medic.drain()
    (item,) = (await get(medic, "/api/v1/incidents"))[1]["items"]
    for query, field in (("status=pending", "status"), ("limit=0", "limit"), ("offset=x", "offset")):
        status, body = await get(medic, f"/api/v1/incidents/{item['id']}/alerts?{query}")
        assert status == 400, query
        assert field in json.dumps(body), (query, body)
    status, body = await get(medic, "/api/v1/incidents/inc-nope/alerts")
    assert status == 404 and body["title"] == "Not Found"


async def test_unmatched_alerts_are_recorded(medic: RunningMedic) -> None:
    await post(medic, payload([alert("SomethingNobodyHandles", namespace="playcode")]))
    await medic.drain()
    (item,) = (await get(medic, "/api/v1/incidents"))[1]["items"]
    assert item["rule"] is None and item["playbook"] is None and item["status"] == "open"


async def test_health_ready_metrics_and_api_errors(medic: RunningMedic) -> None:
    assert (await get(medic, "/healthz"))[0] == 200
    status, ready = await get(medic, "/readyz")
    assert status == 200 and ready["checks"] == {"inbox": "ok", "incident_store": "ok", "writes": "ok"}
    await post(medic, payload([latency_alert()]))
    await post(medic, payload([latency_alert()]))
    await post(medic, None, raw=b"nope")
    await medic.drain()
    status, text = await get(medic, "/metrics")
    assert "medic_alerts_received_total 2.0" in text
    assert "medic_alerts_deduplicated_total 1.0" in text
    assert 'medic_webhooks_rejected_total{reason="json"} 1.0' in text
    assert 'medic_incidents_total{rule="high-latency"} 1.0' in text
    assert "medic_queue_depth 0.0" in text
    assert 'medic_steps_total{collector="prometheus.query",status="not_configured"} 1.0' in text
    assert (await get(medic, "/api/v1/incidents/nope"))[0] == 404
    assert (await get(medic, "/api/v1/incidents?limit=0"))[0] == 400
    assert (await get(medic, "/api/v1/incidents?status=weird"))[0] == 400


async def test_a_second_process_on_the_same_data_dir_is_refused(tmp_path: Path) -> None:
    from medic.app.runtime import Runtime
    from medic.domain.errors import ConfigError

    settings = medic_settings(tmp_path)
    async with running_medic(settings):
        with pytest.raises(ConfigError, match="another Medic process"):
            await Runtime.open(settings)
