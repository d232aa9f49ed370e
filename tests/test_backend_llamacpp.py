"""The llamacpp backend, added as one file (crit/engine/answering/backends/llamacpp.py): found by the
registry, constrained to each question's schema, and a note's prefix evaluated once for its questions."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from crit.cli import cli
from crit.engine.answering.backends.llamacpp import LlamaCppFactory
from crit.engine.answering.registry import backend_names, backends, describe, factory_for
from crit.grammar.errors import CritError
from crit.grammar.questions import make_question

ROOT = Path(__file__).resolve().parent.parent
NOTE = ("HISTORY: A 71-year-old woman with atrial fibrillation and hypertension.\n"
        "LABS: Creatinine 1.4 mg/dL, hemoglobin 11.2 g/dL.")
needs_llama = pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None,
                                 reason="llama-cpp-python is not installed (pip install 'crit[test]')")


def test_the_registry_finds_the_backend_by_its_file_alone() -> None:
    assert backends()["llamacpp"] is LlamaCppFactory
    # The names and help the command line reads from the files are the imported factories' own.
    assert backend_names() == tuple(backends()) and all(backends()[n].name == n for n in backend_names())
    assert all(describe(n) == backends()[n].__doc__.splitlines()[0].rstrip(".") for n in backend_names())
    assert describe("llamacpp").startswith("llamacpp = a GGUF file")
    result = CliRunner().invoke(cli, ["run", "--help"])
    assert "llamacpp" in result.output


def test_its_options_are_checked_before_any_note_is_read(tmp_path: Path) -> None:
    with pytest.raises(CritError, match="takes a .gguf file"):
        factory_for("llamacpp", model=str(tmp_path))
    with pytest.raises(CritError, match="does not take --base-url"):
        factory_for("llamacpp", base_url="http://127.0.0.1:1/v1")
    identity = LlamaCppFactory().identity()
    assert identity.startswith("SmolLM2-135M-Instruct-gguf@") and identity.endswith("|llamacpp")


@pytest.mark.slow
@needs_llama
def test_constrained_answers_share_the_note_prefix() -> None:
    backend = LlamaCppFactory(n_ctx=2048).create()
    llm = backend.llm  # type: ignore[attr-defined]
    evaluated: list[int] = []
    real_eval = llm.eval

    def counting_eval(tokens):  # counts the tokens llama.cpp runs through the model, then runs them
        evaluated.append(len(tokens))
        return real_eval(tokens)

    llm.eval = counting_eval
    af = make_question("af", "boolean", "atrial fibrillation")
    creat = make_question("creat", "numeric", "creatinine", order="highest", unit="mg/dL")
    try:
        first = backend.answer("n1", NOTE, [af])
        prompt_first = sum(evaluated)
        evaluated.clear()
        second = backend.answer("n1", NOTE, [creat])
    finally:
        backend.close()
    for answer, question in ((first[0], af), (second[0], creat)):
        # The grammar makes every output valid JSON of the schema; what a 135M model says in it may still
        # be an error row of meaning ("inconsistent: stated but null"), never one of form.
        assert answer.error is None or not answer.error.startswith(("invalid_json", "schema", "truncated")), answer.error
        raw = json.loads(answer.raw)
        assert list(raw) == list(question.answer_schema["properties"])  # the schema's keys, in its order
    # The second question re-evaluates only what follows the note: far fewer tokens than the first prompt.
    assert evaluated and evaluated[0] < prompt_first / 2, (evaluated, prompt_first)


@pytest.mark.slow
@needs_llama
def test_crit_run_through_the_new_backend(tmp_path: Path) -> None:
    db = tmp_path / "l.duckdb"
    args = ["run", str(ROOT / "tests/fixtures/run/small.crit"), str(ROOT / "tests/fixtures/run/notes.jsonl"),
            "--db", str(db), "--backend", "llamacpp", "--policy", "model"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "answered by model" in result.output


@pytest.mark.slow
@needs_llama
def test_a_passage_with_quotes_and_backslashes_is_answered_not_crashed() -> None:
    """A passage that quotes speech ('complaint of "chest pain"') is a literal of the answer's grammar; with
    llama-cpp-python's own converter it made a grammar llama.cpp cannot parse and the process died (SIGSEGV).
    Run in a child process, so that a crash fails this test instead of ending the suite."""
    import subprocess
    import sys

    script = r'''
import json
from crit.engine.answering.backends.llamacpp import LlamaCppFactory
from crit.engine.answering.view import over_passages
from crit.grammar.questions import make_question
note = 'The patient is a 40-year-old man with a chief complaint of "chest pain". Path C:\\notes\\x.'
q = over_passages(make_question("age", "numeric", "age", order="value", unit="years"), [note])
backend = LlamaCppFactory(n_ctx=2048).create()
(a,) = backend.answer("n1", note, [q])
backend.close()
raw = json.loads(a.raw)
assert raw["source"] in (note, ""), raw
print("ok", raw["source"] == note)
'''
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("ok")
