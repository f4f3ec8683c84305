"""The package's shape: no import cycle between airpack's modules (imports inside functions count: a lazy import
is still a dependency), and no module over 450 lines.

The graph is read with ``ast``, never by importing: ``import a.b``, ``from a import b`` (``a.b`` when it is a
module, else ``a``), relative imports, at any depth of the module. An import of a module's own parent package is
not an edge (Python runs a package's ``__init__`` before any of its modules anyway).
"""

from __future__ import annotations

import ast
from pathlib import Path

import airpack

MAX_LINES = 450
PACKAGE = Path(airpack.__file__).resolve().parent


def modules(package: Path) -> dict[str, Path]:
    """Every module of ``package`` by dotted name (a package by its own name, not ``….__init__``)."""
    found = {}
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(package.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _targets(name: str, path: Path, node: ast.Import | ast.ImportFrom, known: dict[str, Path]) -> list[str]:
    """The dotted names one import statement in module ``name`` refers to (modules or names in them)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if node.level:  # relative: from the module's package, one level up per extra dot
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        parts = package.split(".")
        base = ".".join(parts[: len(parts) - node.level + 1])
        target = f"{base}.{node.module}" if node.module else base
    else:
        target = node.module or ""
    return [f"{target}.{a.name}" if f"{target}.{a.name}" in known else target for a in node.names]


def import_graph(package: Path) -> dict[str, set[str]]:
    """Module → the package's modules it imports, at module level or inside any function or class."""
    known = modules(package)
    graph: dict[str, set[str]] = {m: set() for m in known}
    for name, path in known.items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.Import | ast.ImportFrom):
                continue
            for target in _targets(name, path, node, known):
                while target and target not in known:  # a name inside a module: the module
                    target = target.rpartition(".")[0]
                if target and target != name and not name.startswith(target + "."):
                    graph[name].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import cycles: each strongly connected component of more than one module, sorted (Tarjan,
    iterative: no recursion limit on a deep chain)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, edges = work[-1]
            nxt = next(edges, None)
            if nxt is not None:
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph[nxt]))))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
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
    return sorted(found)


def long_modules(package: Path, max_lines: int) -> list[tuple[str, int]]:
    """Modules over ``max_lines`` lines, longest first."""
    sizes = [(name, len(path.read_text().splitlines())) for name, path in modules(package).items()]
    return sorted(((n, c) for n, c in sizes if c > max_lines), key=lambda nc: -nc[1])


# ------------------------------------------------------------------------------------------- the package


def test_no_import_cycles() -> None:
    found = cycles(import_graph(PACKAGE))
    assert not found, "import cycles (lazy imports count):\n" + "\n".join(" <-> ".join(c) for c in found)


def test_no_module_over_the_limit() -> None:
    over = long_modules(PACKAGE, MAX_LINES)
    assert not over, f"modules over {MAX_LINES} lines: " + ", ".join(f"{n} ({c})" for n, c in over)


def test_the_graph_sees_the_package() -> None:
    graph = import_graph(PACKAGE)
    assert "airpack.api" in graph["airpack.cli.build_side"]  # ``from airpack import api``: a submodule
    assert "airpack.verify" in graph["airpack.api.bundles"]  # inside a function
    assert "airpack.cli.common" in graph["airpack.cli.bundles"]


# ------------------------------------------------------------------------------------------ the detector


def _package(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root / "pkg"


def test_a_tree_without_cycles_passes(tmp_path: Path) -> None:
    pkg = _package(tmp_path, {
        "pkg/__init__.py": "from pkg import a\n",
        "pkg/a.py": "import os\nfrom pkg.b import thing\n",
        "pkg/b.py": "from . import c\nthing = 1\n",
        "pkg/c.py": "from pkg import __version__\n",  # the parent package: not an edge
        "pkg/sub/__init__.py": "from .. import c\n",
        "pkg/sub/d.py": "from ..a import x\nfrom . import e\n",
        "pkg/sub/e.py": "",
    })
    graph = import_graph(pkg)
    assert graph["pkg.sub.d"] == {"pkg.a", "pkg.sub.e"} and graph["pkg.sub"] == {"pkg.c"}
    assert graph["pkg.c"] == set()
    assert cycles(graph) == []
    assert long_modules(pkg, 1) == [("pkg.a", 2), ("pkg.b", 2), ("pkg.sub.d", 2)]


def test_every_kind_of_import_makes_a_cycle(tmp_path: Path) -> None:
    pkg = _package(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/a.py": "def f():\n    import pkg.b.deep\n",  # lazy, dotted
        "pkg/b/__init__.py": "",
        "pkg/b/deep.py": "class K:\n    def m(self):\n        from ..a import f\n",  # relative, in a method
        "pkg/x.py": "from pkg import y\n",  # ``from package import submodule``
        "pkg/y.py": "from .z import name\n",
        "pkg/z.py": "if True:\n    from pkg.x import other\n",
        "pkg/alone.py": "from pkg import a\n",
    })
    assert cycles(import_graph(pkg)) == [["pkg.a", "pkg.b.deep"], ["pkg.x", "pkg.y", "pkg.z"]]


def test_the_test_names_the_cycle(tmp_path: Path) -> None:
    pkg = _package(tmp_path, {"pkg/__init__.py": "", "pkg/p.py": "from pkg import q\n",
                              "pkg/q.py": "def f():\n    from pkg.p import g\n"})
    found = cycles(import_graph(pkg))
    assert [" <-> ".join(c) for c in found] == ["pkg.p <-> pkg.q"]
