"""The plan of the house (DESIGN §5): no module imports a module that imports it back, and no
function is long without saying why.

import-linter's contracts (pyproject.toml, run by `make imports` before the tests) keep the layers
in order; a cycle inside one layer is invisible to them, so this test looks for any cycle in the
whole import graph (grimp, import-linter's own graph library), function-level and typing-only
imports included: a knot is a knot whenever it is tied.

Small functions (issue 16.4): a function of service/medic longer than ``MAX_LINES`` (from its
first decorator to its last line, nested functions included) is split along its seams, or says
why it stays long in a comment containing ``long because`` on its ``def`` line or on the line
right above it (above the decorators, if any), e.g.::

    # long because: a declarative list, one definition per metric
    def __post_init__(self) -> None:
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import grimp
import pytest


def _cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    counter = 0
    for root in sorted(graph.modules):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.find_modules_directly_imported_by(root))))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.find_modules_directly_imported_by(child)))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_no_module_imports_a_module_that_imports_it_back() -> None:
    graph = grimp.build_graph("medic")
    assert _cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    graph = grimp.ImportGraph()
    for name in ("medic.a", "medic.b", "medic.c"):
        graph.add_module(name)
    graph.add_import(importer="medic.a", imported="medic.b")
    graph.add_import(importer="medic.b", imported="medic.a")
    graph.add_import(importer="medic.b", imported="medic.c")
    assert _cycles(graph) == [["medic.a", "medic.b"]]


MAX_LINES = 60
MARKER = re.compile(r"#.*\blong because\b", re.IGNORECASE)
PACKAGE = Path(__file__).resolve().parents[2] / "service" / "medic"
# Long functions still to split, as (path under service/medic, qualified name): none left, the
# rule holds for every function (issue 16.4).
PENDING: set[tuple[str, str]] = set()


def long_unexplained(source: str, max_lines: int = MAX_LINES) -> list[tuple[str, int, int]]:
    """``(qualified name, def line, length)`` of every function longer than ``max_lines`` with
    no ``long because`` comment on its def line or the line above it."""
    lines = source.splitlines()
    found: list[tuple[str, int, int]] = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                first = min([child.lineno] + [d.lineno for d in child.decorator_list])
                length = (child.end_lineno or child.lineno) - first + 1
                said = [lines[i - 1] for i in (first - 1, child.lineno) if i >= 1]
                if length > max_lines and not any(MARKER.search(line) for line in said):
                    found.append((prefix + child.name, child.lineno, length))
                visit(child, f"{prefix}{child.name}.")
            elif isinstance(child, ast.ClassDef):
                visit(child, f"{prefix}{child.name}.")
            else:  # a def inside if/try/with/for (TYPE_CHECKING blocks, fallbacks) is measured too
                visit(child, prefix)

    visit(ast.parse(source), "")
    return found


def test_no_function_is_long_without_saying_why() -> None:
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        for name, line, length in long_unexplained(path.read_text(encoding="utf-8")):
            if (rel, name) not in PENDING:
                offenders.append(f"service/medic/{rel}:{line} {name}: {length} lines")
    assert offenders == [], (
        f"functions over {MAX_LINES} lines: split them along their seams, or say why they stay "
        "long in a '# long because: ...' comment on the def line or the line above"
    )


def test_the_length_check_finds_a_long_function_and_honours_the_marker() -> None:
    body = "".join(f"    x{i} = {i}\n" for i in range(60))
    long_fn = "def f():\n" + body
    assert long_unexplained(long_fn) == [("f", 1, 61)]
    assert long_unexplained("def f():\n" + body[: -len("    x59 = 59\n")]) == []  # 60 lines: fine
    assert long_unexplained("# long because: a table\n" + long_fn) == []
    assert long_unexplained("def f():  # Long because it is a table\n" + body) == []
    method = "    # long because: argparse options\n    @staticmethod\n    def g():\n"
    decorated = "class C:\n" + method + body.replace("    ", "        ")
    assert long_unexplained(decorated) == []
    nested = "def outer():\n    def inner():\n" + body.replace("    ", "        ")
    assert [name for name, _, _ in long_unexplained(nested)] == ["outer", "outer.inner"]
    assert long_unexplained("# a comment\n\n" + long_fn) == [("f", 3, 61)]
    indented = body.replace("    ", "        ")
    for block, end in (
        ("if True:\n", ""),
        ("try:\n", "except E:\n    pass\n"),
        ("with x:\n", ""),
        ("for _ in y:\n", ""),
    ):
        found = long_unexplained(block + "    def f():\n" + indented + end)
        assert [name for name, _, _ in found] == ["f"], block
    in_method = "class C:\n    def m(self):\n        if x:\n            def h():\n"
    assert [n for n, _, _ in long_unexplained(in_method + body.replace("    ", "                "))] == [
        "C.m",
        "C.m.h",
    ]


# The pure core (DESIGN §5): importing any of its modules loads no I/O library and nothing of the
# layers above it. import-linter sees imports statement by statement; this sees what an import
# really runs (package __init__ files included), in a fresh interpreter per module.
PURE_CORE = ("domain", "rules", "analysis", "decision")
IO_LIBRARIES = (
    "aiohttp",
    "kubernetes_asyncio",
    "redis",
    "pymongo",
    "motor",
    "bson",
    "yaml",
    "sqlite3",
    "_sqlite3",
    "httpx",
    "requests",
    "urllib3",
    "aiofiles",
    "structlog",
)
ABOVE_THE_CORE = ("medic.clients", "medic.app", "medic.telemetry", "medic.collectors", "medic.remediation")
ALLOWED_ABOVE = re.compile(r"^medic\.collectors(\.k8s)?(\.[a-z_]+_output|\.output_base)?$")  # output models


def _core_modules() -> list[str]:
    out = []
    for layer in PURE_CORE:
        for path in sorted((PACKAGE / layer).rglob("*.py")):
            parts = path.relative_to(PACKAGE).with_suffix("").parts
            out.append(".".join(("medic", *(parts[:-1] if parts[-1] == "__init__" else parts))))
    return out


def loaded_by(module: str) -> list[str]:
    """What importing ``module`` in a fresh interpreter loads that the pure core must not."""
    probe = (
        f"import importlib, json, sys\nimportlib.import_module({module!r})\n"
        "print(json.dumps(sorted(sys.modules)))"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONSTARTUP"}
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, env=env)
    return [
        m
        for m in json.loads(out.stdout)
        if m.split(".")[0] in IO_LIBRARIES
        or (any(m == p or m.startswith(p + ".") for p in ABOVE_THE_CORE) and not ALLOWED_ABOVE.match(m))
    ]


@pytest.mark.parametrize("module", _core_modules())
def test_the_pure_core_loads_no_io_library(module: str) -> None:
    assert loaded_by(module) == []


def test_the_import_probe_sees_what_a_package_init_runs() -> None:
    assert "aiohttp" in loaded_by("medic.clients.kube.client")
    assert loaded_by("medic.collectors.k8s.pods_output") == []  # the package init imports nothing
    assert "medic.collectors.k8s.pods" in loaded_by("medic.collectors.k8s.pods")
