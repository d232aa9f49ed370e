"""Tokens per note and per question over MTSamples, with the prompts crit actually sends.

For each note: the prompt tokens of every ARISTOTLE question (the embedded model's chat
template over crit.engine.answering.prompts.messages), the prefix all questions of the note share
(what prefix caching computes once), and the per-question suffix. Output tokens are not
model-independent; pass --answers DB to add the mean output_tokens of a store's answers.
These figures feed the fleet estimate in benchmarks/RESULTS.md.

Usage: python benchmarks/tokens_per_note.py [--notes 300] [--answers results.duckdb]
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MTSAMPLES = ROOT.parent / "shared" / "data" / "mtsamples.jsonl"
CRIT = ROOT / "criteria" / "aristotle.crit"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--notes", type=int, default=300, help="first N MTSamples notes (default 300)")
    ap.add_argument("--answers", default=None, help="a crit store whose answers give output tokens")
    a = ap.parse_args()

    from transformers import AutoTokenizer

    from crit.engine.answering.backends.transformers import common_prefix_length
    from crit.engine.answering.model import embedded_model_dir
    from crit.engine.answering.prompts import messages
    from crit.engine.eligibility import load_plan

    tok = AutoTokenizer.from_pretrained(embedded_model_dir())
    questions = load_plan(CRIT).model_questions
    rows = [json.loads(l) for l in MTSAMPLES.read_text(encoding="utf-8").splitlines()[: a.notes] if l.strip()]
    note_tokens, prompt_tokens, prefix_tokens, suffix_tokens = [], [], [], []
    for r in rows:
        ids = [
            tok(tok.apply_chat_template(messages(r["text"], q), add_generation_prompt=True, tokenize=False),
                add_special_tokens=False)["input_ids"]
            for q in questions
        ]
        k = common_prefix_length(ids)
        note_tokens.append(len(tok(r["text"], add_special_tokens=False)["input_ids"]))
        prompt_tokens.append(sum(len(i) for i in ids))
        prefix_tokens.append(k)
        suffix_tokens.extend(len(i) - k for i in ids)
    q = len(questions)
    print(f"{len(rows)} MTSamples notes, {q} questions (criteria/aristotle.crit), SmolLM2 tokenizer")
    print(f"note tokens: mean {statistics.mean(note_tokens):.0f}, median {statistics.median(note_tokens):.0f}, "
          f"p95 {sorted(note_tokens)[int(0.95 * len(note_tokens))]}")
    print(f"shared prefix per note (system + note): mean {statistics.mean(prefix_tokens):.0f}")
    print(f"per-question suffix: mean {statistics.mean(suffix_tokens):.0f}")
    print(f"prompt tokens per note, all questions, no prefix caching: mean {statistics.mean(prompt_tokens):.0f}")
    with_cache = statistics.mean(p + q * s for p, s in zip(prefix_tokens, [statistics.mean(suffix_tokens)] * len(rows)))
    print(f"prefill tokens per note with prefix caching (prefix once + suffixes): mean {with_cache:.0f}")
    if a.answers:
        import duckdb

        with duckdb.connect(a.answers, read_only=True) as con:
            n, out, prompt = con.execute(
                "SELECT count(*), avg(output_tokens), avg(prompt_tokens) FROM answers WHERE error IS NULL"
            ).fetchall()[0]
        print(f"{a.answers}: {n} answers, mean output tokens {out:.1f}, mean prompt tokens {prompt:.0f}")


if __name__ == "__main__":
    main()
