"""The import graph of fgvc_core obeys docs/ARCHITECTURE.md's layers: no import points up a layer, and no two
modules import each other, directly or around a loop.

Read from the source (``ast``), so imports inside functions count too: a lazy import is still a dependency. A
package's lazy table (``fgvc_core._lazy``) names modules as strings and is not an import.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "fgvc_core"

# Lowest first; a module may import its own layer and the layers below it. Keep in step with ARCHITECTURE.md.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("errors", "_lazy"),
    ("ops",),
    ("data",),
    ("models",),
    ("explain",),
    ("engine",),
    ("app", "testing", "launch_app", "<root>"),
)
LAYER_OF = {part: rank for rank, parts in enumerate(LAYERS) for part in parts}


def _modules() -> dict[str, tuple[Path, bool]]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        found[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return found


MODULES = _modules()


def _root_exports() -> dict[str, str]:
    """``fgvc_core``'s lazily exported name -> its module (``from fgvc_core import build_model`` depends on it)."""
    tree = ast.parse((PACKAGE / "__init__.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "_EXPORTS" for t in node.targets):
            return ast.literal_eval(node.value)
    raise AssertionError("fgvc_core/__init__.py has no _EXPORTS table")


ROOT_EXPORTS = _root_exports()


def imports_of(name: str) -> set[str]:
    """The fgvc_core modules that module ``name`` imports anywhere in its source."""
    path, is_package = MODULES[name]
    package = name if is_package else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name if a.name != "fgvc_core" else "fgvc_core" for a in node.names if _ours(a.name))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parents = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parents + ([node.module] if node.module else []))
            if not _ours(base):
                continue
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                if sub in MODULES:
                    found.add(sub)  # from fgvc_core.explain import figures: the submodule
                elif base == "fgvc_core":  # from fgvc_core import X: X's defining module (errors and constants: 0)
                    found.add(ROOT_EXPORTS.get(alias.name, "fgvc_core.errors"))
                else:
                    found.add(base)
    return {m for m in found if m != name}


def _ours(module: str) -> bool:
    return module == "fgvc_core" or module.startswith("fgvc_core.")


def layer(module: str) -> int:
    parts = module.split(".")
    return LAYER_OF["<root>" if len(parts) == 1 else parts[1]]


def test_every_module_is_in_a_layer():
    assert sorted({m.split(".")[1] for m in MODULES if "." in m} - set(LAYER_OF)) == []


def test_the_reader_sees_imports_of_every_kind():
    """The checker itself: relative, submodule, root-export and in-function imports are all found."""
    assert "fgvc_core.ops.rollout" in imports_of("fgvc_core.models.rams_trans.trace")
    assert "fgvc_core.data.registry" in imports_of("fgvc_core.engine.data")
    assert "fgvc_core.explain.attribution.cam" in imports_of("fgvc_core.explain.scoring.evaluation")  # in a function


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_import_points_up_a_layer(name):
    upward = sorted(t for t in imports_of(name) if layer(t) > layer(name))
    assert upward == [], f"{name} (layer {layer(name)}) imports a higher layer: {upward}"


def test_no_import_cycle():
    graph = {name: {t for t in imports_of(name) if t in MODULES} for name in MODULES}
    cycles = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(path[path.index(nxt) :] + [nxt])
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for start in sorted(graph):
        if start not in state:
            visit(start, [start])
    # A package's __init__ that imports its own submodules (a re-export) is not a cycle of design; none is left.
    assert cycles == []
