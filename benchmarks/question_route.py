"""Follow one question from `crit run` to the eligibility table: which crit modules it enters, and how often
it moves between them.

Runs `crit run FILE NOTES --db TMP --backend rules` in this process under a profile hook that records,
for every Python call from one crit module into another, the module called (parsing the .crit file and
reading the notes included: they are the route too). A move is such a call; a return is a move into a
module already left earlier. The same route is also read at the level of stages (language, notes,
reading, answering, store, eligibility, front), where a layout with data flowing one way enters each
stage once. Module names of the layout before one folder a stage (issue 25) are mapped to their stage
too, so the script measures either layout.

    python benchmarks/question_route.py                       # tests/fixtures/route: one note, one question
    python benchmarks/question_route.py --modules             # and the modules in order of first entry
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "tests" / "fixtures" / "route"


def route(crit_file: Path, notes: Path) -> list[str]:
    """The sequence of crit modules one `crit run --backend rules` stays in, in order."""
    from click.testing import CliRunner

    from crit.cli import cli

    stays: list[str] = []
    calls: set[tuple[str, str]] = set()

    def hook(frame, event, arg) -> None:  # noqa: ANN001 - sys.setprofile's signature
        if event != "call":
            return
        module = frame.f_globals.get("__name__", "")
        caller = frame.f_back.f_globals.get("__name__", "") if frame.f_back is not None else ""
        if not module.startswith("crit.") or module == caller:
            return
        if caller.startswith("crit."):
            calls.add((caller, module))
        if not stays or stays[-1] != module:
            stays.append(module)

    with tempfile.TemporaryDirectory() as tmp:
        db = str(Path(tmp) / "route.duckdb")
        args = ["run", str(crit_file), str(notes), "--db", db, "--backend", "rules"]
        CliRunner().invoke(cli, args, catch_exceptions=False)  # warm: imports and lazy builds happen once
        db2 = str(Path(tmp) / "route2.duckdb")
        sys.setprofile(hook)
        try:
            result = CliRunner().invoke(cli, [*args[:3], "--db", db2, *args[5:]], catch_exceptions=False)
        finally:
            sys.setprofile(None)
    if result.exit_code != 0:
        raise SystemExit(result.output)
    CALLS.update(calls)
    return stays


CALLS: set[tuple[str, str]] = set()  # (caller module, called module) of the last route


# Stages by module prefix, for both layouts (the flat engine/ of before issue 25, and one folder a stage).
STAGES = [
    ("language", ("crit.grammar", "crit.engine.plan", "crit.engine.questions")),
    ("records", ("crit.engine.answers", "crit.engine.sql")),  # what every stage passes on, and quoting
    ("notes", ("crit.engine.notes", "crit.engine.n2c2", "crit.engine.shards")),
    ("reading", ("crit.engine.reading", "crit.engine.evidence", "crit.engine.context", "crit.engine.backends.rules")),
    ("answering", ("crit.engine.answering", "crit.engine.combine", "crit.engine.backends", "crit.engine.model",
                   "crit.engine.prompts", "crit.engine.windows")),
    ("store", ("crit.engine.store",)),
    ("eligibility", ("crit.engine.eligibility", "crit.engine.rules", "crit.engine.rules_sql")),
    ("front", ("crit",)),
]


def stage(module: str) -> str:
    best = max(((len(p), name) for name, prefixes in STAGES for p in prefixes
                if module == p or module.startswith(p + ".")), default=(0, "?"))
    return best[1]


def count(route: list[str]) -> tuple[int, int, int]:
    """(distinct places entered, moves, moves into a place already left)."""
    collapsed = [x for i, x in enumerate(route) if i == 0 or route[i - 1] != x]
    seen: set[str] = set()
    returns = 0
    for x in collapsed:
        returns += x in seen
        seen.add(x)
    return len(seen), len(collapsed) - 1, returns


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--crit", type=Path, default=FIXTURE / "one.crit")
    parser.add_argument("--notes", type=Path, default=FIXTURE / "one.jsonl")
    parser.add_argument("--modules", action="store_true", help="list the modules in order of first entry")
    args = parser.parse_args()
    stays = route(args.crit, args.notes)
    entered, moves, returns = count(stays)
    print(f"modules: entered {entered}, moves {moves}, returns to a module already left {returns}")
    stages = [stage(m) for m in stays]
    entered, moves, returns = count(stages)
    order = [x for i, x in enumerate(stages) if i == 0 or stages[i - 1] != x]
    print(f"stages:  entered {entered}, moves {moves}, returns to a stage already left {returns}")
    print("  " + " > ".join(order) if len(order) <= 40 else f"  {' > '.join(order[:40])} > ...")
    rank = {name: i for i, (name, _) in enumerate(STAGES)}
    upstream = sorted((a, b) for a, b in CALLS
                      if stage(a) != "front" and rank[stage(b)] > rank[stage(a)] and stage(b) != "front")
    print(f"calls up the flow (a stage calling a later one, the front aside): {len(upstream)}")
    for a, b in upstream:
        print(f"  {a} ({stage(a)}) -> {b} ({stage(b)})")
    if args.modules:
        for module in dict.fromkeys(stays):
            print(f"  {module} ({stage(module)})")


if __name__ == "__main__":
    main()
