"""The openai backend: ask any OpenAI-compatible server (vLLM serve, SGLang, llama.cpp server) over HTTP.

Notes leave this machine only because the user chose this backend and gave the
server's address: everything sent is the note and the question, to that address only.

What it does, per question: POST {base_url}/chat/completions with the messages of
crit.engine.answering.prompts, temperature 0 and the question's JSON schema as the response
format; the generated text then goes through parse_answer like every other
backend's, so a server that ignores the schema yields error rows, never bad values.
Requests run concurrently (a bounded thread pool over one httpx connection pool);
429, 5xx, timeouts and dropped connections are retried with exponential backoff.
When the server stays unreachable or keeps failing, the run stops with a CritError
(what was stored so far is kept and the same command resumes): a server outage is
not an answer, so it is never cached as one.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx

from crit.engine.answering.backend import Backend, Request
from crit.engine.answering.payloads import (
    DEFAULT_MAX_TOKENS,
    RESPONSE_FORMATS,
    ResponseFormat,
    ServerOptions,
    chat_request,
    error_answer,
    public_url,
    read_completion,
    require_model,
    to_answer,
)
from crit.engine.answers import Answer
from crit.grammar.errors import CritError
from crit.grammar.questions import Question

RETRY_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})


def normalise_base_url(base_url: str) -> str:
    """`http://host:8000` and `http://host:8000/v1/` both mean `http://host:8000/v1`; other paths are kept."""
    parts = urlsplit(base_url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise CritError(f"--base-url must be an http(s) URL such as http://127.0.0.1:8000/v1, not {base_url!r}")
    path = parts.path.rstrip("/")
    if not path:
        path = "/v1"
    return f"{parts.scheme}://{parts.netloc}{path}"


class OpenAIBackend:
    """Answers questions with an OpenAI-compatible chat completions endpoint.

    base_url: e.g. http://127.0.0.1:8000/v1 (a bare host:port gets /v1).
    model: the model name the server serves; it is also the answer-cache identity
      (`<model>@openai`), independent of the host, so a fleet of servers shares one cache.
    api_key_env: name of an environment variable holding the key (never the key itself).
    concurrency: requests in flight at once.
    response_format: "json_schema" (OpenAI form: vLLM, SGLang, llama.cpp C++ server) or
      "json_object" (llama-cpp-python's server).
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key_env: str | None = None,
        concurrency: int = 4,
        timeout: float = 120.0,
        max_retries: int = 4,
        response_format: ResponseFormat = "json_schema",
        max_tokens: int = DEFAULT_MAX_TOKENS,
        backoff_s: float = 0.5,
    ):
        if concurrency < 1:
            raise CritError("--concurrency must be at least 1")
        if max_retries < 0 or timeout <= 0 or max_tokens < 1:
            raise ValueError("max_retries must be >= 0, timeout and max_tokens positive")
        if response_format not in RESPONSE_FORMATS:
            raise CritError(f"unknown response format {response_format!r}; choose one of {', '.join(RESPONSE_FORMATS)}")
        self.base_url = normalise_base_url(base_url)
        self.model = model
        self.identity = f"{model}@openai"
        self.concurrency = concurrency
        self.max_retries = max_retries
        self.response_format: ResponseFormat = response_format
        self.max_tokens = max_tokens
        self.backoff_s = backoff_s
        headers = {}
        if api_key_env:
            key = os.environ.get(api_key_env)
            if not key:
                raise CritError(f"--api-key-env {api_key_env}: that environment variable is not set or empty")
            headers["Authorization"] = f"Bearer {key}"
        self._client = httpx.Client(
            base_url=self.base_url,
            headers=headers,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
        )
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="crit-openai")

    # -- public -------------------------------------------------------------------------

    def answer(self, note_id: str, note_text: str, questions: Sequence[Question]) -> list[Answer]:
        """Answer every question over one note; requests run concurrently, answers come back in order."""
        return self.answer_batch([Request(note_id, note_text, questions)])[0]

    def answer_batch(self, requests: Sequence[Request]) -> list[list[Answer]]:
        """Answer many requests at once (keeps `concurrency` HTTP requests in flight across note
        boundaries); one list of answers per request, in the order given."""
        jobs = [(r.note_id, r.text, q) for r in requests for q in r.questions]
        results = iter(list(self._pool.map(lambda job: self._ask(*job), jobs)))
        return [[next(results) for _ in r.questions] for r in requests]

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self._client.close()

    # -- internals ----------------------------------------------------------------------

    def _ask(self, note_id: str, note_text: str, question: Question) -> Answer:
        body = chat_request(self.model, note_text, question, form=self.response_format, max_tokens=self.max_tokens)
        t0 = time.perf_counter()
        response = self._post(body)
        latency = time.perf_counter() - t0
        if response.status_code != 200:
            # A 4xx other than 429 concerns this request alone (prompt too long, schema refused):
            # an error row, like an invalid generation. The server's text may quote the note: keep it out.
            return error_answer(note_id, question, self.identity, f"server: HTTP {response.status_code}", latency)
        try:
            data: Any = response.json()
        except ValueError:  # not JSON, or a number JSON cannot hold
            return error_answer(note_id, question, self.identity, "server: response is not JSON", latency)
        reply = read_completion(data)
        if isinstance(reply, str):
            return error_answer(note_id, question, self.identity, reply, latency)
        prompt_tokens, output_tokens = reply.tokens
        return to_answer(note_id, note_text, question, self.identity, reply.content, truncated=reply.truncated,
                         latency_s=latency, prompt_tokens=prompt_tokens, output_tokens=output_tokens)

    def _post(self, body: dict[str, Any]) -> httpx.Response:
        """POST with retries: 429/5xx/timeouts/connection errors back off 0.5 s, 1 s, 2 s, ...
        (or the server's Retry-After); after max_retries a CritError stops the run."""
        last = ""
        retry_after: str | None = None
        for attempt in range(self.max_retries + 1):
            if attempt:
                time.sleep(self._delay(attempt, retry_after))
                retry_after = None
            try:
                response = self._client.post("/chat/completions", json=body)
            except httpx.ConnectError as exc:
                last = f"cannot connect ({exc})"
                continue
            except httpx.TimeoutException:
                last = "timed out"
                continue
            except httpx.TransportError as exc:
                last = f"connection failed ({type(exc).__name__})"
                continue
            if response.status_code in RETRY_STATUS:
                last = f"HTTP {response.status_code}"
                retry_after = response.headers.get("retry-after")
                continue
            return response
        raise CritError(
            f"the OpenAI-compatible server at {public_url(self.base_url)} failed {self.max_retries + 1} times: {last}. "
            "Check that it is running and serves the model; answers stored so far are kept, "
            "run the same command to resume."
        )

    def _delay(self, attempt: int, retry_after: str | None) -> float:
        """Exponential backoff, or the server's Retry-After (in seconds, capped at 60) when longer."""
        wait = self.backoff_s * 2 ** (attempt - 1)
        if retry_after:
            try:
                wait = max(wait, min(float(retry_after), 60.0))
            except ValueError:
                pass  # an HTTP-date: keep the exponential wait
        return wait


@dataclass
class OpenAIFactory(ServerOptions):
    """openai = an OpenAI-compatible server at --base-url (vLLM serve, SGLang, llama.cpp server); the notes are sent to that server."""

    name: str = field(default="openai", init=False)

    def __post_init__(self) -> None:
        self.model = require_model("openai", self.model, "the model name the server serves (e.g. its --served-model-name)")
        if not self.base_url:
            raise CritError("--backend openai needs --base-url, e.g. http://127.0.0.1:8000/v1")
        normalise_base_url(self.base_url)  # a URL crit cannot use is refused before any note is read
        self.check_server_options()

    def identity(self) -> str:
        return f"{self.model}@openai"

    def parameters(self) -> dict[str, Any]:
        return {"model": self.model, "adapter": None, **self.server_parameters()}

    def create(self) -> Backend:
        assert self.model is not None and self.base_url is not None
        return OpenAIBackend(self.base_url, self.model, api_key_env=self.api_key_env, concurrency=self.concurrency,
                             response_format=self.response_format, max_tokens=self.max_tokens)  # type: ignore[arg-type]


FACTORY = OpenAIFactory
