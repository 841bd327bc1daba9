"""Rules and playbooks are validated at load; every error names file, line, rule and field."""

from pathlib import Path

import pytest

from medic.app.catalogue import default_registry
from medic.app.cli.main import main
from medic.app.config import load_config
from medic.domain.errors import ConfigErrors

REPO = Path(__file__).resolve().parents[2]

PLAYBOOK = """\
name: latency
target: deployment
collect:
  - prometheus.query:
      queries: [latency_p99]
      range: 10m
  - use: prometheus.query
    id: errors
    timeout: 5s
    with: {queries: [error_ratio_5xx], range: null}
analyze: [metric_thresholds]
"""

RULES = """\
- name: slow
  matchers: ['alertname="Slow"', 'namespace=~"playcode|staging"']
  playbook: latency
"""


def write(tmp: Path, name: str, text: str) -> Path:
    path = tmp / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def load(tmp: Path, rules: str, playbook: str = PLAYBOOK):  # type: ignore[no-untyped-def]
    write(tmp / "playbooks", "latency.yaml", playbook)
    write(tmp / "rules", "r.yaml", rules)
    return load_config([tmp / "rules"], [tmp / "playbooks"], default_registry())


def errors_of(tmp: Path, rules: str, playbook: str = PLAYBOOK) -> list[str]:
    with pytest.raises(ConfigErrors) as exc:
        load(tmp, rules, playbook)
    return [str(e) for e in exc.value.errors]


def test_the_shipped_configuration_is_valid() -> None:
    config = load_config([REPO / "rules"], [REPO / "playbooks"], default_registry())
    assert config.rules and config.playbooks
    for rule in config.rules:
        assert rule.playbook is None or rule.playbook in config.playbooks


def test_good_config_compiles_typed_params(tmp_path: Path) -> None:
    config = load(tmp_path, RULES)
    pb = config.playbooks["latency"]
    assert [s.step_id for s in pb.steps] == ["prometheus.query", "errors"]
    assert pb.steps[1].timeout == 5.0
    assert pb.steps[0].params.range.total_seconds() == 600  # type: ignore[attr-defined]
    assert config.rules[0].matches({"alertname": "Slow", "namespace": "staging"})


def test_unknown_collector_param_names_file_line_and_field(tmp_path: Path) -> None:
    bad = PLAYBOOK.replace("range: 10m", "rnage: 10m")
    (err,) = errors_of(tmp_path, RULES, bad)
    assert "latency.yaml:6" in err
    assert "playbook latency" in err
    assert "collect.0.prometheus.query.rnage" in err
    assert "unknown field" in err


def test_unknown_named_query_is_refused(tmp_path: Path) -> None:
    (err,) = errors_of(tmp_path, RULES, PLAYBOOK.replace("[latency_p99]", "[latency_p100]"))
    assert "unknown named query 'latency_p100'" in err


def test_unknown_collector_and_analyzer(tmp_path: Path) -> None:
    bad = PLAYBOOK.replace("use: prometheus.query", "use: prometheus.qeury").replace(
        "[metric_thresholds]", "[nope]"
    )
    errs = errors_of(tmp_path, RULES, bad)
    assert any("unknown collector 'prometheus.qeury'" in e and "latency.yaml:7" in e for e in errs)
    assert any("unknown analyzer 'nope'" in e for e in errs)


def test_bad_matcher_names_the_rule_and_line(tmp_path: Path) -> None:
    (err,) = errors_of(tmp_path, RULES.replace('namespace=~"playcode|staging"', 'namespace=~"("'))
    assert "r.yaml:2" in err and "rule slow" in err and "field 'matchers" in err
    assert "invalid regular expression" in err


def test_unknown_playbook_and_missing_action(tmp_path: Path) -> None:
    errs = errors_of(tmp_path, RULES.replace("playbook: latency", "playbook: latncy"))
    assert any("unknown playbook 'latncy'" in e and "r.yaml:3" in e for e in errs)
    rules = RULES + "  remediation: {action: rollback, mode: auto}\n"
    errs = errors_of(tmp_path, rules)
    assert any("has no action 'rollback'" in e and "remediation.action" in e for e in errs)


def test_bad_mode_and_duration(tmp_path: Path) -> None:
    rules = RULES.replace("playbook: latency", "playbook: latency\n  status: [pending]")
    errs = errors_of(tmp_path, rules)
    assert any("status.0" in e and "r.yaml:4" in e for e in errs)
    bad = PLAYBOOK.replace("timeout: 5s", "timeout: 5 parsecs")
    errs = errors_of(tmp_path, RULES, bad)
    assert any("not a duration" in e and "collect.1.timeout" in e for e in errs)


def test_duplicate_rule_names_across_files(tmp_path: Path) -> None:
    write(tmp_path / "rules", "a.yaml", RULES)
    errs = errors_of(tmp_path, RULES)
    assert any("also used in" in e for e in errs)


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    errs = errors_of(tmp_path, RULES + "- name: [unclosed\n")
    assert any("r.yaml:5" in e and "invalid YAML" in e for e in errs)


def test_medic_check_cli_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(tmp_path / "playbooks", "latency.yaml", PLAYBOOK)
    write(tmp_path / "rules", "r.yaml", RULES)
    assert main(["check", str(tmp_path / "rules"), str(tmp_path / "playbooks")]) == 0
    assert "SUCCESS" in capsys.readouterr().out
    write(tmp_path / "rules", "r.yaml", RULES.replace("matchers:", "matcher:"))
    assert main(["check", str(tmp_path / "rules"), str(tmp_path / "playbooks")]) == 1
    err = capsys.readouterr().err
    assert "r.yaml:2" in err and "unknown field" in err
    assert main(["check", str(tmp_path / "missing")]) == 1
