"""``medic verify``'s exit status: success is said only by a verdict that is one."""

from __future__ import annotations

import pytest

from medic.app.cli.verify import verify_exit


@pytest.mark.parametrize(
    ("state", "waited", "fail_inconclusive", "code"),
    [
        ("passed", True, False, 0),
        ("failed", True, False, 1),
        ("inconclusive", True, False, 0),
        ("inconclusive", True, True, 1),
        ("verifying", False, False, 0),  # without --wait: started
        ("verifying", True, False, 1),  # --wait ended with no verdict
        (None, False, False, 1),  # an answer without a state
        ("passd", True, False, 1),  # a state this Medic does not know
    ],
)
def test_exit_status(state: object, waited: bool, fail_inconclusive: bool, code: int) -> None:
    assert verify_exit(state, waited=waited, fail_inconclusive=fail_inconclusive) == code
