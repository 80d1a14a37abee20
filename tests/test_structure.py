"""The import graph of the ``nnzoo`` package has no cycle (issue 28, item 11).

Why: a cycle means two modules can only be understood, tested and loaded together, and it is hidden by
imports moved into functions.  The graph is built statically (``ast``) from every ``import`` and
``from ... import`` anywhere in a module, function-level and ``TYPE_CHECKING`` imports included, so a
lazy import does not hide a cycle.  The rules that turn an import into an edge:

* ``import a.b.c`` and ``from a.b.c import x`` are edges to ``a.b.c`` only; the parent packages that
  Python runs first (``a``, ``a.b``) are not edges, since a package's ``__init__`` importing its own
  submodules would otherwise make every submodule a cycle with it.
* ``from a.b import x`` where ``x`` is a submodule ``a.b.x`` is an edge to ``a.b.x``.
* ``from a.b import x`` where the package ``a.b`` re-exports ``x`` (``from a.b.m import x`` in its
  ``__init__``) is an edge to ``a.b.m``, the module that defines ``x``, followed through further
  re-exports; any other name is an edge to ``a.b``.  So ``from nnzoo import __version__`` points at
  ``nnzoo.version``, while the lazy public API of ``nnzoo/__init__.py`` (its ``__getattr__`` imports
  ``nnzoo.pretrained`` and ``nnzoo.inference``) makes the root package depend on them: no module inside
  the package may import those names from ``nnzoo``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import nnzoo

ROOT = Path(nnzoo.__file__).parent


def _module_names() -> dict[str, Path]:
    """Dotted name -> file of every module of the package (a package is named by its ``__init__.py``)."""
    names = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = ("nnzoo", *path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names[".".join(parts)] = path
    return names


def _imports(name: str, path: Path, is_package: bool) -> list[tuple[str, list[str], int]]:
    """``(module, imported names, line)`` of every import in the file, relative ones made absolute."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, [], node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[:len(base) - node.level + 1]
                module = ".".join([*base, module] if module else base)
            found.append((module, [alias.name for alias in node.names], node.lineno))
    return found


def _reexports(package: str, files: dict[str, Path]) -> dict[str, str]:
    """Name -> module that ``package``'s ``__init__`` takes it from (its ``from X import name`` lines)."""
    return {imported: module for module, names, _ in _imports(package, files[package], True)
            for imported in names if module in files and module != package}


def _target(module: str, name: str | None, files: dict[str, Path]) -> str | None:
    """The module an import of ``name`` from ``module`` depends on (the rules of the docstring)."""
    if module not in files:
        return None  # not part of nnzoo
    seen = set()
    while name is not None and files[module].name == "__init__.py" and (module, name) not in seen:
        seen.add((module, name))
        if f"{module}.{name}" in files:
            return f"{module}.{name}"
        source = _reexports(module, files).get(name)
        if source is None:
            break
        module = source
    return module


def import_graph() -> dict[str, dict[str, int]]:
    """Module -> {module it imports: line of the first such import}."""
    files = _module_names()
    graph: dict[str, dict[str, int]] = {name: {} for name in files}
    for name, path in files.items():
        for module, names, line in _imports(name, path, path.name == "__init__.py"):
            for imported in names or [None]:
                target = _target(module, imported, files)
                if target is not None and target != name:
                    graph[name].setdefault(target, line)
    return graph


def find_cycle(graph: dict[str, dict[str, int]]) -> list[str] | None:
    """One cycle of ``graph`` (its modules in order, the first repeated at the end), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def _describe(cycle: list[str], graph: dict[str, dict[str, int]]) -> str:
    return " -> ".join(f"{a} (line {graph[a][b]})" for a, b in zip(cycle, cycle[1:])) + f" -> {cycle[-1]}"


def test_the_package_imports_run_one_way():
    graph = import_graph()
    cycle = find_cycle(graph)
    assert cycle is None, f"import cycle: {_describe(cycle, graph)}"


def test_the_graph_sees_function_level_imports_and_reexports():
    """The rules themselves, on modules whose imports are known: a lazy import inside a function is an
    edge, and a name taken from a package is an edge to the module that defines it."""
    graph = import_graph()
    assert "nnzoo.pretrained" in graph["nnzoo.train"]  # a top-level import
    assert "nnzoo.tasks" in graph["nnzoo.checkpoint_files"]  # `from nnzoo.tasks import task_class`, in a function
    assert "nnzoo.inference" in graph["nnzoo"]  # the package's lazy public API (PEP 562 __getattr__)
    assert "nnzoo.data.datamodule" in graph["nnzoo.train"]  # create_datamodule, re-exported by nnzoo.data
    assert "nnzoo.version" in graph["nnzoo.train"] and "nnzoo" not in graph["nnzoo.train"]  # nnzoo.__version__
    assert "nnzoo.data" not in graph["nnzoo.data.inr"]  # a submodule's import does not point at its package
    assert find_cycle({"a": {"b": 1}, "b": {"c": 2}, "c": {"a": 3}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b": 1}, "b": {}}) is None
