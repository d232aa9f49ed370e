"""Print crit's import graph: modules, arrows between them, and any cycles (ast, no import runs).

Every `import crit.x` / `from crit.x import y` in the source counts, at any depth of the file
(a function-level import is still an arrow: it only delays the cycle). `from crit.a import b`
is an arrow to crit.a.b when that is a module, else to crit.a.

    python benchmarks/import_graph.py            # summary: modules, arrows, cycles
    python benchmarks/import_graph.py --arrows   # every arrow, one per line
"""

from __future__ import annotations

import argparse
import ast
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def module_files(root: Path = ROOT) -> dict[str, Path]:
    """Module name -> file, from pyproject's package-dir mapping (the repository's folders are crit.*)."""
    config = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]
    dirs: dict[str, str] = config["package-dir"]
    found: dict[str, Path] = {}
    for package in config["packages"]:
        folder = root / dirs.get(package, package.replace(".", "/"))
        for file in sorted(folder.glob("*.py")):
            name = package if file.stem == "__init__" else f"{package}.{file.stem}"
            found[name] = file
    return found


def _targets(node: ast.AST, modules: set[str], here: str) -> Iterator[str]:
    if isinstance(node, ast.Import):
        for alias in node.names:
            if alias.name.startswith("crit"):
                yield alias.name
    elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and node.module.startswith("crit"):
        for alias in node.names:
            full = f"{node.module}.{alias.name}"
            yield full if full in modules else node.module


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    """Module -> the crit modules it imports (anywhere in the file, type-checking imports included)."""
    files = module_files(root)
    names = set(files)
    graph: dict[str, set[str]] = {}
    for name, file in files.items():
        tree = ast.parse(file.read_text(), filename=str(file))
        graph[name] = {t for node in ast.walk(tree) for t in _targets(node, names, name) if t != name and t in names}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arrows", action="store_true", help="print every arrow")
    args = parser.parse_args()
    graph = import_graph()
    arrows = sum(len(t) for t in graph.values())
    found = cycles(graph)
    print(f"modules {len(graph)}, arrows {arrows}, cycles {len(found)}")
    for c in found:
        print("  cycle: " + " <-> ".join(c))
    if args.arrows:
        for source in sorted(graph):
            for target in sorted(graph[source]):
                print(f"{source} -> {target}")


if __name__ == "__main__":
    main()
