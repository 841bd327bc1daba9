"""Nothing secret leaves Medic."""

from medic.redact import REDACTED, redact, redact_text


def test_secret_keys_are_redacted_whatever_the_value() -> None:
    out = redact(
        {
            "password": "p",
            "apiKey": 12345,
            "Authorization": "Bearer abc",
            "name": "ok",
            "nested": {"client_secret": "s", "replicas": 3},
        }
    )
    assert out == {
        "password": REDACTED,
        "apiKey": REDACTED,
        "Authorization": REDACTED,
        "name": "ok",
        "nested": {"client_secret": REDACTED, "replicas": 3},
    }


def test_kubernetes_env_entries_hide_secrets_in_the_name() -> None:
    env = [
        {"name": "MONGO_PASSWORD", "value": "x"},
        {"name": "PORT", "value": "3000"},
        {"name": "JWT_SECRET", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
    ]
    out = redact(env)
    assert out[0]["value"] == REDACTED
    assert out[1]["value"] == "3000"
    assert out[2]["valueFrom"]["secretKeyRef"]["name"] == "s"  # a reference is not a secret


def test_secrets_inside_text() -> None:
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"
    text = (
        f"connect mongodb://admin:s3cr3t@mongodb-0:27017 failed; token={jwt} "
        "Authorization: Bearer abcdefghijklmnop password=hunter2 redis://:redispw@redis:6379/0"
    )
    out = redact_text(text)
    for secret in ("s3cr3t", jwt, "abcdefghijklmnop", "hunter2", "redispw"):
        assert secret not in out
    assert "mongodb://admin:" in out and "mongodb-0:27017" in out


def test_harmless_text_is_untouched() -> None:
    line = "GET /api/users 200 12ms tokens_used=3 passed=true"
    assert redact_text(line) == line
