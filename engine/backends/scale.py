"""Factories of the scale-out backends (openai, vllm, ray) for `crit run --backend ...`.

Like the transformers factory in crit.engine.backends.registry, each knows its
backend's identity without starting anything (no connection, no GPU, no Ray), so
`crit run --dry-run` and the answer cache work before any model exists.
`factory_for` builds the factory a CLI choice names from the options the user gave.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from crit.engine.backends.base import Backend
from crit.engine.backends.payloads import DEFAULT_MAX_TOKENS
from crit.grammar.errors import CritError


def _require_model(backend: str, model: str | None, what: str) -> str:
    if not model:
        raise CritError(f"--backend {backend} needs --model: {what}")
    return model


_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
_KEY_PREFIXES = ("sk-", "sk_", "hf_", "ghp_", "gsk_", "xai-", "eyJ")


def check_api_key_env(name: str | None) -> str | None:
    """`--api-key-env` names a variable; a value that looks like a key itself is refused without being
    shown (a pasted key must never reach the store, the report or the terminal)."""
    if name is None:
        return None
    if not _ENV_NAME.fullmatch(name) or name.startswith(_KEY_PREFIXES) or (len(name) > 24 and not name.isupper()):
        raise CritError("--api-key-env takes the NAME of an environment variable (e.g. OPENAI_API_KEY); the value "
                        "given looks like a key itself and was not stored or shown (hint: export it, pass its name)")
    return name


def public_url(url: str | None) -> str | None:
    """The URL without user name and password: what may be stored, printed or put in a report."""
    if url is None:
        return None
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = host + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


@dataclass
class OpenAIFactory:
    """Any OpenAI-compatible server (vLLM serve, SGLang, llama.cpp server); notes are sent to --base-url."""

    model: str | None = None
    base_url: str | None = None
    api_key_env: str | None = None
    concurrency: int = 4
    response_format: str = "json_schema"
    max_tokens: int = DEFAULT_MAX_TOKENS
    name: str = field(default="openai", init=False)

    def __post_init__(self) -> None:
        self.model = _require_model("openai", self.model, "the model name the server serves (e.g. its --served-model-name)")
        if not self.base_url:
            raise CritError("--backend openai needs --base-url, e.g. http://127.0.0.1:8000/v1")
        check_api_key_env(self.api_key_env)
        from crit.engine.backends.openai import normalise_base_url

        normalise_base_url(self.base_url)  # a URL crit cannot use is refused before any note is read
        if self.concurrency < 1 or self.max_tokens < 1:
            raise CritError("--concurrency and max_tokens must be at least 1")

    def identity(self) -> str:
        return f"{self.model}@openai"

    def parameters(self) -> dict[str, Any]:
        # The URL is recorded (which server answered); the key never is, only the variable's name.
        return {"model": self.model, "adapter": None, "base_url": public_url(self.base_url), "api_key_env": self.api_key_env,
                "concurrency": self.concurrency, "response_format": self.response_format, "max_tokens": self.max_tokens}

    def create(self) -> Backend:
        from crit.engine.backends.openai import OpenAIBackend

        assert self.model is not None and self.base_url is not None
        return OpenAIBackend(self.base_url, self.model, api_key_env=self.api_key_env, concurrency=self.concurrency,
                             response_format=self.response_format, max_tokens=self.max_tokens)  # type: ignore[arg-type]


@dataclass
class VLLMFactory:
    """vLLM offline batch inference on this machine's GPUs (pip install 'crit[vllm]')."""

    model: str | None = None
    adapter: str | None = None
    max_tokens: int = DEFAULT_MAX_TOKENS
    name: str = field(default="vllm", init=False)

    def __post_init__(self) -> None:
        self.model = _require_model("vllm", self.model, "a local Hugging Face model folder")

    def identity(self) -> str:
        from crit.engine.backends.vllm import engine_spec, model_identity

        assert self.model is not None
        return model_identity(engine_spec(self.model, self.adapter).model, self.adapter)

    def parameters(self) -> dict[str, Any]:
        return {"model": self.model, "adapter": self.adapter, "max_tokens": self.max_tokens}

    def create(self) -> Backend:
        from crit.engine.backends.vllm import VLLMBackend

        assert self.model is not None
        return VLLMBackend(self.model, self.adapter, max_tokens=self.max_tokens)


@dataclass
class RayFactory:
    """A Ray Data LLM pipeline: against --base-url (an OpenAI-compatible server or fleet), else vLLM engines on GPUs."""

    model: str | None = None
    base_url: str | None = None
    adapter: str | None = None
    api_key_env: str | None = None
    concurrency: int = 4
    response_format: str = "json_schema"
    max_tokens: int = DEFAULT_MAX_TOKENS
    name: str = field(default="ray", init=False)

    def __post_init__(self) -> None:
        self.model = _require_model("ray", self.model, "the served model name (with --base-url) or a local model folder")
        check_api_key_env(self.api_key_env)

    @property
    def engine(self) -> str:
        return "http" if self.base_url else "vllm"

    def identity(self) -> str:
        if self.engine == "http":
            return f"{self.model}@openai"
        return VLLMFactory(model=self.model, adapter=self.adapter).identity()

    def parameters(self) -> dict[str, Any]:
        return {"model": self.model, "adapter": self.adapter, "engine": self.engine, "base_url": public_url(self.base_url),
                "concurrency": self.concurrency, "response_format": self.response_format, "max_tokens": self.max_tokens}

    def create(self) -> Backend:
        import os

        from crit.engine.backends.ray_data import RayBackend

        assert self.model is not None
        key = os.environ.get(self.api_key_env) if self.api_key_env else None
        if self.api_key_env and not key:
            raise CritError(f"--api-key-env {self.api_key_env}: that environment variable is not set or empty")
        return RayBackend(self.engine, self.model, base_url=self.base_url, adapter=self.adapter,  # type: ignore[arg-type]
                          concurrency=self.concurrency, response_format=self.response_format,  # type: ignore[arg-type]
                          max_tokens=self.max_tokens, api_key=key)


SCALE_BACKENDS: dict[str, type] = {"openai": OpenAIFactory, "vllm": VLLMFactory, "ray": RayFactory}


def factory_for(backends: dict[str, type], name: str, **options: Any) -> Any:
    """The factory for `--backend name`, given the options that backend takes.

    An option the backend does not use but the user set (not None) is an error, so
    `--base-url` with the embedded backend is not silently ignored."""
    cls = backends[name]
    accepted = {f.name for f in dataclasses.fields(cls) if f.init}
    unused = sorted(k for k, v in options.items() if k not in accepted and v is not None)
    if unused:
        flags = ", ".join("--" + k.replace("_", "-") for k in unused)
        raise CritError(f"--backend {name} does not take {flags}")
    return cls(**{k: v for k, v in options.items() if k in accepted and v is not None})
