"""The package's shape: imports run one way (config -> run -> record -> frames -> reports), with no cycle, not
even one hidden in an import inside a function."""

from __future__ import annotations

import ast
from pathlib import Path

HARNESS = Path(__file__).resolve().parent.parent / "harness"


def import_graph() -> dict[str, set[str]]:
    """harness module -> the harness modules it imports anywhere in its file (top level or inside functions)."""
    modules = {p.stem for p in HARNESS.glob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for path in HARNESS.glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        # imports for type checkers only (`if TYPE_CHECKING:`) never run: they make no cycle
        for block in ast.walk(tree):
            if isinstance(block, ast.If) and getattr(block.test, "id", "") == "TYPE_CHECKING":
                block.body = []
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("harness"):
                names = [node.module.split(".")[1]] if "." in node.module else [a.name for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name.split(".")[1] for a in node.names if a.name.startswith("harness.")]
            graph[path.stem] |= {n for n in names if n in modules and n != path.stem}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    found, state = [], {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                found.append([*stack[stack.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt, [*stack, nxt])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    return found


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_in_harness():
    assert cycles(import_graph()) == []
