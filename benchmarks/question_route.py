"""Follow one question from `crit run` to the eligibility table: which crit modules it enters, and how often
it moves between them.

Runs `crit run FILE NOTES --db TMP --backend rules` in this process under a profile hook that records
the crit module of every Python call and return (parsing the .crit file and reading the notes included:
they are the route too). Consecutive events in one module are one stay; a move is a change of module;
a return is a move into a module already left earlier.

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

    def hook(frame, event, arg) -> None:  # noqa: ANN001 - sys.setprofile's signature
        if event not in ("call", "return"):
            return
        module = frame.f_globals.get("__name__", "")
        if not module.startswith("crit.") or module in ("crit.cli",) or module.endswith(".cli"):
            return
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
    return stays


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--crit", type=Path, default=FIXTURE / "one.crit")
    parser.add_argument("--notes", type=Path, default=FIXTURE / "one.jsonl")
    parser.add_argument("--modules", action="store_true", help="list the modules in order of first entry")
    args = parser.parse_args()
    stays = route(args.crit, args.notes)
    seen: list[str] = []
    returns = 0
    for i, module in enumerate(stays):
        if module in seen and i > 0:
            returns += 1
        if module not in seen:
            seen.append(module)
    print(f"modules entered {len(seen)}, moves {len(stays) - 1}, returns to a module already left {returns}")
    if args.modules:
        for module in seen:
            print(f"  {module}")


if __name__ == "__main__":
    main()
