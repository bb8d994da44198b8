"""T5 relative position bias (Raffel et al. 2020, "Exploring the Limits of Transfer Learning with a
Unified Text-to-Text Transformer", JMLR 21, arXiv:1910.10683).

The distance ``i - j`` of a query i to a key j falls into one of ``num_buckets`` buckets: one per
distance below ``num_buckets // 2``, then logarithmically wider buckets up to ``max_distance``
(everything farther shares the last). Each bucket has a learned bias per head, added to the scores.
Causal (unidirectional) buckets: a decoder never attends forward, so all buckets serve the past.

Input contract: ``ctx.position_ids`` (B, T), ``ctx.key_positions`` (B, S). Options:
``num_buckets`` (32), ``max_distance`` (128), as in T5.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from mathkit.models.positional.base import PositionalEncoding, register_positional


def causal_bucket(distance: torch.Tensor, num_buckets: int, max_distance: int) -> torch.Tensor:
    """T5's unidirectional bucket of each distance ``query - key`` (negative distances count as 0).

    Written here rather than calling ``T5Attention._relative_position_bucket``, a private static
    method of transformers' T5 model; the tests check the two agree."""
    n = distance.clamp_min(0)
    exact = num_buckets // 2
    wide = exact + (torch.log(n.float().clamp_min(1) / exact) / math.log(max_distance / exact)
                    * (num_buckets - exact)).long()
    return torch.where(n < exact, n, wide.clamp_max(num_buckets - 1))


@register_positional("t5_relative")
class T5RelativeBias(PositionalEncoding):
    """A learned bias per head and log-bucketed relative distance."""

    kind = "bias"
    default_options = {"num_buckets": 32, "max_distance": 128}

    @classmethod
    def check_config(cls, config):
        options = cls.resolve_options(config)
        buckets, farthest = options["num_buckets"], options["max_distance"]
        if buckets < 4:
            raise ValueError(f"T5 num_buckets must be at least 4, got {buckets}")
        if farthest <= buckets // 2:
            raise ValueError(f"T5 max_distance ({farthest}) must exceed num_buckets // 2 ({buckets // 2})")

    def __init__(self, config, layer_idx: int):
        super().__init__(config, layer_idx)
        self.num_buckets = int(self.options["num_buckets"])
        self.max_distance = int(self.options["max_distance"])
        self.bias = nn.Embedding(self.num_buckets, self.num_heads)

    def attention_bias(self, ctx):
        distance = ctx.position_ids[:, :, None] - ctx.key_positions[:, None, :]  # (B, T, S)
        values = self.bias(causal_bucket(distance, self.num_buckets, self.max_distance))  # (B, T, S, heads)
        return values.permute(0, 3, 1, 2).to(torch.float32)
