"""The plan of the house (DESIGN §5): no module imports a module that imports it back.

import-linter's contracts (pyproject.toml, run by `make imports` before the tests) keep the layers
in order; a cycle inside one layer is invisible to them, so this test looks for any cycle in the
whole import graph (grimp, import-linter's own graph library), function-level and typing-only
imports included: a knot is a knot whenever it is tied."""

from __future__ import annotations

import grimp


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
