"""The vllm backend: offline batch inference on GPUs with vLLM (optional extra `crit[vllm]`).

Requests are built as plain dataclasses (EngineSpec, SamplingSpec, LoraSpec,
BatchPlan) by pure functions that never import vLLM, so they are tested on any
machine; a thin adapter turns them 1:1 into vLLM's own objects only when this
backend runs:

    EngineSpec   -> LLM(model=..., enable_prefix_caching=True, enable_lora=bool(adapter), ...)
    SamplingSpec -> SamplingParams(temperature=0, max_tokens=..., structured_outputs=StructuredOutputsParams(json=schema))
    LoraSpec     -> LoRARequest(name, int_id, path)
    BatchPlan    -> one LLM.chat(conversations, sampling_params_list, lora_request=...) call

All (note, question) prompts of a batch go to vLLM in one call, note-major, so its
prefix cache computes each note once for all of its questions. vLLM is imported
only when this backend is chosen; a vLLM too old to have StructuredOutputsParams
is refused, because older versions silently ignore the guided-decoding arguments
that replaced it and would generate unconstrained text.
"""

from __future__ import annotations

import hashlib
import importlib.util
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crit.engine.answering.backend import Backend, Request
from crit.engine.answering.payloads import DEFAULT_MAX_TOKENS, batch_pairs, require_model, to_answer
from crit.engine.answering.prompts import messages
from crit.engine.answers import Answer
from crit.grammar.errors import CritError
from crit.grammar.questions import Question

INSTALL_HINT = "install it with: pip install 'crit[vllm]' (needs a CUDA GPU; vLLM pins its own torch, so use a separate environment)"


@dataclass(frozen=True)
class EngineSpec:
    """Arguments of vllm.LLM(...)."""

    model: str
    enable_prefix_caching: bool = True
    enable_lora: bool = False
    max_lora_rank: int | None = None
    max_model_len: int | None = None
    gpu_memory_utilization: float = 0.9
    tensor_parallel_size: int = 1
    seed: int = 0

    def kwargs(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "model": self.model,
            "enable_prefix_caching": self.enable_prefix_caching,
            "enable_lora": self.enable_lora,
            "gpu_memory_utilization": self.gpu_memory_utilization,
            "tensor_parallel_size": self.tensor_parallel_size,
            "seed": self.seed,
        }
        if self.max_lora_rank is not None:
            out["max_lora_rank"] = self.max_lora_rank
        if self.max_model_len is not None:
            out["max_model_len"] = self.max_model_len
        return out


@dataclass(frozen=True)
class SamplingSpec:
    """Arguments of vllm.SamplingParams(...); json_schema becomes StructuredOutputsParams(json=...)."""

    json_schema: dict[str, Any]
    max_tokens: int = DEFAULT_MAX_TOKENS
    temperature: float = 0.0

    def kwargs(self) -> dict[str, Any]:
        """Everything but the structured-outputs object, which only vLLM can build."""
        return {"temperature": self.temperature, "max_tokens": self.max_tokens}


@dataclass(frozen=True)
class LoraSpec:
    """Arguments of vllm.lora.request.LoRARequest(name, int_id, path)."""

    name: str
    int_id: int
    path: str


@dataclass(frozen=True)
class BatchPlan:
    """One LLM.chat call: a conversation and a sampling spec per (note, question) pair."""

    pairs: list[tuple[int, int]]  # (note index, question index), note-major
    conversations: list[list[dict[str, str]]]
    sampling: list[SamplingSpec]
    lora: LoraSpec | None = None


def lora_spec(adapter: str | None) -> LoraSpec | None:
    """The LoRA request for an adapter folder (id 1: crit serves one adapter per run), or None."""
    if adapter is None:
        return None
    path = Path(adapter).expanduser()
    if not (path / "adapter_config.json").exists():
        raise CritError(f"adapter folder '{adapter}' not found or has no adapter_config.json; pass the folder written by `crit train`")
    return LoraSpec(name=path.resolve().name, int_id=1, path=str(path.resolve()))


def engine_spec(model: str, adapter: str | None = None, **options: Any) -> EngineSpec:
    """The engine for `model` (a local model folder), with LoRA enabled only when an adapter is given."""
    path = Path(model).expanduser()
    if not (path / "config.json").exists():
        raise CritError(
            f"model folder '{model}' not found or has no config.json; crit downloads nothing: "
            "pass a local Hugging Face model folder to --model"
        )
    return EngineSpec(model=str(path.resolve()), enable_lora=adapter is not None, **options)


def sampling_spec(question: Question, max_tokens: int = DEFAULT_MAX_TOKENS) -> SamplingSpec:
    """Greedy decoding constrained to the question's answer schema."""
    return SamplingSpec(json_schema=question.answer_schema, max_tokens=max_tokens)


def plan_batch(
    requests: Sequence[Request],
    *,
    max_tokens: int = DEFAULT_MAX_TOKENS,
    adapter: str | None = None,
) -> BatchPlan:
    """Every (note, question) prompt of a batch, ready for one LLM.chat call."""
    pairs = batch_pairs(requests)
    return BatchPlan(
        pairs=pairs,
        conversations=[messages(requests[i].text, requests[i].questions[j]) for i, j in pairs],
        sampling=[sampling_spec(requests[i].questions[j], max_tokens) for i, j in pairs],
        lora=lora_spec(adapter),
    )


def model_identity(model_dir: str, adapter: str | None) -> str:
    """Answer-cache identity: model folder name and file hash, adapter name and content hash, engine."""
    from crit.engine.answering.model import weights_identity  # the same identity as the embedded backend's

    folder = Path(model_dir)
    identity = weights_identity(folder, folder.name, Path(adapter).expanduser() if adapter is not None else None)
    return identity + "@vllm"


# -- the thin adapter onto vLLM's objects ------------------------------------------------


def no_usage_stats() -> None:
    """Switch off vLLM's and Ray's usage-statistics reporting (they phone home by default), unless the
    user set the variables themselves: notes are patient data, and the machine may be offline."""
    import os

    for name, value in (("VLLM_NO_USAGE_STATS", "1"), ("DO_NOT_TRACK", "1"), ("RAY_USAGE_STATS_ENABLED", "0")):
        os.environ.setdefault(name, value)


def import_vllm() -> Any:
    """Import vLLM, or raise a CritError saying how to install it or that it is too old."""
    no_usage_stats()
    try:
        import vllm
    except ImportError as exc:
        raise CritError(f"--backend vllm: vLLM is not installed ({exc.msg}); {INSTALL_HINT}") from None
    try:
        from vllm.sampling_params import StructuredOutputsParams  # noqa: F401
    except ImportError:
        version = getattr(vllm, "__version__", "unknown")
        raise CritError(
            f"--backend vllm: vLLM {version} is too old: it has no StructuredOutputsParams, and its older "
            "guided-decoding arguments are ignored silently by some versions, which would give unconstrained "
            "answers. Upgrade with: pip install -U 'crit[vllm]'"
        ) from None
    return vllm


def to_sampling_params(spec: SamplingSpec, vllm: Any) -> Any:
    from vllm.sampling_params import StructuredOutputsParams

    return vllm.SamplingParams(**spec.kwargs(), structured_outputs=StructuredOutputsParams(json=spec.json_schema))


def to_lora_request(spec: LoraSpec | None) -> Any:
    if spec is None:
        return None
    from vllm.lora.request import LoRARequest

    return LoRARequest(spec.name, spec.int_id, spec.path)


class VLLMBackend:
    """Answers questions with vLLM offline inference on this machine's GPUs.

    model: a local Hugging Face model folder; adapter: a peft LoRA folder served per request.
    Use answer_batch with many notes: vLLM's throughput comes from large batches.
    """

    def __init__(
        self,
        model: str,
        adapter: str | None = None,
        max_tokens: int = DEFAULT_MAX_TOKENS,
        max_lora_rank: int | None = None,
        max_model_len: int | None = None,
        gpu_memory_utilization: float = 0.9,
        tensor_parallel_size: int = 1,
    ):
        vllm = import_vllm()
        self.spec = engine_spec(
            model,
            adapter,
            max_lora_rank=max_lora_rank,
            max_model_len=max_model_len,
            gpu_memory_utilization=gpu_memory_utilization,
            tensor_parallel_size=tensor_parallel_size,
        )
        self.adapter = adapter
        self.max_tokens = max_tokens
        self.identity = model_identity(self.spec.model, adapter)
        self._vllm = vllm
        self._llm = vllm.LLM(**self.spec.kwargs())
        self._params: dict[str, Any] = {}

    def answer(self, note_id: str, note_text: str, questions: Sequence[Question]) -> list[Answer]:
        return self.answer_batch([Request(note_id, note_text, questions)])[0]

    def answer_batch(self, requests: Sequence[Request]) -> list[list[Answer]]:
        """All (note, question) prompts in one LLM.chat call; one list of answers per request, in order."""
        if not any(r.questions for r in requests):
            return [[] for _ in requests]
        plan = plan_batch(requests, max_tokens=self.max_tokens, adapter=self.adapter)
        params = [self._sampling(s) for s in plan.sampling]
        t0 = time.perf_counter()
        outputs = self._llm.chat(plan.conversations, params, use_tqdm=False, lora_request=to_lora_request(plan.lora))
        share = (time.perf_counter() - t0) / len(plan.pairs)
        result: list[list[Answer]] = [[] for _ in requests]
        for (i, j), out in zip(plan.pairs, outputs):
            gen = out.outputs[0]
            result[i].append(
                to_answer(
                    requests[i].note_id,
                    requests[i].text,
                    requests[i].questions[j],
                    self.identity,
                    gen.text,
                    truncated=gen.finish_reason == "length",
                    latency_s=share,
                    prompt_tokens=len(out.prompt_token_ids or []),
                    output_tokens=len(gen.token_ids),
                )
            )
        return result

    def close(self) -> None:
        self._llm = None

    def _sampling(self, spec: SamplingSpec) -> Any:
        # One SamplingParams per distinct schema, reused across batches.
        key = hashlib.sha256(repr((spec.kwargs(), spec.json_schema)).encode()).hexdigest()
        if key not in self._params:
            self._params[key] = to_sampling_params(spec, self._vllm)
        return self._params[key]


@dataclass
class VLLMFactory:
    """vllm = vLLM offline batch inference on this machine's GPUs (pip install 'crit[vllm]')."""

    model: str | None = None
    adapter: str | None = None
    max_tokens: int = DEFAULT_MAX_TOKENS
    name: str = field(default="vllm", init=False)

    def __post_init__(self) -> None:
        self.model = require_model("vllm", self.model, "a local Hugging Face model folder")

    def require(self) -> None:
        if importlib.util.find_spec("vllm") is None:
            raise CritError(f"--backend vllm: vLLM is not installed; {INSTALL_HINT}")

    def identity(self) -> str:
        assert self.model is not None
        return model_identity(engine_spec(self.model, self.adapter).model, self.adapter)

    def parameters(self) -> dict[str, Any]:
        return {"model": self.model, "adapter": self.adapter, "max_tokens": self.max_tokens}

    def create(self) -> Backend:
        assert self.model is not None
        return VLLMBackend(self.model, self.adapter, max_tokens=self.max_tokens)


FACTORY = VLLMFactory
