"""The import graph of goldisk/: floors, no cycle, no reach into another package's privates.

The imports are read from the source with :mod:`ast` (nothing is imported), so the test
sees every ``import`` statement, at module level and inside functions alike: a lazy
import is still a dependency, so it counts for the floors and for cycles. Only imports
under ``if TYPE_CHECKING:`` are left out (they never run). See docs/architecture.md.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "goldisk"

#: Floors, lowest first; a module may import its own floor and the floors below it.
FLOORS = ("engine", "estimators", "experiments", "cli")


def module_name(path):
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def is_package(name):
    return (ROOT.parent / name.replace(".", "/") / "__init__.py").is_file()


MODULES = {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def floor(name):
    """The floor of a goldisk module, or None for the package facade (goldisk/__init__)."""
    parts = name.split(".")
    if len(parts) == 1:
        return None  # goldisk/__init__.py: lazy facade over every floor
    top = parts[1]
    if top in ("estimators", "callbacks"):
        return "estimators"
    if top in ("experiments", "sweep"):
        return "experiments"
    if top in ("cli", "__main__"):
        return "cli"
    if top.startswith("_") or top in ("curvature", "projections", "models", "datasets"):
        return "engine"
    raise AssertionError(f"{name}: no floor assigned; add it to tests/test_architecture.py")


def _type_checking_block(node):
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and (
        (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
        or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"))


def _import_nodes(tree):
    stack = [tree]
    while stack:
        node = stack.pop()
        for child in ast.iter_child_nodes(node):
            if _type_checking_block(child):
                stack.extend(child.orelse)
                continue
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                yield child
            stack.append(child)


def imports(name):
    """``(target module, imported name or None, line)`` for every goldisk import in ``name``."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = []
    for node in _import_nodes(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(a.name, None, node.lineno) for a in node.names
                    if a.name.split(".")[0] == "goldisk"]
            continue
        if node.level:
            base = package.split(".")
            base = base[:len(base) - node.level + 1]
            target = ".".join(base + ([node.module] if node.module else []))
        else:
            target = node.module or ""
        if target.split(".")[0] != "goldisk":
            continue
        for alias in node.names:
            sub = f"{target}.{alias.name}"
            if sub in MODULES:  # ``from . import _x``: the submodule itself
                out.append((sub, None, node.lineno))
            else:
                out.append((target, alias.name, node.lineno))
    return out


def _private(part):
    return part.startswith("_") and not part.startswith("__")


def test_every_module_is_on_a_floor():
    assert len(MODULES) > 40
    for name in MODULES:
        floor(name)


def test_imports_only_go_down():
    bad = set()
    for name in MODULES:
        here = floor(name)
        for target, _, line in imports(name):
            there = floor(target)
            if here is not None and there is not None and FLOORS.index(there) > FLOORS.index(here):
                bad.add(f"{MODULES[name].relative_to(ROOT.parent)}:{line} ({here}) imports "
                        f"{target} ({there})")
    assert not bad, "upward imports:\n" + "\n".join(sorted(bad))


def test_no_private_module_of_another_package():
    """``a.b._c`` is imported only from inside package ``a.b``; a private name only by a sibling."""
    bad = set()
    for name in MODULES:
        package = name if is_package(name) else name.rpartition(".")[0]
        where = f"{MODULES[name].relative_to(ROOT.parent)}"
        for target, attr, line in imports(name):
            parts = target.split(".")
            for i, part in enumerate(parts[1:], 1):
                owner = ".".join(parts[:i])
                if _private(part) and not (package + ".").startswith(owner + "."):
                    bad.add(f"{where}:{line} imports private module {'.'.join(parts[:i + 1])}")
                    break
            else:
                owner = target if is_package(target) else target.rpartition(".")[0]
                if attr and _private(attr) and owner != package:
                    bad.add(f"{where}:{line} imports private name {target}.{attr}")
    assert not bad, "reaching into another package's privates:\n" + "\n".join(sorted(bad))


def _graph():
    return {name: sorted({t for t, _, _ in imports(name) if t in MODULES and t != name})
            for name in MODULES}


def _cycles(graph):
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, found, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
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

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_cycle_finder_finds_a_cycle():
    assert _cycles({"a": ["b"], "b": ["c"], "c": ["a"], "d": ["a"]}) == [["a", "b", "c"]]
    assert _cycles({"a": ["b"], "b": [], "c": ["a", "b"]}) == []


def test_no_import_cycle():
    # A package's __init__ imports its own submodules by design; a submodule that imports
    # its package's __init__ back would close a cycle, and is reported like any other.
    found = _cycles(_graph())
    assert not found, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in found)


@pytest.mark.parametrize("name", ["goldisk.estimators._probe", "goldisk.cli._select"])
def test_imports_are_resolved(name):
    # guards the parser itself: relative imports resolve to real modules
    targets = {t for t, _, _ in imports(name)}
    assert targets and targets <= set(MODULES), targets - set(MODULES)
