"""The layers depend on each other in one direction only, and the SDK stays light.

The import graph is read from the source (every ``import`` statement, function-level ones
included, except those under ``if TYPE_CHECKING:``), so a lazy import cannot hide a dependency:

- between layers, only the edges of ``ALLOWED`` exist (``core`` imports no layer and not the
  dev stack; only the CLI may import everything);
- between modules, the imports executed at import time form no cycle;
- ``import hopscope.ingest`` in a fresh interpreter loads neither polars, the Elasticsearch
  client, Kafka's admin client, the CLI nor the dev stack.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCE_ROOTS = [
    ROOT / p for p in ("src", "core/src", "ingest/src", "processors/src", "analysis/src")
]

# layer → the layers it may import (besides itself).
ALLOWED: dict[str, set[str]] = {
    "core": set(),
    "ingest": {"core"},
    "processors": {"core", "ingest"},
    "analysis": {"core", "ingest", "processors"},
    "stack": {"core"},
    "dashboards": {"core", "ingest", "processors"},
    "lab": {"core"},
    "cli": {"core", "ingest", "processors", "analysis", "stack", "dashboards", "lab"},
}


def _modules() -> dict[str, Path]:
    found = {}
    for root in SOURCE_ROOTS:
        for path in root.rglob("*.py"):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST, *, top_level_only: bool) -> Iterator[str]:
    """Imported hopscope module names; ``top_level_only`` skips function bodies."""
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node):
            stack.extend(node.orelse)
            continue
        if top_level_only and isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module
            # `from hopscope.x import y` may import the submodule y.
            yield from (f"{node.module}.{alias.name}" for alias in node.names)
        stack.extend(ast.iter_child_nodes(node))


def _graph(*, top_level_only: bool) -> dict[str, set[str]]:
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        graph[name] = {
            target
            for target in _imports(tree, top_level_only=top_level_only)
            if target in modules and target != name
        }
    return graph


def _layer(module: str) -> str:
    return module.split(".")[1]


def test_layers_import_only_downstream() -> None:
    violations = sorted(
        f"{source} imports {target}"
        for source, targets in _graph(top_level_only=False).items()
        for target in targets
        if _layer(target) != _layer(source) and _layer(target) not in ALLOWED[_layer(source)]
    )
    assert violations == []


def test_no_import_cycle_at_import_time() -> None:
    graph = _graph(top_level_only=True)
    # A package importing its own submodules (to re-export them) is how __init__ works, not a
    # cycle: drop the edges from a module to the package that contains it.
    for source, targets in graph.items():
        graph[source] = {t for t in targets if not source.startswith(t + ".")}
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    cycles: list[list[str]] = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                cycles.append([*path[path.index(target) :], target])
            elif target not in state:
                visit(target, [*path, target])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert cycles == []


def test_the_sdk_import_stays_light() -> None:
    heavy = ["polars", "elasticsearch", "kafka.admin", "hopscope.cli", "hopscope.stack", "typer"]
    loaded = subprocess.run(
        [sys.executable, "-c", (
            "import sys, hopscope.ingest\n"
            f"print(' '.join(m for m in {heavy!r} if m in sys.modules))\n"
        )],
        capture_output=True, text=True, check=True, cwd=ROOT.parent,
    ).stdout.split()  # fmt: skip
    assert loaded == []
