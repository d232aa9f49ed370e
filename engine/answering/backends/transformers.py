"""The transformers backend: constrained JSON answers from a local model, CPU or CUDA.

How it stays fast (benchmarks/engine_speed.py: 5.8x the naive way on 2 CPU cores):
- all questions of a note share the prompt up to the question (prompts.py puts the note
  first), so that prefix is run through the model once, and its keys and values are kept
  once for every question of the note (shared_prefix.py);
- a note's questions, boolean and numeric alike, are decoded together in batches, each
  row under its own constraint; a row leaves the batch when its answer is closed;
- answers are written in a fixed JSON layout (constraints.py): the keys and punctuation
  are fed to the model as whole tokens, and only the values are decoded (decoding.py);
- tokens guessed by prompt lookup (a quote is copied from the note) are checked in the
  same forward pass as the token before them, which costs little while a pass is bound
  by reading the weights; a guess the model does not confirm is dropped;
- the value constraints are compiled once per process;
- long notes are cut into chunks (crit.engine.answering.chunks), each question asked only of
  the chunks that mention it.
Decoding is greedy: batching and guessing change the speed, not the answers (up to
floating-point rounding). Not thread-safe: use one backend per thread.
"""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crit.engine.answering.backend import Backend, OneNoteAtATime, answer_key
from crit.engine.answering.chunks import Chunk, merge_answers, select_chunks, split_chunks
from crit.engine.answering.constraints import json_layout
from crit.engine.answering.decoding import Skeleton, decode_layout
from crit.engine.answering.model import LoadedModel
from crit.engine.answering.prompts import messages
from crit.engine.answers import Answer, parse_answer
from crit.grammar.errors import CritError
from crit.grammar.questions import Question

# Compiled once per process: one outlines vocabulary per model, one index per (model, value
# regex), one skeleton per (model, schema). Evidence-first schemas are made per note (their
# quotes are the note's passages), so the last two are bounded: least recently used go first.
_VOCABULARIES: dict[str, Any] = {}
_INDEXES: OrderedDict[tuple[str, str], Any] = OrderedDict()
_SKELETONS: OrderedDict[tuple[str, str], Skeleton] = OrderedDict()
_MAX_CACHED = 512


def _remember(cache: OrderedDict, key: Any, value: Any) -> Any:
    cache[key] = value
    cache.move_to_end(key)
    while len(cache) > _MAX_CACHED:
        cache.popitem(last=False)
    return value

# Tokens kept free between the prompt and the context limit, besides max_new_tokens.
_CONTEXT_MARGIN = 16


def schema_key(schema: dict[str, Any]) -> str:
    # Not sort_keys: the layout follows the properties' order, and the schemas put
    # "status" before "answer" on purpose.
    return json.dumps(schema)


def _model_key(loaded: LoadedModel) -> str:
    return loaded.identity + "@" + loaded.device


def _vocabulary(loaded: LoadedModel) -> Any:
    key = _model_key(loaded)
    if key not in _VOCABULARIES:
        import outlines
        from outlines.backends.outlines_core import OutlinesCoreBackend

        om = outlines.from_transformers(loaded.model, loaded.tokenizer)
        _VOCABULARIES[key] = OutlinesCoreBackend(om).vocabulary
    return _VOCABULARIES[key]


def skeleton(loaded: LoadedModel, schema: dict[str, Any]) -> Skeleton:
    """`schema`'s JSON layout in the model's tokens, its value regexes compiled to
    outlines_core indexes; built once per process and (model, schema)."""
    key = (_model_key(loaded), schema_key(schema))
    if key in _SKELETONS:
        _SKELETONS.move_to_end(key)
        return _SKELETONS[key]
    from outlines_core import Index

    layout = json_layout(schema)
    tok = loaded.tokenizer
    values = []
    for regex in layout.values:
        # The same value regex recurs across schemas (every "source"): compile it once.
        index_key = (key[0], regex)
        if index_key in _INDEXES:
            _INDEXES.move_to_end(index_key)
        else:
            _remember(_INDEXES, index_key, Index(regex, _vocabulary(loaded)))
        values.append(_INDEXES[index_key])
    literals = tuple(tuple(tok(lit, add_special_tokens=False)["input_ids"]) for lit in layout.literals)
    return _remember(_SKELETONS, key, Skeleton(literals, tuple(values)))


def common_prefix_length(rows: Sequence[Sequence[int]]) -> int:
    """Length of the longest common prefix of token rows, leaving at least one token of each row
    for the model to read after the cached prefix."""
    shortest = min(len(r) for r in rows)
    k = 0
    while k < shortest and all(r[k] == rows[0][k] for r in rows):
        k += 1
    return min(k, shortest - 1)


class TransformersBackend(OneNoteAtATime):
    """Answers questions over notes with a LoadedModel (see crit.engine.answering.model.load_model).

    batch_size: questions of a note decoded together (1 = one at a time).
    max_new_tokens: generation limit, keys included; the schemas' maxLength bound an answer,
    and 160 covers the longest the embedded model wrote in benchmarks (135 tokens).
    max_note_tokens: notes longer than this are cut into chunks (prefill cost grows with
    length); the model's context length is a hard limit either way.
    overlap_tokens: how much consecutive chunks overlap, in whole lines.
    speculate: tokens guessed by prompt lookup per forward pass, shared by the batch (0: none).
    """

    def __init__(
        self,
        loaded: LoadedModel,
        batch_size: int = 13,
        max_new_tokens: int = 160,
        max_note_tokens: int = 2048,
        overlap_tokens: int = 64,
        speculate: int = 16,
    ):
        if batch_size < 1 or max_new_tokens < 1 or max_note_tokens < 1 or speculate < 0:
            raise ValueError("batch_size, max_new_tokens and max_note_tokens must be positive, speculate not negative")
        self.loaded = loaded
        self.identity = loaded.identity
        self.batch_size = batch_size
        self.max_new_tokens = max_new_tokens
        self.max_note_tokens = max_note_tokens
        self.overlap_tokens = overlap_tokens
        self.speculate = speculate
        tok = loaded.tokenizer
        self._pad = tok.pad_token_id
        self._eos = tok.eos_token_id

    # -- public -------------------------------------------------------------------------

    def answer(self, note_id: str, note_text: str, questions: Sequence[Question]) -> list[Answer]:
        """Answer every question over one note; one Answer per question, in order."""
        if not questions:
            return []
        chunks = self.chunks(note_text, questions)
        if len(chunks) == 1:
            return self._answer_text(note_id, note_text, questions, offset=0, chunk=None)
        chosen = {q.name: select_chunks(q, note_text, chunks) for q in questions}
        per_question: dict[str, list[Answer]] = {q.name: [] for q in questions}
        for w in chunks:
            asked = [q for q in questions if w in chosen[q.name]]
            if asked:
                text = note_text[w.start : w.end]
                for q, a in zip(asked, self._answer_text(note_id, text, asked, offset=w.start, chunk=w.index)):
                    per_question[q.name].append(a)
        return [merge_answers(q, per_question[q.name]) for q in questions]

    def chunks(self, note_text: str, questions: Sequence[Question]) -> list[Chunk]:
        """The note's chunks: one (the whole note) when its prompt fits both limits."""
        note_tokens = self._count(note_text)
        overhead = max(len(self._prompt_ids("", q)) for q in questions)
        room = self.loaded.context_length - overhead - self.max_new_tokens - _CONTEXT_MARGIN
        budget = min(self.max_note_tokens, room)
        if budget < 32:
            raise ValueError(f"questions leave no room for the note within {self.loaded.context_length} tokens")
        if note_tokens <= budget:
            return [Chunk(0, 0, len(note_text))]
        return split_chunks(note_text, self._count, budget, self.overlap_tokens)

    def close(self) -> None:
        """Nothing to release: the model stays in the process cache of crit.engine.answering.model."""

    # -- internals ----------------------------------------------------------------------

    def _count(self, text: str) -> int:
        return len(self.loaded.tokenizer(text, add_special_tokens=False)["input_ids"])

    def _prompt_ids(self, text: str, question: Question) -> list[int]:
        # Tokenise each full prompt and compare ids (never the prefix string alone: BPE merges
        # across the note/question boundary).
        tok = self.loaded.tokenizer
        rendered = tok.apply_chat_template(messages(text, question), add_generation_prompt=True, tokenize=False)
        return tok(rendered, add_special_tokens=False)["input_ids"]

    def _answer_text(
        self, note_id: str, text: str, questions: Sequence[Question], offset: int, chunk: int | None
    ) -> list[Answer]:
        """Answer questions over one text (a note or a chunk): prefix once, then batches.
        Spans are shifted by `offset` so they index the full note."""
        import torch
        from transformers import DynamicCache

        model = self.loaded.model
        rows = [self._prompt_ids(text, q) for q in questions]
        k = common_prefix_length(rows)
        t0 = time.perf_counter()
        prefix = DynamicCache(config=model.config)
        with torch.inference_mode():
            # logits_to_keep=1: the prefix's logits are never read; computing them for every
            # token would cost a vocabulary-sized matmul per token.
            ids = torch.tensor([rows[0][:k]], device=self.loaded.device)
            model(input_ids=ids, past_key_values=prefix, use_cache=True, logits_to_keep=1)
        prefill_share = (time.perf_counter() - t0) / len(questions)

        results: list[Answer] = []
        # Any mix of schemas shares a batch: every row has its own skeleton (decoding.py).
        for b in range(0, len(questions), self.batch_size):
            batch = range(b, min(b + self.batch_size, len(questions)))
            skeletons = [skeleton(self.loaded, questions[i].answer_schema) for i in batch]
            t1 = time.perf_counter()
            outputs = decode_layout(
                model, prefix, k, [rows[i] for i in batch], skeletons,
                max_new_tokens=self.max_new_tokens, pad_id=self._pad, eos_id=self._eos, device=self.loaded.device,
                speculate=self.speculate,
            )
            share = (time.perf_counter() - t1) / len(batch)
            for i, out in zip(batch, outputs):
                q = questions[i]
                raw = self.loaded.tokenizer.decode(out.tokens, skip_special_tokens=True)
                parsed = parse_answer(raw, q, text, truncated=not out.finished)
                if parsed.span_start is not None:
                    parsed.span_start += offset
                    parsed.span_end += offset
                results.append(
                    Answer(
                        note_id=note_id,
                        question=q.name,
                        fingerprint=answer_key(q.fingerprint, self.identity),
                        raw=raw,
                        latency_s=round(prefill_share + share, 4),
                        prompt_tokens=len(rows[i]),
                        output_tokens=len(out.tokens) + (1 if out.finished else 0),
                        chunk=chunk,
                        **parsed.model_dump(),
                    )
                )
        return results


@dataclass
class TransformersFactory:
    """transformers = in this process, CPU or CUDA: the embedded SmolLM2, or a local HF model folder with an optional LoRA adapter."""

    model: str | None = None
    # None or "none": the raw model; "student": the student shipped with crit
    # (crit.engine.answering.model.resolve_adapter); else a LoRA adapter folder.
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
        from crit.engine.answering.model import resolve_adapter

        self.adapter = resolve_adapter(self.model, self.adapter)

    def identity(self) -> str:
        from crit.engine.answering.model import model_identity

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
        from crit.engine.answering.model import load_model

        loaded = load_model(self.model, self.adapter, device=self.device)
        return TransformersBackend(loaded, batch_size=self.batch_size, max_new_tokens=self.max_new_tokens)


FACTORY = TransformersFactory
