"""The package's shape stays as docs/ARCHITECTURE.md promises: small modules, short functions,
typed records, and no import cycle (imports inside functions included)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "drpo_agents"
MAX_MODULE_LINES = 300
MAX_FUNCTION_LINES = 80
MAX_UNTYPED_DICTS = 60  # `dict[str, Any]`: LangChain's override signatures and keyword arguments


def _modules() -> dict[str, Path]:
    modules: dict[str, Path] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        modules[name] = path
    return modules


def _imported(tree: ast.Module, module: str, is_package: bool, known: set[str]) -> Iterator[str]:
    """The package modules ``module`` imports, wherever the import statement is."""
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            # `from pkg import name` imports pkg.name when that is a module, else pkg itself.
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        for name in names:
            # Importing pkg.mod runs pkg/__init__ first, unless pkg is already loading (our parent).
            parts = name.split(".")
            ancestors = {".".join(parts[:i]) for i in range(2, len(parts))}
            own = {".".join(module.split(".")[:i]) for i in range(1, module.count(".") + 2)}
            yield from (n for n in sorted({name, *ancestors} - own) if n in known and n != module)


def _import_graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    return {
        name: set(_imported(ast.parse(path.read_text()), name, path.name == "__init__.py", known))
        for name, path in modules.items()
    }


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component: list[str] = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_cycle_finder_finds_a_cycle_and_a_lazy_import() -> None:
    tree = ast.parse("def f():\n    from drpo_agents.b import x\n")
    known = {"drpo_agents.a", "drpo_agents.b", "drpo_agents.p", "drpo_agents.p.c", "drpo_agents.p.d"}
    assert set(_imported(tree, "drpo_agents.a", False, known)) == {"drpo_agents.b"}
    # Importing a package's module runs the package's __init__, except from inside the package.
    nested = ast.parse("import drpo_agents.p.c\n")
    assert set(_imported(nested, "drpo_agents.a", False, known)) == {"drpo_agents.p", "drpo_agents.p.c"}
    assert set(_imported(nested, "drpo_agents.p.d", False, known)) == {"drpo_agents.p.c"}
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_in_the_package() -> None:
    graph = _import_graph()
    assert len(graph) > 50 and graph["drpo_agents.runner"]  # the graph was read
    assert _cycles(graph) == []


def test_no_module_over_300_lines_and_no_function_over_80() -> None:
    long_modules, long_functions = [], []
    for name, path in _modules().items():
        text = path.read_text()
        if len(text.splitlines()) > MAX_MODULE_LINES:
            long_modules.append(f"{name}: {len(text.splitlines())}")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    long_functions.append(f"{name}.{node.name}: {length}")
    assert long_modules == []
    assert long_functions == []


def test_records_are_typed() -> None:
    count = sum(path.read_text().count("dict[str, Any]") for path in _modules().values())
    assert 0 < count <= MAX_UNTYPED_DICTS
