"""The shape of the library: no module of gram/ imports, however indirectly, a module that imports it.

Imports are read from the source with `ast`, those inside functions included (they run too, only later);
only those under `if TYPE_CHECKING:` are left out, since they never run. Importing gram.a.b runs gram.a's
__init__ first, so it counts as importing gram.a too, unless the importer lives inside gram.a.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from conftest import ROOT

PACKAGE = ROOT / "gram"


def modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING")


def _imports(node: ast.AST):
    """Every import statement under node, outside `if TYPE_CHECKING:` blocks."""
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        yield node
    elif isinstance(node, ast.If) and _type_checking(node):
        for other in node.orelse:
            yield from _imports(other)
    else:
        for child in ast.iter_child_nodes(node):
            yield from _imports(child)


def imported(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The modules of gram/ that module `name` imports."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    targets = []
    for node in _imports(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets += [a.name for a in node.names]
            continue
        base = node.module or ""
        if node.level:
            up = package.split(".")[: len(package.split(".")) - (node.level - 1)]
            base = ".".join(up + ([node.module] if node.module else []))
        targets += [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
    out = set()
    for t in targets:
        while t and t not in known:  # `import gram.x.y.attr`-style names: the module that holds them
            t = t.rpartition(".")[0]
        parts = t.split(".")
        for i in range(1, len(parts) + 1):  # the packages whose __init__ runs first
            mod = ".".join(parts[:i])
            if mod in known and mod != name and not (name + ".").startswith(mod + "."):
                out.add(mod)
    return out


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import cycles: strongly connected components of more than one module (Tarjan), each as a path."""
    index, low, stack, on, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_reader_finds_imports_of_every_kind():
    known = modules()
    assert {"gram.model", "gram.tasks", "gram.tasks.base"} <= imported("gram.heads", known["gram.heads"], known)
    assert "gram.tasks.mnist_classifier" in imported("gram.tasks.mnist", known["gram.tasks.mnist"], known)  # in a method
    assert "gram.evaluate" not in imported("gram", known["gram"], known)  # under TYPE_CHECKING only
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycle_in_the_library():
    known = modules()
    graph = {name: imported(name, path, known) for name, path in known.items()}
    found = cycles(graph)
    assert not found, "import cycles: " + "; ".join(" <-> ".join(c) for c in found)


def test_every_task_has_one_recipe_of_real_config_fields():
    from gram.recipes import RECIPES, default_config
    from gram.tasks import task_names

    assert set(RECIPES) == set(task_names())
    for name in task_names():
        cfg = default_config(name)
        assert cfg.train.task == name
        cfg.validate()
    assert default_config("graph_coloring8").train.beta == 12.0 and default_config("mnist").model.patch == 7
    with pytest.raises(ValueError, match="unknown task"):
        default_config("chess")


def test_the_library_data_ships_inside_the_package():
    """`pip install .` carries what is inside gram/ only: the files the library reads must live there."""
    import gram
    from gram.tasks.mnist_classifier import ASSET

    assert ASSET.is_file() and ASSET.resolve().is_relative_to(Path(gram.__file__).resolve().parent)
