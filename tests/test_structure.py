"""The package's shape: three parts below the entry points, imports that run one way between them, no cycle (not
even one hidden in an import inside a function), and small modules.

The parts (README, "Where things are"):
- the base, harness/*.py: the config schema, the records, the learning-rate choice read from records, the
  process's start;
- run/: one run, top to bottom (config checks -> data -> model -> train -> score -> record);
- predict/: the memory model (count -> calibrate -> predict);
- report/: everything made from records (frames -> comparisons -> claims -> reports, `budget`).
run/ and predict/ never import report/; report/ reads records and predict/, never run/; predict/ imports
neither. Only the entry points (harness/__init__.py, harness/__main__.py) import across all of them.
"""

from __future__ import annotations

import ast
from pathlib import Path

HARNESS = Path(__file__).resolve().parent.parent / "harness"
ENTRY_POINTS = {"harness", "harness.__main__"}
# the parts each part may import (its own included)
ALLOWED = {
    "base": {"base"},
    "predict": {"base", "predict"},
    "run": {"base", "predict", "run"},
    "report": {"base", "predict", "report"},
}
MAX_TOP_LEVEL_MODULES = 6
MAX_MODULE_LINES = 400


def module_name(root: Path, path: Path) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def part_of(module: str) -> str:
    """base, run, predict or report (or entry for the entry points)."""
    if module in ENTRY_POINTS:
        return "entry"
    pieces = module.split(".")
    return pieces[1] if len(pieces) > 2 or (len(pieces) == 2 and pieces[1] in ALLOWED) else "base"


def import_graph(root: Path = HARNESS, *, type_checking: bool = True) -> dict[str, set[str]]:
    """harness module -> the harness modules it imports anywhere in its file, top level or inside functions
    (and, with type_checking, under `if TYPE_CHECKING:`, which never runs)."""
    files = {module_name(root, p): p for p in root.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        if not type_checking:
            for block in ast.walk(tree):
                if isinstance(block, ast.If) and getattr(block.test, "id", "") == "TYPE_CHECKING":
                    block.body = []
        imported: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("harness"):
                # `from harness.report import claims` imports the module harness.report.claims
                for alias in node.names:
                    full = f"{node.module}.{alias.name}"
                    imported.add(full if full in files else node.module)
            elif isinstance(node, ast.Import):
                imported |= {a.name for a in node.names if a.name.startswith("harness")}
        graph[name] = {m for m in imported if m in files and m != name}
    return graph


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    """Every import against the parts' direction, as 'importer -> imported'."""
    found = []
    for module, imported in sorted(graph.items()):
        part = part_of(module)
        if part == "entry":
            continue
        found += [f"{module} -> {other}" for other in sorted(imported) if part_of(other) not in ALLOWED[part] | {part}]
    return found


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    found, state = [], {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
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
    assert cycles(import_graph(type_checking=False)) == []


def test_imports_run_one_way_between_the_parts():
    graph = import_graph()
    assert {part_of(m) for m in graph} == {"entry", "base", "run", "predict", "report"}
    assert upward_imports(graph) == []


def test_an_upward_import_inside_a_function_is_found(tmp_path):
    """The direction check reads imports anywhere in a file: predict/ importing report/ inside a function, or
    report/ importing run/ by `from harness.run import ...`, each fail it."""
    root = tmp_path / "harness"
    for folder in ("run", "predict", "report"):
        (root / folder).mkdir(parents=True)
        (root / folder / "__init__.py").write_text("")
    (root / "__init__.py").write_text("")
    (root / "config.py").write_text("X = 1\n")
    (root / "run" / "train.py").write_text("from harness.config import X\nfrom harness.predict import memory\n")
    (root / "predict" / "memory.py").write_text("from harness import config\n")
    (root / "report" / "frames.py").write_text("from harness.predict.memory import config\n")
    assert upward_imports(import_graph(root)) == []

    (root / "predict" / "memory.py").write_text("def f():\n    from harness.report.frames import y\n")
    (root / "report" / "plots.py").write_text("from harness.run import train\n")
    (root / "config.py").write_text("import harness.run.train\n")
    assert upward_imports(import_graph(root)) == [
        "harness.config -> harness.run.train",
        "harness.predict.memory -> harness.report.frames",
        "harness.report.plots -> harness.run.train",
    ]


def test_the_top_level_is_small_and_no_module_is_long():
    top_level = sorted(p.name for p in HARNESS.glob("*.py"))
    assert len(top_level) <= MAX_TOP_LEVEL_MODULES, top_level
    long = {
        str(p.relative_to(HARNESS)): n
        for p in HARNESS.rglob("*.py")
        if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES
    }
    assert long == {}
