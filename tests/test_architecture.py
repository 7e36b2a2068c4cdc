"""The house's shape: no import circles anywhere in the package (lazy and type-only
imports included), and the layer contracts of pyproject.toml hold (`lint-imports` checks
those; this test checks what import-linter has no contract for)."""

from __future__ import annotations

import ast
from pathlib import Path

import grimp

CLI = Path(__file__).resolve().parent.parent / "reconciler" / "cli"


def _circles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iteratively)."""
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
                    work.append(
                        (child, iter(sorted(graph.find_modules_directly_imported_by(child))))
                    )
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
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


def test_no_import_circles() -> None:
    graph = grimp.build_graph("reconciler")
    assert _circles(graph) == []


def test_the_circle_finder_finds_a_circle() -> None:
    graph = grimp.ImportGraph()
    for name in ("p", "p.a", "p.b", "p.c"):
        graph.add_module(name)
    graph.add_import(importer="p.a", imported="p.b")
    graph.add_import(importer="p.b", imported="p.a")
    graph.add_import(importer="p.b", imported="p.c")
    assert _circles(graph) == [["p.a", "p.b"]]


def _private_uses(source: str, where: str) -> list[str]:
    """Private names (one leading underscore) of the package's modules used in ``source``:
    imported by name, or read as an attribute of an imported module or name."""
    tree = ast.parse(source)
    found: list[str] = []
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("reconciler"):
            for alias in node.names:
                if alias.name.startswith("_") and not alias.name.startswith("__"):
                    found.append(f"{where}:{node.lineno}: {node.module}.{alias.name}")
                imported.add(alias.asname or alias.name)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("reconciler"):
                    imported.add(alias.asname or alias.name.partition(".")[0])
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in imported
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
        ):
            found.append(f"{where}:{node.lineno}: {node.value.id}.{node.attr}")
    return found


def test_the_command_line_uses_no_private_name_of_another_module() -> None:
    found = [
        use
        for path in sorted(CLI.glob("*.py"))
        for use in _private_uses(path.read_text(encoding="utf-8"), path.name)
    ]
    assert found == []


def test_the_private_name_finder_finds_both_forms() -> None:
    source = (
        "from reconciler.cli.commands import _engine, run_plan\n"
        "from reconciler.cli import commands as single\n"
        "single._print('x')\n"
        "single.print_text('x')\n"
        "import argparse\n"
        "argparse._SubParsersAction\n"
    )
    assert _private_uses(source, "m.py") == [
        "m.py:1: reconciler.cli.commands._engine",
        "m.py:3: single._print",
    ]
