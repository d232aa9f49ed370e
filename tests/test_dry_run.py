"""`crit run --dry-run`: the whole corpus checked, work left counted against the store, no model loaded;
plus the Ray pipeline's row functions (pure: they run without Ray)."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from crit.cli import cli
from crit.engine.answering.backend import Request, answer_key
from crit.engine.answering.backends.ray import RowCodec, http_config_kwargs, rows_for
from crit.engine.answering.payloads import to_answer
from crit.engine.dryrun import dry_run
from crit.engine.eligibility import load_plan
from crit.engine.notes.reader import read_notes
from crit.engine.notes.shards import parse_shard
from crit.engine.store import RunInfo, Store
from crit.grammar.questions import make_question

ROOT = Path(__file__).resolve().parent.parent
CRIT = ROOT / "criteria" / "aristotle.crit"
IDENTITY = "smollm2@openai"


def _corpus(tmp_path: Path) -> Path:
    rows = [{"note_id": f"n{i}", "text": f"Note {i}: creatinine {i / 10} mg/dL."} for i in range(1, 9)]
    rows.insert(3, {"note_id": "n2", "text": "a duplicate id"})  # row 4: bad
    rows.insert(6, {"note_id": "", "text": "no id"})  # row 7: bad
    path = tmp_path / "notes.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n{not json\n")  # row 11: bad
    return path


def test_dry_run_counts_work_left_and_bad_rows(tmp_path):
    corpus = _corpus(tmp_path)
    plan = load_plan(CRIT)
    keys = {q.name: answer_key(q.fingerprint, IDENTITY) for q in plan.model_questions}
    fresh = dry_run(corpus, keys, tmp_path / "absent.duckdb")
    assert (fresh.rows, fresh.notes, fresh.pairs_cached) == (11, 8, 0)
    assert fresh.pairs_left == 8 * len(keys) and fresh.notes_left == 8
    assert [b.row for b in fresh.bad_rows] == [4, 7, 11]

    # Answer every question for two notes, and one question for a third.
    notes, _ = read_notes(corpus)
    db = tmp_path / "store.duckdb"
    info = RunInfo(crit_file=str(CRIT), crit_hash="h", rules_fingerprint=plan.rules_fingerprint, trial_id=None,
                   notes_source=str(corpus), model=None, adapter=None, backend="openai", backend_identity=IDENTITY)
    raw = {"boolean": '{"answer": "absent", "source": ""}',
           "numeric": '{"status": "not stated", "answer": null, "unit": null, "source": ""}'}
    with Store.open(db) as store:
        run_id = store.begin_run(info, plan.model_questions, keys)
        answers = [to_answer(n.note_id, n.text, q, IDENTITY, raw[q.kind]) for n in notes[:2] for q in plan.model_questions]
        answers.append(to_answer(notes[2].note_id, notes[2].text, plan.model_questions[0], IDENTITY, raw["boolean"]))
        store.write_batch(run_id, notes[:3], answers, keys)
    report = dry_run(corpus, keys, db)
    assert report.pairs_cached == 2 * len(keys) + 1
    assert report.pairs_left == 8 * len(keys) - report.pairs_cached
    assert report.notes_left == 6
    # A note whose text changed since it was answered is asked again.
    edited = tmp_path / "edited.jsonl"
    edited.write_text(corpus.read_text().replace("Note 1: creatinine 0.1", "Note 1: creatinine 0.2"))
    assert dry_run(edited, keys, db).pairs_cached == report.pairs_cached - len(keys)
    # Another model's answers are not this model's cache.
    other = {q: answer_key(q + "x", "other@openai") for q in keys}
    assert dry_run(corpus, other, db).pairs_cached == 0
    # A shard sees only its notes; the shards add up to the corpus.
    halves = [dry_run(corpus, keys, db, shard=parse_shard(s)) for s in ("1/2", "2/2")]
    assert sum(h.notes for h in halves) == 8 and sum(h.pairs_left for h in halves) == report.pairs_left


def test_cli_dry_run_loads_no_model_and_never_prints_note_text(tmp_path):
    corpus = _corpus(tmp_path)
    result = CliRunner().invoke(
        cli, ["run", str(CRIT), str(corpus), "--db", str(tmp_path / "s.duckdb"), "--dry-run",
              "--backend", "openai", "--model", "smollm2", "--base-url", "http://127.0.0.1:9/v1"],
    )
    assert result.exit_code == 0, result.output
    assert "11 rows read, 8 notes, 3 bad rows" in result.output
    assert "row 4 (note_id 'n2'): duplicate note id" in result.output
    assert "creatinine" not in result.output and "duplicate id" not in result.output.replace("duplicate note id", "")
    assert not (tmp_path / "s.duckdb").exists()  # nothing written


def test_cli_backend_options_are_checked(tmp_path):
    corpus = _corpus(tmp_path)
    base = ["run", str(CRIT), str(corpus), "--db", str(tmp_path / "s.duckdb")]
    for extra, message in (
        (["--backend", "openai", "--model", "m"], "--base-url"),
        (["--backend", "openai", "--base-url", "http://127.0.0.1:9"], "needs --model"),
        (["--base-url", "http://127.0.0.1:9"], "does not take --base-url"),
        (["--shard", "3/2"], "--shard"),
    ):
        result = CliRunner().invoke(cli, base + extra)
        assert result.exit_code == 1 and message in result.output, (extra, result.output)


AF = make_question("af", "boolean", "atrial fibrillation")


def test_ray_rows_carry_the_same_requests_and_parse_through_parse_answer():
    rows, questions = rows_for([Request("n1", "Atrial fibrillation noted.", [AF])])
    assert questions == (AF,) and rows[0]["q"] == 0
    http = RowCodec("http", IDENTITY, (AF,), model="smollm2", form="json_object")
    pre = http.preprocess(rows[0])
    assert pre["payload"]["response_format"] == {"type": "json_object", "schema": AF.answer_schema}
    assert pre["payload"]["temperature"] == 0.0
    content = '{"answer": "present", "source": "Atrial fibrillation"}'
    post = http.postprocess({**pre, "http_response": {"choices": [{"message": {"content": content}, "finish_reason": "stop"}],
                                                      "usage": {"prompt_tokens": 90, "completion_tokens": 12}}})
    assert (post["value"], post["grounded"], post["prompt_tokens"]) == (1.0, True, 90)
    assert post["fingerprint"] == answer_key(AF.fingerprint, IDENTITY)

    gpu = RowCodec("vllm", "m@vllm", (AF,), model="my-adapter", max_tokens=64)
    pre = gpu.preprocess(rows[0])
    assert pre["sampling_params"] == {"temperature": 0.0, "max_tokens": 64, "structured_outputs": {"json": AF.answer_schema}}
    assert pre["model"] == "my-adapter" and pre["messages"][-1]["role"] == "user"
    bad = gpu.postprocess({**pre, "generated_text": '{"answer": "maybe"', "num_generated_tokens": 64, "num_input_tokens": 80})
    assert bad["error"].startswith("truncated:")
    assert http_config_kwargs("http://127.0.0.1:8000", 2, 10, 3, 16, None)["url"] == "http://127.0.0.1:8000/v1/chat/completions"


def test_dry_run_on_a_fresh_cache_converts_no_model_and_imports_no_torch(tmp_path):
    """The embedded model's identity comes from its GGUF file: a dry run needs no conversion and no torch."""
    import os
    import subprocess
    import sys
    import textwrap

    root = Path(__file__).resolve().parent.parent
    code = textwrap.dedent(f"""
        import sys
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("torch", "transformers"):
                    raise ImportError("blocked: " + name)
        sys.meta_path.insert(0, Block())
        from crit.cli import main
        sys.argv = ["crit", "run", {str(root / 'criteria' / 'aristotle.crit')!r},
                    {str(root / 'examples' / 'mtsamples-sample.jsonl')!r}, "--db", {str(tmp_path / 'r.duckdb')!r},
                    "--dry-run"]
        main()
    """)
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "520 left" in proc.stdout and "no model was loaded" in proc.stdout
    assert not (tmp_path / "cache").exists()  # nothing converted, nothing cached


def test_dry_run_refuses_a_duckdb_file_crit_did_not_make_and_reads_an_empty_one(tmp_path):
    """One line, exit 1, for a foreign file (a run would refuse to write it); an empty file holds no answers."""
    import duckdb

    root = Path(__file__).resolve().parent.parent
    crit_file, notes = str(root / "criteria" / "aristotle.crit"), str(root / "examples" / "mtsamples-sample.jsonl")
    foreign, empty = tmp_path / "foreign.duckdb", tmp_path / "empty.duckdb"
    with duckdb.connect(str(foreign)) as con:
        con.execute("CREATE TABLE t (a INTEGER)")
    duckdb.connect(str(empty)).close()
    refused = CliRunner().invoke(cli, ["run", crit_file, notes, "--db", str(foreign), "--dry-run", "--backend", "rules"])
    assert refused.exit_code == 1 and "crit did not make" in refused.output and "Traceback" not in refused.output
    fresh = CliRunner().invoke(cli, ["run", crit_file, notes, "--db", str(empty), "--dry-run", "--backend", "rules"])
    assert fresh.exit_code == 0 and "0 answered already" in fresh.output
