"""Backend factories: know a backend's identity without starting it, and start it only when asked.

`crit run` needs every question's answer_key (question fingerprint + backend
identity) before it can tell which answers are cached; when none are missing it
must not load a model at all. So each backend comes with a factory whose
`identity()` is cheap (file names and sizes, a model name) and whose `create()`
does the expensive part. `BACKENDS` maps the CLI's `--backend` choices to
factory classes; another backend registers itself here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from crit.engine.backends.base import Backend
from crit.grammar.errors import CritError


class BackendFactory(Protocol):
    name: str  # the --backend choice, stored with the run

    def identity(self) -> str:
        """The identity the backend will report, computed without starting it."""
        ...

    def parameters(self) -> dict[str, Any]:
        """Settings worth recording with the run (JSON-serialisable)."""
        ...

    def create(self) -> Backend:
        """Start the backend (load a model, open a connection)."""
        ...


@dataclass
class TransformersFactory:
    """The embedded SmolLM2 (or a local HF model folder, optional LoRA adapter) run by transformers."""

    model: str | None = None
    # None or "none": the raw model; "student": the student shipped with crit
    # (crit.engine.model.resolve_adapter); else a LoRA adapter folder.
    adapter: str | None = None
    device: str = "auto"
    # Questions of a note decoded together. Measured on 2 CPU cores, aristotle.crit's 26
    # questions over 2 sample notes: batch 9 -> 78.6 s, 13 -> 59.4 s, 26 -> 59.7 s.
    batch_size: int = 13
    max_new_tokens: int = 160
    name: str = field(default="transformers", init=False)

    def __post_init__(self) -> None:
        # Checked before any note is read, so a typo never fails a run half-way.
        if self.device not in ("auto", "cpu", "cuda") and not self.device.startswith("cuda:"):
            raise CritError(f"unknown device '{self.device}': use auto, cpu or cuda")
        if self.batch_size < 1 or self.max_new_tokens < 1:
            raise CritError("--batch-size and max_new_tokens must be at least 1")
        from crit.engine.model import resolve_adapter

        self.adapter = resolve_adapter(self.model, self.adapter)

    def identity(self) -> str:
        from crit.engine.model import model_identity

        return model_identity(self.model, self.adapter)

    def parameters(self) -> dict[str, Any]:
        return {
            "model": str(Path(self.model).resolve()) if self.model else None,
            "adapter": str(Path(self.adapter).resolve()) if self.adapter else None,
            "device": self.device,
            "batch_size": self.batch_size,
            "max_new_tokens": self.max_new_tokens,
        }

    def create(self) -> Backend:
        from crit.engine.backends.transformers import TransformersBackend
        from crit.engine.model import load_model

        loaded = load_model(self.model, self.adapter, device=self.device)
        return TransformersBackend(loaded, batch_size=self.batch_size, max_new_tokens=self.max_new_tokens)


@dataclass
class RulesFactory:
    """The rules answerer alone (crit.engine.backends.rules): no model is loaded or needed."""

    name: str = field(default="rules", init=False)

    def identity(self) -> str:
        from crit.engine.backends.rules import RulesBackend

        return RulesBackend.identity

    def parameters(self) -> dict[str, Any]:
        return {"model": None, "adapter": None}

    def create(self) -> Backend:
        from crit.engine.backends.rules import RulesBackend

        return RulesBackend()


BACKENDS: dict[str, type] = {"transformers": TransformersFactory, "rules": RulesFactory}

# The scale-out backends (openai, vllm, ray): crit.engine.backends.scale.
from crit.engine.backends.scale import SCALE_BACKENDS  # noqa: E402  (after TransformersFactory: no cycle)

BACKENDS.update(SCALE_BACKENDS)
