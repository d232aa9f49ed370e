"""End to end on CPU, small: a model as teacher writes pairs for three short notes, select splits
them by note, a few LoRA steps train an adapter, the engine runs with it, and `crit eval` prints
the table. Asserts on properties, never on accuracy, so the model is the tiny random one
(tests/conftest.py): the plumbing is what is tested. The real embedded model's answers, training
step and shipped student are tested in test_backend_transformers.py, test_finetune_qlora_cpu.py
and test_student.py."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import duckdb
import pytest
from click.testing import CliRunner

from crit.cli import cli
from crit.trainer.finetune import TrainConfig, finetune
from crit.trainer.select import SelectConfig, select
from crit.trainer.synth import SynthConfig, answer_fits, synth

ROOT = Path(__file__).resolve().parents[1]
NOTES = ROOT / "tests" / "fixtures" / "trainer" / "notes.jsonl"
GOLD = ROOT / "tests" / "gold" / "aristotle_gold.jsonl"
RUN = ROOT / "tests" / "fixtures" / "run"

pytestmark = pytest.mark.slow


def _pairs_from_gold(db: Path) -> None:
    """Fallback when the 135M teacher keeps no pair: the gold labels of the same notes as pairs."""
    texts = {json.loads(x)["note_id"]: json.loads(x)["text"] for x in NOTES.read_text().splitlines()}
    full = {json.loads(x)["note_id"]: json.loads(x)["text"] for x in (GOLD.parent / "notes.jsonl").read_text().splitlines()}
    con = duckdb.connect(str(db))
    now = datetime.now(timezone.utc)
    for line in GOLD.read_text().splitlines():
        g = json.loads(line)
        if g["note_id"] not in texts:
            continue
        con.execute("UPDATE notes SET text = ? WHERE note_id = ?", [full[g["note_id"]], g["note_id"]])
        if g["kind"] == "boolean":
            kind = "na-boolean" if g["answer"] == "not mentioned" else "boolean"
            answer = None if kind == "na-boolean" else g["answer"]
        else:
            kind = "na-numeric" if g["answer"] is None else "numeric"
            answer = None if g["answer"] is None else str(g["answer"])
        con.execute(
            "INSERT INTO pairs VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'gold', 'gold label', 5, 'gold', 'gold', ?, NULL)",
            [g["note_id"], kind, f"Does the note say anything about {g['question']}?", answer, g["unit"],
             g["source"] or "", g["span_start"], g["span_end"], now],
        )
    con.close()


def test_synth_select_train_run_eval(tmp_path, tiny_model):
    model = str(tiny_model)
    db = tmp_path / "synth.duckdb"
    summary = synth(SynthConfig(notes=str(NOTES), db=str(db), device="cpu", max_new_tokens=200, teacher=model))
    assert summary.notes_done == 3

    con = duckdb.connect(str(db), read_only=True)
    texts = dict(con.execute("SELECT note_id, text FROM notes").fetchall())
    pairs = con.execute("SELECT note_id, type, question, answer, source, span_start, span_end, difficulty FROM pairs").fetchall()
    dropped = con.execute("SELECT reason, count(*) FROM dropped GROUP BY 1").fetchall()
    con.close()
    # One generation per (note, type): each is either kept or dropped with a reason, and counted.
    assert len(pairs) + sum(n for _, n in dropped) == 3 * 4 == summary.pairs_kept + sum(summary.pairs_dropped.values())
    for note_id, kind, question, answer, source, start, end, difficulty in pairs:
        assert 1 <= difficulty <= 10 and question.strip()
        if kind.startswith("na-"):
            assert answer is None and source == "" and start is None
        else:
            assert texts[note_id][start:end] == source and source  # verbatim, at its span
            assert answer_fits(float(answer) if kind == "numeric" else answer, kind)
    questions = [(n, q.lower()) for n, _, q, *_ in pairs]
    assert len(set(questions)) == len(questions)

    # Resumable: a second run does nothing new.
    again = synth(SynthConfig(notes=str(NOTES), db=str(db), device="cpu", max_new_tokens=200, teacher=model))
    assert again.notes_done == 0 and again.notes_skipped == 3

    kinds = {k for _, k, *_ in pairs}
    if len(kinds) < 2:  # too few types from a random teacher to select from: use gold labels instead
        _pairs_from_gold(db)

    data = tmp_path / "data"
    sel = select(SelectConfig(db=str(db), out=str(data), per_type=5))
    train = [json.loads(x) for x in (data / "train.jsonl").read_text().splitlines()]
    val = [json.loads(x) for x in (data / "val.jsonl").read_text().splitlines()]
    assert train and sel.train == len(train)
    assert not {x["note_id"] for x in train} & {x["note_id"] for x in val}

    adapter = finetune(TrainConfig(data=str(data), out=str(tmp_path / "adapter"), max_steps=3, batch_size=2,
                                   max_length=1024, device="cpu", qlora=False, base=model))
    manifest = json.loads((adapter / "manifest.json").read_text())
    assert len(manifest["metrics"]["loss_per_step"]) == 3
    assert manifest["data"]["train_sha256"] and manifest["parameters"]["r"] == 8
    # The adapter only (peft adds its model card README.md), never the base weights.
    assert {p.name for p in adapter.iterdir()} <= {"README.md", "adapter_config.json", "adapter_model.safetensors", "manifest.json"}
    from safetensors.torch import load_file

    weights = load_file(str(adapter / "adapter_model.safetensors"))
    lora_b = [t for name, t in weights.items() if "lora_B" in name]
    assert lora_b and any(t.abs().sum() > 0 for t in lora_b)  # peft starts every lora_B at zero

    # The engine runs with the adapter, and its identity (part of every answer key) names it.
    from crit.engine.answering.model import load_model

    loaded = load_model(model, str(adapter), "cpu")
    assert "+adapter@" in loaded.identity
    runner = CliRunner()
    res = runner.invoke(cli, ["run", str(RUN / "small.crit"), str(RUN / "notes.jsonl"), "--db",
                              str(tmp_path / "results.duckdb"), "--model", model, "--adapter", str(adapter),
                              "--device", "cpu", "--limit", "1", "--policy", "model"])
    assert res.exit_code == 0, res.output
    con = duckdb.connect(str(tmp_path / "results.duckdb"), read_only=True)
    identities = {r[0] for r in con.execute("SELECT DISTINCT backend_identity FROM questions").fetchall()}
    con.close()
    assert len(identities) == 1 and identities.pop().startswith(loaded.identity + "|")  # + evidence, policy, gate

    res = runner.invoke(cli, ["eval", str(GOLD), "--model", model, "--adapter", str(adapter), "--limit", "1", "--question", "htn",
                              "--question", "age", "--out", str(tmp_path / "eval.duckdb"), "--device", "cpu",
                              "--criteria", str(ROOT / "criteria" / "aristotle.crit")])
    assert res.exit_code == 0, res.output
    assert "balanced_acc" in res.output and "micro_f1" in res.output and "within_5%" in res.output
    con = duckdb.connect(str(tmp_path / "eval.duckdb"), read_only=True)
    assert con.execute("SELECT count(*) FROM eval WHERE question = 'htn'").fetchone()[0] == 1
    con.close()
