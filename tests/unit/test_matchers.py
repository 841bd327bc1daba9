"""Alertmanager matcher semantics, including its edge cases."""

import pytest

from medic.rules.matchers import MatcherError, MatchType, matches_all, parse_matcher, parse_matchers


@pytest.mark.parametrize(
    ("text", "labels", "expected"),
    [
        ('alertname="KubePodCrashLooping"', {"alertname": "KubePodCrashLooping"}, True),
        ('alertname="KubePodCrashLooping"', {"alertname": "KubePodCrashLoopingX"}, False),
        ('namespace!="kube-system"', {"namespace": "playcode"}, True),
        ('namespace!="kube-system"', {"namespace": "kube-system"}, False),
        # regexes are anchored at both ends
        ('namespace=~"play"', {"namespace": "playcode"}, False),
        ('namespace=~"play.*"', {"namespace": "playcode"}, True),
        ('namespace=~"playcode|staging"', {"namespace": "staging"}, True),
        ('namespace=~"playcode|staging"', {"namespace": "playcode-staging"}, False),
        ('namespace!~"kube-.*"', {"namespace": "kube-system"}, False),
        ('namespace!~"kube-.*"', {"namespace": "playcode"}, True),
        # a missing label matches as the empty string
        ('team=""', {"alertname": "x"}, True),
        ('team=""', {"team": "sre"}, False),
        ('team!=""', {"alertname": "x"}, False),
        ('team=~".*"', {}, True),
        ('team=~".+"', {}, False),
        ('team!~".+"', {}, True),
        # bare values are allowed
        ("severity=critical", {"severity": "critical"}, True),
        # whitespace around the operator
        ('severity = "critical"', {"severity": "critical"}, True),
    ],
)
def test_matcher_semantics(text: str, labels: dict[str, str], expected: bool) -> None:
    assert parse_matcher(text).matches(labels) is expected


def test_escapes_in_quoted_values() -> None:
    m = parse_matcher(r'msg="say \"hi\"\\now\n"')
    assert m.value == 'say "hi"\\now\n'
    assert m.type is MatchType.EQUAL
    assert parse_matcher(str(m)) == m  # round trip


def test_regex_does_not_match_across_newline_by_anchor() -> None:
    # Python's "$" would match before a trailing newline; Alertmanager's anchored regex does not.
    assert not parse_matcher('msg=~"abc"').matches({"msg": "abc\n"})


def test_braced_set_with_commas_inside_quotes() -> None:
    ms = parse_matchers('{alertname="A", summary=~"x,y|z", team!=""}')
    assert [m.name for m in ms] == ["alertname", "summary", "team"]
    assert ms[1].value == "x,y|z"
    assert matches_all(ms, {"alertname": "A", "summary": "x,y", "team": "sre"})
    assert not matches_all(ms, {"alertname": "A", "summary": "x,y"})


@pytest.mark.parametrize(
    "bad",
    [
        "alertname",
        '="x"',
        '1abc="x"',
        'a=~"("',
        'a="unterminated',
        'a="in"side"',
        '{a="x"',
        'a=="x"',
    ],
)
def test_bad_matchers_are_refused(bad: str) -> None:
    with pytest.raises(MatcherError):
        parse_matchers(bad)
