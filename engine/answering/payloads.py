"""What the server backends (openai, vllm, ray) share: request building, answer assembly and their options' checks.

Every remote or batched backend asks the same thing the embedded backend asks: the
chat messages of crit.engine.answering.prompts (note first, question last, so a server's
prefix cache shares the note between questions), greedy decoding, and the
question's answer schema as the constraint. Keeping that in one place means a
vLLM fleet, a llama.cpp server and a Ray pipeline send identical requests, and the
tests check them without any of those installed. Every generated text comes back
through `to_answer`, i.e. through crit.engine.answers.parse_answer, whatever the backend.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from crit.engine.answering.backend import Request, answer_key
from crit.engine.answering.prompts import messages
from crit.engine.answers import Answer, parse_answer
from crit.grammar.errors import CritError
from crit.grammar.questions import Question

# How a server is told the JSON schema. "json_schema" is the OpenAI form, honoured by
# vLLM serve, SGLang and llama.cpp's own C++ server; "json_object" with a "schema" key is
# the form llama-cpp-python's server honours (tested in tests/test_backend_openai.py).
ResponseFormat = Literal["json_schema", "json_object"]
RESPONSE_FORMATS: tuple[str, ...] = ("json_schema", "json_object")

# The schemas' maxLength keep every answer far below this (same limit as the embedded backend).
DEFAULT_MAX_TOKENS = 160


def schema_name(question: Question) -> str:
    """A name for the schema in an OpenAI `json_schema` response format: `crit_<kind>`.

    The name is per kind, not per question, so it never leaks a question into server logs
    and every question of a kind shares one compiled grammar on servers that cache by name."""
    return f"crit_{question.kind}"


def response_format(question: Question, form: ResponseFormat = "json_schema") -> dict[str, Any]:
    """The `response_format` field that constrains a chat completion to the question's schema."""
    if form == "json_schema":
        return {
            "type": "json_schema",
            "json_schema": {"name": schema_name(question), "schema": question.answer_schema, "strict": True},
        }
    if form == "json_object":
        return {"type": "json_object", "schema": question.answer_schema}
    raise ValueError(f"unknown response format {form!r}; choose one of {', '.join(RESPONSE_FORMATS)}")


def chat_request(
    model: str,
    note_text: str,
    question: Question,
    *,
    form: ResponseFormat = "json_schema",
    max_tokens: int = DEFAULT_MAX_TOKENS,
) -> dict[str, Any]:
    """The body of one POST /v1/chat/completions: one question over one note, greedy, schema-constrained."""
    return {
        "model": model,
        "messages": messages(note_text, question),
        "temperature": 0.0,
        "max_tokens": max_tokens,
        "response_format": response_format(question, form),
    }


def batch_pairs(requests: Sequence[Request]) -> list[tuple[int, int]]:
    """All (request index, question index) pairs of a batch, note-major.

    Note-major order keeps each note's questions adjacent, so a prefix-caching engine
    sees the shared note prefix back to back and keeps it hot."""
    return [(i, j) for i, r in enumerate(requests) for j in range(len(r.questions))]


def to_answer(
    note_id: str,
    note_text: str,
    question: Question,
    identity: str,
    raw: str,
    *,
    truncated: bool = False,
    latency_s: float = 0.0,
    prompt_tokens: int = 0,
    output_tokens: int = 0,
) -> Answer:
    """One generated text -> a validated Answer row (or an error row), exactly as the embedded backend stores it."""
    parsed = parse_answer(raw, question, note_text, truncated=truncated)
    return Answer(
        note_id=note_id,
        question=question.name,
        fingerprint=answer_key(question.fingerprint, identity),
        raw=raw,
        latency_s=round(latency_s, 4),
        prompt_tokens=prompt_tokens,
        output_tokens=output_tokens,
        chunk=None,
        **parsed.model_dump(),
    )


def error_answer(note_id: str, question: Question, identity: str, error: str, latency_s: float = 0.0) -> Answer:
    """An error row for a request the server refused for this question alone (e.g. HTTP 400: prompt too long)."""
    return Answer(
        note_id=note_id,
        question=question.name,
        fingerprint=answer_key(question.fingerprint, identity),
        raw="",
        latency_s=round(latency_s, 4),
        prompt_tokens=0,
        output_tokens=0,
        error=error,
    )


def require_model(backend: str, model: str | None, what: str) -> str:
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
class ServerOptions:
    """The options every server backend takes (openai, ray): the model served, where, with which key's
    variable, how many requests at once, how the schema is sent, and the answer's token budget."""

    model: str | None = None
    base_url: str | None = None
    api_key_env: str | None = None
    concurrency: int = 4
    response_format: str = "json_schema"
    max_tokens: int = DEFAULT_MAX_TOKENS

    def check_server_options(self) -> None:
        check_api_key_env(self.api_key_env)
        if self.concurrency < 1 or self.max_tokens < 1:
            raise CritError("--concurrency and max_tokens must be at least 1")

    def server_parameters(self) -> dict[str, Any]:
        """What a run records of them: the URL without credentials, and the key's variable, never the key."""
        return {"base_url": public_url(self.base_url), "api_key_env": self.api_key_env, "concurrency": self.concurrency,
                "response_format": self.response_format, "max_tokens": self.max_tokens}


class _Usage(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)

    prompt_tokens: int = Field(0, ge=0, le=10**9)
    completion_tokens: int = Field(0, ge=0, le=10**9)


class _Message(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)

    content: str | None = None


class _Choice(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)

    message: _Message
    finish_reason: str | None = None


class ChatCompletion(BaseModel):
    """A server's chat completion, every field crit uses checked before use: a reply of another shape (a
    number for the content, "many" prompt tokens, no choices) is an error row, never a crash."""

    model_config = ConfigDict(extra="ignore", strict=True)

    choices: list[_Choice] = Field(min_length=1)
    usage: _Usage | None = None

    @property
    def content(self) -> str:
        return self.choices[0].message.content or ""

    @property
    def truncated(self) -> bool:
        return self.choices[0].finish_reason == "length"

    @property
    def tokens(self) -> tuple[int, int]:
        """(prompt tokens, completion tokens), 0 where the server does not say."""
        return (self.usage.prompt_tokens, self.usage.completion_tokens) if self.usage else (0, 0)


def read_completion(data: object) -> ChatCompletion | str:
    """The checked completion, or why it is not one (the first problem, said without the reply's text)."""
    try:
        return ChatCompletion.model_validate(data)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(x) for x in first.get("loc", ())) or "reply"
        return f"server: response is not a chat completion ({where}: {first['type']})"
