"""What ``service/medic`` imports and what pyproject.toml declares agree (docs/dependencies.md).

A package imported directly but only installed as someone else's dependency (MarkupSafe through
Jinja2, urllib3 through requests) works until that other package drops it; a declared package
nothing imports only makes the image bigger.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# pydantic pins its own pydantic-core exactly; importing its error types directly is documented use
COVERED_BY = {"pydantic-core": "pydantic"}


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def imported_modules() -> dict[str, set[str]]:
    """Top-level third-party modules imported by service/medic, with the files importing them."""
    found: dict[str, set[str]] = {}
    for path in (REPO / "service" / "medic").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top not in ("medic", "__future__"):
                    found.setdefault(top, set()).add(str(path.relative_to(REPO)))
    return found


def declared() -> set[str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return {normalise(re.split(r"[<>=!~;\[ ]", req, maxsplit=1)[0]) for req in project["dependencies"]}


def test_every_imported_package_is_declared() -> None:
    dists = packages_distributions()
    needed: dict[str, set[str]] = {}
    for module, files in imported_modules().items():
        assert module in dists, f"{module} (imported by {sorted(files)}) is not installed"
        for dist in dists[module]:
            needed.setdefault(COVERED_BY.get(normalise(dist), normalise(dist)), set()).update(files)
    missing = {dist: sorted(files) for dist, files in needed.items() if dist not in declared()}
    assert not missing, f"imported but not in [project].dependencies: {missing}"


def test_every_declared_package_is_imported() -> None:
    dists = packages_distributions()
    provided = {normalise(d) for module in imported_modules() for d in dists.get(module, [])}
    assert declared() - provided == set(), "declared but never imported by service/medic"
