"""Greedy decoding of JSON answers in a fixed layout, for a batch of prompts sharing a prefix.

One job: given a model, the KV cache of a prefix common to every row, each row's own tail
and each row's Skeleton (the token form of a constraints.JsonLayout), write every row's
JSON answer greedily: the layout's literals are fed as whole token runs, and only the
values are decoded, each under its own outlines_core guide.

Why not `model.generate` with outlines' logits processor (what this replaced; figures in
benchmarks/RESULTS.md):
- literals cost no decoding step: ` "unit":` goes in with the token before it, in one
  forward pass, and in the tokens a model would use for it, not the character-sized
  pieces a small model picks under a whole-object regex (`"`, `s`, `ta`, `tu`, `s`, `"`);
- every row has its own guides, so all questions of a note, boolean and numeric, share
  one batch, and the note's keys and values are stored once for the whole batch
  (shared_prefix.py), not copied per row;
- a row stops when its last value closes the object, and finished rows leave the batch.
Rows are independent: a row's tokens do not depend on what else is in its batch, up to
floating-point rounding of different batch shapes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Skeleton:
    """A JsonLayout for one tokenizer: literals[i] as token ids, then a value under
    values[i] (an outlines_core Index)."""

    literals: tuple[tuple[int, ...], ...]
    values: tuple[Any, ...]


@dataclass
class Decoded:
    """One row's result: its token ids (literals included, no end-of-sequence) and whether
    the object was closed (False: cut at max_new_tokens, the JSON is incomplete)."""

    tokens: list[int]
    finished: bool


@dataclass
class Row:
    skeleton: Skeleton
    guide: Any
    context: list[int]  # prompt and answer so far: where drafts are looked up
    pending: list[int]  # tokens to run through the model next; the last len(draft) are a guess
    position: int  # position id of pending[0]
    draft: list[int] = field(default_factory=list)
    value: int = 0  # which value is being decoded
    seen: dict[int, list[int]] = field(default_factory=dict)  # token -> its indexes in context
    out: Decoded = field(default_factory=lambda: Decoded([], False))

    def extend(self, tokens: Sequence[int], output: bool = True) -> None:
        for t in tokens:
            self.seen.setdefault(t, []).append(len(self.context))
            self.context.append(t)
        if output:
            self.out.tokens.extend(tokens)


def lookup_draft(row: Row, limit: int, longest: int = 3) -> list[int]:
    """Prompt-lookup drafting: the tokens that followed the latest earlier occurrence of the
    context's last n tokens (n = longest..1). An answer's quote is copied from the note,
    and a small model's runaway text repeats itself, so the guess is often right."""
    context = row.context
    if limit < 1 or len(context) < 2:
        return []
    for n in range(min(longest, len(context) - 1), 0, -1):
        tail = context[-n:]
        ends = row.seen.get(tail[-1], [])
        for end in (ends[i] for i in range(len(ends) - 2, -1, -1)):  # latest first, not the tail itself
            start = end - n + 1
            if start >= 0 and context[start : end + 1] == tail:
                return context[end + 1 : end + 1 + limit]
    return []


def _allowed(guide: Any, vocab_size: int) -> Any:
    """Boolean mask (vocab_size,) of the tokens `guide` allows next."""
    import torch

    bits = torch.empty((vocab_size + 31) // 32, dtype=torch.int32)
    guide.write_mask_into(bits.data_ptr(), bits.numel(), bits.element_size())
    unpacked = (bits.unsqueeze(-1) >> torch.arange(32, dtype=torch.int32)) & 1
    return unpacked.view(-1)[:vocab_size].bool()


def _value_done(guide: Any, eos_id: int) -> bool:
    # Values end with their delimiter, so a finished value allows nothing but
    # end-of-sequence; ask the guide rather than assume.
    return bool(guide.is_finished()) and list(guide.get_tokens()) == [eos_id]


def decode_layout(
    model: Any,
    prefix_cache: Any,
    prefix_length: int,
    rows: Sequence[Sequence[int]],
    skeletons: Sequence[Skeleton],
    *,
    max_new_tokens: int,
    pad_id: int,
    eos_id: int,
    device: str = "cpu",
    speculate: int = 16,
) -> list[Decoded]:
    """Write one JSON answer per row. rows are full prompt token ids whose first
    `prefix_length` tokens are the same in every row and already in `prefix_cache` (which is
    not modified); row i is answered in skeletons[i]'s layout.

    speculate: guessed tokens per forward pass, shared among the active rows (0: none).
    Guesses are checked against the model's own greedy choice, so they change the speed,
    never the answer (up to floating-point rounding)."""
    import torch
    from outlines_core import Guide

    from crit.engine.answering.shared_prefix import shared_prefix_attention, shared_prefix_cache

    if len(rows) != len(skeletons):
        raise ValueError("one skeleton per row")
    k = prefix_length
    state = []
    for r, s in zip(rows, skeletons):
        row = Row(s, Guide(s.values[0]), context=[], pending=list(r[k:]) + list(s.literals[0]), position=k)
        row.extend(r, output=False)
        row.extend(s.literals[0])
        state.append(row)
    # The prefix is stored once for all rows (shared_prefix.py). Room for the tails and
    # about 64 answer tokens; the buffers grow if an answer needs more.
    cache = shared_prefix_cache(prefix_cache, len(rows), room=max(len(r) for r in rows) - k + 96)
    mask = torch.ones((len(rows), k), dtype=torch.long, device=device)
    active = list(range(len(rows)))

    with torch.inference_mode(), shared_prefix_attention(model, cache):
        while active:
            # One forward pass over every active row's pending tokens. Rows pend different
            # numbers of tokens; shorter runs are padded on the left, masked out, so the
            # last position is real in every row and padding never gets a position.
            width = max(len(state[i].pending) for i in active)
            ids, chunk_mask, positions = [], [], []
            for i in active:
                row = state[i]
                pad = width - len(row.pending)
                ids.append([pad_id] * pad + row.pending)
                chunk_mask.append([0] * pad + [1] * len(row.pending))
                positions.append([row.position] * pad + list(range(row.position, row.position + len(row.pending))))
                row.position += len(row.pending)
            mask = torch.cat([mask, torch.tensor(chunk_mask, device=device)], dim=-1)
            keep = 1 + max(len(state[i].draft) for i in active)
            out = model(
                input_ids=torch.tensor(ids, device=device),
                attention_mask=mask,
                position_ids=torch.tensor(positions, device=device),
                past_key_values=cache,
                use_cache=True,
                logits_to_keep=keep,
            )
            logits = out.logits.float().cpu()

            going: list[int] = []  # positions within `active` of the rows that go on
            for j, i in enumerate(active):
                row = state[i]
                draft, rejected = row.draft, 0
                row.pending, row.draft = [], []
                # logits[j, keep - 1 - len(draft) + m] predicts the token after draft[:m].
                for m in range(len(draft) + 1):
                    scores = logits[j, keep - 1 - len(draft) + m]
                    allowed = _allowed(row.guide, scores.shape[-1])
                    token = int(scores.masked_fill(~allowed, float("-inf")).argmax())
                    guessed = m < len(draft) and token == draft[m]
                    # A draft token that is confirmed was already run; any other is pending.
                    rejected = len(draft) - m - (1 if guessed else 0)
                    if token == eos_id:  # only when a guide allows nothing else; kept as a guard
                        row.pending = []
                        break
                    row.guide.advance(token, return_tokens=False)
                    row.extend([token])
                    if not guessed:
                        row.pending = [token]
                    if _value_done(row.guide, eos_id):
                        row.value += 1
                        if row.value < len(row.skeleton.values):
                            literal = row.skeleton.literals[row.value]
                            row.pending.extend(literal)
                            row.extend(literal)
                            row.guide = Guide(row.skeleton.values[row.value])
                        else:
                            row.out.finished = True
                        break
                    if not guessed or len(row.out.tokens) >= max_new_tokens:
                        break
                if rejected:
                    # Guessed tokens the model did not confirm: their cache entries stay but
                    # are masked out for good, and their positions are given again.
                    mask[j, mask.shape[-1] - rejected :] = 0
                    row.position -= rejected
                if row.out.finished or not row.pending or len(row.out.tokens) >= max_new_tokens:
                    continue  # done, or cut (finished stays False)
                # Guess ahead only while a forward pass is bound by reading the weights,
                # not by arithmetic: a few guessed tokens per row are then nearly free.
                limit = min(speculate // len(active), max_new_tokens - len(row.out.tokens) - 1)
                row.draft = lookup_draft(row, limit) if limit > 0 else []
                row.pending.extend(row.draft)
                going.append(j)
            if len(going) < len(active):
                if not going:
                    break
                index = torch.tensor(going, device=device)
                cache.batch_select_indices(index)
                mask = mask[index]
                active = [active[j] for j in going]
    return [row.out for row in state]
