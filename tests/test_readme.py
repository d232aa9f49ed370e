"""The README is run: every shell and Python example in it, in order, in a copy of the shipped files.

A newcomer types the README's commands as written, so a test does too (as sqlite-utils runs its docs):

- each ```bash block runs line by line (a trailing `\\` joins lines) with `bash`, in a folder holding
  copies of criteria/, examples/ and tests/{gold,fixtures}; a command must exit 0 and print no traceback,
  and a `crit sql` must return at least one row (an example that shows nothing teaches nothing);
- each ```pycon block is a doctest: what it prints must be what the README shows;
- a block marked `<!-- readme-test: output of COMMAND -->` is what COMMAND prints, exactly;
- a block marked `<!-- readme-test: skip (REASON) -->` is not run, and must say why.

Before the blocks, the crit commands of `examples/quickstart.sh` (README command 1, less its installs)
run, as they would have for a reader.
"""

from __future__ import annotations

import doctest
import os
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
COPIED = ("criteria", "examples", "tests/gold", "tests/fixtures")
_MARK = re.compile(r"<!-- readme-test: (skip \((?P<why>[^)]+)\)|output of (?P<command>[^(]+?)(?: \((?P<file>[^)]+)\))?) -->")
_ROWS = re.compile(r"^(\d+) row\(s\)", re.MULTILINE)


@dataclass
class Block:
    line: int  # where the block's fence is in README.md (1-based)
    lang: str
    text: str
    skip: str | None = None  # why it is not run
    output_of: str | None = None  # the command whose output the block shows
    written_from: str | None = None  # "criteria/mine.crit: tests/fixtures/...": a file the command reads


def blocks(text: str) -> list[Block]:
    """The README's fenced blocks, with the mark on the line before each (the command reference, which
    tests/test_cli_docs.py checks, is left out)."""
    text = text[: text.find("<!-- command reference")]
    lines = text.splitlines()
    found: list[Block] = []
    i = 0
    while i < len(lines):
        if lines[i].startswith("```"):
            lang, start = lines[i][3:].strip(), i
            end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
            block = Block(start + 1, lang, "\n".join(lines[start + 1 : end]) + "\n")
            mark = _MARK.fullmatch(lines[start - 1].strip()) if start else None
            if mark:
                block.skip, block.output_of, block.written_from = mark["why"], mark["command"], mark["file"]
            found.append(block)
            i = end
        i += 1
    return found


def commands(script: str) -> list[str]:
    """The commands of a bash block, as bash reads them: a trailing `\\` or an open quote continues a command
    on the next line; comment and blank lines are dropped."""
    found: list[str] = []
    pending = ""
    for line in script.splitlines():
        if not pending and (not line.strip() or line.strip().startswith("#")):
            continue
        pending += line + "\n"
        if pending.rstrip().endswith("\\"):
            continue
        try:
            shlex.split(pending, comments=True)
        except ValueError:  # "No closing quotation": the command goes on
            continue
        found.append(pending.strip())
        pending = ""
    assert not pending, f"a command never ends: {pending[:80]}"
    return found


def quickstart_commands() -> list[str]:
    return [c for c in commands((ROOT / "examples" / "quickstart.sh").read_text()) if c.startswith("crit ")]


def test_every_runnable_block_is_run_or_says_why_not() -> None:
    for b in blocks(README.read_text()):
        if b.lang in ("bash", "pycon"):
            assert b.skip is None or b.skip.strip(), f"README.md:{b.line}: a skipped block must say why"
        elif b.output_of is None:
            assert b.lang in ("text", "", "sql"), f"README.md:{b.line}: a ```{b.lang} block is neither run nor marked"
    assert any(b.lang == "pycon" for b in blocks(README.read_text())), "the README lost its Python session"


def _workspace(tmp: Path) -> Path:
    for part in COPIED:
        shutil.copytree(ROOT / part, tmp / part)
    return tmp


def _run(command: str, cwd: Path, where: str) -> str:
    env = {**os.environ, "COLUMNS": "120", "NO_COLOR": "1"}
    done = subprocess.run(["bash", "-c", command], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"{where}: `{command}` exited {done.returncode}:\n{output[-3000:]}"
    assert "Traceback" not in output, f"{where}: `{command}` printed a traceback:\n{output[-3000:]}"
    return output


def _check_rows(command: str, output: str, where: str) -> None:
    if not command.startswith("crit sql"):
        return
    counts = [int(n) for n in _ROWS.findall(output)]
    assert counts and counts[0] > 0, f"{where}: `{command}` returned no rows:\n{output[-2000:]}"


def _doctest(block: Block, cwd: Path) -> None:
    parser = doctest.DocTestParser()
    test = parser.get_doctest(block.text, {}, f"README.md:{block.line}", str(README), block.line)
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS)
    here = Path.cwd()
    os.chdir(cwd)
    try:
        failures: list[str] = []
        runner.run(test, out=failures.append)
    finally:
        os.chdir(here)
    assert runner.failures == 0, "".join(failures)


@pytest.mark.slow
def test_the_readme_runs_as_written(tmp_path: Path) -> None:
    """Every example returns what the README says, in order, as a reader would meet them."""
    cwd = _workspace(tmp_path)
    for command in quickstart_commands():  # README command 1, as a reader ran it first
        _run(command, cwd, "examples/quickstart.sh")
    ran = 0
    for b in blocks(README.read_text()):
        where = f"README.md:{b.line}"
        if b.skip:
            continue
        if b.output_of:
            if b.written_from:
                target, _, source = (p.strip() for p in b.written_from.partition(":"))
                shutil.copy(ROOT / source, cwd / target)
            done = subprocess.run(["bash", "-c", b.output_of], cwd=cwd, capture_output=True, text=True,
                                  env={**os.environ, "NO_COLOR": "1"})
            assert (done.stdout + done.stderr).strip() == b.text.strip(), f"{where}: `{b.output_of}` prints\n{done.stdout}{done.stderr}"
            ran += 1
        elif b.lang == "bash":
            for command in commands(b.text):
                _check_rows(command, _run(command, cwd, where), where)
            ran += 1
        elif b.lang == "pycon":
            _doctest(b, cwd)
            ran += 1
    assert ran >= 5
