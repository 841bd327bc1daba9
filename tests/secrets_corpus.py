"""Test data for redaction, shared by the tests and ``bench/bench_redact.py``.

- ``PLANTED``: secrets as they reach Medic (alert labels and annotations, log lines, errors), each
  with the secret itself: no output of Medic may contain one.
- ``HARMLESS``: text that looks a little like a secret and must come out unchanged.
- ``ADVERSARIAL``: per redaction pattern, inputs built to make it slow (many match starts without a
  finish, long runs of the characters it accepts, alternating separators), with the exact output.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from medic.domain.redact import REDACTED

JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"
PEM_BODY = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7planted0key0body"


@dataclass(frozen=True)
class Planted:
    name: str
    secret: str  # must appear in no output
    text: str  # how it arrives (inside a label, an annotation, a log line)


PLANTED: tuple[Planted, ...] = (
    Planted("url password", "urlpw-Zq81", "connect mongodb://admin:urlpw-Zq81@mongodb-0:27017 failed"),
    Planted("aws key id", "AKIAZQ7PLANTED0KEY12", "uploaded with AKIAZQ7PLANTED0KEY12 to s3"),
    Planted("aws temporary key id", "ASIAZQ7PLANTED0KEY34", "role session ASIAZQ7PLANTED0KEY34 expired"),
    Planted("env DB_PASS", "dbpass-Zq82", "DB_PASS=dbpass-Zq82 DB_HOST=db"),
    Planted("env secret key", "sk-env-Zq83", "export STRIPE_KEY=sk-env-Zq83"),
    Planted("env mysql pwd", "pwd-Zq84", "MYSQL_PWD=pwd-Zq84"),
    Planted("cookie header", "cookie-Zq85", "Cookie: session=cookie-Zq85; theme=dark"),
    Planted("set-cookie header", "sid-Zq86", "Set-Cookie: sid=sid-Zq86; Path=/; HttpOnly"),
    Planted(
        "authorization digest", "digest-Zq87", 'Authorization: Digest username="bob", response="digest-Zq87"'
    ),
    Planted("authorization bearer", "bearer-Zq88abcd", "Authorization: Bearer bearer-Zq88abcd"),
    Planted(
        "slack webhook url",
        "T0PLANT01/B0PLANT02/slackhookZq89",
        "posting to https://hooks.slack.com/services/T0PLANT01/B0PLANT02/slackhookZq89 failed",
    ),
    Planted(
        "slack bot token",
        "xoxb-1234567890-0987654321-Zq90plantedtoken",
        "token xoxb-1234567890-0987654321-Zq90plantedtoken",
    ),
    Planted(
        "github token",
        "ghp_Zq91plantedGithubToken0123456789abcd",
        "git clone with ghp_Zq91plantedGithubToken0123456789abcd",
    ),
    Planted(
        "github fine-grained token",
        "github_pat_11AZQ92PLANTED0_abcdefghijklmnopqrstuvwxyz",
        "GH=github_pat_11AZQ92PLANTED0_abcdefghijklmnopqrstuvwxyz",
    ),
    Planted(
        "gitlab token",
        "glpat-Zq93plantedGitlab0123",
        "curl --header 'PRIVATE-TOKEN: glpat-Zq93plantedGitlab0123'",
    ),
    Planted("password in prose", "prosepw-Zq94", "the password is prosepw-Zq94, keep it safe"),
    Planted("password colon", "colonpw-Zq95", "login failed for bob, password: colonpw-Zq95"),
    Planted("jwt", JWT, f"jwt={JWT}"),
    Planted(
        "private key",
        PEM_BODY,
        f"-----BEGIN RSA PRIVATE KEY-----\n{PEM_BODY}\n-----END RSA PRIVATE KEY-----",
    ),
    Planted(
        "json log password", "jsonpw-Zq96", '{"level":"error","msg":"auth failed","password":"jsonpw-Zq96"}'
    ),
)

# A label *name* that carries a secret (a key is text too).
SECRET_LABEL_NAME = "Bearer keyname-Zq97secretvalue"
SECRET_LABEL_NAME_SECRET = "keyname-Zq97secretvalue"


def planted_labels() -> dict[str, str]:
    """Alert labels carrying every planted secret (one per label, plus one in a label name)."""
    labels = {f"planted_{i}": p.text for i, p in enumerate(PLANTED)}
    labels[SECRET_LABEL_NAME] = "x"
    return labels


def planted_secrets() -> list[str]:
    return [p.secret for p in PLANTED] + [SECRET_LABEL_NAME_SECRET]


HARMLESS: tuple[str, ...] = (
    "GET /api/users 200 12ms tokens_used=3 passed=true",
    "the token bucket is empty; token validation passed",
    "basic authentication is enabled; Token Validation failed; Basic Authentication required",
    "password is required",
    "all 12 tests passed, bypass=false compass=north",
    "valueFrom.secretKeyRef name=db-credentials key=password",
    "image: registry.example/app@sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "pod-template-hash=5d4f8b9c7 controller-revision-hash=6b7c8d9e",
    "https://grafana.example/d/abc?var-namespace=playcode&from=now-1h",
    "secret_name=playcode-tls token_count=42 auth_mode=basic",
    '{"level":"info","msg":"request done","status":200,"tokens":3}',
    "10:42:01 redis:6379 connected; key=user:42 cache_key=abc",
)


# ------------------------------------------------------------------------------- adversarial


@dataclass(frozen=True)
class Adversarial:
    """``build(n)`` makes an input of about ``n`` characters; ``expect(text)`` the exact output."""

    pattern: str
    name: str
    build: Callable[[int], str]
    expect: Callable[[str], str]


def _times(unit: str, n: int) -> str:
    return unit * max(1, n // len(unit))


def _same(text: str) -> str:
    return text


def _periodic(unit: str, out: str) -> tuple[Callable[[int], str], Callable[[str], str]]:
    """Input ``unit`` repeated; output ``out`` repeated as often."""
    return (lambda n: _times(unit, n)), (lambda text: out * (len(text) // len(unit)))


_BEGIN = "-----BEGIN PRIVATE KEY-----\n"
_BLOCK = "-----BEGIN PRIVATE KEY-----\nQUJD\n-----END PRIVATE KEY-----\nok "

ADVERSARIAL: tuple[Adversarial, ...] = (
    # the case: many BEGIN lines and no END (was quadratic: 160 KB took 5.6 s)
    Adversarial("pem", "BEGIN lines without END", lambda n: _times(_BEGIN, n), lambda _t: REDACTED),
    Adversarial("pem", "many complete blocks", *_periodic(_BLOCK, f"{REDACTED}\nok ")),
    Adversarial(
        "pem",
        "END lines without BEGIN",
        lambda n: _times("-----END PRIVATE KEY-----\n", n),
        _same,
    ),
    Adversarial(
        "pem",
        "BEGIN headers that never reach PRIVATE KEY",
        lambda n: _times("-----BEGIN " + "A" * 45 + " PRIVATE KEY-----\n", n),
        _same,
    ),
    Adversarial("url", "scheme starts without @", lambda n: _times("a://b:", n), _same),
    Adversarial("url", "one authority without @", lambda n: "x://u:" + "p" * n, _same),
    Adversarial("url", "a run of scheme characters", lambda n: "a" * n + "://u:p@h", _same),
    Adversarial("url", "many passwords", *_periodic("s://u:pw@h ", f"s://u:{REDACTED}@h ")),
    Adversarial("tokens", "AKIA repeated", lambda n: _times("AKIA", n), _same),
    Adversarial("tokens", "token prefixes one short", lambda n: _times(" ghp_" + "a" * 29, n), _same),
    Adversarial("tokens", "prefix runs", lambda n: _times("xoxb-glpat-ghp_", n), _same),
    Adversarial("tokens", "many AWS key ids", *_periodic("AKIAIOSFODNN7EXAMPLE ", f"{REDACTED} ")),
    Adversarial(
        "slack_webhook",
        "webhook prefixes",
        *_periodic("hooks.slack.com/services/ ", "hooks.slack.com/services/ "),
    ),
    Adversarial("jwt", "eyJ segments without dots", lambda n: _times("eyJaaaaa-", n), _same),
    Adversarial("jwt", "two segments only", *_periodic("eyJaaaaa.bbbbb ", "eyJaaaaa.bbbbb ")),
    Adversarial("jwt", "one long segment", lambda n: "eyJ" + "a" * n + ".", _same),
    # (keys hold a fragment of a secret word, so that the key scan runs at all)
    Adversarial("kv", "many harmless keys", lambda n: _times("monkey=", n), _same),
    Adversarial("kv", "a long key run", lambda n: "key" + "x" * n + "=1", _same),
    Adversarial(
        "kv", "secret keys chained", lambda n: _times("password=", n), lambda _t: f"password={REDACTED}"
    ),
    Adversarial(
        "kv", "alternating separators", *_periodic("token:x;pass=y,", f"token:{REDACTED};pass={REDACTED},")
    ),
    Adversarial("kv", "unclosed quote", lambda n: 'password="' + "x" * n, lambda _t: f'password="{REDACTED}'),
    Adversarial("kv", "quoted keys", *_periodic('"akey":"b",', '"akey":"b",')),
    Adversarial(
        "kv",
        "header without end of line",
        lambda n: "Cookie: " + "c=1; " * (n // 5),
        lambda _t: f"Cookie: {REDACTED}",
    ),
    Adversarial("bearer", "schemes without credentials", lambda n: _times("Bearer ", n), _same),
    Adversarial(
        "bearer", "one long credential", lambda n: "token " + "a" * n, lambda _t: f"token {REDACTED}"
    ),
    Adversarial("prose", "password is ... repeated", lambda n: _times("password is required ", n), _same),
    Adversarial("json", "deep nesting", lambda n: "[" * (n // 2) + "]" * (n // 2), _same),
    Adversarial("text", "whitespace", lambda n: " \t\n" * (n // 3), _same),
)
