"""Shape limits of the kubehop package, so that no module or function grows past what a reader
can hold, and no two modules need each other to be imported.

Usage: python scripts/check_shape.py [SRC]   (SRC: the directory holding ``kubehop``; default
``src`` next to this script's parent)

Prints one line per violation and exits 1, or prints ``shape ok: N modules, M functions`` and
exits 0. The violations:

(a) a module under SRC longer than 600 lines;
(b) a function or method longer than 60 lines (``end_lineno - lineno + 1``, so decorators are not
    counted), except in the Alembic revisions under ``kubehop/adapters/storemigrations/versions/``,
    which are generated and never edited;
(c) an import cycle among kubehop modules.

For (c) only runtime imports made while the module is being imported count: statements at module
level, including those nested in ``if``/``try``/``with`` blocks and class bodies, but not those
inside functions (deferred on purpose) nor inside ``if TYPE_CHECKING:`` blocks (never executed).
``from kubehop.x import y`` is an import of the submodule ``kubehop.x.y`` when that is a module,
else of ``kubehop.x``. The parent packages an import initialises implicitly are not counted: a
package ``__init__`` that re-exports its submodules would otherwise be a cycle with each of them.
Each cycle (a strongly connected component of the import graph) is one line, with one concrete
loop through it.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 60
PACKAGE = "kubehop"
GENERATED = ("kubehop", "adapters", "storemigrations", "versions")


@dataclass
class Module:
    name: str
    path: Path
    is_package: bool
    tree: ast.Module
    lines: int
    imports: set[str] = field(default_factory=set)


def load(src: Path) -> dict[str, Module]:
    modules = {}
    for path in sorted((src / PACKAGE).rglob("*.py")):
        rel = path.relative_to(src).with_suffix("")
        parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
        text = path.read_text(encoding="utf-8")
        name = ".".join(parts)
        modules[name] = Module(name, path, rel.name == "__init__", ast.parse(text, str(path)),
                               len(text.splitlines()))
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def runtime_imports(body: list[ast.stmt]) -> Iterator[ast.Import | ast.ImportFrom]:
    """The import statements run when the module is imported (see the module docstring)."""
    for node in body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        elif isinstance(node, ast.If):
            if not _is_type_checking(node.test):
                yield from runtime_imports(node.body)
            yield from runtime_imports(node.orelse)
        elif isinstance(node, ast.ClassDef | ast.With | ast.AsyncWith):
            yield from runtime_imports(node.body)
        elif isinstance(node, ast.Try | ast.TryStar):
            yield from runtime_imports(node.body)
            for handler in node.handlers:
                yield from runtime_imports(handler.body)
            yield from runtime_imports(node.orelse)
            yield from runtime_imports(node.finalbody)
        elif isinstance(node, ast.For | ast.AsyncFor | ast.While):
            yield from runtime_imports(node.body)
            yield from runtime_imports(node.orelse)


def _resolve_from(module: Module, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.name.split(".")
    if not module.is_package:
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def link_imports(modules: dict[str, Module]) -> None:
    for module in modules.values():
        for node in runtime_imports(module.tree.body):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                source = _resolve_from(module, node)
                targets = [f"{source}.{alias.name}" if f"{source}.{alias.name}" in modules
                           else source for alias in node.names]
            module.imports.update(t for t in targets if t in modules and t != module.name)


def cycles(modules: dict[str, Module]) -> list[list[str]]:
    """Strongly connected components with a loop (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for root in sorted(modules):
        if root in index:
            continue
        work = [(root, iter(sorted(modules[root].imports)))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(modules[child].imports))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
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
                if len(component) > 1 or node in modules[node].imports:
                    found.append(sorted(component))
    return sorted(found)


def loop_through(component: list[str], modules: dict[str, Module]) -> list[str]:
    """One concrete import loop from the component's first module back to itself (BFS)."""
    start, members = component[0], set(component)
    came_from: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for child in sorted(modules[node].imports & members):
                if child == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(came_from[path[-1]])
                    return [start, *reversed(path[:-1]), start] if node != start else [start, start]
                if child not in came_from:
                    came_from[child] = node
                    following.append(child)
        frontier = following
    return component


def _generated(module: Module, src: Path) -> bool:
    return module.path.relative_to(src).parts[: len(GENERATED)] == GENERATED


def violations(src: Path) -> tuple[list[str], int, int]:
    modules = load(src)
    link_imports(modules)
    found = []
    functions = 0
    for module in modules.values():
        rel = module.path.relative_to(src.parent)
        if module.lines > MAX_MODULE_LINES:
            found.append(f"{rel}: module has {module.lines} lines (max {MAX_MODULE_LINES})")
        if _generated(module, src):
            continue
        for node in ast.walk(module.tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                functions += 1
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    found.append(f"{rel}:{node.lineno}: function {node.name} has {length} lines "
                                 f"(max {MAX_FUNCTION_LINES})")
    for component in cycles(modules):
        loop = " -> ".join(loop_through(component, modules))
        found.append(f"import cycle among {len(component)} modules "
                     f"({', '.join(component)}): {loop}")
    return found, len(modules), functions


def main(argv: list[str]) -> int:
    src = Path(argv[1]) if len(argv) > 1 else Path(__file__).resolve().parent.parent / "src"
    found, n_modules, n_functions = violations(src.resolve())
    for line in found:
        print(line)
    if found:
        return 1
    print(f"shape ok: {n_modules} modules, {n_functions} functions")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
