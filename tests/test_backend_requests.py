"""Request building of the scale-out backends (openai, vllm), without a server and without vLLM.

These are the requests a vLLM fleet, an SGLang server or a llama.cpp server receive:
the same prompt as the embedded backend, greedy, constrained to the question's schema.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from crit.engine.answering import payloads
from crit.engine.answering.backend import Request, answer_key
from crit.engine.answering.backends import vllm as vb
from crit.engine.answering.prompts import messages
from crit.grammar.errors import CritError
from crit.grammar.questions import make_question

AF = make_question("af", "boolean", "atrial fibrillation")
CREAT = make_question("creat", "numeric", "creatinine", order="highest", unit="mg/dL", aka=("Cr",))
NOTES = [("n1", "Atrial fibrillation. Creatinine 1.4 mg/dL."), ("n2", "No arrhythmia.")]


def test_chat_request_is_greedy_schema_constrained_and_uses_the_shared_prompt():
    body = payloads.chat_request("smol", NOTES[0][1], CREAT)
    assert body["model"] == "smol"
    assert body["temperature"] == 0.0
    assert body["max_tokens"] == payloads.DEFAULT_MAX_TOKENS
    assert body["messages"] == messages(NOTES[0][1], CREAT)
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "crit_numeric", "schema": CREAT.answer_schema, "strict": True},
    }
    # The body is plain JSON: it travels as is.
    assert json.loads(json.dumps(body)) == body


def test_json_object_form_carries_the_schema_for_llama_cpp_python():
    fmt = payloads.response_format(AF, "json_object")
    assert fmt == {"type": "json_object", "schema": AF.answer_schema}
    with pytest.raises(ValueError, match="unknown response format"):
        payloads.response_format(AF, "grammar")  # type: ignore[arg-type]


def test_schema_keeps_status_before_answer():
    # Key order matters for constrained decoding: the model decides "stated" before writing a number.
    assert list(payloads.response_format(CREAT, "json_schema")["json_schema"]["schema"]["properties"]) == [
        "status", "answer", "unit", "source"]


def test_to_answer_validates_through_parse_answer():
    ok = payloads.to_answer("n1", NOTES[0][1], CREAT, "m@openai", '{"status":"stated","answer":1.4,"unit":"mg/dL","source":"Creatinine 1.4 mg/dL"}')
    assert (ok.value, ok.unit, ok.grounded, ok.error) == (1.4, "mg/dL", True, None)
    assert ok.fingerprint == answer_key(CREAT.fingerprint, "m@openai")
    assert NOTES[0][1][ok.span_start : ok.span_end] == "Creatinine 1.4 mg/dL"
    bad = payloads.to_answer("n1", NOTES[0][1], AF, "m@openai", '{"answer": "yes", "source": ""}')
    assert bad.error is not None and bad.error.startswith("schema:")
    cut = payloads.to_answer("n1", NOTES[0][1], AF, "m@openai", '{"answer": "pres', truncated=True)
    assert cut.error is not None and cut.error.startswith("truncated:")


def test_vllm_batch_plan_is_note_major_with_one_request_per_pair():
    plan = vb.plan_batch([Request(n, t, [AF, CREAT]) for n, t in NOTES], max_tokens=64)
    assert plan.pairs == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert plan.conversations[1] == messages(NOTES[0][1], CREAT)
    assert plan.conversations[2] == messages(NOTES[1][1], AF)
    assert [s.json_schema for s in plan.sampling] == [AF.answer_schema, CREAT.answer_schema] * 2
    assert plan.sampling[0].kwargs() == {"temperature": 0.0, "max_tokens": 64}
    assert plan.lora is None
    # The two questions of a note share their conversation up to the question: the prefix vLLM caches.
    a, b = (plan.conversations[0][-1]["content"], plan.conversations[1][-1]["content"])
    assert a.split("QUESTION:")[0] == b.split("QUESTION:")[0]


def _model_dir(tmp_path: Path) -> Path:
    d = tmp_path / "model"
    d.mkdir()
    (d / "config.json").write_text("{}")
    return d


def _adapter_dir(tmp_path: Path) -> Path:
    d = tmp_path / "my-adapter"
    d.mkdir()
    (d / "adapter_config.json").write_text('{"r": 8}')
    return d


def test_vllm_engine_and_lora_specs(tmp_path):
    model, adapter = _model_dir(tmp_path), _adapter_dir(tmp_path)
    plain = vb.engine_spec(str(model))
    assert plain.kwargs()["enable_prefix_caching"] is True
    assert plain.kwargs()["enable_lora"] is False
    tuned = vb.engine_spec(str(model), str(adapter), max_lora_rank=8)
    assert tuned.kwargs()["enable_lora"] is True and tuned.kwargs()["max_lora_rank"] == 8
    assert vb.lora_spec(str(adapter)) == vb.LoraSpec("my-adapter", 1, str(adapter.resolve()))
    assert vb.plan_batch([Request(n, t, [AF]) for n, t in NOTES], adapter=str(adapter)).lora == vb.lora_spec(str(adapter))


def test_vllm_identity_changes_with_the_adapter_content(tmp_path):
    model, adapter = _model_dir(tmp_path), _adapter_dir(tmp_path)
    base = vb.model_identity(str(model), None)
    first = vb.model_identity(str(model), str(adapter))
    (adapter / "adapter_config.json").write_text('{"r": 16}')
    assert base.endswith("@vllm") and first != base and vb.model_identity(str(model), str(adapter)) != first


def test_vllm_bad_folders_are_user_errors(tmp_path):
    with pytest.raises(CritError, match="config.json"):
        vb.engine_spec(str(tmp_path / "nowhere"))
    with pytest.raises(CritError, match="adapter_config.json"):
        vb.lora_spec(str(tmp_path))


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vLLM is installed here")
def test_vllm_missing_says_how_to_install():
    with pytest.raises(CritError, match=r"pip install 'crit\[vllm\]'"):
        vb.import_vllm()


@pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="needs vLLM")
def test_vllm_adapter_builds_the_real_objects(tmp_path):
    vllm = vb.import_vllm()
    spec = vb.sampling_spec(CREAT, 64)
    params = vb.to_sampling_params(spec, vllm)
    assert params.temperature == 0.0 and params.max_tokens == 64
    assert params.structured_outputs.json == CREAT.answer_schema
    lora = vb.to_lora_request(vb.lora_spec(str(_adapter_dir(tmp_path))))
    assert (lora.lora_name, lora.lora_int_id) == ("my-adapter", 1)
