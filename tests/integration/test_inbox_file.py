"""The embedded inbox has a file of its own (inbox.sqlite3): the webhook's commits never wait
behind the store's. A data dir written by a version that kept the inbox in medic.sqlite3 is
moved over at start, nothing lost, nothing accepted twice."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from medic.app.backend_select import EmbeddedBackend
from medic.clients.sqlite import SqliteDB
from medic.inbox.sqlite import SqliteInbox
from tests.medic_app import medic_settings


async def test_an_older_data_dirs_inbox_is_moved_to_its_own_file(tmp_path: Path) -> None:
    settings = medic_settings(tmp_path)
    old = SqliteDB(settings.db_path)  # the old layout: the inbox inside the store's file
    await old.open()
    old_inbox = SqliteInbox(old, dedup_ttl=3600)
    accepted = await old_inbox.accept({"n": 1}, ["ep-1", "ep-2"], datetime.now(UTC))
    await old.close()
    assert accepted.item_id is not None

    for _ in range(2):  # a second start (or one after a crash mid-move) changes nothing
        backend = await EmbeddedBackend.open(settings)
        try:
            assert settings.inbox_path.exists()
            assert await backend.inbox.depth() == 1
            again = await backend.inbox.accept({"n": 2}, ["ep-1"], datetime.now(UTC))
            assert again.item_id is None and again.duplicates == 1  # its dedup keys came along
            left = await backend.db.read(lambda c: c.execute("SELECT COUNT(*) FROM inbox").fetchone())
            assert left == (0,)
        finally:
            await backend.close()

    backend = await EmbeddedBackend.open(settings)
    try:
        (item,) = await backend.inbox.claim("w", 10)
        assert item.payload == {"n": 1} and item.new_episodes == ["ep-1", "ep-2"]
    finally:
        await backend.close()
