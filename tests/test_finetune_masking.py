"""The training loss covers only the answer: prompt and padding positions are labelled -100."""

from __future__ import annotations

import json

import pytest

from crit.trainer.finetune import IGNORE_INDEX, Tokenised, collate, tokenise_example


def test_collate_pads_right_and_masks_padding():
    a = Tokenised(input_ids=[5, 6, 7, 8], labels=[IGNORE_INDEX, IGNORE_INDEX, 7, 8], prompt_length=2)
    b = Tokenised(input_ids=[9, 10], labels=[IGNORE_INDEX, 10], prompt_length=1)
    batch = collate([a, b], pad_id=0)
    assert batch["input_ids"].tolist() == [[5, 6, 7, 8], [9, 10, 0, 0]]
    assert batch["labels"].tolist() == [[IGNORE_INDEX, IGNORE_INDEX, 7, 8], [IGNORE_INDEX, 10, IGNORE_INDEX, IGNORE_INDEX]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1], [1, 1, 0, 0]]


def test_example_without_answer_is_refused():
    with pytest.raises(ValueError, match="assistant"):
        tokenise_example(None, [{"role": "user", "content": "hi"}])


@pytest.mark.slow
def test_masked_positions_equal_the_prompt_the_engine_sends():
    from transformers import AutoTokenizer

    from crit.engine.answering.model import embedded_model_dir
    from crit.engine.answering.prompts import messages
    from crit.grammar.questions import make_question

    tok = AutoTokenizer.from_pretrained(embedded_model_dir())
    q = make_question("creat", "numeric", "creatinine", order="highest", unit="mg/dL")
    answer = json.dumps({"status": "stated", "answer": 1.4, "unit": "mg/dL", "source": "creatinine 1.4"})
    msgs = messages("Labs: creatinine 1.4 mg/dL.", q) + [{"role": "assistant", "content": answer}]
    x = tokenise_example(tok, msgs)

    # The prompt is exactly what the engine tokenises before generating (backends/transformers.py).
    engine_prompt = tok(tok.apply_chat_template(msgs[:-1], add_generation_prompt=True, tokenize=False),
                        add_special_tokens=False)["input_ids"]
    assert x.input_ids[: x.prompt_length] == engine_prompt
    masked = sum(label == IGNORE_INDEX for label in x.labels)
    assert masked == x.prompt_length == len(engine_prompt)
    # What is learnt: the answer JSON, then end-of-turn (where the engine stops generating).
    learnt = [t for t in x.labels if t != IGNORE_INDEX]
    assert learnt[-1] == tok.eos_token_id
    assert tok.decode(learnt[:-1]) == answer

    batch = collate([x, tokenise_example(tok, msgs[:-1] + [{"role": "assistant", "content": "{}"}])], tok.pad_token_id)
    for row, labels in zip(batch["attention_mask"].tolist(), batch["labels"].tolist()):
        assert sum(label != IGNORE_INDEX for label in labels) <= sum(row)
