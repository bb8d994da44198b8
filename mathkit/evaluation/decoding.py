"""Greedy decoding where rows that finish leave the batch (their KV-cache rows are dropped).

``model.generate`` keeps every row of a batch until the longest one ends: a row that stopped at
token 40 still costs a slot at each of the next 200 steps (on the 100 GSM8K originals, 21-25% of
decode slots were such padding). This loop is the same greedy decoding (position ids from the
left-padded attention mask, a ``DynamicCache``, argmax of the last logits) but, after each step,
keeps only the unfinished rows: ``DynamicCache.batch_select_indices`` drops the finished rows'
keys and values, and the attention mask and next tokens are indexed alike. A row is finished at
a stop token (EOS, end of turn), when a :class:`~mathkit.evaluation.stopping.RowStopper` says so,
or at ``max_new_tokens``.

Each row's tokens are those ``model.generate(do_sample=False)`` writes for it (checked by the
tests on a tiny Llama); in fp32 the rows do not depend on which other rows share the batch.

The cache's full-attention layers keep their keys and values in a buffer with room to spare
(:class:`GrowingLayer`): transformers' ``DynamicLayer`` appends each new token with ``torch.cat``,
which copies the whole cache at every step (20% of a SmolLM2 decode step at batch 32 measured with
the torch profiler here); writing the new token in place and handing attention a view costs the
copy once per growth of the buffer instead.
"""

from __future__ import annotations

import inspect

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

GROW_BY = 256  # tokens of spare room added when a layer's buffer is full


def _cache_keyword(model) -> str:
    """transformers renamed the forward argument ``past_key_values`` to ``cache`` (5.2x)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model  # PEFT wrappers
    params = inspect.signature(base.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def supports_compacting(model) -> bool:
    """True for transformers' own causal LMs (PEFT-wrapped too) that take a ``DynamicCache``.

    Models defined elsewhere (our ``mathkit_decoder``, remote code) keep ``generate``: their
    position handling is only known to agree with what ``generate`` feeds them."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    cfg = getattr(base, "config", None)
    supports = getattr(type(base), "_supports_default_dynamic_cache", None)
    return (type(base).__module__.startswith("transformers.models.") and cfg is not None
            and not getattr(cfg, "is_encoder_decoder", False) and callable(supports) and bool(supports()))


class GrowingLayer(DynamicLayer):
    """A ``DynamicLayer`` whose keys and values are views into a buffer with spare room.

    ``update`` writes the new tokens in place and returns views of the filled part, so the
    tensors attention sees hold the same numbers as ``DynamicLayer``'s, without a copy per step."""

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        super().lazy_initialization(key_states, value_states)
        self.buffers: tuple[torch.Tensor, torch.Tensor] | None = None
        self.length = 0

    def _reserve(self, key_states: torch.Tensor, value_states: torch.Tensor, needed: int) -> None:
        if self.buffers is not None and needed <= self.buffers[0].shape[-2]:
            return
        capacity = needed + GROW_BY
        grown = []
        for new, old in zip((key_states, value_states), self.buffers or (None, None)):
            shape = (*new.shape[:-2], capacity, new.shape[-1])
            buffer = new.new_empty(shape)
            if old is not None:
                buffer[..., :self.length, :] = old[..., :self.length, :]
            grown.append(buffer)
        self.buffers = (grown[0], grown[1])

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        end = self.length + key_states.shape[-2]
        self._reserve(key_states, value_states, end)
        keys, values = self.buffers
        keys[..., self.length:end, :] = key_states
        values[..., self.length:end, :] = value_states
        self.length = end
        self.keys, self.values = keys[..., :end, :], values[..., :end, :]
        return self.keys, self.values

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        if self.is_initialized and self.length > 0:
            self.buffers = (self.buffers[0][indices], self.buffers[1][indices])
            self.keys, self.values = self.buffers[0][..., :self.length, :], self.buffers[1][..., :self.length, :]


def growing_cache(model) -> DynamicCache:
    """A ``DynamicCache`` for ``model`` whose full-attention layers are :class:`GrowingLayer` s
    (sliding-window and other special layers keep transformers' own classes)."""
    cache = DynamicCache(config=getattr(model, "config", None))
    if cache.layers:
        cache.layers = [GrowingLayer() if type(layer) is DynamicLayer else layer for layer in cache.layers]
    else:  # no config: layers are created on first use
        cache.layer_class_to_replicate = GrowingLayer
    return cache


def _positions(attention_mask: torch.Tensor) -> torch.Tensor:
    """Position ids of a left-padded batch, as ``generate`` computes them."""
    pos = attention_mask.long().cumsum(-1) - 1
    return pos.masked_fill(attention_mask == 0, 1)


class _Batch:
    """The unfinished rows: their index in the caller's batch, mask, next position and token."""

    def __init__(self, attention_mask: torch.Tensor):
        self.rows = list(range(attention_mask.shape[0]))
        self.mask = attention_mask
        self.next_pos = attention_mask.long().sum(-1, keepdim=True)

    def keep(self, keep: list[int], cache: DynamicCache, tokens: torch.Tensor) -> torch.Tensor:
        index = torch.tensor(keep, device=self.mask.device)
        cache.batch_select_indices(index)
        self.rows = [self.rows[i] for i in keep]
        self.mask, self.next_pos = self.mask[index], self.next_pos[index]
        return tokens[index]

    def step_inputs(self, tokens: torch.Tensor) -> dict:
        self.mask = torch.cat([self.mask, self.mask.new_ones((self.mask.shape[0], 1))], dim=1)
        inputs = {"input_ids": tokens[:, None], "attention_mask": self.mask,
                  "position_ids": self.next_pos.clone()}
        self.next_pos = self.next_pos + 1
        return inputs


@torch.no_grad()
def greedy_compacting(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, *,
                      max_new_tokens: int, stop_ids: list[int], stopper=None) -> tuple[list[list[int]], int]:
    """Greedy-decode a left-padded batch, dropping rows as they finish.

    Returns the new tokens of each row (up to and including its stop token) and the number of
    decode slots computed (row-steps after the prefill), for the padding-waste statistics.
    ``stopper``: an object with ``stopped(tokens) -> bool`` (stop strings, answer end)."""
    cache = growing_cache(model)
    kw = {_cache_keyword(model): cache, "use_cache": True, "logits_to_keep": 1}
    out = model(input_ids=input_ids, attention_mask=attention_mask,
                position_ids=_positions(attention_mask), **kw)
    tokens = out.logits[:, -1, :].argmax(-1)
    generated: list[list[int]] = [[] for _ in range(input_ids.shape[0])]
    batch, stop_set, slots = _Batch(attention_mask), set(stop_ids), 0
    for step in range(max_new_tokens):
        keep = []
        for i, (row, token) in enumerate(zip(batch.rows, tokens.tolist())):
            generated[row].append(token)
            done = (token in stop_set or step + 1 == max_new_tokens
                    or (stopper is not None and stopper.stopped(generated[row])))
            if not done:
                keep.append(i)
        if not keep:
            break
        if len(keep) < len(batch.rows):
            tokens = batch.keep(keep, cache, tokens)
        out = model(**batch.step_inputs(tokens), **kw)
        slots += len(batch.rows)
        tokens = out.logits[:, -1, :].argmax(-1)
    return generated, slots
