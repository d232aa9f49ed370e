"""The layout's promise: one folder a stage, data flowing one way, and no import cycle.

The import graph is read from the source (benchmarks/import_graph.py: every `import crit...`
anywhere in a file, function-level ones included). A module may import its own stage and the
stages before it; an arrow back up the flow, or a cycle, fails here with the arrow named.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("import_graph", ROOT / "benchmarks" / "import_graph.py")
assert _spec and _spec.loader
import_graph = importlib.util.module_from_spec(_spec)
sys.modules["import_graph"] = import_graph
_spec.loader.exec_module(import_graph)

# The flow, first to last. A module belongs to the stage of the longest prefix that names it.
STAGES: list[tuple[str, tuple[str, ...]]] = [
    ("language", ("crit.grammar",)),
    ("shared records", ("crit.engine.answers", "crit.engine.sql")),
    ("notes", ("crit.engine.notes",)),
    ("reading", ("crit.engine.reading",)),
    ("answering", ("crit.engine.answering",)),
    ("store", ("crit.engine.store",)),
    ("eligibility", ("crit.engine.eligibility",)),
    ("report", ("crit.engine.report",)),
    ("engine front", ("crit.engine",)),  # run, merge, dryrun, options, cli: they join the stages
    ("trainer", ("crit.trainer",)),
    ("front door", ("crit", "crit.engine.cli")),  # crit.run / crit.load, and the `crit` command that calls them
]


def stage_of(module: str) -> int:
    best, rank = -1, -1
    for i, (_, prefixes) in enumerate(STAGES):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, rank = len(prefix), i
    assert rank >= 0, f"{module} belongs to no stage: add it to STAGES"
    return rank


GRAPH = import_graph.import_graph(ROOT)


def test_there_is_no_import_cycle() -> None:
    assert import_graph.cycles(GRAPH) == []


def test_every_arrow_follows_the_flow() -> None:
    backwards = [f"{a} ({STAGES[stage_of(a)][0]}) -> {b} ({STAGES[stage_of(b)][0]})"
                 for a, targets in GRAPH.items() for b in targets if stage_of(b) > stage_of(a)]
    assert backwards == []


def test_the_engine_never_imports_the_trainer() -> None:
    assert not [(a, b) for a, targets in GRAPH.items() if a.startswith("crit.engine")
                for b in targets if b.startswith("crit.trainer")]


@pytest.mark.parametrize("package", sorted(m for m, f in import_graph.module_files(ROOT).items()
                                           if f.name == "__init__.py" and m.startswith("crit.engine.")))
def test_each_stage_says_what_it_takes_and_gives(package: str) -> None:
    text = import_graph.module_files(ROOT)[package].read_text()
    assert text.startswith('"""'), f"{package} has no docstring saying what the stage takes and gives"


def test_the_checker_catches_a_cycle_and_an_arrow_back() -> None:
    graph = {"crit.grammar.plan": {"crit.engine.eligibility.compile"}, "crit.engine.eligibility.compile": {"crit.grammar.plan"}}
    assert import_graph.cycles(graph) == [["crit.engine.eligibility.compile", "crit.grammar.plan"]]
    assert stage_of("crit.engine.eligibility.compile") > stage_of("crit.grammar.plan")


def test_tests_import_no_private_name_of_crit() -> None:
    """Tests go through what a module offers, so a private helper can change without breaking them."""
    import ast

    private = []
    for file in sorted((ROOT / "tests").glob("*.py")):
        for node in ast.walk(ast.parse(file.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("crit"):
                private += [f"{file.name}: {node.module}.{a.name}" for a in node.names if a.name.startswith("_")]
    assert private == []
