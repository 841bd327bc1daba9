"""A source checkout (the editable install the tests and `make run` use) reads the top-level
rules/ and playbooks/ in place; an installed wheel reads its own copy (tests/e2e/test_wheel_install.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest

import medic
from medic.app.settings import load_settings

REPO = Path(__file__).resolve().parents[2]


def test_a_checkout_reads_its_top_level_rules_and_playbooks(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("MEDIC_RULES_DIR", "MEDIC_PLAYBOOKS_DIR", "MEDIC_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(REPO / "helm")  # the working directory plays no part
    assert Path(medic.__file__).resolve().parent == REPO / "service" / "medic"
    settings = load_settings()
    assert settings.rules_dir == REPO / "rules"
    assert settings.playbooks_dir == REPO / "playbooks"
