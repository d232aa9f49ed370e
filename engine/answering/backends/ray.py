"""The ray backend: a Ray Data LLM batch pipeline over (note, question) rows (optional extra `crit[ray]`).

`ray.data.llm.build_processor` runs the generation stage; crit supplies the two ends:
- preprocess turns a row (note_id, note_text, question) into the request, built by the
  same code as the other backends: an OpenAI chat payload for HttpRequestProcessorConfig
  (any OpenAI-compatible server or fleet, runs on CPU), or messages + sampling_params with
  `structured_outputs={"json": schema}` for vLLMEngineProcessorConfig (GPUs, one vLLM
  engine per replica, prefix caching on, LoRA by the row's `model`);
- postprocess parses the generated text with parse_answer into an Answer row.
The run loop then writes those answers to the store like any backend's. Ray is
imported only when this backend runs; the row functions here are pure and tested
without it.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from crit.engine.answering.backend import Backend, Request
from crit.engine.answering.backends.vllm import VLLMFactory, engine_spec, lora_spec, no_usage_stats
from crit.engine.answering.payloads import (
    DEFAULT_MAX_TOKENS,
    ResponseFormat,
    ServerOptions,
    chat_request,
    error_answer,
    require_model,
    to_answer,
)
from crit.engine.answering.prompts import messages
from crit.engine.answers import Answer
from crit.grammar.errors import CritError
from crit.grammar.questions import Question

Engine = Literal["http", "vllm"]
INSTALL_HINT = "install it with: pip install 'crit[ray]'"


def rows_for(requests: Sequence[Request]) -> tuple[list[dict[str, Any]], tuple[Question, ...]]:
    """One Ray Data row per (note, question), note-major (keeps a note's prefix hot in the engine's cache),
    and the questions the rows' `q` index (a note's questions may carry schemas of their own)."""
    questions = tuple(q for r in requests for q in r.questions)
    rows, k = [], 0
    for r in requests:
        for q in r.questions:
            rows.append({"note_id": r.note_id, "note_text": r.text, "question": q.name, "q": k})
            k += 1
    return rows, questions


@dataclass(frozen=True)
class RowCodec:
    """The preprocess and postprocess functions of one pipeline (picklable: Ray ships them to workers)."""

    engine: Engine
    identity: str
    questions: tuple[Question, ...]
    model: str = ""  # the served model name (http) or the LoRA name (vllm, with an adapter)
    form: ResponseFormat = "json_schema"
    max_tokens: int = DEFAULT_MAX_TOKENS

    def _question(self, row: dict[str, Any]) -> Question:
        return self.questions[row["q"]]

    def preprocess(self, row: dict[str, Any]) -> dict[str, Any]:
        q = self._question(row)
        if self.engine == "http":
            return {**row, "payload": chat_request(self.model, row["note_text"], q, form=self.form, max_tokens=self.max_tokens)}
        out = {
            **row,
            "messages": messages(row["note_text"], q),
            "sampling_params": {
                "temperature": 0.0,
                "max_tokens": self.max_tokens,
                "structured_outputs": {"json": q.answer_schema},
            },
        }
        if self.model:
            out["model"] = self.model  # Ray's vLLM stage serves the LoRA adapter of this name
        return out

    def postprocess(self, row: dict[str, Any]) -> dict[str, Any]:
        q = self._question(row)
        if self.engine == "http":
            try:
                choice = row["http_response"]["choices"][0]
                usage = row["http_response"].get("usage") or {}
                raw = choice["message"]["content"] or ""
            except (KeyError, IndexError, TypeError):
                error = error_answer(row["note_id"], q, self.identity, "server: response is not a chat completion")
                return {**error.model_dump(), "q": row["q"]}
            answer = to_answer(
                row["note_id"], row["note_text"], q, self.identity, raw,
                truncated=choice.get("finish_reason") == "length",
                prompt_tokens=int(usage.get("prompt_tokens") or 0),
                output_tokens=int(usage.get("completion_tokens") or 0),
            )
        else:
            generated = int(row.get("num_generated_tokens") or 0)
            answer = to_answer(
                row["note_id"], row["note_text"], q, self.identity, row.get("generated_text") or "",
                truncated=generated >= self.max_tokens,  # Ray's vLLM stage does not pass finish_reason on
                prompt_tokens=int(row.get("num_input_tokens") or 0),
                output_tokens=generated,
            )
        # The answer's error row paths carry q too: answer_batch puts rows back in order by it.
        return {**answer.model_dump(), "q": row["q"]}


def http_config_kwargs(base_url: str, concurrency: int, qps: int | None, max_retries: int, batch_size: int, api_key: str | None) -> dict[str, Any]:
    """Arguments of HttpRequestProcessorConfig: POST each row's payload to {base_url}/chat/completions."""
    from crit.engine.answering.backends.openai import normalise_base_url

    kwargs: dict[str, Any] = {
        "url": normalise_base_url(base_url) + "/chat/completions",
        "concurrency": concurrency,
        "qps": qps,
        "max_retries": max_retries,
        "batch_size": batch_size,
    }
    if api_key:
        kwargs["headers"] = {"Authorization": f"Bearer {api_key}"}
    return kwargs


def vllm_config_kwargs(model: str, adapter: str | None, concurrency: int, batch_size: int, accelerator_type: str | None) -> dict[str, Any]:
    """Arguments of vLLMEngineProcessorConfig: the same engine settings as the vllm backend."""
    engine = engine_spec(model, adapter).kwargs()
    source = engine.pop("model")
    kwargs: dict[str, Any] = {
        "model_source": source,
        "engine_kwargs": engine,
        "concurrency": concurrency,
        "batch_size": batch_size,
    }
    if accelerator_type:
        kwargs["accelerator_type"] = accelerator_type
    if adapter:
        spec = lora_spec(adapter)
        assert spec is not None
        # Ray looks a row's `model` up under this folder when it is not the base model.
        kwargs["dynamic_lora_loading_path"] = str(Path(spec.path).parent)
    return kwargs


def import_ray() -> Any:
    no_usage_stats()
    try:
        import ray
        import ray.data.llm  # noqa: F401
    except ImportError as exc:
        raise CritError(f"--backend ray: Ray Data LLM is not installed ({exc.msg}); {INSTALL_HINT}") from None
    return ray


def build_processor(codec: RowCodec, config_kwargs: dict[str, Any]) -> Any:
    """The Ray Data LLM processor: preprocess -> generation stage -> postprocess."""
    import_ray()
    from ray.data.llm import HttpRequestProcessorConfig, vLLMEngineProcessorConfig
    from ray.data.llm import build_processor as ray_build

    config_cls: Callable[..., Any] = HttpRequestProcessorConfig if codec.engine == "http" else vLLMEngineProcessorConfig
    return ray_build(config_cls(**config_kwargs), preprocess=codec.preprocess, postprocess=codec.postprocess)


class RayBackend:
    """Answers batches of notes with a Ray Data LLM pipeline (local Ray, or the cluster RAY_ADDRESS names).

    engine "http": base_url of an OpenAI-compatible server or load balancer; identity `<model>@openai`,
      the same as the openai backend's (the same server answers the same way).
    engine "vllm": model is a local model folder on every node; identity as the vllm backend's.
    """

    def __init__(
        self,
        engine: Engine,
        model: str,
        *,
        base_url: str | None = None,
        adapter: str | None = None,
        concurrency: int = 1,
        qps: int | None = None,
        max_retries: int = 3,
        batch_size: int = 64,
        response_format: ResponseFormat = "json_schema",
        max_tokens: int = DEFAULT_MAX_TOKENS,
        accelerator_type: str | None = None,
        api_key: str | None = None,
    ):
        if engine == "http":
            if not base_url:
                raise CritError("--backend ray with an OpenAI-compatible server needs --base-url")
            self.identity = f"{model}@openai"
            self.config = http_config_kwargs(base_url, concurrency, qps, max_retries, batch_size, api_key)
            served = model
        else:
            from crit.engine.answering.backends.vllm import model_identity

            self.config = vllm_config_kwargs(model, adapter, concurrency, batch_size, accelerator_type)
            self.identity = model_identity(self.config["model_source"], adapter)
            spec = lora_spec(adapter)
            served = spec.name if spec else ""
        self.engine: Engine = engine
        self.model = served
        self.response_format: ResponseFormat = response_format
        self.max_tokens = max_tokens
        self._ray = import_ray()

    def answer(self, note_id: str, note_text: str, questions: Sequence[Question]) -> list[Answer]:
        return self.answer_batch([Request(note_id, note_text, questions)])[0]

    def answer_batch(self, requests: Sequence[Request]) -> list[list[Answer]]:
        """Run the pipeline over all (note, question) rows of the batch; answers per request, in order."""
        if not any(r.questions for r in requests):
            return [[] for _ in requests]
        rows_in, questions = rows_for(requests)
        codec = RowCodec(self.engine, self.identity, questions, self.model, self.response_format, self.max_tokens)
        processor = build_processor(codec, self.config)
        ds = self._ray.data.from_items(rows_in)
        try:
            rows = processor(ds).take_all()
        except Exception as exc:  # Ray wraps worker errors; the cause's first line is what a user needs
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise CritError(f"--backend ray: the pipeline failed: {first}") from None
        keep = set(Answer.model_fields)
        by_row = {r["q"]: Answer(**{k: v for k, v in r.items() if k in keep}) for r in rows}
        out, k = [], 0
        for r in requests:
            out.append([by_row[k + j] for j in range(len(r.questions))])
            k += len(r.questions)
        return out

    def close(self) -> None:
        """Ray stays up for the process (ray.shutdown() at exit); nothing to release per backend."""


@dataclass
class RayFactory(ServerOptions):
    """ray = a Ray Data LLM pipeline, against --base-url (a server or fleet) or vLLM engines on GPUs (docs/backends.md)."""

    adapter: str | None = None
    name: str = field(default="ray", init=False)

    def __post_init__(self) -> None:
        self.model = require_model("ray", self.model, "the served model name (with --base-url) or a local model folder")
        self.check_server_options()

    @property
    def engine(self) -> str:
        return "http" if self.base_url else "vllm"

    def require(self) -> None:
        if importlib.util.find_spec("ray") is None:
            raise CritError(f"--backend ray: Ray Data LLM is not installed; {INSTALL_HINT}")
        if self.engine == "vllm":
            VLLMFactory(model=self.model, adapter=self.adapter).require()

    def identity(self) -> str:
        if self.engine == "http":
            return f"{self.model}@openai"
        return VLLMFactory(model=self.model, adapter=self.adapter).identity()

    def parameters(self) -> dict[str, Any]:
        return {"model": self.model, "adapter": self.adapter, "engine": self.engine, **self.server_parameters()}

    def create(self) -> Backend:
        import os

        assert self.model is not None
        key = os.environ.get(self.api_key_env) if self.api_key_env else None
        if self.api_key_env and not key:
            raise CritError(f"--api-key-env {self.api_key_env}: that environment variable is not set or empty")
        return RayBackend(self.engine, self.model, base_url=self.base_url, adapter=self.adapter,  # type: ignore[arg-type]
                          concurrency=self.concurrency, response_format=self.response_format,  # type: ignore[arg-type]
                          max_tokens=self.max_tokens, api_key=key)


FACTORY = RayFactory
