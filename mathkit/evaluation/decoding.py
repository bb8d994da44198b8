"""Greedy decoding where rows that finish leave the batch (their KV-cache rows are dropped).

``model.generate`` keeps every row of a batch until the longest one ends: a row that stopped at
token 40 still costs a slot at each of the next 200 steps (on the 100 GSM8K originals, 21-25% of
decode slots were such padding). This loop is the same greedy decoding (position ids from the
left-padded attention mask, a ``DynamicCache``, argmax of the last logits) but, after each step,
keeps only the unfinished rows: ``DynamicCache.batch_select_indices`` drops the finished rows'
keys and values, and the attention mask and next tokens are indexed alike. A row is finished at
a stop token (EOS, end of turn), when a :class:`~mathkit.evaluation.stopping.RowStopper` says so,
or at ``max_new_tokens``.

The loop itself, :func:`greedy_loop` (the rule that ends a row, which rows are left), is the one
the other backends decode with too (:mod:`mathkit.inference`: ONNX Runtime, llama.cpp); each
backend only says how to run one step and drop rows from its cache.

Each row's tokens are those ``model.generate(do_sample=False)`` writes for it (checked by the
tests on a tiny Llama); in fp32 the rows do not depend on which other rows share the batch.

The cache's full-attention layers keep their keys and values in a buffer with room to spare
(:class:`GrowingLayer`): transformers' ``DynamicLayer`` appends each new token with ``torch.cat``,
which copies the whole cache at every step (20% of a SmolLM2 decode step at batch 32 measured with
the torch profiler here); writing the new token in place and handing attention a view costs the
copy once per growth of the buffer instead.

The prompts are prefilled in groups of similar length (:func:`prefill`), not as one batch: a
batch of 100 GSM8K prompts (60 to 181 tokens) padded to its longest is 18,100 positions for
9,681 real tokens, and attention over the padding grows with its square (34-36 s for the 100
prompts in one forward vs 16-20 s in groups of ~10 on 2 threads, measured side by side here). The groups'
caches are then merged into the one left-padded batch the decode steps need.
"""

from __future__ import annotations

import inspect

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

GROW_BY = 256  # tokens of spare room added when a layer's buffer is full
PREFILL_TOKENS = 1024  # padded positions per prefill forward (rows x longest prompt in the group)


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
    """The unfinished rows' attention mask and next positions, narrowed as rows leave."""

    def __init__(self, attention_mask: torch.Tensor):
        self.mask = attention_mask
        self.next_pos = attention_mask.long().sum(-1, keepdim=True)

    def keep(self, keep: list[int], cache: DynamicCache) -> None:
        index = torch.tensor(keep, device=self.mask.device)
        cache.batch_select_indices(index)
        self.mask, self.next_pos = self.mask[index], self.next_pos[index]

    def step_inputs(self, tokens: torch.Tensor) -> dict:
        self.mask = torch.cat([self.mask, self.mask.new_ones((self.mask.shape[0], 1))], dim=1)
        inputs = {"input_ids": tokens[:, None], "attention_mask": self.mask,
                  "position_ids": self.next_pos.clone()}
        self.next_pos = self.next_pos + 1
        return inputs


def greedy_loop(first: list[int], advance, *, max_new_tokens: int, stop_ids=(), stopper=None,
                forced: list[list[int]] | None = None) -> tuple[list[list[int]], int]:
    """The decoding loop every backend shares (torch here, ONNX Runtime, llama.cpp): the rule that
    ends a row and the bookkeeping of which rows are left; the backend only computes.

    ``first``: the argmax after each row's prompt. ``advance(feed, keep)`` runs one step for the
    rows still going and returns their argmax: ``feed`` holds their next tokens and ``keep``, when
    some rows finished, the positions (in the previous step's rows) of those that remain, whose
    cache rows the backend keeps. A row ends at a stop token, when ``stopper.stopped(tokens)``
    says so, or at ``max_new_tokens``. With ``forced``, row ``r`` is fed ``forced[r]`` instead of
    its argmax and ends after ``len(forced[r])`` predictions (teacher forcing: the rows returned
    are the argmax at each of those positions). Returns the tokens of each row (up to and
    including its stop token) and the decode slots computed (row-steps after the prompt)."""
    generated: list[list[int]] = [[] for _ in first]
    rows, tokens, stop_set, slots = list(range(len(first))), first, set(stop_ids), 0
    for step in range(max_new_tokens if forced is None else max(map(len, forced), default=0)):
        keep, feed = [], []
        for i, (row, token) in enumerate(zip(rows, tokens)):
            generated[row].append(token)
            if forced is not None:
                done = len(generated[row]) >= len(forced[row])
                token = token if done else forced[row][step]
            else:
                done = (token in stop_set or step + 1 == max_new_tokens
                        or (stopper is not None and stopper.stopped(generated[row])))
            if not done:
                keep.append(i)
                feed.append(token)
        if not keep:
            break
        shrunk = len(keep) < len(rows)
        rows = [rows[i] for i in keep]
        tokens = advance(feed, keep if shrunk else None)
        slots += len(rows)
    return generated, slots


def prefill_groups(lengths: list[int], budget: int) -> list[list[int]]:
    """Rows grouped by length, longest first, each group's rows x longest length <= ``budget``
    (a row longer than the budget is a group of its own)."""
    groups: list[list[int]] = []
    for row in sorted(range(len(lengths)), key=lambda r: (-lengths[r], r)):
        group = groups[-1] if groups else None
        if group and (len(group) + 1) * lengths[group[0]] <= budget:
            group.append(row)
        else:
            groups.append([row])
    return groups


def _forward_prefill(model, input_ids, attention_mask, cache=None):
    cache = growing_cache(model) if cache is None else cache
    out = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=_positions(attention_mask),
                **{_cache_keyword(model): cache, "use_cache": True, "logits_to_keep": 1})
    return cache, out.logits[:, -1, :].argmax(-1)


def _mergeable(cache: DynamicCache) -> bool:
    """Whether groups' caches can be written into one (all full-attention :class:`GrowingLayer` s;
    a cache without a config makes its layers on first use, all of that class)."""
    return all(type(layer) is GrowingLayer for layer in cache.layers)


@torch.no_grad()
def prefill(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, *,
            budget: int | None = None) -> tuple[DynamicCache, list[int]]:
    """Run the prompts of a left-padded batch, in groups of similar length, into one cache.

    Each group is cut to its own longest prompt (its left columns are padding for all its rows),
    run, and its keys and values are written right-aligned into the batch's cache; the padding
    columns hold zeros (the attention mask hides them). Returns the cache, holding the batch in
    its row order, and each row's argmax after its prompt. Caches with layers other than
    :class:`GrowingLayer` (sliding windows) are run as one batch."""
    lengths = attention_mask.sum(-1).tolist()
    groups = prefill_groups(lengths, PREFILL_TOKENS if budget is None else budget)
    merged = growing_cache(model)
    if len(groups) == 1 or not _mergeable(merged):
        cache, first = _forward_prefill(model, input_ids, attention_mask, merged)
        return cache, first.tolist()
    width, device = input_ids.shape[1], input_ids.device
    first = torch.empty(len(lengths), dtype=torch.long, device=device)
    caches = []
    for group in groups:
        index, cut = torch.tensor(group, device=device), width - int(lengths[group[0]])
        cache, top = _forward_prefill(model, input_ids[index, cut:], attention_mask[index, cut:])
        first[index] = top
        caches.append((index, cut, cache))
    for i, like in enumerate(caches[0][2].layers):
        shape = (len(lengths), *like.keys.shape[1:-2], width, like.keys.shape[-1])
        keys, values = like.keys.new_zeros(shape), like.values.new_zeros(shape)
        for index, cut, cache in caches:
            keys[index, ..., cut:, :] = cache.layers[i].keys
            values[index, ..., cut:, :] = cache.layers[i].values
        merged.update(keys, values, i)
    return merged, first.tolist()


@torch.no_grad()
def greedy_compacting(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, *,
                      max_new_tokens: int, stop_ids: list[int], stopper=None) -> tuple[list[list[int]], int]:
    """Greedy-decode a left-padded batch, dropping rows as they finish (:func:`greedy_loop`).

    Returns the new tokens of each row (up to and including its stop token) and the number of
    decode slots computed (row-steps after the prefill), for the padding-waste statistics.
    ``stopper``: an object with ``stopped(tokens) -> bool`` (stop strings, answer end)."""
    cache, first = prefill(model, input_ids, attention_mask)
    kw = {_cache_keyword(model): cache, "use_cache": True, "logits_to_keep": 1}
    batch = _Batch(attention_mask)

    def advance(feed: list[int], keep: list[int] | None) -> list[int]:
        if keep is not None:
            batch.keep(keep, cache)
        tokens = torch.tensor(feed, dtype=input_ids.dtype, device=input_ids.device)
        return model(**batch.step_inputs(tokens), **kw).logits[:, -1, :].argmax(-1).tolist()

    return greedy_loop(first, advance, max_new_tokens=max_new_tokens,
                       stop_ids=stop_ids, stopper=stopper)
