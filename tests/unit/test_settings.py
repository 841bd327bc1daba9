"""Settings: every invalid setting reported at once, named where it was set (env var, or the
config file's key and line); values that cannot work refused; auth that would leave the webhook
open refused; the data dir checked before use; docs/configuration.md generated from the model."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from medic.app.settings import Settings, ensure_data_dir, load_settings, unknown_env
from medic.app.settings_doc import render_page
from medic.domain.errors import ConfigError, ConfigErrors

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("MEDIC_") or name == "KUBECONFIG":
            monkeypatch.delenv(name)


def errors_of(**overrides: object) -> list[str]:
    with pytest.raises(ConfigErrors) as info:
        load_settings(**overrides)
    return [str(e) for e in info.value.errors]


def write_config(tmp_path: Path, text: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "medic.yaml"
    path.write_text(text)
    monkeypatch.setenv("MEDIC_CONFIG", str(path))
    return path


def test_every_error_at_once_named_where_it_was_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_config(
        tmp_path,
        "mode: enforc\nnamespacs: [playcode]\nport: 99999\nnamespaces:\n  - playcode\n  - Play_Code\n",
        monkeypatch,
    )
    monkeypatch.setenv("MEDIC_PROMETHEUS_URL", "prometheus:9090")
    monkeypatch.setenv("MEDIC_WORKERS", "0")
    errors = errors_of()
    assert len(errors) == 6, errors
    assert f"{path}:1: field 'mode': Input should be 'off', 'dry-run' or 'enforce'" in errors
    assert f"{path}:2: field 'namespacs': unknown setting; did you mean 'namespaces'?" in errors
    assert f"{path}:3: field 'port': Input should be less than or equal to 65535" in errors
    assert any(e.startswith(f"{path}:6: field 'namespaces.1': 'Play_Code' is not") for e in errors)
    assert "env MEDIC_PROMETHEUS_URL: must be a URL starting with http:// or https://" in errors
    assert "env MEDIC_WORKERS: Input should be greater than or equal to 1" in errors
    assert not [e for e in errors if "env MEDIC_MODE" in e or "env MEDIC_PORT" in e], (
        "file keys are not env vars"
    )


def test_env_wins_over_the_file_and_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_config(tmp_path, "port: 8081\n", monkeypatch)
    monkeypatch.setenv("MEDIC_PORT", "70000")
    assert errors_of() == ["env MEDIC_PORT: Input should be less than or equal to 65535"]


def test_an_unknown_key_far_from_any_setting_gets_no_suggestion(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_config(tmp_path, "mode: dry-run\nfrobnicate: true\n", monkeypatch)
    assert errors_of() == [f"{path}:2: field 'frobnicate': unknown setting"]


def test_nested_errors_in_the_file_name_the_key_path_and_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_config(
        tmp_path, "notifiers:\n  oncall:\n    type: slack\n    url: ftp://x\n    colour: red\n", monkeypatch
    )
    errors = errors_of()
    assert f"{path}:4: field 'notifiers.oncall.url': must be an http:// or https:// URL" in errors
    assert f"{path}:5: field 'notifiers.oncall.colour': unknown field" in errors


def test_a_valid_file_and_env_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_config(
        tmp_path,
        "mode: enforce\nnamespaces: [playcode, playcode-staging]\nprometheus_url: http://prom:9090/\n",
        monkeypatch,
    )
    monkeypatch.setenv("MEDIC_NAMESPACES", "playcode, a-1")
    monkeypatch.setenv("MEDIC_REDIS_URL", "unix:///run/redis.sock")
    s = load_settings()
    assert s.mode == "enforce" and s.namespaces == ["playcode", "a-1"]
    assert s.prometheus_url == "http://prom:9090"
    assert s.redis_url is not None


@pytest.mark.parametrize(
    ("setting", "value", "words"),
    [
        ("namespaces", ["playcode", "-bad"], "'-bad' is not a Kubernetes namespace name"),
        ("namespaces", ["x" * 64], "is not a Kubernetes namespace name"),
        ("namespaces", [], "at least one namespace"),
        ("port", 0, "greater than or equal to 1"),
        ("port", 65536, "less than or equal to 65535"),
        ("host", "not a host", "neither an IP address nor a host name"),
        ("max_body_bytes", -1, "greater than or equal to 1024"),
        ("collector_timeout_seconds", -5, "greater than 0"),
        ("playbook_deadline_seconds", 0, "greater than 0"),
        ("dedup_ttl_seconds", -60, "greater than or equal to 60"),
        ("flap_window_seconds", -1, "greater than or equal to 0"),
        ("lease_seconds", -1, "greater than or equal to 0.2"),
        ("shutdown_grace_seconds", -1, "greater than or equal to 0"),
        ("retention_audit", "-5m", "not a duration"),
        ("prometheus_url", "prometheus:9090", "http:// or https://"),
        ("loki_url", "http://", "names no host"),
        ("public_url", "medic.example.com", "http:// or https://"),
        ("redis_url", "http://redis:6379", "redis:// or rediss://"),
        ("mongo_url", "redis://mongo", "mongodb:// or mongodb+srv://"),
        ("target_mongo_url", "mongo:27017", "mongodb:// or mongodb+srv://"),
        ("target_redis_url", "redis:6379", "names no host"),
        ("target_redis_url", "tcp://redis:6379", "redis:// or rediss://"),
        ("mode", "yolo", "'off', 'dry-run' or 'enforce'"),
        ("kube_mode", "cluster", "'auto', 'in-cluster', 'kubeconfig' or 'off'"),
        ("kube_context", " ", "is empty"),
        ("rules_dir", "", "name a directory"),
        ("data_dir", "", "name a directory"),
        ("auth_proxy_header", "X Forwarded User", "HTTP header name"),
        ("log_level", "verbose", "'debug', 'info', 'warning' or 'error'"),
        ("approval_ttl_seconds", 10, "greater than or equal to 60"),
    ],
)
def test_invalid_values_are_refused(setting: str, value: object, words: str) -> None:
    errors = errors_of(**{setting: value})
    assert len(errors) == 1 and f"field '{setting}" in errors[0] and words in errors[0], errors


def test_secrets_are_never_echoed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEDIC_MONGO_URL", "http://medic:S3cretPw@mongo:27017")
    monkeypatch.setenv("MEDIC_REDIS_URL", "redis://:S3cretPw@redis:6379/0 ")
    monkeypatch.setenv("MEDIC_ADMIN_TOKEN", "S3cretPw")
    text = "\n".join(errors_of())
    assert "S3cretPw" not in text
    assert "env MEDIC_MONGO_URL" in text and "env MEDIC_REDIS_URL" in text and "env MEDIC_ADMIN_TOKEN" in text


# ---------------------------------------------------------------- auth that leaves the webhook open
@pytest.mark.parametrize(
    ("env", "expected"),
    [
        (
            {"MEDIC_WEBHOOK_PASSWORD": "pw"},
            "env MEDIC_WEBHOOK_PASSWORD: is set without MEDIC_WEBHOOK_USERNAME: "
            "a password without a user name leaves the webhook open",
        ),
        (
            {"MEDIC_WEBHOOK_USERNAME": "am"},
            "env MEDIC_WEBHOOK_USERNAME: is set without MEDIC_WEBHOOK_PASSWORD: basic auth needs both",
        ),
        (
            {"MEDIC_WEBHOOK_USERNAME": "", "MEDIC_WEBHOOK_PASSWORD": "pw"},
            "env MEDIC_WEBHOOK_USERNAME: is empty",
        ),
        (
            {"MEDIC_WEBHOOK_USERNAME": "am", "MEDIC_WEBHOOK_PASSWORD": ""},
            "env MEDIC_WEBHOOK_PASSWORD: is empty",
        ),
        (
            {"MEDIC_WEBHOOK_USERNAME": "a:m", "MEDIC_WEBHOOK_PASSWORD": "pw"},
            "env MEDIC_WEBHOOK_USERNAME: a basic-auth",
        ),
        ({"MEDIC_WEBHOOK_TOKEN": ""}, "env MEDIC_WEBHOOK_TOKEN: is empty"),
        ({"MEDIC_WEBHOOK_TOKEN": "token\n"}, "env MEDIC_WEBHOOK_TOKEN: holds leading/trailing whitespace"),
        ({"MEDIC_ADMIN_TOKEN": ""}, "env MEDIC_ADMIN_TOKEN: is empty"),
        ({"MEDIC_ADMIN_TOKEN": "short"}, "env MEDIC_ADMIN_TOKEN: use at least 16 characters"),
        ({"MEDIC_READ_TOKEN": ""}, "env MEDIC_READ_TOKEN: is empty"),
        ({"MEDIC_APPROVAL_SECRET": ""}, "env MEDIC_APPROVAL_SECRET: is empty"),
    ],
)
def test_auth_settings_that_would_leave_medic_open_are_refused(
    env: dict[str, str], expected: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    errors = errors_of()
    assert any(e.startswith(expected) for e in errors), errors


def test_pair_errors_in_the_file_use_the_file_keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_config(tmp_path, "mode: dry-run\nwebhook_password: pw\n", monkeypatch)
    assert errors_of() == [
        f"{path}:2: field 'webhook_password': is set without webhook_username: "
        "a password without a user name leaves the webhook open"
    ]


def test_complete_auth_settings_load(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEDIC_WEBHOOK_USERNAME", "alertmanager")
    monkeypatch.setenv("MEDIC_WEBHOOK_PASSWORD", "pass word")
    monkeypatch.setenv("MEDIC_WEBHOOK_TOKEN", "t")
    monkeypatch.setenv("MEDIC_ADMIN_TOKEN", "admin-token-0123456789")
    s = load_settings()
    assert s.webhook_username == "alertmanager" and s.webhook_password is not None


def test_settings_built_directly_raise_every_error_too() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError) as info:
        Settings(port=0, webhook_password="pw", mode="x")  # type: ignore[arg-type]
    assert {e["loc"][0] for e in info.value.errors()} == {"port", "webhook_password", "mode"}


# --------------------------------------------------------------------------- data dir
@pytest.mark.parametrize("kind", ["under-a-file", "is-a-file", "not-writable"])
def test_a_data_dir_medic_cannot_write_is_a_config_error(tmp_path: Path, kind: str) -> None:
    # tests run as root, where a chmod'ed directory stays writable: use paths no one can write
    plain_file = tmp_path / "plain-file"
    plain_file.write_text("")
    path = {
        "under-a-file": plain_file / "data",
        "is-a-file": plain_file,
        "not-writable": Path("/proc/self"),
    }[kind]
    with pytest.raises(ConfigError) as info:
        ensure_data_dir(path)
    assert str(path) in str(info.value) and "MEDIC_DATA_DIR" in str(info.value)
    assert info.value.field == "data_dir"


def test_the_data_dir_is_created_private(tmp_path: Path) -> None:
    path = tmp_path / "a" / "data"
    ensure_data_dir(path)
    assert path.is_dir() and (path.stat().st_mode & 0o777) == 0o700
    assert list(path.iterdir()) == [], "the write check leaves nothing behind"


# --------------------------------------------------------------------------- docs
def test_configuration_page_lists_every_setting_as_generated() -> None:
    page = (REPO / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert page == render_page(page), (
        "docs/configuration.md is stale: python -m medic.app.settings_doc docs/configuration.md"
    )
    for name, field in Settings.model_fields.items():
        assert field.description, f"setting {name} has no description"
        assert f"`MEDIC_{name.upper()}`" in page


def test_a_config_file_that_is_not_yaml_or_not_there_names_file_and_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_config(tmp_path, "mode: enforce\nnamespaces: [playcode\n", monkeypatch)
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert str(info.value).startswith(f"{path}:3: invalid YAML")
    write_config(tmp_path, "- mode\n", monkeypatch)
    with pytest.raises(ConfigError, match="must hold a mapping of setting: value"):
        load_settings()
    monkeypatch.setenv("MEDIC_CONFIG", str(tmp_path / "missing.yaml"))
    with pytest.raises(ConfigError, match=r"missing\.yaml: cannot read config file: No such file"):
        load_settings()


def test_medic_env_vars_that_name_no_setting_are_found_with_the_closest_one() -> None:
    environ = {
        "MEDIC_WEBHOK_TOKEN": "t",  # a typo: the webhook would stay open
        "MEDIC_MODE": "enforce",
        "MEDIC_CONFIG": "/etc/medic.yaml",
        "MEDIC_NOTIFY_ONCALL_URL": "https://hooks.example/x",
        "MEDIC_TEST_REDIS_BIN": "/usr/bin/redis-server",
        "MEDIC_SERVICE_HOST": "10.0.0.1",  # a Kubernetes service link
        "PATH": "/usr/bin",
    }
    assert unknown_env(environ) == [
        ("MEDIC_SERVICE_HOST", None),
        ("MEDIC_WEBHOK_TOKEN", "MEDIC_WEBHOOK_TOKEN"),
    ]
