"""The student shipped with crit (engine/answering/student): it loads, it is what its manifest says, and the
documented command rebuilds its training data bit for bit."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

import pytest

from crit.engine.answering.backends.transformers import TransformersFactory
from crit.engine.answering.model import EMBEDDED_NAME, STUDENT_DIR, locate_embedded_gguf, model_identity
from crit.grammar.errors import CritError

ROOT = Path(__file__).resolve().parent.parent
MANIFEST = json.loads((STUDENT_DIR / "manifest.json").read_text())
MTSAMPLES = ROOT.parent / "shared" / "data" / "mtsamples.jsonl"


def test_the_student_is_small_and_its_config_matches_the_manifest():
    config = json.loads((STUDENT_DIR / "adapter_config.json").read_text())
    params = MANIFEST["parameters"]
    assert config["r"] == params["r"] <= 16 and config["lora_alpha"] == params["alpha"]
    gguf = locate_embedded_gguf()  # trained on this very base: its converted folder is named by the GGUF
    assert MANIFEST["base_name"] == f"{gguf.stem}-{gguf.stat().st_size}" and EMBEDDED_NAME in MANIFEST["base_name"]
    weights = STUDENT_DIR / "adapter_model.safetensors"
    assert weights.stat().st_size < 12 * 2**20
    metrics = MANIFEST["metrics"]
    assert metrics["steps"] == params["max_steps"] == len(metrics["loss_per_step"])
    assert metrics["val_loss_after"] < metrics["val_loss_before"]


def test_the_student_is_asked_for_by_name_and_named_in_the_identity():
    student = TransformersFactory(adapter="student")
    assert student.adapter == str(STUDENT_DIR)
    assert TransformersFactory().adapter is None and TransformersFactory(adapter="none").adapter is None
    assert student.identity() != TransformersFactory().identity() == model_identity(None)
    assert f"+{STUDENT_DIR.name}@" in student.identity()  # answers of the two never share a cache key
    with pytest.raises(CritError, match="student of the embedded model"):
        TransformersFactory(model="some/folder", adapter="student")


@pytest.mark.slow
def test_the_student_loads_with_the_parameter_count_of_its_manifest():
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from crit.engine.answering.model import embedded_model_dir

    base = AutoModelForCausalLM.from_pretrained(embedded_model_dir())
    model = PeftModel.from_pretrained(base, str(STUDENT_DIR))
    lora = sum(p.numel() for n, p in model.named_parameters() if "lora_" in n)
    assert lora == MANIFEST["trainable_parameters"]


@pytest.mark.slow  # rebuilds the student's whole training set twice: about 60 s
@pytest.mark.skipif(not MTSAMPLES.is_file(), reason="needs ../shared/data/mtsamples.jsonl, the rebuild's real notes")
def test_the_documented_command_rebuilds_the_training_data(tmp_path):
    """The documented command is deterministic, and with the reader and generator the shipped student was built
    with it rebuilds the student's exact data. The data is the reader's (it finds the passages and checks every
    label) and the generator's, so a newer one builds other data: then the manifest must say which reader built
    the student's (its generator, crit-gen-2, predates the manifest's field for it)."""
    from crit.engine.answering.backends.rules import RulesBackend

    digests = []
    for run in ("a", "b"):
        env = {**os.environ, "DATA_ONLY": "1", "WORK": str(tmp_path / run), "OUT": str(tmp_path / "never")}
        subprocess.run(["bash", str(ROOT / "trainer" / "build_student.sh")], check=True, env=env, cwd=ROOT,
                       capture_output=True)
        digests.append({key: hashlib.sha256((tmp_path / run / "data" / name).read_bytes()).hexdigest()
                        for name, key in (("train.jsonl", "train_sha256"), ("val.jsonl", "val_sha256"))})
    assert digests[0] == digests[1]
    built_with = MANIFEST["data"].get("reader")
    assert built_with, "the manifest names the reader that built the student's data"
    from crit.trainer.generate import GENERATOR_VERSION

    if built_with == RulesBackend.identity and MANIFEST["data"].get("generator", "crit-gen-2") == GENERATOR_VERSION:
        assert digests[0] == {k: MANIFEST["data"][k] for k in digests[0]}