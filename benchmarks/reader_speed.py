"""Benchmark: the reader (`--backend rules`) over every MTSamples note x criteria/aristotle.crit, in notes per
second, against a baseline commit measured in the same run.

    python benchmarks/reader_speed.py                      # this tree against ad37f1d (reader rules-2)
    python benchmarks/reader_speed.py --baseline-ref HEAD~3 --notes 500

The baseline runs from a temporary git worktree of --baseline-ref, in a child process whose import path puts
that tree's packages first (the same Python and libraries, so only crit's code differs). Each side answers
every question of the file over every note, passages and reading included, as `crit run --backend rules`
does before any store write; both sides run twice, alternately, and the faster time of each counts.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOTES = ROOT.parent / "shared" / "data" / "mtsamples.jsonl"


def measure(notes_path: Path, limit: int | None) -> dict:
    from crit.engine.answering.backends.rules import RulesBackend
    from crit.engine.eligibility import load_plan

    plan = load_plan(str(ROOT / "criteria" / "aristotle.crit"))
    notes = [json.loads(x) for x in notes_path.open()][:limit]
    backend = RulesBackend()
    # spaCy and the cue matchers load on the first mention: load them before the clock starts.
    backend.answer("warm", "History of atrial fibrillation and diabetes. No stroke.", plan.questions)
    t0 = time.perf_counter()
    stated = 0
    for n in notes:
        stated += sum(not a.na for a in backend.answer(n["note_id"], n["text"], plan.questions))
    seconds = time.perf_counter() - t0
    return {"identity": backend.identity, "notes": len(notes), "seconds": seconds, "stated": stated}


def _package_links(tree: Path, into: Path) -> None:
    """A `crit` package folder whose parts point into `tree`, as its pyproject maps them."""
    pkg = into / "crit"
    pkg.mkdir(parents=True)
    for f in (tree / "crit").iterdir():
        (pkg / f.name).symlink_to(f)
    for name in ("engine", "grammar", "trainer"):
        (pkg / name).symlink_to(tree / name)


def baseline(ref: str, notes_path: Path, limit: int | None) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp) / "tree"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "-f", "--detach", str(tree), ref],
                       check=True, capture_output=True)
        try:
            _package_links(tree, Path(tmp) / "pkgs")
            env = {**os.environ, "PYTHONPATH": str(Path(tmp) / "pkgs")}
            out = subprocess.run([sys.executable, __file__, "--measure-only", "--notes-file", str(notes_path),
                                  *(["--notes", str(limit)] if limit else [])],
                                 env=env, check=True, capture_output=True, text=True, cwd=tmp)
            return json.loads(out.stdout.strip().splitlines()[-1])
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], capture_output=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--baseline-ref", default="ad37f1d")
    ap.add_argument("--notes", type=int, help="only the first N notes")
    ap.add_argument("--notes-file", type=Path, default=NOTES)
    ap.add_argument("--measure-only", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.measure_only:
        print(json.dumps(measure(args.notes_file, args.notes)))
        return
    runs: dict[str, list[dict]] = {"baseline": [], "this tree": []}
    for _ in range(2):
        runs["baseline"].append(baseline(args.baseline_ref, args.notes_file, args.notes))
        out = subprocess.run([sys.executable, __file__, "--measure-only", "--notes-file", str(args.notes_file),
                              *(["--notes", str(args.notes)] if args.notes else [])],
                             check=True, capture_output=True, text=True, cwd=tempfile.gettempdir())
        runs["this tree"].append(json.loads(out.stdout.strip().splitlines()[-1]))
    best = {k: min(v, key=lambda r: r["seconds"]) for k, v in runs.items()}
    print("| reader | identity | notes | seconds | notes/s | stated answers |")
    print("|---|---|---|---|---|---|")
    for name, r in best.items():
        label = f"{name} ({args.baseline_ref})" if name == "baseline" else name
        print(f"| {label} | {r['identity']} | {r['notes']} | {r['seconds']:.1f} | {r['notes'] / r['seconds']:.1f} "
              f"| {r['stated']} |")
    ratio = best["baseline"]["seconds"] / best["this tree"]["seconds"]
    print(f"\nthis tree is {ratio:.2f}x the baseline's speed (above 1: faster)")


if __name__ == "__main__":
    main()
