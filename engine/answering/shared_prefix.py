"""Attention for a batch of rows that share one prefix, with the prefix's keys stored once.

One job: let a transformers model decode B rows that all begin with the same prefix (a
note) without copying the prefix's keys and values B times.

Why: with the prefix repeated per row (DynamicCache.batch_repeat_interleave), every decoding
step read B copies of a 1,500-token cache, and the grouped-query expansion copied them
three times more; on this 2-core CPU that was about a third of a step at B=10. Here the
cache holds the prefix once (batch 1) and each row's own tokens separately; attention is
computed over the two parts and merged exactly (the softmax over the concatenation, split
in two):

    out = (O_p e^(m_p - m) + O_s e^(m_s - m)) / (l_p e^(m_p - m) + l_s e^(m_s - m)),  m = max(m_p, m_s)

where, for each part, m is its largest score, O = sum of e^(score - m) * value and
l = sum of e^(score - m). Every
row attends to the whole prefix; the row's own part carries the causal and padding mask.

Use: build a SharedPrefixCache from the prefix's DynamicCache, and run the model inside
`shared_prefix_attention(model, cache)`.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from typing import Any

ATTENTION_NAME = "crit_shared_prefix"
_ACTIVE: contextvars.ContextVar[Any] = contextvars.ContextVar("crit_shared_prefix_cache", default=None)
_registered = False


def _register() -> None:
    global _registered
    if _registered:
        return
    from transformers import AttentionInterface, AttentionMaskInterface
    from transformers.masking_utils import sdpa_mask

    AttentionInterface.register(ATTENTION_NAME, _attention)
    AttentionMaskInterface.register(ATTENTION_NAME, sdpa_mask)
    _registered = True


def _layer_classes() -> tuple[type, type]:
    from transformers.cache_utils import Cache, CacheLayerMixin

    class SharedPrefixLayer(CacheLayerMixin):
        """One layer: the prefix's keys/values (batch 1) and each row's own tokens, in a buffer
        that doubles when full (no copy of the whole cache per step, as torch.cat would)."""

        is_sliding = False
        is_croppable = False

        def __init__(self, prefix_keys: Any, prefix_values: Any, batch: int, room: int):
            import torch

            super().__init__()
            self.prefix_keys, self.prefix_values = prefix_keys, prefix_values
            self.dtype, self.device = prefix_keys.dtype, prefix_keys.device
            heads, _, dim = prefix_keys.shape[1:]
            shape = (batch, heads, max(room, 1), dim)
            self._keys = torch.empty(shape, dtype=self.dtype, device=self.device)
            self._values = torch.empty(shape, dtype=self.dtype, device=self.device)
            self._length = 0
            self.is_initialized = True

        def lazy_initialization(self, key_states: Any, value_states: Any) -> None:
            pass  # built complete in __init__

        def update(self, key_states: Any, value_states: Any, *args: Any, **kwargs: Any) -> tuple[Any, Any]:
            """Append the rows' new tokens; return the rows' own keys/values (prefix excluded)."""
            import torch

            start, end = self._length, self._length + key_states.shape[-2]
            if end > self._keys.shape[-2]:
                room = max(end, 2 * self._keys.shape[-2])
                grown = []
                for old in (self._keys, self._values):
                    new = torch.empty((*old.shape[:-2], room, old.shape[-1]), dtype=old.dtype, device=old.device)
                    new[..., :start, :] = old[..., :start, :]
                    grown.append(new)
                self._keys, self._values = grown
            self._keys[..., start:end, :] = key_states
            self._values[..., start:end, :] = value_states
            self._length = end
            return self._keys[..., :end, :], self._values[..., :end, :]

        def get_seq_length(self) -> int:
            return self.prefix_keys.shape[-2] + self._length

        def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
            return self.get_seq_length() + query_length, 0

        def get_max_length(self) -> int:
            return -1

        def batch_select_indices(self, indices: Any) -> None:
            self._keys, self._values = self._keys[indices], self._values[indices]

        def batch_repeat_interleave(self, repeats: int) -> None:
            raise NotImplementedError("build a SharedPrefixCache with the batch size it needs")

        def crop(self, tokens_to_remove: int) -> None:
            raise NotImplementedError("a SharedPrefixCache cannot be cropped")

    class SharedPrefixCache(Cache):
        """A cache whose rows share one prefix, stored once."""

        def __init__(self, prefix_cache: Any, batch: int, room: int):
            layers = [SharedPrefixLayer(layer.keys, layer.values, batch, room) for layer in prefix_cache.layers]
            super().__init__(layers=layers)
            self.prefix_length = prefix_cache.get_seq_length()

    return SharedPrefixLayer, SharedPrefixCache


def shared_prefix_cache(prefix_cache: Any, batch: int, room: int) -> Any:
    """A cache for `batch` rows that all start with `prefix_cache`'s tokens (batch 1; its
    tensors are shared, not copied or modified), with room for `room` tokens per row
    before its buffers grow."""
    if prefix_cache.get_seq_length() < 1:
        raise ValueError("the shared prefix is empty")
    return _layer_classes()[1](prefix_cache, batch, room)


@contextlib.contextmanager
def shared_prefix_attention(model: Any, cache: Any) -> Iterator[None]:
    """Run `model` with shared-prefix attention over `cache` (a shared_prefix_cache) inside."""
    _register()
    token = _ACTIVE.set(cache)
    config = model.config
    previous = config._attn_implementation
    config._attn_implementation = ATTENTION_NAME
    try:
        yield
    finally:
        config._attn_implementation = previous
        _ACTIVE.reset(token)


def _attention(
    module: Any,
    query: Any,
    key: Any,
    value: Any,
    attention_mask: Any,
    scaling: float | None = None,
    dropout: float = 0.0,
    **kwargs: Any,
) -> tuple[Any, None]:
    """transformers attention function. query: (B, H, q, d); key/value: the rows' own tokens
    (B, Hkv, S, d), the last q of them new; attention_mask: boolean (B, 1, q, P + S) or None
    (causal, no padding). Returns (B, q, H, d) as transformers' own functions do."""
    import torch

    cache = _ACTIVE.get()
    if cache is None:
        raise RuntimeError("shared-prefix attention used outside shared_prefix_attention()")
    layer = cache.layers[module.layer_idx]
    prefix_k, prefix_v = layer.prefix_keys, layer.prefix_values
    batch, heads, q, dim = query.shape
    kv_heads, own = key.shape[1], key.shape[-2]
    group = heads // kv_heads
    scale = scaling if scaling is not None else dim**-0.5
    prefix = prefix_k.shape[-2]

    # Prefix part: its keys are the same for every row, so all rows' queries go through one
    # matmul per key head, the batch folded into the query axis.
    qp = query.reshape(batch, kv_heads, group, q, dim).transpose(0, 1).reshape(1, kv_heads, batch * group * q, dim)
    scores = torch.matmul(qp, prefix_k.transpose(-1, -2)) * scale
    max_p = scores.amax(dim=-1, keepdim=True)
    weights = torch.exp(scores - max_p)
    sum_p = weights.sum(dim=-1, keepdim=True)
    out_p = torch.matmul(weights, prefix_v)

    def by_row(t: Any) -> Any:  # (1, Hkv, B*g*q, x) -> (B, Hkv, g*q, x)
        return t.view(kv_heads, batch, group * q, t.shape[-1]).transpose(0, 1)

    out_p, sum_p, max_p = by_row(out_p), by_row(sum_p), by_row(max_p)

    # The rows' own part, with the causal and padding mask.
    qs = query.reshape(batch, kv_heads, group * q, dim)
    scores = torch.matmul(qs, key.transpose(-1, -2)) * scale  # (B, Hkv, g*q, S)
    if attention_mask is not None:
        allowed = attention_mask[..., prefix:].expand(batch, 1, q, own)
    else:
        allowed = torch.ones((q, own), dtype=torch.bool, device=query.device).tril(own - q)[None, None]
        allowed = allowed.expand(batch, 1, q, own)
    allowed = allowed.unsqueeze(2).expand(batch, 1, group, q, own).reshape(batch, 1, group * q, own)
    scores = scores.masked_fill(~allowed, float("-inf"))
    max_s = scores.amax(dim=-1, keepdim=True)
    # A padding query sees none of its own part; its share must then be zero, not NaN.
    max_s_safe = torch.where(torch.isfinite(max_s), max_s, torch.zeros_like(max_s))
    weights = torch.exp(scores - max_s_safe)
    sum_s = weights.sum(dim=-1, keepdim=True)
    out_s = torch.matmul(weights, value)

    top = torch.maximum(max_p, max_s)
    scale_p, scale_s = torch.exp(max_p - top), torch.exp(max_s_safe - top)
    out = (out_p * scale_p + out_s * scale_s) / (sum_p * scale_p + sum_s * scale_s)
    out = out.reshape(batch, heads, q, dim).transpose(1, 2).contiguous()
    return out, None
