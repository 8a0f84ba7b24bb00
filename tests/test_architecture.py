"""The shape of the code: core/ has no import cycles, and no module reaches into another module's private names.

The import graph is read from the source with ``ast``, not by importing anything. An import inside a function
counts (a lazy import is still a dependency); an import under ``if TYPE_CHECKING:`` does not (it never runs).
Edges go to the module an import names: ``from core import x`` is an edge to ``core.x`` when ``x`` is a
submodule, ``from core.pkg import name`` an edge to ``core.pkg`` (its ``__init__``) when ``name`` is not.

A name is private when it starts with one underscore. ``_name`` in module ``core.m`` may be used only by
``core.m``; ``_name`` in a package (its ``__init__`` or a ``_name`` submodule) by that package and the modules
inside it. tests/ is not checked: a test may reach into a module to pin its internals (one does, for
core.data._load_file).

The self-tests at the bottom run the checker on small made-up trees, so that each rule is known to fail.
"""

from __future__ import annotations

import ast
import textwrap
from collections import defaultdict, deque
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIRST_PARTY = ("core", "dashboard", "bench", "tests")
PRIVATE_CHECKED = ("core", "dashboard", "bench")


@dataclass(frozen=True)
class Import:
    """One name an import statement (or an attribute of an imported module) reaches: ``target.name``."""

    path: Path  # the importing file
    line: int
    importer: str  # the importing module, e.g. core.features
    target: str  # the module the import depends on, e.g. core.training
    name: str | None  # the attribute of target it takes (from-imports, attribute uses); None for a module
    type_checking: bool  # under `if TYPE_CHECKING:`
    attribute: bool = False  # an attribute use (`training._x`), not an import statement


def module_index(root: Path, folders: tuple[str, ...] = FIRST_PARTY) -> dict[str, Path]:
    """Module name -> file, for every .py under the given top-level folders (a package is its __init__.py)."""
    index = {}
    for folder in folders:
        for path in sorted((root / folder).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            index[".".join(parts)] = path
    return index


def _is_package(module: str, index: dict[str, Path]) -> bool:
    return index[module].name == "__init__.py"


def _longest_module(dotted: str, index: dict[str, Path]) -> str | None:
    parts = dotted.split(".")
    for end in range(len(parts), 0, -1):
        if ".".join(parts[:end]) in index:
            return ".".join(parts[:end])
    return None


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    """ids of the nodes under `if TYPE_CHECKING:` / `if typing.TYPE_CHECKING:` (not their else branches)."""
    guarded = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If):
            test = node.test
            name = test.id if isinstance(test, ast.Name) else test.attr if isinstance(test, ast.Attribute) else None
            if name == "TYPE_CHECKING":
                guarded |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    return guarded


def imports_of(module: str, index: dict[str, Path]) -> list[Import]:
    """Every first-party import in one module, resolved to the module it depends on."""
    path = index[module]
    tree = ast.parse(path.read_text(), filename=str(path))
    guarded = _type_checking_nodes(tree)
    package = module if _is_package(module, index) else module.rpartition(".")[0]
    found: list[Import] = []
    bound: dict[str, str] = {}  # local name -> the first-party module it was bound to, for attribute uses

    def add(node: ast.stmt, target: str, name: str | None) -> None:
        found.append(Import(path, node.lineno, module, target, name, id(node) in guarded))

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                target = _longest_module(alias.name, index)
                if target is None:
                    continue
                add(node, target, None)
                if alias.asname:
                    bound[alias.asname] = alias.name
                else:
                    bound[alias.name.partition(".")[0]] = alias.name.partition(".")[0]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")
                base_parts = base_parts[: len(base_parts) - (node.level - 1)]
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            if base not in index:
                target = _longest_module(base, index)
                if target is not None:
                    add(node, target, None)
                continue
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                if submodule in index:
                    add(node, submodule, None)
                    bound[alias.asname or alias.name] = submodule
                else:
                    add(node, base, None if alias.name == "*" else alias.name)

    inner_attributes = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and id(node) not in inner_attributes:  # a whole chain `a.b.c`
            chain = []
            inner: ast.expr = node
            while isinstance(inner, ast.Attribute):
                chain.append(inner.attr)
                inner = inner.value
            if not (isinstance(inner, ast.Name) and inner.id in bound):
                continue
            target, name = bound[inner.id], None
            for attr in reversed(chain):  # descend through submodules to the first attribute that is not one
                if f"{target}.{attr}" not in index:
                    name = attr
                    break
                target = f"{target}.{attr}"
            found.append(Import(path, node.lineno, module, target, name, id(node) in guarded, attribute=True))
    return found


# ------------------------------------------------------------------------------------------------ the import graph


def import_graph(root: Path, package: str = "core") -> dict[str, dict[str, list[Import]]]:
    """importer -> imported -> the imports making that edge, for the modules of one top-level package."""
    index = module_index(root)
    graph: dict[str, dict[str, list[Import]]] = {m: defaultdict(list) for m in index if _in(m, package)}
    for module in graph:
        for imp in imports_of(module, index):
            if not imp.attribute and not imp.type_checking and _in(imp.target, package) and imp.target != module:
                graph[module][imp.target].append(imp)
    return graph


def _in(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def strongly_connected(graph: dict[str, dict[str, list[Import]]]) -> list[list[str]]:
    """Tarjan's algorithm: the strongly connected components with more than one module, each sorted."""
    counter, index, low, stack, on_stack, components = [0], {}, {}, [], set(), []

    def visit(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for succ in sorted(graph.get(node, ())):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(components)


def shortest_cycle(graph: dict[str, dict[str, list[Import]]], component: list[str]) -> list[str]:
    """A shortest cycle through the component's first module, staying inside the component: [a, b, ..., a]."""
    start, members = component[0], set(component)
    came_from: dict[str, str] = {}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for succ in sorted(graph[node]):
            if succ == start:
                chain = [node]
                while chain[-1] != start:
                    chain.append(came_from[chain[-1]])
                return [*reversed(chain), start]
            if succ in members and succ not in came_from:
                came_from[succ] = node
                queue.append(succ)
    raise AssertionError(f"{component} is not a cycle")


def describe_cycles(root: Path, package: str = "core") -> list[str]:
    """One paragraph per import cycle: its modules, a chain round it, and the lines that make the chain."""
    graph = import_graph(root, package)
    paragraphs = []
    for component in strongly_connected(graph):
        chain = shortest_cycle(graph, component)
        lines = [f"import cycle among {', '.join(component)}:", "  " + " -> ".join(chain)]
        for a, b in zip(chain, chain[1:]):
            imports = graph[a][b]
            where = ",".join(str(n) for n in sorted({i.line for i in imports}))
            lines.append(f"  {imports[0].path.relative_to(root)}:{where} imports {b}")
        paragraphs.append("\n".join(lines))
    return paragraphs


# ------------------------------------------------------------------------------------------------ private names


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def private_imports(root: Path, folders: tuple[str, ...] = PRIVATE_CHECKED) -> list[str]:
    """`path:line imports _name from owner` for each use of a private name from outside its owner."""
    index = module_index(root)
    found = set()
    for module in sorted(m for m in index if any(_in(m, f) for f in folders)):
        for imp in imports_of(module, index):
            dotted = imp.target.split(".") + ([imp.name] if imp.name else [])
            for position, part in enumerate(dotted):
                owner = ".".join(dotted[:position])
                if position and _private(part) and not _in(module, owner):
                    found.add((imp.path.relative_to(root).as_posix(), imp.line, part, owner))
    return [f"{path}:{line} imports {name} from {owner}" for path, line, name, owner in sorted(found)]


# ------------------------------------------------------------------------------------------------ the rules


def test_core_has_no_import_cycles():
    assert import_graph(ROOT), "no modules found under core/"
    cycles = describe_cycles(ROOT)
    if cycles:
        why = "core/ has import cycles (a lazy import inside a function counts):\n"
        pytest.fail(why + "\n".join(cycles), pytrace=False)


def test_no_module_imports_another_modules_private_names():
    offenders = private_imports(ROOT)
    if offenders:
        pytest.fail("private names used outside their module:\n" + "\n".join(offenders), pytrace=False)


# ------------------------------------------------------------------------------------------------ the checker itself


def write_tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    for folder in FIRST_PARTY:
        (root / folder).mkdir(exist_ok=True)
    return root


def test_checker_reports_every_cycle_and_only_real_ones(tmp_path):
    root = write_tree(
        tmp_path,
        {
            "core/__init__.py": "",
            # a -> b -> a, the second edge a lazy import inside a function
            "core/a.py": "from core import b\nimport core.c\n",
            "core/b.py": "def f():\n    from core.a import thing\n",
            # c imports a only for type checking: no cycle a -> c -> a
            "core/c.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from core import a\n",
            # a package and its submodule: pkg/__init__ -> pkg.x -> pkg (x takes a name from its package)
            "core/pkg/__init__.py": "from core.pkg.x import f\nCONST = 1\n",
            "core/pkg/x.py": "from core.pkg import CONST\n",
            "core/pkg/y.py": "from ..a import thing\n",  # two levels up: core.a, not core.pkg
            # relative imports, three modules round: r1 -> r2 -> r3 -> r1
            "core/r1.py": "from . import r2\n",
            "core/r2.py": "from .r3 import g\n",
            "core/r3.py": "import typing\nif typing.TYPE_CHECKING:\n    pass\nelse:\n    from .r1 import h\n",
            # a module importing itself, and imports from outside core/, are not cycles
            "core/solo.py": "from core.solo import x\nimport dashboard.page\n",
            "dashboard/page.py": "from core import solo\n",
        },
    )
    graph = import_graph(root)
    assert set(graph["core.a"]) == {"core.b", "core.c"}
    assert set(graph["core.c"]) == set()
    assert set(graph["core.pkg"]) == {"core.pkg.x"} and set(graph["core.pkg.x"]) == {"core.pkg"}
    assert set(graph["core.pkg.y"]) == {"core.a"}
    assert strongly_connected(graph) == [
        ["core.a", "core.b"],
        ["core.pkg", "core.pkg.x"],
        ["core.r1", "core.r2", "core.r3"],
    ]
    cycles = describe_cycles(root)
    assert [c.splitlines()[1].strip() for c in cycles] == [
        "core.a -> core.b -> core.a",
        "core.pkg -> core.pkg.x -> core.pkg",
        "core.r1 -> core.r2 -> core.r3 -> core.r1",
    ]
    assert "  core/b.py:2 imports core.a" in cycles[0].splitlines()


def test_checker_reports_private_names_used_from_outside_their_module(tmp_path):
    root = write_tree(
        tmp_path,
        {
            "core/__init__.py": "",
            "core/a.py": "__version__ = 1\ndef _helper(): ...\ndef public(): _helper()\n",
            "core/b.py": "from core.a import _helper, public, __version__\n",
            "core/c.py": "from core import a\n\ndef f():\n    a.public()\n    return a._helper()\n",
            "core/d.py": "import core.a\nx = core.a._helper\n",
            "core/e.py": "def f():\n    from .a import _helper as h\n",
            # a private submodule belongs to its package: fine from inside, not from outside
            "core/pkg/__init__.py": "from core.pkg._impl import thing\nfrom . import _impl\n_shared = 1\n",
            "core/pkg/_impl.py": "from core.pkg import _shared\nthing = _shared\n",
            "core/pkg/user.py": "from core.pkg._impl import thing\nfrom core.pkg import _shared\n",
            "core/f.py": "from core.pkg._impl import thing\nfrom core.pkg import _impl\nimport core.pkg._impl\n",
            "dashboard/page.py": "from core import pkg\npkg._impl.thing\n",
            "bench/run.py": "from core.a import public\n",
            "tests/test_a.py": "from core.a import _helper\n",  # tests are not checked
        },
    )
    assert private_imports(root) == [
        "core/b.py:1 imports _helper from core.a",
        "core/c.py:5 imports _helper from core.a",
        "core/d.py:2 imports _helper from core.a",
        "core/e.py:2 imports _helper from core.a",
        "core/f.py:1 imports _impl from core.pkg",
        "core/f.py:2 imports _impl from core.pkg",
        "core/f.py:3 imports _impl from core.pkg",
        "dashboard/page.py:2 imports _impl from core.pkg",
    ]
