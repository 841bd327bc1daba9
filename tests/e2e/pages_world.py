"""The crash-loop scenario with its rule in ``approve`` mode (global mode enforce): Medic proposes
the rollback and waits for a human. Shared by the approval and browser tests."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp

from tests.integration.crashloop_world import World, crashloop_world
from tests.medic_app import REPO

ADMIN_TOKEN = "admin-token-0123456789"
READ_TOKEN = "read-token-0123456789"


def approve_rules(tmp_path: Path) -> Path:
    """The shipped rules, with crashloop-rollback in mode approve."""
    rules = tmp_path / "rules"
    shutil.copytree(REPO / "rules", rules)
    path = rules / "kubernetes.yaml"
    text = path.read_text()
    head, sep, tail = text.partition("- name: crashloop-rollback")
    assert sep, "the shipped crashloop-rollback rule moved"
    tail = tail.replace("mode: auto", "mode: approve", 1)
    path.write_text(head + sep + tail)
    return rules


@contextlib.asynccontextmanager
async def approval_world(tmp_path: Path, **settings: Any) -> AsyncIterator[World]:
    settings = {"admin_token": ADMIN_TOKEN, **settings}
    async with crashloop_world(tmp_path, rules_dir=approve_rules(tmp_path), **settings) as w:
        yield w


async def proposal(w: World, headers: dict[str, str] | None = None) -> dict[str, Any]:
    """Fire the crash alerts; return the diagnosed incident, whose rollback awaits approval."""
    await w.post(w.crash_alerts())
    await w.medic.drain()
    async with aiohttp.ClientSession(headers=headers or {}) as s:
        async with s.get(f"{w.medic.url}/api/v1/incidents") as r:
            items = (await r.json())["items"]
        assert len(items) == 1 and items[0]["phase"] == "diagnosed", items
        async with s.get(f"{w.medic.url}/api/v1/incidents/{items[0]['id']}") as r:
            inc: dict[str, Any] = await r.json()
    assert [a["status"] for a in inc["actions"]] == ["awaiting_approval"], inc["actions"]
    assert w.patches() == 0
    return inc
