"""QLoRA on CPU: bitsandbytes 0.50 loads the base in 4-bit NF4 on a CPU, so the --qlora path
(quantisation config, k-bit preparation, LoRA on the 4-bit layers) runs here too; one step.
And both training loops (Trainer and the plain one) on the tiny model."""

from __future__ import annotations

import json

import pytest

from crit.engine.answering.prompts import messages
from crit.grammar.questions import make_question
from crit.trainer.finetune import TrainConfig, finetune

pytestmark = pytest.mark.slow


def test_one_qlora_step_on_cpu(tmp_path):
    q = make_question("htn", "boolean", "hypertension")
    note = "PAST MEDICAL HISTORY: Hypertension, diabetes."
    answer = json.dumps({"answer": "present", "source": "Hypertension"})
    (tmp_path / "train.jsonl").write_text(json.dumps({"messages": messages(note, q) + [{"role": "assistant", "content": answer}]}) + "\n")

    adapter = finetune(TrainConfig(data=str(tmp_path), out=str(tmp_path / "adapter"), qlora=True, max_steps=1,
                                   batch_size=1, device="cpu"))
    manifest = json.loads((adapter / "manifest.json").read_text())
    assert manifest["parameters"]["qlora"] is True
    assert len(manifest["metrics"]["loss_per_step"]) == 1
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert config["r"] == 8 and config["lora_alpha"] == 16
    from safetensors.torch import load_file

    lora_b = [t for n, t in load_file(str(adapter / "adapter_model.safetensors")).items() if "lora_B" in n]
    assert any(t.abs().sum() > 0 for t in lora_b)


@pytest.mark.parametrize("loop", ["trainer", "hand"])
def test_both_training_loops_take_their_steps_and_learn(tmp_path, tiny_model, loop):
    """transformers' Trainer (the default) and the plain loop: same examples and settings, each step's
    loss recorded, and the adapter learns (its lora_B leave zero, the validation loss falls)."""
    q = make_question("htn", "boolean", "hypertension")
    note = "PAST MEDICAL HISTORY: Hypertension, diabetes."
    answer = json.dumps({"answer": "present", "source": "Hypertension"})
    line = json.dumps({"messages": messages(note, q) + [{"role": "assistant", "content": answer}]}) + "\n"
    (tmp_path / "train.jsonl").write_text(line * 4)
    (tmp_path / "val.jsonl").write_text(line)
    adapter = finetune(TrainConfig(data=str(tmp_path), out=str(tmp_path / "adapter"), max_steps=4, batch_size=2,
                                   lr=1e-2, device="cpu", qlora=False, base=str(tiny_model), loop=loop))
    metrics = json.loads((adapter / "manifest.json").read_text())["metrics"]
    assert metrics["loop"] == loop and metrics["steps"] == 4 and len(metrics["loss_per_step"]) == 4
    assert metrics["val_loss_after"] < metrics["val_loss_before"]
    from safetensors.torch import load_file

    lora_b = [t for n, t in load_file(str(adapter / "adapter_model.safetensors")).items() if "lora_B" in n]
    assert any(t.abs().sum() > 0 for t in lora_b)
