"""The transformers backend with the embedded model over a real (public, CC0) note. Slow: loads the model."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from crit.engine.answering.backend import Backend, answer_key
from crit.engine.answers import Answer, parse_answer
from crit.grammar.questions import make_question

pytestmark = pytest.mark.slow

NOTE = (Path(__file__).parent / "fixtures" / "notes" / "mts-1513.txt").read_text()

QUESTIONS = [
    make_question("hgb", "numeric", "hemoglobin", order="lowest", unit="g/dL", aka=("Hb", "Hgb")),
    make_question("bun", "numeric", "BUN", order="highest", unit="mg/dL", aka=("blood urea nitrogen",)),
    make_question("dm", "boolean", "diabetes mellitus", aka=("diabetes",)),
    make_question("pe", "boolean", "a pulmonary embolism"),
]


@pytest.fixture(scope="module")
def loaded():
    from crit.engine.answering.model import load_model

    return load_model()


@pytest.fixture(scope="module")
def backend(loaded):
    from crit.engine.answering.backends.transformers import TransformersBackend

    # max_new_tokens 120 still fits the longest schema answer; it keeps a runaway short.
    return TransformersBackend(loaded, batch_size=4, max_new_tokens=120)


def check(answer: Answer, note: str, question, identity: str) -> None:
    assert answer.question == question.name
    assert answer.fingerprint == answer_key(question.fingerprint, identity)
    assert answer.prompt_tokens > 0 and answer.output_tokens > 0 and answer.latency_s > 0
    # The stored answer is exactly what its own generated text says (nothing relabelled or salvaged).
    reparsed = parse_answer(answer.raw, question, note, truncated=(answer.error or "").startswith("truncated"))
    assert (reparsed.value, reparsed.na, reparsed.error) == (answer.value, answer.na, answer.error)
    if answer.error is not None:
        # Under the constraint the JSON is always valid and fits the schema unless cut at the token
        # limit; what remains possible is a "stated" status with a null answer, or an overflow.
        assert answer.error.split(":")[0] in {"truncated", "inconsistent", "not_finite"}
        assert answer.value is None
        return
    assert answer.na or answer.value is not None
    if question.kind == "boolean" and not answer.na:
        assert answer.value in (0.0, 1.0)
    if answer.span_start is not None:
        assert 0 <= answer.span_start < answer.span_end <= len(note)
        if answer.grounded:
            assert note[answer.span_start : answer.span_end] == answer.source


def test_model_loads_once_per_process(loaded):
    from crit.engine.answering.model import load_model

    t = time.perf_counter()
    again = load_model()
    assert again is loaded and time.perf_counter() - t < 0.1
    assert loaded.identity.startswith("SmolLM2-135M-Instruct@") and loaded.context_length == 8192


def test_later_loads_read_the_converted_copy(loaded):
    from crit.engine.answering import model as model_module

    converted = model_module.embedded_model_dir() / "config.json"
    written = converted.stat().st_mtime_ns
    key = (None, None, loaded.device)
    model_module._LOADED.pop(key)
    try:
        fresh = model_module.load_model()
        assert fresh is not loaded and fresh.identity == loaded.identity
        assert converted.stat().st_mtime_ns == written  # not converted again
    finally:
        model_module._LOADED[key] = loaded


def test_answers_validate_or_say_why(backend, loaded):
    assert isinstance(backend, Backend)
    answers = backend.answer("mts-1513", NOTE, QUESTIONS)
    assert [a.question for a in answers] == [q.name for q in QUESTIONS]
    for a, q in zip(answers, QUESTIONS):
        check(a, NOTE, q, loaded.identity)
        assert a.chunk is None  # a short note is one window


def test_batched_equals_unbatched(backend, loaded):
    from crit.engine.answering.backends.transformers import TransformersBackend

    # Boolean and numeric questions share one batch, each row under its own layout.
    one_by_one = TransformersBackend(loaded, batch_size=1, max_new_tokens=120)
    batched = backend.answer("mts-1513", NOTE, QUESTIONS)
    single = one_by_one.answer("mts-1513", NOTE, QUESTIONS)
    assert [a.raw for a in batched] == [a.raw for a in single]


def test_guessed_tokens_change_speed_not_answers(loaded):
    from crit.engine.answering.backends.transformers import TransformersBackend

    plain = TransformersBackend(loaded, batch_size=4, max_new_tokens=120, speculate=0)
    guessing = TransformersBackend(loaded, batch_size=4, max_new_tokens=120, speculate=32)
    assert [a.raw for a in guessing.answer("n", NOTE, QUESTIONS)] == [a.raw for a in plain.answer("n", NOTE, QUESTIONS)]


def test_finished_answers_are_in_the_json_dumps_layout(backend):
    for a in backend.answer("mts-1513", NOTE, QUESTIONS):
        if a.error is None:
            assert a.raw == json.dumps(json.loads(a.raw))


def test_shared_prefix_attention_equals_a_cache_copied_per_row(loaded):
    """The same logits, up to rounding, as transformers' own attention over a per-row copy of
    the prefix, with padding inside the rows and several decoding steps."""
    import copy

    import torch
    from transformers import DynamicCache

    from crit.engine.answering.shared_prefix import shared_prefix_attention, shared_prefix_cache

    model, rows, prefix_len = loaded.model, 3, 200
    gen = torch.Generator().manual_seed(0)
    prefix = DynamicCache(config=model.config)
    with torch.inference_mode():
        model(input_ids=torch.randint(100, 5000, (1, prefix_len), generator=gen), past_key_values=prefix)
        tails = torch.randint(100, 5000, (rows, 6), generator=gen)
        tail_mask = torch.ones((rows, 6), dtype=torch.long)
        tail_mask[0, :3] = 0  # padding inside a row, as decode_layout writes it
        tail_mask[1, :1] = 0
        mask = torch.cat([torch.ones((rows, prefix_len), dtype=torch.long), tail_mask], dim=-1)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)[:, prefix_len:]
        copied = copy.deepcopy(prefix)
        copied.batch_repeat_interleave(rows)
        shared = shared_prefix_cache(prefix, rows, room=2)  # small room: the buffers must grow
        steps = [(tails, positions)] + [
            (torch.randint(100, 5000, (rows, 1), generator=gen), positions[:, -1:] + 1 + s) for s in range(3)
        ]
        for ids, pos in steps:
            if ids.shape[1] == 1:
                mask = torch.cat([mask, torch.ones((rows, 1), dtype=torch.long)], dim=-1)
            want = model(input_ids=ids, attention_mask=mask, position_ids=pos, past_key_values=copied).logits
            with shared_prefix_attention(model, shared):
                got = model(input_ids=ids, attention_mask=mask, position_ids=pos, past_key_values=shared).logits
            assert torch.allclose(got, want, atol=1e-3), (got - want).abs().max()
        assert shared.get_seq_length() == copied.get_seq_length()
    assert model.config._attn_implementation != "crit_shared_prefix"  # restored on exit


def test_long_note_windows_find_the_line_that_holds_the_answer(loaded):
    from crit.engine.answering.backends.transformers import TransformersBackend

    filler = "\n".join(line for line in NOTE.splitlines() if "emoglobin" not in line and "embolism" not in line)
    distinct = "ALLERGIES: The patient reports a severe allergy to penicillin with hives.\n"
    long_note = (filler + "\n") * 3 + distinct + (filler + "\n") * 3
    backend = TransformersBackend(loaded, batch_size=4, max_new_tokens=120, max_note_tokens=400, overlap_tokens=32)
    q = make_question("pcn", "boolean", "a penicillin allergy", aka=("penicillin",))
    windows = backend.chunks(long_note, [q])
    assert len(windows) >= 3
    holding = [w for w in windows if "penicillin" in long_note[w.start : w.end]]
    assert 1 <= len(holding) <= 2  # the line, maybe twice through the overlap
    (answer,) = backend.answer("long", long_note, [q])
    check(answer, long_note, q, loaded.identity)
    assert answer.chunk in {w.index for w in holding}  # only those windows were asked
    # check() has already asserted that a grounded span indexes the full note, not the window
