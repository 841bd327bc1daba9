"""Nothing acknowledged is lost: what cannot be stored is refused at intake (400 naming the field),
an alert that cannot be processed never takes its siblings with it, and a dead letter releases
what it holds (episode keys, half-made incidents) and is visible (API, CLI, metric)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from medic.app.worker import is_data_error, split_by_alert
from medic.inbox.base import InboxItem
from medic.intake.model import WebhookPayload
from tests.fakes.mongo_server import FakeMongoServer
from tests.medic_app import RunningMedic, medic_settings, running_medic
from tests.payloads import alert, payload
from tests.servers.redis_server import RedisServer

pytestmark = pytest.mark.integration

TOKEN = "webhook-token-for-dead-letters"
ADMIN = "admin-token-for-dead-letters"
LONE = "\ud800"  # a lone UTF-16 surrogate: JSON can carry it escaped, no store can write it


@contextlib.asynccontextmanager
async def medic_on(backend: str, tmp_path: Path, redis: RedisServer | None) -> AsyncIterator[RunningMedic]:
    common: dict[str, Any] = {"webhook_token": TOKEN, "admin_token": ADMIN}
    if backend == "sqlite":
        async with running_medic(medic_settings(tmp_path, **common)) as medic:
            yield medic
        return
    assert redis is not None
    async with FakeMongoServer() as mongo:
        settings = medic_settings(
            tmp_path, redis_url=redis.url, mongo_url=mongo.url, lease_seconds=2.0, **common
        )
        async with running_medic(settings) as medic:
            yield medic


async def call(
    medic: RunningMedic, method: str, path: str, *, body: Any = None, token: str | None = TOKEN
) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = json.dumps(body) if body is not None else None
    async with (
        aiohttp.ClientSession() as s,
        s.request(method, medic.url + path, data=data, headers=headers) as r,
    ):
        text = await r.text()
        return r.status, (json.loads(text) if "json" in r.headers.get("Content-Type", "") else text)


def clean(n: int) -> dict[str, Any]:
    return alert(
        "PlayCodeHighLatency", namespace="playcode", deployment="playcode-app", instance=f"10.0.0.{n}"
    )


# --------------------------------------------------------------------------- intake


@pytest.mark.parametrize(
    ("where", "field"),
    [
        ("label", "alerts.1.labels.instance"),
        ("fingerprint", "alerts.1.fingerprint"),
        ("label name", "alerts.1.labels[name]"),
        ("annotation", "alerts.1.annotations.summary"),
        ("group key", "groupKey"),
    ],
)
async def test_intake_refuses_text_no_store_can_write_for_the_whole_delivery(
    tmp_path: Path, where: str, field: str
) -> None:
    bad = clean(2)
    body = payload([clean(1), bad])
    if where == "label":
        bad["labels"]["instance"] = "10.0.0.2" + LONE
    elif where == "fingerprint":
        bad["fingerprint"] = LONE + "abc"
    elif where == "label name":
        bad["labels"]["x" + LONE] = "v"
    elif where == "annotation":
        bad["annotations"]["summary"] = "slow " + LONE
    else:
        body["groupKey"] = "{}:" + LONE
    async with medic_on("sqlite", tmp_path, None) as medic:
        status, problem = await call(medic, "POST", "/api/v1/alerts", body=body)
        assert status == 400, problem  # a 503 would make Alertmanager retry it for ever
        assert problem["field"] == field and "surrogate" in problem["detail"]
        assert await medic.runtime.inbox.depth() == 0  # nothing of the delivery was accepted
        # valid Unicode written as an escaped surrogate pair is not refused
        fine = payload([clean(3)])
        fine["alerts"][0]["labels"]["note"] = "\U0001f600"
        raw = json.dumps(fine)  # ensure_ascii: the emoji travels as "\ud83d\ude00"
        assert "\\ud83d\\ude00" in raw
        async with (
            aiohttp.ClientSession() as s,
            s.post(
                medic.url + "/api/v1/alerts",
                data=raw,
                headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
            ) as r,
        ):
            assert r.status == 200


# --------------------------------------------------------------------------- the worker


async def accept_poisoned(medic: RunningMedic) -> tuple[dict[str, Any], dict[str, Any]]:
    """What an older intake accepted: two clean alerts for one target and one, for another
    target, that no store can write. Put in the inbox as an accepted delivery would be."""
    poisoned = alert("PlayCodeHighLatency", namespace="playcode", deployment="other-app", instance="x")
    poisoned["labels"]["instance"] = "x" + LONE
    body = payload([clean(1), poisoned, clean(2)])
    episodes = [a.episode_key for a in WebhookPayload.model_validate(body).alerts]
    result = await medic.runtime.inbox.accept(body, episodes, datetime.now(UTC))
    assert result.item_id is not None and len(result.new_episodes) == 3
    medic.runtime.wake.set()
    return body, poisoned


async def wait_dead(medic: RunningMedic, count: int = 1) -> None:
    for _ in range(300):
        if await medic.runtime.inbox.dead_letters() >= count and await medic.runtime.inbox.depth() == 0:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the poisoned delivery was not dead-lettered")


@pytest.mark.parametrize("backend", ["sqlite", "redis+mongo"])
async def test_one_bad_alert_is_dead_lettered_alone_and_releases_what_it_held(
    tmp_path: Path, backend: str, redis_server_factory: Any
) -> None:
    redis = await redis_server_factory() if backend != "sqlite" else None
    async with medic_on(backend, tmp_path, redis) as medic:
        _, poisoned = await accept_poisoned(medic)
        await wait_dead(medic)

        # the siblings were processed: one incident holding both clean alerts
        status, listing = await call(medic, "GET", "/api/v1/incidents", token=None)
        assert status == 200
        items = listing["items"]
        assert [(i["target"]["name"], i["alerts"]) for i in items] == [("playcode-app", 2)]
        # no half-made incident for the alert that could not be stored
        assert all(i["alerts"] > 0 for i in items)

        # visible: API (redacted, the failed alert only), metric
        status, dead = await call(medic, "GET", "/api/v1/dead-letters", token=None)
        assert status == 200 and dead["total"] == 1
        (letter,) = dead["items"]
        assert [a["labels"]["deployment"] for a in letter["alerts"]] == ["other-app"]
        assert "UnicodeEncodeError" in letter["error"] or "surrogate" in letter["error"]
        assert len(letter["episodes"]) == 1
        status, metrics = await call(medic, "GET", "/metrics", token=None)
        assert "medic_dead_letters 1.0" in metrics

        # its episode key was released: a re-send is new work, not a duplicate
        episode = WebhookPayload.model_validate(payload([poisoned])).alerts[0].episode_key
        assert letter["episodes"] == [episode]
        again = await medic.runtime.inbox.accept(payload([poisoned]), [episode], datetime.now(UTC))
        assert again.new_episodes == [episode] and again.duplicates == 0
        await wait_dead(medic, 2)  # and it fails the same way (permanently: at once)

        # retry needs the admin token; it queues the delivery again, and it fails again
        status, _ = await call(medic, "POST", f"/api/v1/dead-letters/{letter['id']}/retry", token=TOKEN)
        assert status == 401
        status, body = await call(medic, "POST", f"/api/v1/dead-letters/{letter['id']}/retry", token=ADMIN)
        assert status == 202 and body["status"] == "queued"
        await wait_dead(medic, 2)
        status, dead = await call(medic, "GET", "/api/v1/dead-letters", token=None)
        assert dead["total"] == 2

        # drop deletes for good; an unknown id is a 404
        for item in dead["items"]:
            status, body = await call(medic, "DELETE", f"/api/v1/dead-letters/{item['id']}", token=ADMIN)
            assert status == 200 and body["status"] == "dropped"
        status, _ = await call(medic, "DELETE", f"/api/v1/dead-letters/{letter['id']}", token=ADMIN)
        assert status == 404
        status, dead = await call(medic, "GET", "/api/v1/dead-letters?limit=5", token=None)
        assert dead["total"] == 0 and dead["items"] == []
        status, problem = await call(
            medic, "GET", "/api/v1/dead-letters?limit=99999999999999999999", token=None
        )
        assert status == 400 and problem["field"] == "limit"


async def test_cli_lists_retries_and_drops_dead_letters_of_the_local_store(tmp_path: Path) -> None:
    async with medic_on("sqlite", tmp_path, None) as medic:
        await accept_poisoned(medic)
        await wait_dead(medic)
    env = {**os.environ, "MEDIC_DATA_DIR": str(tmp_path / "data")}

    def medic_cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "medic", "dead-letters", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    listed = medic_cli("list", "-o", "json")
    assert listed.returncode == 0, listed.stderr
    (letter,) = json.loads(listed.stdout)["items"]
    assert LONE not in listed.stdout and letter["alerts"][0]["labels"]["deployment"] == "other-app"
    text = medic_cli("list")
    assert text.returncode == 0 and letter["id"] in text.stdout and "PlayCodeHighLatency" in text.stdout
    assert medic_cli("retry").returncode == 2  # usage: no id
    unknown = medic_cli("drop", "999999")  # no such dead letter: a failure on stderr, nothing on stdout
    assert unknown.returncode == 1 and unknown.stdout == "" and "no dead letter '999999'" in unknown.stderr
    retried = medic_cli("retry", letter["id"], "-o", "json")
    assert retried.returncode == 0 and json.loads(retried.stdout)["status"] == "queued"
    assert json.loads(medic_cli("list", "-o", "json").stdout)["total"] == 0  # back in the queue
    dropped = medic_cli("drop", letter["id"])
    assert dropped.returncode == 1  # it is queued now, not a dead letter


# --------------------------------------------------------------------------- pure parts


def test_split_by_alert_keeps_only_the_new_episodes_in_delivery_order() -> None:
    body = payload([clean(1), clean(2), clean(3)])
    episodes = [a.episode_key for a in WebhookPayload.model_validate(body).alerts]
    item = InboxItem(
        id="7", payload=body, new_episodes=[episodes[2], episodes[0]], received_at=datetime.now(UTC)
    )
    parts = split_by_alert(item)
    assert [p.new_episodes for p in parts] == [[episodes[0]], [episodes[2]]]
    assert all(p.id == "7" and len(p.payload["alerts"]) == 1 for p in parts)
    assert parts[1].payload["alerts"][0]["labels"]["instance"] == "10.0.0.3"
    assert (
        split_by_alert(InboxItem(id="8", payload={"x": 1}, new_episodes=["e"], received_at=datetime.now(UTC)))
        == []
    )


def test_data_errors_are_permanent_backend_errors_are_not() -> None:
    from medic.domain.errors import BackendUnavailable, StoreError

    assert is_data_error(UnicodeEncodeError("utf-8", LONE, 0, 1, "surrogates not allowed"))
    assert is_data_error(KeyError("labels"))
    assert not is_data_error(StoreError("database is locked"))
    assert not is_data_error(BackendUnavailable("redis down"))
    assert not is_data_error(OSError("disk full"))
