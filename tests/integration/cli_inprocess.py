"""The ``medic`` CLI run in-process from an async test (it runs its own event loop: in a thread),
with what it printed; and the export of a stored incident as a ``medic test`` file."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from medic.app.cli.main import main


async def medic_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """``medic ARGV``: exit code, stdout, stderr (what the in-process Medic logged before is dropped)."""
    capsys.readouterr()
    code = await asyncio.to_thread(main, list(argv))
    out, err = capsys.readouterr()
    return code, out, err


async def export_as_test(capsys: pytest.CaptureFixture[str], incident_id: str, url: str, out: Path) -> Path:
    """``medic incidents export ID --as-test --url URL --out OUT``, which must succeed."""
    code, _, err = await medic_cli(
        capsys, "incidents", "export", incident_id, "--as-test", "--url", url, "--out", str(out)
    )
    assert code == 0, err
    return out
