"""The package layering of /work/shared/LAYOUT.md (README "Layout"), checked from the code's own imports.

Every ``import`` / ``from ... import`` of a ``dinosim`` module is read with :mod:`ast`, at any depth (function-level
imports included, ``TYPE_CHECKING`` blocks excluded: they never run). A module may import its own layer and the
layers :data:`ALLOWED` lists for it; modules never import each other in a cycle. ``envs`` may read ``config`` (the
env constructors check their kwargs with config's env value rules; the audit judges baselines with the curriculum's
gate rule); ``config`` never imports ``envs`` (it reads the env constructors' source with ``ast``).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import dinosim

PACKAGE = Path(dinosim.__file__).parent
LAYERS: dict[str, tuple[str, ...]] = {  # layer -> its module prefixes
    "base": ("dinosim.species", "dinosim.errors", "dinosim.registration"),
    "runfolder": ("dinosim.runfolder", "dinosim.run_integrity", "dinosim.run_lock"),
    "config": ("dinosim.config",),
    "envs": ("dinosim.envs",),
    "tracking": ("dinosim.tracking",),
    "training": ("dinosim.training",),
    "sweeps": ("dinosim.sweeps",),
    "cli": ("dinosim.cli", "dinosim.__main__", "dinosim"),
}
ALLOWED: dict[str, set[str]] = {  # layer -> the other layers it may import (LAYOUT.md)
    "base": set(),
    "runfolder": {"base"},
    "config": {"base"},
    "envs": {"config", "base"},
    "tracking": {"envs", "config", "runfolder", "base"},
    "training": {"tracking", "envs", "config", "runfolder", "base"},
    "sweeps": {"training", "tracking", "envs", "config", "runfolder", "base"},
    "cli": {"sweeps", "training", "tracking", "envs", "config", "runfolder", "base"},
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> str:
    """The layer whose most specific prefix names ``module``."""
    best, length = None, -1
    for layer, prefixes in LAYERS.items():
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > length:
                best, length = layer, len(prefix)
    assert best is not None, f"{module} belongs to no layer; add it to LAYERS (and to LAYOUT.md)"
    return best


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imported_modules(path: Path, known: set[str]) -> set[str]:
    """The dinosim modules that ``path`` imports when it runs (``from a import b`` counts ``a.b`` if that is a
    module, else ``a``)."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                found.add(full if full in known else node.module)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    return {m for m in found if m == "dinosim" or m.startswith("dinosim.")}


def import_graph() -> dict[str, set[str]]:
    files = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    known = set(files)
    return {name: imported_modules(path, known) - {name} for name, path in files.items()}


def test_every_import_goes_to_the_same_or_an_allowed_lower_layer() -> None:
    bad = sorted(f"{module} ({layer_of(module)}) imports {target} ({layer_of(target)})"
                 for module, targets in import_graph().items() for target in targets
                 if layer_of(target) != layer_of(module) and layer_of(target) not in ALLOWED[layer_of(module)])
    assert not bad, "imports the layer rules do not allow:\n" + "\n".join(bad)


def test_allowed_layers_are_an_order() -> None:
    """No two layers may import each other, directly or through others."""
    for layer in ALLOWED:
        reachable, todo = set(), list(ALLOWED[layer])
        while todo:
            other = todo.pop()
            if other not in reachable:
                reachable.add(other)
                todo.extend(ALLOWED[other])
        assert layer not in reachable


def test_no_import_cycles_between_modules() -> None:
    graph = import_graph()
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                cycles.append(path[path.index(target):] + [target])
            elif target in graph and not state.get(target):
                visit(target)
        path.pop()
        state[node] = 2

    for module in sorted(graph):
        if not state.get(module):
            visit(module)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


@pytest.mark.parametrize(("module", "layer"), [
    ("dinosim.runfolder", "runfolder"), ("dinosim.config.flatten", "config"), ("dinosim.envs", "envs"),
    ("dinosim.tracking.render", "tracking"), ("dinosim.cli.run_cmds", "cli"), ("dinosim", "cli"),
])
def test_layer_lookup(module: str, layer: str) -> None:
    assert layer_of(module) == layer
