"""The finding -> decision seam is typed (issue 16.3): ``Finding.max_mode`` caps the mode of the
action a finding grounds, ``Finding.against`` is why a finding argues against an action. A mode
that is not one is refused by the model (a typo no longer removes the cap silently), and a finding
stored before the fields existed (both in ``details``) decides as it did."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from medic.decision.decide import decide
from medic.domain.incident import Finding, Incident, Target
from medic.playbooks.compiled import CompiledAction, CompiledPlaybook
from medic.playbooks.contract import ActionDef, NoParams
from medic.playbooks.model import ActionSpec, Playbook
from medic.rules.model import Rule


async def _never() -> None:  # pragma: no cover - decide never runs an action
    return None


PLAYBOOK = CompiledPlaybook(
    Playbook(name="p", target="deployment"),
    "p.yaml",
    [],
    [],
    {
        "rollback": CompiledAction(
            "rollback", ActionSpec(use="x.rollback"), ActionDef("x.rollback", _never, NoParams), NoParams()
        )
    },
)


def rule(mode: str) -> Rule:
    return Rule.model_validate(
        {
            "name": "r",
            "matchers": ['a="b"'],
            "playbook": "p",
            "remediation": {"action": "rollback", "mode": mode, "when": ["crashloop.regression"]},
        }
    )


def regression(**kw: object) -> Finding:
    return Finding.model_validate(
        {"analyzer": "crashloop", "code": "crashloop.regression", "summary": "revision 5 cannot start", **kw}
    )


def test_a_finding_capped_at_approve_is_proposed_under_an_auto_rule() -> None:
    d = decide(rule("auto"), PLAYBOOK, [regression(max_mode="approve")], "enforce")
    assert d.action is not None and d.mode == "approve"
    assert decide(rule("auto"), PLAYBOOK, [regression()], "enforce").mode == "auto"  # no cap: acts
    # a cap never raises the mode: dry-run stays dry-run
    assert decide(rule("dry-run"), PLAYBOOK, [regression(max_mode="auto")], "enforce").mode == "dry-run"


def test_an_old_finding_with_the_cap_in_details_still_caps() -> None:
    old = regression(details={"max_mode": "approve", "start_failure": True})
    assert old.max_mode == "approve" and old.details == {"start_failure": True}
    assert decide(rule("auto"), PLAYBOOK, [old], "enforce").mode == "approve"


def test_an_old_stored_incident_read_back_decides_the_same() -> None:
    """An incident JSON as an earlier Medic stored it: the cap and the reason in details."""
    stored = json.dumps(
        {
            "id": "inc-20261201-000000-00000000",
            "key": "deployment/playcode/app",
            "target": Target(kind="deployment", namespace="playcode", name="app").model_dump(),
            "findings": [
                {
                    "analyzer": "crashloop",
                    "code": "crashloop.regression",
                    "summary": "revision 5 cannot start",
                    "details": {"current_revision": 5, "max_mode": "approve"},
                    "suggests": "rollback",
                },
                {
                    "analyzer": "crashloop",
                    "code": "crashloop.dependency_down",
                    "summary": "the app cannot reach redis",
                    "details": {"dependency": "redis", "against": {"rollback": "redis is down"}},
                },
            ],
        }
    )
    inc = Incident.model_validate_json(stored)
    capped, blocking = inc.findings
    assert capped.max_mode == "approve" and capped.details == {"current_revision": 5}
    assert blocking.against == {"rollback": "redis is down"} and blocking.details == {"dependency": "redis"}
    assert decide(rule("auto"), PLAYBOOK, [capped], "enforce").mode == "approve"
    d = decide(rule("auto"), PLAYBOOK, [blocking], "enforce")
    assert d.action is None and d.reason == "no rollback: redis is down (crashloop.dependency_down)"


@pytest.mark.parametrize("spelt", ["aprove", "Approve", "manual", ""])
def test_a_mode_that_is_not_one_is_refused(spelt: str) -> None:
    with pytest.raises(ValidationError, match="max_mode"):
        regression(max_mode=spelt)
    with pytest.raises(ValidationError, match="max_mode"):  # in details (an old finding's place) too
        regression(details={"max_mode": spelt})


def test_against_is_action_name_to_reason() -> None:
    with pytest.raises(ValidationError, match="against"):
        regression(against={"rollback": ["not", "a", "reason"]})
    with pytest.raises(ValidationError, match="against"):
        regression(against="redis is down")


def test_the_fields_show_on_the_finding_only_when_set() -> None:
    plain = json.loads(regression().model_dump_json())
    assert "max_mode" not in plain and "against" not in plain
    capped = regression(max_mode="approve", against={"restart": "it would not help"})
    dumped = capped.model_dump(mode="json")
    assert dumped["max_mode"] == "approve" and dumped["against"] == {"restart": "it would not help"}
    assert Finding.model_validate(dumped) == capped  # a stored finding reads back the same


def test_the_incident_page_still_shows_what_the_decision_read() -> None:
    from medic.app.http.web.views import finding_views

    inc = Incident(
        id="inc-20261201-000000-00000000",
        key="deployment/playcode/app",
        findings=[
            regression(max_mode="approve", details={"current_revision": 5}),
            regression(against={"rollback": "redis is down"}),
            regression(),
        ],
    )
    capped, blocking, plain = (json.loads(v.details) if v.details else {} for v in finding_views(inc))
    assert capped == {"current_revision": 5, "max_mode": "approve"}
    assert blocking == {"against": {"rollback": "redis is down"}}
    assert plain == {}
