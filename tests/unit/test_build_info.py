"""medic_build_info says which build runs: version, revision (the image's commit), Python."""

from __future__ import annotations

import platform
from pathlib import Path

from medic import __version__
from medic.telemetry.build import REVISION_FILE, build_revision
from medic.telemetry.metrics import Metrics


def test_the_revision_is_read_from_the_file_the_image_build_writes(tmp_path: Path) -> None:
    (tmp_path / REVISION_FILE).write_text("4488043a1b2c\n", encoding="utf-8")
    assert build_revision(tmp_path) == "4488043a1b2c"


def test_no_file_or_no_revision_in_it_is_unknown(tmp_path: Path) -> None:
    assert build_revision(tmp_path) == "unknown"
    for text in ("", "\n", 'a"b', "x" * 65, "two words"):
        (tmp_path / REVISION_FILE).write_text(text, encoding="utf-8")
        assert build_revision(tmp_path) == "unknown", text


def test_build_info_carries_the_revision() -> None:
    registry = Metrics().registry
    labels = {"version": __version__, "revision": build_revision(), "python": platform.python_version()}
    assert registry.get_sample_value("medic_build_info", labels) == 1
