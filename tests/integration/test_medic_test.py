"""``medic test`` (issue 14): the shipped rule tests pass in CI, a failing expectation says what
differs, a broken file is a usage error naming file and line, and a stored incident exported
``--as-test`` passes until its expectation is edited."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from medic.app.catalogue import default_registry
from medic.app.cli.main import main
from medic.app.config import load_config
from tests.integration.cli_inprocess import export_as_test, medic_cli
from tests.integration.crashloop_world import APP, BAD, NS, crashloop_world, settle

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
SHIPPED_TESTS = REPO / "rules" / "tests"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_shipped_rule_tests_pass_and_cover_every_rule(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "test", str(SHIPPED_TESTS), "-o", "json")
    doc = json.loads(out)
    failed = [t for t in doc["tests"] if not t["passed"]]
    assert code == 0 and doc["ok"] and not failed and not doc["errors"], (failed, doc["errors"], err)
    config = load_config([REPO / "rules"], [REPO / "playbooks"], default_registry())
    tested = {t["got"]["rule"] for t in doc["tests"]}
    assert {r.name for r in config.rules} <= tested, "every shipped rule has a test"
    for rule in config.rules:
        if rule.remediation is None:
            continue
        # only tests that assert the action count: a routing-only test proves nothing of it
        statuses = {
            t["expect"]["action"]["status"] if t["expect"]["action"] else "none"
            for t in doc["tests"]
            if t["got"]["rule"] == rule.name and "action" in t["expect"]
        }
        acts = {"would_act", "planned", "awaiting_approval"}
        assert statuses & acts, f"{rule.name}: no test asserting that it acts"
        assert statuses - acts, f"{rule.name}: no test asserting that it does not act"
    assert None in tested, "a test where no rule matches"
    # every playbook's main finding: a test that routes to the playbook and expects a finding
    rules_of = {r.name: r.playbook for r in config.rules}
    asserted = {rules_of.get(t["got"]["rule"]) for t in doc["tests"] if t["expect"].get("findings")}
    assert set(config.playbooks) <= asserted, (
        f"playbooks without a finding test: {set(config.playbooks) - asserted}"
    )


FAILING = """\
rules_dir: {rules}
playbooks_dir: {playbooks}
tests:
  - name: expects a rollback where the rule only diagnoses
    now: "2026-12-01T10:00:00Z"
    mode: enforce
    alerts:
      - labels: {{alertname: KubePodNotReady, namespace: playcode, pod: playcode-app-7d9c8b5f4-x2x7q}}
    expect:
      rule: crashloop-rollback
      target: deployment/playcode/playcode-app
      findings: [crashloop.regression]
      action: {{name: rollback, status: would_act}}
  - name: routing only
    now: "2026-12-01T10:00:00Z"
    alerts:
      - labels: {{alertname: KubePodNotReady, namespace: playcode, pod: playcode-app-7d9c8b5f4-x2x7q}}
    expect:
      rule: pod-not-ready
"""


def _file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "case.yaml"
    path.write_text(text.format(rules=REPO / "rules", playbooks=REPO / "playbooks"), encoding="utf-8")
    return path


def test_a_failing_test_exits_1_with_what_differs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _file(tmp_path, FAILING)
    code, out, _ = run(capsys, "test", str(path))
    assert code == 1
    assert f"FAILED  expects a rollback where the rule only diagnoses  ({path}:4)" in out
    assert "    rule:\n      - expected: crashloop-rollback\n      + got:      pod-not-ready" in out
    assert "findings:\n      - expected: includes crashloop.regression" in out
    assert "action.status:\n      - expected: would_act\n      + got:      none (" in out
    assert "PASSED  routing only" in out and "1 passed, 1 failed" in out

    code, out, _ = run(capsys, "test", str(path), "-o", "json")
    doc = json.loads(out)
    assert code == 1 and doc["ok"] is False and (doc["passed"], doc["failed"]) == (1, 1)
    first = doc["tests"][0]
    assert first["passed"] is False and first["line"] == 4
    assert {d["field"] for d in first["differences"]} == {"rule", "findings", "action.status"}
    assert first["got"]["rule"] == "pod-not-ready"
    assert first["got"]["target"] == "deployment/playcode/playcode-app"


CRASH_CASE = (
    "rules_dir: {rules}\nplaybooks_dir: {playbooks}\ntests:\n  - name: x\n"
    "    now: 2026-12-01T10:00:00Z\n    alerts: [{{labels: {{alertname: KubePodCrashLooping, "
    "namespace: playcode, pod: playcode-app-7d9c8b5f4-x2x7q}}}}]\n"
)


@pytest.mark.parametrize(
    ("text", "where", "words"),
    [
        (
            "tests:\n  - name: x\n    now: 2026-12-01T10:00:00Z\n    expect: {{rulez: a}}\n",
            ":4",
            "unknown field",
        ),
        ("tests: [\n", ":2", "invalid YAML"),
        (
            "rules_dir: {rules}\nplaybooks_dir: {playbooks}\ntests:\n  - name: x\n"
            "    now: 2026-12-01T10:00:00Z\n    alerts: [{{labels: {{alertname: KubePodCrashLooping, "
            "namespace: playcode}}}}]\n    evidence:\n      k8s.no_such_step: {{}}\n"
            "    expect: {{rule: crashloop-rollback}}\n",
            ":8",
            "playbook crashloop has no step 'k8s.no_such_step'",
        ),
        (  # evidence is read as the collector's output model: a wrong type names its field and line
            CRASH_CASE + "    evidence:\n      k8s.pod_describe:\n        pods:\n"
            "          - name: playcode-app-7d9c8b5f4-x2x7q\n            containers:\n"
            "              - {{name: app, restart_count: many}}\n    expect: {{rule: crashloop-rollback}}\n",
            ":12",
            "k8s.pod_describe output: Input should be a valid integer",
        ),
        (  # in an envelope, the line is the data's
            CRASH_CASE + "    evidence:\n      k8s.pod_describe:\n        status: ok\n        data:\n"
            "          pods: 3\n    expect: {{rule: crashloop-rollback}}\n",
            ":11",
            "field 'tests.0.evidence.k8s.pod_describe.data.pods'",
        ),
        (  # an expectation that sets nothing could never fail
            CRASH_CASE + "    expect: {{}}\n",
            ":7",
            "expect checks nothing",
        ),
        (  # a misspelt action would pass every test that expects none
            CRASH_CASE + "    expect: {{action: {{name: rolback, status: none}}}}\n",
            ":7",
            "playbook crashloop has no action 'rolback' (its actions: rollback",
        ),
        (  # a misspelt finding code would pass forever in not_findings
            CRASH_CASE + "    expect: {{not_findings: [crashloop.regresion]}}\n",
            ":7",
            "no analyzer of playbook crashloop returns 'crashloop.regresion'",
        ),
        (  # empty lists and a null refused_by check nothing either
            CRASH_CASE + "    expect: {{findings: [], refused_by: null}}\n",
            ":7",
            "expect checks nothing",
        ),
        (  # no playbook runs: nothing is diagnosed, so not_findings could never fail
            "rules_dir: {rules}\nplaybooks_dir: {playbooks}\ntests:\n  - name: x\n"
            "    now: 2026-12-01T10:00:00Z\n    alerts: [{{labels: {{alertname: Nothing}}}}]\n"
            "    expect: {{not_findings: [crashloop.regression]}}\n",
            ":7",
            "no playbook runs for these alerts",
        ),
        (  # a misspelt evidence field would read as its default
            CRASH_CASE + "    evidence:\n      k8s.pod_describe:\n        podz: []\n"
            "    expect: {{rule: crashloop-rollback}}\n",
            ":9",
            "k8s.pod_describe output has no field 'podz'",
        ),
        (  # a time without its zone cannot be compared with stored times
            CRASH_CASE.replace("2026-12-01T10:00:00Z", '"2026-12-01T10:00:00"')
            + "    expect: {{rule: crashloop-rollback}}\n",
            ":5",
            "field 'tests.0.now': Input should have timezone info",
        ),
        (  # a label's value must be text: the error names the whole path
            CRASH_CASE.replace("pod: playcode-app-7d9c8b5f4-x2x7q", "pod: [a]")
            + "    expect: {{rule: crashloop-rollback}}\n",
            ":6",
            "field 'tests.0.alerts.0.labels.pod'",
        ),
        (  # a misspelt past action would count for nothing the rule reads
            CRASH_CASE + "    history: [{{action: rolback, at: 2026-12-01T09:50:00Z}}]\n"
            "    expect: {{rule: crashloop-rollback}}\n",
            ":7",
            "no playbook has an action 'rolback'",
        ),
        (  # another target is named by its key
            CRASH_CASE + "    history: [{{action: rollback, at: 2026-12-01T09:50:00Z, target: not a key}}]\n"
            "    expect: {{rule: crashloop-rollback}}\n",
            ":7",
            "field 'tests.0.history.0.target': String should match pattern",
        ),
        (  # a bundle gives the alerts: giving them again is ambiguous
            CRASH_CASE + "    bundle: inc.json\n    expect: {{rule: crashloop-rollback}}\n",
            ":7",
            "bundle gives the case's alerts, cluster, evidence, history, kill_switch: remove alerts",
        ),
        (
            "rules_dir: ./nope\ntests:\n  - name: x\n    now: 2026-12-01T10:00:00Z\n"
            "    expect: {{rule: null}}\n",
            ":1",
            "rules_dir './nope': no such directory",
        ),
    ],
)
def test_a_broken_file_is_a_usage_error_naming_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, where: str, words: str
) -> None:
    path = _file(tmp_path, text)
    code, _, err = run(capsys, "test", str(path))
    assert code == 2
    assert f"{path}{where}" in err and words in err, err


def test_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "test", str(tmp_path / "missing.yaml"))
    assert code == 2 and "no such file" in err
    code, _, err = run(capsys, "test", str(tmp_path))
    assert code == 2 and "no test files" in err


def test_check_does_not_read_rule_tests_as_rules(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "check", str(REPO / "rules"), "-o", "json")
    doc = json.loads(out)
    assert code == 0, err
    assert not any("/tests/" in r["file"] for r in doc["rules"])


def test_rules_test_names_the_rule_its_matchers_and_the_target(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys,
        "rules",
        "test",
        "alertname=KubePodCrashLooping",
        "namespace=playcode",
        "pod=playcode-app-7d9c8b5f4-x2x7q",
    )
    assert code == 0
    assert "rule:      crashloop-rollback" in out and "first match" in out
    assert 'matched:   alertname="KubePodCrashLooping", namespace=~"playcode"' in out
    assert "target:    deployment/playcode/playcode-app (inferred from the pod name)" in out
    assert "action:    rollback (mode auto)" in out

    code, out, _ = run(
        capsys, "rules", "test", "alertname=KubePodCrashLooping", "namespace=other", "-o", "json"
    )
    doc = json.loads(out)
    assert code == 1 and doc["rule"] is None
    crash = next(c for c in doc["checked"] if c["rule"] == "crashloop-rollback")
    assert crash == {"rule": "crashloop-rollback", "matches": False, "failed": 'namespace=~"playcode"'}

    # cert-manager's metrics, scraped with honor_labels false: the subject is exported_namespace,
    # and the rules see it as the service routes it (subject_labels), not the raw label
    code, out, _ = run(
        capsys,
        "rules",
        "test",
        "alertname=CertManagerCertExpirySoon",
        "namespace=cert-manager",
        "exported_namespace=playcode",
        "name=playcode-tls",
    )
    assert code == 0, out
    assert "rule:      certificate-renewal" in out and "target:    certificate/playcode/playcode-tls" in out

    code, _, err = run(capsys, "rules", "test", "alertname")
    assert code == 2 and "name=value" in err


def _edit(path: Path, change: Any) -> None:
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    change(doc["tests"][0])
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")


async def test_export_as_test_round_trip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    async with crashloop_world(tmp_path) as w:
        await w.post(w.crash_alerts())
        inc = await w.diagnosed()
        assert inc["actions"][0]["status"] == "succeeded"
        await w.resolved(inc["id"])
        exported = tmp_path / "inc.yaml"
        await export_as_test(capsys, inc["id"], w.medic.url, exported)
    text = exported.read_text(encoding="utf-8")
    assert "hunter2-secret" not in text  # the Deployment's env as the evidence saw it: redacted
    case = yaml.safe_load(text)["tests"][0]
    assert case["mode"] == "enforce"
    assert {a["status"] for a in case["alerts"]} == {"firing"}  # when the rollback was decided
    assert case["expect"]["rule"] == "crashloop-rollback"
    assert case["expect"]["action"] == {"name": "rollback", "status": "would_act"}
    assert "crashloop.regression" in case["expect"]["findings"]
    # recorded preconditions travel, but not those require: asks for: the evidence's rollout
    # timeline answers them, as the plan read them, so a candidate require: is decided again
    assert case["cluster"]["preconditions"]["rollout_history"]["ok"] is True
    assert (
        "recent_rollout" not in case["cluster"]["preconditions"] and "k8s.rollout_history" in case["evidence"]
    )

    code, out, _ = run(capsys, "test", str(exported))
    assert code == 0 and "1 passed, 0 failed" in out, out

    _edit(exported, lambda t: t["expect"].update(action={"name": "rollback", "status": "refused"}))
    code, out, _ = run(capsys, "test", str(exported))
    assert code == 1
    assert "action.status:\n      - expected: refused\n      + got:      would_act" in out

    # the same evidence just over an hour (past the cooldown and the budget's window) after a
    # rollback that did not help: the flap guard says no
    def flapped(t: dict[str, Any]) -> None:
        t["history"] = [{"action": "rollback", "at": t["now"], "status": "failed"}]
        t["now"] = (datetime.fromisoformat(t["now"]) + timedelta(minutes=61)).isoformat()
        t["cluster"]["preconditions"]["recent_rollout"] = True  # as if the bad revision came back just now
        t["expect"].update(action={"name": "rollback", "status": "refused"}, refused_by=["flap"])

    _edit(exported, flapped)
    code, out, _ = run(capsys, "test", str(exported))
    assert code == 0, out


USER_TEST = """\
tests:
  - name: our crash-looping app is rolled back only in enforce
    now: "2026-12-01T10:00:00Z"
    alerts:
      - labels: {alertname: KubePodCrashLooping, namespace: playcode, pod: playcode-app-7d9c8b5f4-x2x7q}
    expect:
      rule: crashloop-rollback
      target: deployment/playcode/playcode-app
      action: null
"""


def test_chart_mounts_a_users_rule_tests_and_they_run_against_the_pods_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.integration.helm_chart import FULLNAME, render

    plain = render({})
    assert not [v for v in plain.pod_spec["volumes"] if v["name"] == "rule-tests"]

    out = render({"config": {"ruleTests": {"ours.yaml": USER_TEST}}})
    assert out.one("ConfigMap", f"{FULLNAME}-rule-tests")["data"] == {"ours.yaml": USER_TEST}
    assert out.volume("rule-tests")["configMap"]["name"] == f"{FULLNAME}-rule-tests"
    assert out.mount("rule-tests") == {
        "name": "rule-tests",
        "mountPath": "/etc/medic/rule-tests",
        "readOnly": True,
    }

    mine = render({"config": {"existingRuleTestsConfigMap": "our-tests"}})
    assert mine.volume("rule-tests")["configMap"]["name"] == "our-tests"
    assert not [c for c in mine.of_kind("ConfigMap") if c["metadata"]["name"].endswith("-rule-tests")]

    # what the pod sees: the rendered ConfigMaps as files, MEDIC_RULES_DIR/PLAYBOOKS_DIR pointing at them
    for kind in ("rules", "playbooks"):
        (tmp_path / kind).mkdir()
        for name, text in out.config_files(kind).items():
            (tmp_path / kind / name).write_text(text, encoding="utf-8")
    (tmp_path / "rule-tests").mkdir()
    (tmp_path / "rule-tests" / "ours.yaml").write_text(USER_TEST, encoding="utf-8")
    assert out.plain_env["MEDIC_RULES_DIR"] == "/etc/medic/rules"
    monkeypatch.setenv("MEDIC_RULES_DIR", str(tmp_path / "rules"))
    monkeypatch.setenv("MEDIC_PLAYBOOKS_DIR", str(tmp_path / "playbooks"))
    code, out_text, err = run(capsys, "test", str(tmp_path / "rule-tests"))
    assert code == 0 and "1 passed, 0 failed" in out_text, (out_text, err)


async def test_a_stored_incident_as_a_bundle(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``bundle:`` names an incident document (``incidents show -o json``) instead of inline
    alerts and evidence."""
    async with crashloop_world(tmp_path, mode="dry-run") as w:
        await w.post(w.crash_alerts())
        inc = await w.diagnosed()
        assert inc["actions"][0]["status"] == "planned"
        code, out, err = await medic_cli(
            capsys, "incidents", "show", inc["id"], "--url", w.medic.url, "-o", "json"
        )
        assert code == 0, err
    (tmp_path / "fixtures").mkdir()
    (tmp_path / "fixtures" / "inc.json").write_text(out, encoding="utf-8")
    case = {
        "name": "the stored crash-loop, replayed from its bundle",
        "now": inc["updated_at"],
        "bundle": "fixtures/inc.json",
        "expect": {
            "rule": "crashloop-rollback",
            "target": "deployment/playcode/playcode-app",
            "findings": ["crashloop.regression"],
            "action": {"name": "rollback", "status": "planned"},
        },
    }
    path = tmp_path / "bundle.yaml"
    path.write_text(yaml.safe_dump({"tests": [case]}), encoding="utf-8")
    code, text, err = run(capsys, "test", str(path))
    assert code == 0 and "1 passed, 0 failed" in text, (text, err)

    (tmp_path / "fixtures" / "inc.json").write_text("{not json", encoding="utf-8")
    code, _, err = run(capsys, "test", str(path))
    assert code == 2 and "inc.json" in err and "invalid JSON" in err


async def test_an_exported_refusal_carries_the_earlier_action_as_history(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The second crash of a target just rolled back is refused (cooldown, budget); exported, the
    first incident's rollback is the test's history, and the test passes on it."""
    async with crashloop_world(tmp_path) as w:
        await w.post(w.crash_alerts())
        first = await w.diagnosed()
        assert first["actions"][0]["status"] == "succeeded"
        await w.post(
            w.crash_alerts(first_pods := [a["labels"]["pod"] for a in first["alerts"]], status="resolved")
        )
        await w.medic.drain()
        w.kube.set_image(NS, APP, BAD, change_cause="deploy v2 again")
        await settle(w)
        again = [p for p in w.crashing_pods() if p not in first_pods]
        assert again
        await w.post(w.crash_alerts(again))
        await w.medic.drain()
        second = next(i for i in await w.incidents() if i["id"] != first["id"])
        second = await w.incident(second["id"])
        act = second["actions"][0]
        assert act["status"] == "refused", act
        refusals = sorted(g["guard"] for g in act["guards"] if not g["allowed"])
        assert "cooldown" in refusals
        exported = tmp_path / "second.yaml"
        await export_as_test(capsys, second["id"], w.medic.url, exported)
    case = yaml.safe_load(exported.read_text(encoding="utf-8"))["tests"][0]
    assert [h["action"] for h in case["history"]] == ["rollback"]
    assert case["history"][0]["status"] == "succeeded"
    assert case["expect"]["action"]["status"] == "refused"
    assert sorted(case["expect"]["refused_by"]) == refusals
    code, out, _ = run(capsys, "test", str(exported))
    assert code == 0 and "1 passed, 0 failed" in out, out

    # without the history, the Deployment's rollback annotation in the evidence still gives the
    # cooldown (as the executor reads it from the cluster), but nothing has used the budget
    _edit(exported, lambda t: t.update(history=[]))
    code, out, _ = run(capsys, "test", str(exported))
    assert code == 1 and "+ got:      [cooldown]" in out, out


def test_a_bundle_of_case_fields_holds_only_them(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A misspelt key in a field-form bundle would drop its evidence silently."""
    (tmp_path / "fields.json").write_text(json.dumps({"alerts": [], "evidnce": {}}), encoding="utf-8")
    path = _file(
        tmp_path,
        "rules_dir: {rules}\nplaybooks_dir: {playbooks}\ntests:\n  - name: x\n"
        "    now: 2026-12-01T10:00:00Z\n    bundle: fields.json\n    expect: {{rule: null}}\n",
    )
    code, _, err = run(capsys, "test", str(path))
    assert code == 2 and "fields.json" in err and "not evidnce" in err, err
