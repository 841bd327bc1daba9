"""One place reveals a secret (issue 16.4): ``medic.app.settings`` (its validators and
:class:`~medic.app.settings.Tokens`). Every other module of service/medic receives a secret's text
from ``settings.tokens`` (or a group built from it), so a new ``get_secret_value()`` elsewhere is a
secret handled outside the place that is reviewed for it."""

from __future__ import annotations

import ast
from pathlib import Path

import medic

PACKAGE = Path(medic.__file__).resolve().parent
ALLOWED = {PACKAGE / "app" / "settings.py"}
REVEALING = {"get_secret_value", "_secret_value"}  # the method, and the attribute behind it


def reveals(source: str) -> list[int]:
    """The lines of ``source`` that reach a SecretStr's value (a call, or the bound method)."""
    tree = ast.parse(source)
    return sorted(
        node.lineno for node in ast.walk(tree) if isinstance(node, ast.Attribute) and node.attr in REVEALING
    )


def test_only_the_settings_module_unwraps_a_secret() -> None:
    found = [
        f"{path.relative_to(PACKAGE.parent)}:{line}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if path not in ALLOWED
        for line in reveals(path.read_text(encoding="utf-8"))
    ]
    assert found == [], "take the value from settings.tokens instead"


def test_the_scan_sees_every_way_of_reaching_the_value() -> None:
    source = (
        "url = config.url.get_secret_value()\n"
        "reveal = token.get_secret_value\n"
        "raw = token._secret_value\n"
        "fine = settings.tokens.redis_url\n"
    )
    assert reveals(source) == [1, 2, 3]


def test_the_settings_module_is_where_secrets_are_unwrapped() -> None:
    """The allowance is not stale: the settings module does unwrap (its Tokens)."""
    (settings_py,) = ALLOWED
    assert reveals(settings_py.read_text(encoding="utf-8"))
