"""The llamacpp backend: a GGUF model run in this process by llama.cpp, as it is, quantised.

`crit run ... --backend llamacpp` runs the embedded SmolLM2 GGUF, or the GGUF file given with
`--model`, through llama-cpp-python (an optional extra that builds from source), with no
conversion to fp32 and no server. Each answer is constrained by the question's JSON schema,
turned into a llama.cpp grammar here (schema_grammar). The prompts are crit's own, note first and question
last (crit.engine.answering.prompts), and llama.cpp keeps the tokens it evaluated last: the
next question of the same note evaluates only the tokens after their common prefix, so a
note's prefix is computed once for all its questions.

This file is the whole backend: the registry finds it by its FACTORY.
"""

from __future__ import annotations

import importlib.util
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crit.engine.answering.backend import Backend, OneNoteAtATime
from crit.engine.answering.model import EMBEDDED_NAME, locate_embedded_gguf
from crit.engine.answering.payloads import DEFAULT_MAX_TOKENS, error_answer, read_completion, to_answer
from crit.engine.answering.prompts import messages
from crit.engine.answers import Answer
from crit.grammar.errors import CritError
from crit.grammar.questions import Question

INSTALL_HINT = ("--backend llamacpp needs llama-cpp-python: pip install 'llama-cpp-python==0.3.36' "
                "(it builds from source, about 8 minutes on 2 cores)")


class LlamaCppBackend(OneNoteAtATime):
    """Answers one note's questions in order, sharing the note's prefix through llama.cpp's kept tokens."""

    def __init__(self, llm: Any, identity: str, *, max_tokens: int = DEFAULT_MAX_TOKENS):
        self.llm = llm
        self.identity = identity
        self.max_tokens = max_tokens

    def answer(self, note_id: str, note_text: str, questions: Sequence[Question]) -> list[Answer]:
        return [self._ask(note_id, note_text, q) for q in questions]

    def _ask(self, note_id: str, note_text: str, question: Question) -> Answer:
        t0 = time.perf_counter()
        try:
            out = self.llm.create_chat_completion(
                messages=messages(note_text, question),
                grammar=schema_grammar(question.answer_schema),  # no response_format: it would replace this grammar
                temperature=0.0,
                max_tokens=self.max_tokens,
            )
        except ValueError as e:  # llama.cpp's "Requested tokens exceed context window": this question alone
            return error_answer(note_id, question, self.identity, f"llamacpp: {str(e).splitlines()[0]}",
                                time.perf_counter() - t0)
        reply = read_completion(out)
        if isinstance(reply, str):
            return error_answer(note_id, question, self.identity, reply.replace("server", "llamacpp", 1),
                                time.perf_counter() - t0)
        prompt_tokens, output_tokens = reply.tokens
        return to_answer(note_id, note_text, question, self.identity, reply.content, truncated=reply.truncated,
                         latency_s=time.perf_counter() - t0, prompt_tokens=prompt_tokens, output_tokens=output_tokens)

    def close(self) -> None:
        close = getattr(self.llm, "close", None)
        if close is not None:
            close()


def schema_grammar(schema: dict[str, Any]) -> Any:
    """The JSON schema as a llama.cpp grammar, its string literals escaped whole.

    llama-cpp-python 0.3.36 escapes a literal's double quotes but not its backslashes, so a passage that
    quotes speech ('a chief complaint of "chest pain"', written \\" in JSON) made a grammar llama.cpp
    cannot parse, and the next completion crashed the process (SIGSEGV) instead of failing one question."""
    from llama_cpp.llama_grammar import LlamaGrammar, SchemaConverter

    class Escaping(SchemaConverter):  # type: ignore[misc]
        def _format_literal(self, literal: str) -> str:
            escaped = literal.replace("\\", "\\\\").replace("\r", "\\r").replace("\n", "\\n").replace('"', '\\"')
            return f'"{escaped}"'

    converter = Escaping(prop_order={}, allow_fetch=False, dotall=False, raw_pattern=False)
    converter.visit(converter.resolve_refs(schema, "schema"), "")
    return LlamaGrammar.from_string(converter.format_grammar(), verbose=False)


@dataclass
class LlamaCppFactory:
    """llamacpp = a GGUF file run in this process by llama.cpp, quantised (default: the embedded SmolLM2's)."""

    model: str | None = None  # a .gguf file; None: the embedded model's
    max_tokens: int = DEFAULT_MAX_TOKENS
    n_ctx: int = 8192
    name: str = field(default="llamacpp", init=False)

    def __post_init__(self) -> None:
        if self.model is not None and not (Path(self.model).is_file() and self.model.endswith(".gguf")):
            raise CritError(f"--backend llamacpp takes a .gguf file as --model; '{self.model}' is not one")

    def require(self) -> None:
        if importlib.util.find_spec("llama_cpp") is None:
            raise CritError(INSTALL_HINT)

    def _path(self) -> Path:
        return Path(self.model) if self.model is not None else locate_embedded_gguf()

    def identity(self) -> str:
        """The GGUF file by name and size (cheap; a re-quantised file is another model), and the runtime."""
        path = self._path()
        name = f"{EMBEDDED_NAME}-gguf" if self.model is None else path.stem
        return f"{name}@{path.stat().st_size}|llamacpp"

    def parameters(self) -> dict[str, Any]:
        return {"model": str(self._path()), "adapter": None, "max_tokens": self.max_tokens, "n_ctx": self.n_ctx}

    def create(self) -> Backend:
        try:
            from llama_cpp import Llama
        except ImportError:
            raise CritError(INSTALL_HINT) from None
        # Every core: llama-cpp-python's default is half of them, which left one of two cores idle here.
        llm = Llama(str(self._path()), n_ctx=self.n_ctx, n_threads=os.cpu_count() or 1, verbose=False)
        return LlamaCppBackend(llm, self.identity(), max_tokens=self.max_tokens)


FACTORY = LlamaCppFactory
