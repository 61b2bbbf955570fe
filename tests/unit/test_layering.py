"""The house's layers point one way: no import cycle between packages or subpackages, and
the terminal library imports none of the packages built on it (docs: shared design.md,
"The house").

The walk parses - never imports - every module under onecard/, terminal/, drivers/,
firmware_sim/ and backoffice/, and takes every import wherever it stands: module level, in a
function, under ``if TYPE_CHECKING``, and ``importlib.import_module`` of a literal name. A
lazy import still says that one part needs the other.

Two graphs are checked:

* **packages**: ``onecard``, ``terminal``, ``drivers``, ``firmware_sim``, ``backoffice``;
* **units**: a subpackage with everything below it (``terminal.ssc``, ``terminal.screen``
  including ``terminal.screen.page``), or a top-level module, which is a unit of its own
  (``terminal.policy``, ``terminal.errors``, ``onecard.runtime``). Counting the top-level
  modules as their package (``terminal``) would put every subpackage that imports
  ``terminal.errors`` in one cycle with every top-level module that imports a subpackage,
  and hide the real cycles in that noise.

A cycle fails naming its units and, for every edge, the file and line of one import that
makes it. Rules of the house that are not cycles: nothing under ``terminal`` imports
``drivers``, ``firmware_sim``, ``backoffice`` or ``onecard``; nothing under ``drivers``,
``firmware_sim`` or ``backoffice`` imports ``onecard`` (the composition root).
"""

from __future__ import annotations

import ast
from collections import defaultdict, deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("onecard", "terminal", "drivers", "firmware_sim", "backoffice")

KNOWN_CYCLES: frozenset[frozenset[str]] = frozenset()
"""Cycles tolerated for now, each as the set of units it joins - the one place they are
listed. Every entry names, in a comment, who removes it; an entry whose cycle is gone fails
:func:`test_known_cycles_are_still_there`, so the list only shrinks. Empty: the cycles of
issue 14 (terminal.ssc / terminal.secure / terminal.transit, and onecard.commands /
onecard.runtime / onecard.demo_morning) are broken, and no other was found."""

FORBIDDEN: dict[str, frozenset[str]] = {
    "terminal": frozenset({"drivers", "firmware_sim", "backoffice", "onecard"}),
    "drivers": frozenset({"onecard"}),
    "firmware_sim": frozenset({"onecard"}),
    "backoffice": frozenset({"onecard"}),
}
"""Package -> the packages it must never import: the library below its adapters and
simulators, all of them below the composition root."""


@dataclass(frozen=True)
class Import:
    """One import statement's target, resolved to a module of the walked tree."""

    source: str  # the importing module
    target: str  # the imported module (or package)
    path: Path
    line: int

    def where(self, root: Path) -> str:
        return f"{self.path.relative_to(root)}:{self.line} imports {self.target}"


def module_names(root: Path, packages: Iterable[str]) -> dict[str, Path]:
    """Dotted module name -> file, for every ``.py`` below the ``packages`` of ``root``."""
    found: dict[str, Path] = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _imported_names(tree: ast.AST, package: str) -> Iterator[tuple[int, str, tuple[str, ...]]]:
    """(line, module, names imported from it) for every import in ``tree``; relative
    imports resolved against ``package``."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name, ()
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                kept = parts[: len(parts) - (node.level - 1)]
                base = ".".join([*kept, base] if base else kept)
            yield node.lineno, base, tuple(alias.name for alias in node.names)
        elif isinstance(node, ast.Call) and node.args:
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            first = node.args[0]
            if name == "import_module" and isinstance(first, ast.Constant):
                yield node.lineno, str(first.value), ()


def imports(root: Path, packages: Iterable[str]) -> list[Import]:
    """Every import, in the walked packages, of a module of the walked packages.
    ``from terminal import ldt33`` is an import of ``terminal.ldt33``, not of ``terminal``."""
    modules = module_names(root, packages)
    tops = {name.partition(".")[0] for name in modules}
    found: list[Import] = []
    for source, path in modules.items():
        package = source if path.name == "__init__.py" else source.rpartition(".")[0]
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for line, module, names in _imported_names(tree, package):
            if module.partition(".")[0] not in tops:
                continue
            submodules = [f"{module}.{n}" for n in names if f"{module}.{n}" in modules]
            if len(submodules) < len(names) or not names:
                submodules.append(module)  # an attribute of the module, or `import module`
            found += [Import(source, target, path, line) for target in submodules]
    return found


def unit(module: str, depth: int) -> str:
    """The node of ``module``: its first ``depth`` dotted parts (2: a subpackage or a
    top-level module, 1: the package)."""
    return ".".join(module.split(".")[:depth])


def graph(edges: Iterable[Import], depth: int) -> dict[tuple[str, str], list[Import]]:
    """(unit, unit) -> the imports that make the edge; a unit importing itself is no edge."""
    found: dict[tuple[str, str], list[Import]] = defaultdict(list)
    for edge in edges:
        a, b = unit(edge.source, depth), unit(edge.target, depth)
        if a != b:
            found[(a, b)].append(edge)
    return found


def cycles(edges: Iterable[tuple[str, str]]) -> list[frozenset[str]]:
    """The strongly connected components of more than one node (Tarjan, iterative)."""
    successors: dict[str, list[str]] = defaultdict(list)
    for a, b in edges:
        successors[a].append(b)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[frozenset[str]] = []
    for start in sorted(successors):
        if start in index:
            continue
        work = [(start, iter(sorted(successors[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(successors[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(frozenset(component))
    return found


def shortest_cycle(component: frozenset[str], edges: Iterable[tuple[str, str]]) -> list[str]:
    """One shortest cycle through the first unit of ``component`` (it has one: a strongly
    connected component), as the units in order, the first repeated at the end."""
    successors: dict[str, list[str]] = defaultdict(list)
    for a, b in edges:
        if a in component and b in component:
            successors[a].append(b)
    start = min(component)
    came_from: dict[str, str] = {}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for child in sorted(successors[node]):
            if child == start:
                path = [node]
                while path[-1] != start:
                    path.append(came_from[path[-1]])
                return [*reversed(path), start]
            if child not in came_from:
                came_from[child] = node
                queue.append(child)
    raise AssertionError(f"{sorted(component)} is not strongly connected")


def describe(
    component: frozenset[str], edges: dict[tuple[str, str], list[Import]], root: Path
) -> str:
    """One shortest cycle of ``component``, then every edge inside the component with the
    first import that makes it (and how many more there are)."""
    lines = [" -> ".join(shortest_cycle(component, edges))]
    for (a, b), made_by in sorted(edges.items()):
        if a in component and b in component:
            more = f" (+{len(made_by) - 1} more)" if len(made_by) > 1 else ""
            lines.append(f"  {a} -> {b}: {made_by[0].where(root)}{more}")
    return "\n".join(lines)


def against_the_layers(edges: Iterable[Import]) -> list[Import]:
    """The imports :data:`FORBIDDEN` rules out."""
    return [
        edge
        for edge in edges
        if unit(edge.target, 1) in FORBIDDEN.get(unit(edge.source, 1), frozenset())
    ]


# --- the house -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def house() -> list[Import]:
    return imports(REPO_ROOT, PACKAGES)


def test_the_walk_sees_the_house(house: list[Import]) -> None:
    sources = {edge.source for edge in house}
    assert {unit(source, 1) for source in sources} == set(PACKAGES)
    assert {"onecard.cli", "terminal.ssc.authenticity", "drivers.pcsc"} <= sources
    assert any(
        edge.source == "terminal.secure.psam" and edge.target == "terminal.ssc.auth"
        for edge in house
    )


@pytest.mark.parametrize("depth", [1, 2], ids=["packages", "subpackages"])
def test_no_import_cycle(house: list[Import], depth: int) -> None:
    edges = graph(house, depth)
    found = [describe(c, edges, REPO_ROOT) for c in cycles(edges) if c not in KNOWN_CYCLES]
    assert not found, "import cycles:\n" + "\n".join(found)


def test_known_cycles_are_still_there(house: list[Import]) -> None:
    present = set(cycles(graph(house, 1))) | set(cycles(graph(house, 2)))
    gone = [sorted(cycle) for cycle in KNOWN_CYCLES if cycle not in present]
    assert not gone, f"no longer cycles, remove them from KNOWN_CYCLES: {gone}"


def test_no_import_against_the_layers(house: list[Import]) -> None:
    bad = [edge.where(REPO_ROOT) for edge in against_the_layers(house)]
    assert not bad, "imports against the layers:\n" + "\n".join(bad)


# --- the checker itself ----------------------------------------------------------------------


def write_tree(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_the_checker_finds_lazy_relative_and_dynamic_imports(tmp_path: Path) -> None:
    write_tree(
        tmp_path,
        {
            "terminal/__init__.py": "",
            "terminal/errors.py": "",
            "terminal/ssc/__init__.py": "",
            "terminal/ssc/auth.py": "from ..errors import X\n",
            "terminal/ssc/check.py": (
                "def f():\n    from terminal.secure import module\n    return module\n"
            ),
            "terminal/secure/__init__.py": "",
            "terminal/secure/module.py": "from terminal.ssc import auth\n",
            "terminal/screen/__init__.py": "",
            "terminal/screen/page/__init__.py": (
                "import importlib\nimportlib.import_module('terminal.policy')\n"
            ),
            "terminal/policy.py": "from terminal import screen\nfrom terminal.ssc.auth import y\n",
        },
    )
    edges = graph(imports(tmp_path, ["terminal"]), 2)
    assert set(edges) == {
        ("terminal.ssc", "terminal.errors"),
        ("terminal.ssc", "terminal.secure"),
        ("terminal.secure", "terminal.ssc"),
        ("terminal.screen", "terminal.policy"),
        ("terminal.policy", "terminal.screen"),
        ("terminal.policy", "terminal.ssc"),
    }
    found = {frozenset(c) for c in cycles(edges)}
    assert found == {
        frozenset({"terminal.ssc", "terminal.secure"}),
        frozenset({"terminal.screen", "terminal.policy"}),
    }
    text = describe(frozenset({"terminal.ssc", "terminal.secure"}), edges, tmp_path)
    assert "terminal.secure -> terminal.ssc -> terminal.secure" in text
    assert "terminal/ssc/check.py:2 imports terminal.secure.module" in text


def test_the_checker_names_one_shortest_cycle_of_a_component() -> None:
    edges = [("a", "b"), ("b", "c"), ("c", "a"), ("b", "a"), ("c", "d")]
    (component,) = cycles(edges)
    assert component == frozenset({"a", "b", "c"})
    assert shortest_cycle(component, edges) == ["a", "b", "a"]


def test_the_checker_finds_imports_against_the_layers(tmp_path: Path) -> None:
    write_tree(
        tmp_path,
        {
            "terminal/__init__.py": "",
            "terminal/outputs.py": "def f():\n    import drivers.relay_board\n",
            "drivers/__init__.py": "from onecard import cli\n",
            "drivers/relay_board.py": "import terminal.outputs\n",
            "onecard/__init__.py": "",
            "onecard/cli.py": "import drivers\nimport terminal\n",
        },
    )
    bad = against_the_layers(imports(tmp_path, ["terminal", "drivers", "onecard"]))
    assert sorted(edge.where(tmp_path) for edge in bad) == [
        "drivers/__init__.py:1 imports onecard.cli",
        "terminal/outputs.py:2 imports drivers.relay_board",
    ]
