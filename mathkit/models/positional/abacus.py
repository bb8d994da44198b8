"""Abacus embeddings (McLeish et al. 2024, "Transformers Can Do Arithmetic with the Right
Embeddings", NeurIPS, arXiv:2405.17399).

Every digit token gets the index of its place within its number: 1-based place within its run of
consecutive digit tokens, 0 for a non-digit ("12+345=" -> 1 2 0 1 2 3 0). While training, each
sequence adds one random offset in [0, max_offset] to its digit indices (non-digits stay 0), so
the embeddings of higher places get trained too and longer numbers than seen still have an index.
The index is looked up in a learned table and added once at the model input (absolute kind).

Places count from a number's first digit, so an index never depends on later tokens (causal). With
a KV cache, the digit run of the last cached token and the sequences' offsets are kept on the
cache (:func:`cache_state`), so step-by-step generation gets the same indices as a full forward
(greedy or sampled; beam search, which reorders the cache rows, would need that state reordered too).

Input contract: ``ctx.input_ids`` (B, T) (inputs_embeds alone cannot say which tokens are digits),
``ctx.attention_mask`` (padding is never a digit). Options: ``digit_token_ids`` (ids of "0".."9";
``build_decoder`` fills them from the tokenizer), ``max_offset``.
"""

from __future__ import annotations

import torch
from torch import nn

from mathkit.models.positional.base import (
    PositionalEncoding,
    PositionContext,
    cache_state,
    check_positions_below,
    register_positional,
)


def check_digit_ids(config, ids) -> None:
    vocab = getattr(config, "vocab_size", None)
    if ids is None:
        raise ValueError("this positional encoding needs pe_options['digit_token_ids'] (the ids of the tokens "
                         "'0'..'9'); build_decoder fills them from the tokenizer")
    if (not isinstance(ids, (list, tuple)) or not ids or len(set(ids)) != len(ids)
            or not all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in ids)
            or (vocab is not None and max(ids) >= vocab)):
        raise ValueError(f"digit_token_ids must be distinct token ids inside the vocabulary, got {ids!r}")


def digit_places(ctx: PositionContext, digit_ids: list[int], key: str) -> torch.Tensor:
    """(B, T) 1-based place of each new token within its run of digits, 0 for any other token."""
    if ctx.input_ids is None:
        raise ValueError(f"{key} positions need input_ids (they depend on which tokens are digits)")
    ids = ctx.input_ids
    digits = torch.isin(ids, torch.tensor(digit_ids, device=ids.device))
    if ctx.attention_mask is not None:
        digits &= ctx.attention_mask[:, ctx.past_length:].bool()
    runs = None if (state := cache_state(ctx, key)) is None else state.setdefault("runs", {})
    before = torch.zeros(ids.shape[0], dtype=torch.long, device=ids.device)
    if ctx.past_length:
        if runs is None or ctx.past_length not in runs:
            raise ValueError(f"{key}: the digit run of the {ctx.past_length} cached tokens is unknown; "
                             "pass the whole prompt through this model with the same cache")
        before = runs[ctx.past_length]
    index = torch.arange(ids.shape[1], device=ids.device)
    # The last non-digit at or before each token (or a virtual one before the cached run).
    last_break = torch.where(digits, -1 - before[:, None], index).cummax(dim=-1).values
    places = (index - last_break) * digits
    if runs is not None:  # every layer of one forward writes the same entry: idempotent
        runs[ctx.past_length + ids.shape[1]] = places[:, -1]
        for old in [n for n in runs if n < ctx.past_length]:
            del runs[old]
    return places


@register_positional("abacus")
class Abacus(PositionalEncoding):
    """A learned embedding of each digit's place in its number, added at the input."""

    kind = "absolute"
    default_options = {"digit_token_ids": None, "max_offset": 20}

    @classmethod
    def check_config(cls, config):
        options = cls.resolve_options(config)
        check_digit_ids(config, options["digit_token_ids"])
        if options["max_offset"] < 0:
            raise ValueError(f"Abacus max_offset must be >= 0, got {options['max_offset']}")

    def __init__(self, config, layer_idx: int):
        super().__init__(config, layer_idx)
        self.digit_ids = [int(i) for i in self.options["digit_token_ids"]]
        self.max_offset = int(self.options["max_offset"])
        self.size = self.max_positions + self.max_offset + 1
        self.table = nn.Embedding(self.size, self.hidden_size) if layer_idx == 0 else None

    def indices(self, ctx: PositionContext) -> torch.Tensor:
        """(B, T) Abacus index of each new token, with the sequence's random offset in training."""
        places = digit_places(ctx, self.digit_ids, self.name)
        if not (self.training and self.max_offset):
            return places
        state = cache_state(ctx, self.name)
        offset = None if state is None or ctx.past_length == 0 else state.get("offset")
        if offset is None:
            offset = torch.randint(0, self.max_offset + 1, (places.shape[0],), device=places.device)
            if state is not None:
                state["offset"] = offset
        return places + offset[:, None] * (places > 0)

    def embed(self, hidden, ctx):
        if self.table is None:  # added once, by layer 0
            return hidden
        index = self.indices(ctx)
        check_positions_below(index, self.size, "Abacus index")
        return hidden + self.table(index).to(hidden.dtype)
