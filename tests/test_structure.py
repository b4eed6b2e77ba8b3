"""The package's floors hold: every import goes down (or stays on its floor), and no modules import each other in a
circle, whether the import sits at the top of a module or inside a function (docs/architecture.md)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "cnntrain"
FLOORS = [  # bottom up: a module may import from its own floor and the floors below it
    ("errors",),
    ("files", "disk", "version", "reading"),
    ("config",),
    ("device",),
    ("data",),
    ("models",),
    ("reporting",),
    ("training",),
    ("inference",),
    ("auditing", "serving"),
    ("commands",),
    ("results", "process_state"),
    ("api",),
    ("__init__", "__main__"),
]
FLOOR = {part: number for number, parts in enumerate(FLOORS) for part in parts}


def modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports(path: Path, name: str, known: set[str]) -> set[str]:
    """The package's modules that `name` imports anywhere in its file (top, function bodies, TYPE_CHECKING)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def floor(name: str) -> int:
    parts = name.split(".")
    return FLOOR[parts[1] if len(parts) > 1 else "__init__"]


def graph() -> dict[str, set[str]]:
    found = modules()
    return {name: imports(path, name, set(found)) for name, path in found.items()}


def test_every_module_has_a_floor():
    assert [name for name in modules() if name != "cnntrain" and name.split(".")[1] not in FLOOR] == []


def test_imports_never_run_back_up_a_floor():
    edges = graph()
    up = sorted(f"{a} -> {b}" for a, targets in edges.items() for b in targets if floor(b) > floor(a))
    assert up == []


def test_no_import_circles():
    edges = graph()
    circles, state = [], {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == "open":
                circles.append(" -> ".join([*stack[stack.index(nxt) :], nxt]))
            elif nxt not in state:
                visit(nxt, [*stack, nxt])
        state[node] = "done"

    for name in sorted(edges):
        if name not in state:
            visit(name, [name])
    assert circles == []


def test_the_checks_see_an_import_that_runs_up(tmp_path):
    """The walker finds a module-level and an in-function import (so the checks above can fail)."""
    source = tmp_path / "mod.py"
    source.write_text("from cnntrain.training import run\n\ndef f():\n    from cnntrain.api import train\n")
    found = imports(source, "cnntrain.data.mod", {"cnntrain.training.run", "cnntrain.api", "cnntrain.data.mod"})
    assert found == {"cnntrain.training.run", "cnntrain.api"}
    assert floor("cnntrain.api") > floor("cnntrain.data.mod")
