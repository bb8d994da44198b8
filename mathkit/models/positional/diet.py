"""DIET: decoupled positional attention (Chen et al. 2021, "A Simple and Effective Positional
Encoding for Transformers", EMNLP, arXiv:2104.08698).

Positions enter only as a score term added to each head's attention logits, never mixed into the
token representations:

- ``diet_abs``: per head h, learned low-rank position matrices P_Q^h, P_K^h (max_positions x rank);
  the term for query position i and key position j is ``<P_Q^h[i], P_K^h[j]> / sqrt(rank)``.
- ``diet_rel``: per head h, a learned scalar per relative distance ``i - j``, clipped to
  ``max_distance`` (every farther key shares the last scalar).

Input contract: ``ctx.position_ids`` (B, T), ``ctx.key_positions`` (B, S); for ``diet_abs`` every
position below ``max_position_embeddings``. Options: ``rank`` (diet_abs), ``max_distance`` (diet_rel).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from mathkit.models.positional.base import PositionalEncoding, check_positions_below, register_positional


@register_positional("diet_abs")
class DietAbsolute(PositionalEncoding):
    """Per-head low-rank position-position term on the logits."""

    kind = "bias"
    default_options = {"rank": 8}

    @classmethod
    def check_config(cls, config):
        if cls.resolve_options(config)["rank"] < 1:
            raise ValueError("DIET-ABS rank must be a positive integer")

    def __init__(self, config, layer_idx: int):
        super().__init__(config, layer_idx)
        self.rank = int(self.options["rank"])
        self.query_table = nn.Embedding(self.max_positions, self.num_heads * self.rank)
        self.key_table = nn.Embedding(self.max_positions, self.num_heads * self.rank)

    def attention_bias(self, ctx):
        check_positions_below(ctx.key_positions, self.max_positions, "position")
        batch, length = ctx.position_ids.shape
        queries = self.query_table(ctx.position_ids).view(batch, length, self.num_heads, self.rank)
        keys = self.key_table(ctx.key_positions).view(batch, -1, self.num_heads, self.rank)
        term = torch.einsum("bthr,bshr->bhts", queries.float(), keys.float())
        return term / math.sqrt(self.rank)


@register_positional("diet_rel")
class DietRelative(PositionalEncoding):
    """Per-head learned scalar for each clipped relative distance."""

    kind = "bias"
    default_options = {"max_distance": 64}

    @classmethod
    def check_config(cls, config):
        if cls.resolve_options(config)["max_distance"] < 1:
            raise ValueError("DIET-REL max_distance must be a positive integer")

    def __init__(self, config, layer_idx: int):
        super().__init__(config, layer_idx)
        self.max_distance = int(self.options["max_distance"])
        self.bias = nn.Embedding(self.max_distance + 1, self.num_heads)

    def attention_bias(self, ctx):
        distance = ctx.position_ids[:, :, None] - ctx.key_positions[:, None, :]  # (B, T, S)
        values = self.bias(distance.clamp(0, self.max_distance))  # (B, T, S, heads)
        return values.permute(0, 3, 1, 2).to(torch.float32)
