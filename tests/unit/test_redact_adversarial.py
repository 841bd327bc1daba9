"""Every redaction pattern runs in linear time: each one's worst case at the body cap, under a
generous hang guard (a thread joined with a timeout: a quadratic pattern takes minutes here, a
linear one well under a second). Speed itself is measured by ``bench/bench_redact.py``."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from medic.app.settings import Settings
from medic.domain.redact import REDACTED, redact, redact_text
from tests.secrets_corpus import ADVERSARIAL, Adversarial

BODY_CAP = Settings.model_fields["max_body_bytes"].default  # MEDIC_MAX_BODY_BYTES: 1 MiB
HANG_SECONDS = 10.0


def within_hang_guard(fn: Any, *args: Any) -> Any:
    """``fn(*args)``, failing the test (instead of hanging it) past HANG_SECONDS."""
    result: list[Any] = []
    worker = threading.Thread(target=lambda: result.append(fn(*args)), daemon=True)
    worker.start()
    worker.join(HANG_SECONDS)
    assert not worker.is_alive(), f"{fn.__name__} still running after {HANG_SECONDS}s"
    assert result, f"{fn.__name__} raised"
    return result[0]


@pytest.mark.parametrize("case", ADVERSARIAL, ids=lambda c: f"{c.pattern}: {c.name}")
def test_worst_case_at_the_body_cap(case: Adversarial) -> None:
    text = case.build(BODY_CAP)
    assert len(text) >= BODY_CAP * 0.9
    out = within_hang_guard(redact_text, text)
    assert out == case.expect(text)


def test_begin_lines_in_a_label_of_a_delivery() -> None:
    """The issue's alert: a label of BEGIN lines (no END) inside an alert, redacted as a structure."""
    label = "-----BEGIN PRIVATE KEY-----\n" * (BODY_CAP // 28)
    alert = {"labels": {"alertname": "X", "key": label}, "annotations": {"summary": "ok"}}
    out = within_hang_guard(redact, alert)
    assert out == {"labels": {"alertname": "X", "key": REDACTED}, "annotations": {"summary": "ok"}}


def test_many_keys_and_values_at_the_body_cap() -> None:
    mapping = {f"k{i}": f"password=v{i}" for i in range(BODY_CAP // 24)}
    out = within_hang_guard(redact, mapping)
    assert set(out.values()) == {f"password={REDACTED}"}


def test_many_key_names_that_redact_to_one_name() -> None:
    """Label names carrying credentials all become ``Bearer [REDACTED]``: each keeps its entry
    (``#2``, ``#3``, ...) without a search that grows with the number of collisions."""
    mapping = {f"Bearer abcdefgh{i:08d}": i for i in range(BODY_CAP // 32)}
    out = within_hang_guard(redact, mapping)
    assert len(out) == len(mapping)
    assert out[f"Bearer {REDACTED}"] == 0 and out[f"Bearer {REDACTED}#{len(mapping)}"] == len(mapping) - 1
