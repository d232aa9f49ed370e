"""Shared test parts: a scripted model backend, so run's plumbing is tested without a model, and a
tiny model built in-process, for the plumbing that needs real weights (training, adapters)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from crit.engine.answering.backend import OneNoteAtATime, answer_key
from crit.engine.answers import Answer, parse_answer
from crit.grammar.questions import Question

# (note text the backend was shown, question) -> the JSON the "model" writes
Script = Callable[[str, Question], str]


def not_mentioned(text: str, q: Question) -> str:
    if q.kind == "boolean":
        return json.dumps({"answer": "not mentioned", "source": ""})
    return json.dumps({"status": "not stated", "answer": None, "unit": None, "source": ""})


class ScriptedBackend(OneNoteAtATime):
    """A model backend whose answers come from a function: every call and question is recorded."""

    def __init__(self, script: Script, identity: str = "scripted-1"):
        self.script = script
        self.identity = identity
        self.calls: list[tuple[str, str, list[str]]] = []  # (note_id, text shown, question names)

    def answer(self, note_id: str, note_text: str, questions: Sequence[Question]) -> list[Answer]:
        self.calls.append((note_id, note_text, [q.name for q in questions]))
        out = []
        for q in questions:
            raw = self.script(note_text, q)
            parsed = parse_answer(raw, q, note_text)
            out.append(Answer(note_id=note_id, question=q.name, fingerprint=answer_key(q.fingerprint, self.identity),
                              raw=raw, latency_s=0.0, prompt_tokens=0, output_tokens=0, **parsed.model_dump()))
        return out

    def close(self) -> None:
        pass


@dataclass
class ScriptedFactory:
    """A BackendFactory for ScriptedBackend; `backends` holds every backend it created."""

    script: Script = not_mentioned
    identity_text: str = "scripted-1"
    name: str = "scripted"
    backends: list[ScriptedBackend] = field(default_factory=list)

    def identity(self) -> str:
        return self.identity_text

    def parameters(self) -> dict[str, Any]:
        return {"model": "scripted"}

    def create(self) -> ScriptedBackend:
        backend = ScriptedBackend(self.script, self.identity_text)
        self.backends.append(backend)
        return backend

    def asked(self) -> list[str]:
        """Every question name asked of any backend, in order."""
        return [name for b in self.backends for _, _, names in b.calls for name in names]


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Llama of 0.8M random weights (3 MB) with the embedded model's tokenizer and chat template,
    built from a config in a few seconds: it answers every prompt with valid, meaningless JSON, so
    tests of what is done with a model (train, load an adapter, run, evaluate) need not wait for
    the real one. What a model says is tested with the real embedded model, elsewhere."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from crit.engine.answering.model import embedded_model_dir

    tokenizer = AutoTokenizer.from_pretrained(embedded_model_dir())
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=8192,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         tie_word_embeddings=True)
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny-model")
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


# ---- ARISTOTLE's questions, and a small corpus, for the reading and answering tests -----------------

ROOT = Path(__file__).resolve().parent.parent
ARISTOTLE = ROOT / "criteria" / "aristotle.crit"
NOTE = ("HISTORY: The patient is a 70-year-old man with atrial fibrillation. Denies diabetes.\n"
        "LABS: Creatinine 1.4, hemoglobin 12.1.\nPLAN: Follow up.")


def aristotle_question(name: str) -> Question:
    """A question of criteria/aristotle.crit, compiled once."""
    from crit.engine.eligibility import load_plan

    global _ARISTOTLE
    if _ARISTOTLE is None:
        _ARISTOTLE = load_plan(ARISTOTLE)
    return _ARISTOTLE.question(name)


_ARISTOTLE: Any = None


def rules_label(text: str, name: str) -> Any:
    """The rules reader's answer to an ARISTOTLE question over `text`: a boolean's label, or (value, unit)."""
    from crit.engine.answering.backends.rules import RulesBackend

    q = aristotle_question(name)
    a = RulesBackend().answer("n1", text, [q])[0]
    if q.kind == "boolean":
        return "not mentioned" if a.na else ("present" if a.value == 1.0 else "absent")
    return None if a.na else (a.value, a.unit)


def two_note_corpus(tmp_path: Path) -> Path:
    """NOTE and a note that mentions none of ARISTOTLE's questions, as JSONL."""
    path = tmp_path / "notes.jsonl"
    path.write_text("".join(json.dumps({"note_id": f"n{i}", "text": t}) + "\n" for i, t in enumerate([
        NOTE, "Seen for a sprained ankle. Ice and rest."])))
    return path


# ---- a real browser, for the report's page ------------------------------------------------------


@pytest.fixture
def browser(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Debian's headless Chromium driven by its chromedriver; nothing is downloaded (paths are explicit)."""
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not chromium or not driver:
        pytest.skip("Debian's chromium and chromium-driver are not installed (tests/run.sh installs them with apt-get)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    monkeypatch.setenv("SE_OFFLINE", "true")  # Selenium Manager must never try the network
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
                f"--user-data-dir={tmp_path / 'chromium-profile'}", "--window-size=1280,1600"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # A download (the report's "Export labels") lands in tmp_path/downloads, with no prompt.
    opts.add_experimental_option("prefs", {"download.default_directory": str(tmp_path / "downloads"),
                                           "download.prompt_for_download": False})
    drv = webdriver.Chrome(service=Service(driver), options=opts)
    drv.set_page_load_timeout(30)
    yield drv
    drv.quit()
