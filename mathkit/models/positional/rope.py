"""RoPE: rotary position embeddings (Su et al. 2021, "RoFormer", arXiv:2104.09864).

Queries and keys are turned, pair of dimensions by pair, by an angle ``position * theta**(-i/half)``,
so a query-key score depends only on the relative distance. "Rotate half" layout as in GPT-NeoX and
Llama: pair i is (x[i], x[i + head_dim/2]).

Input contract: ``ctx.position_ids`` (B, T); q, k (B, heads, T, head_dim) with an even head_dim.
Option: ``rope_theta`` (base of the frequencies). No parameters.
"""

from __future__ import annotations

import torch

from mathkit.models.positional.base import PositionalEncoding, head_dim_of, register_positional


def inverse_frequencies(pairs: int, theta: float, device) -> torch.Tensor:
    """``theta ** (-i / pairs)`` for i < pairs, in fp32 (a few numbers: computed on the fly rather
    than kept in a buffer, so nothing needs rebuilding when a model is loaded on the meta device)."""
    return theta ** -(torch.arange(pairs, device=device, dtype=torch.float32) / pairs)


def turn(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """(x1, x2) -> (x1 cos - x2 sin, x2 cos + x1 sin) on the two halves of the last dimension:
    rotate-half written on the halves, which avoids building rotate_half(x) and doubled tables."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1)


@register_positional("rope")
class RotaryPositionalEncoding(PositionalEncoding):
    """RoPE on every pair of dimensions of each head."""

    kind = "rotary"
    default_options = {"rope_theta": 10000.0}

    @classmethod
    def check_config(cls, config):
        head_dim = head_dim_of(config)
        if head_dim % 2:
            raise ValueError(f"RoPE needs an even head dimension, got {head_dim} "
                             f"(hidden_size {config.hidden_size} / {config.num_attention_heads} heads)")
        if cls.resolve_options(config)["rope_theta"] <= 1:
            raise ValueError("rope_theta must be greater than 1")

    def __init__(self, config, layer_idx: int):
        super().__init__(config, layer_idx)
        self.theta = float(self.options["rope_theta"])

    def cos_sin(self, position_ids: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """cos and sin of shape (B, 1, T, head_dim // 2) for positions (B, T)."""
        inv_freq = inverse_frequencies(self.head_dim // 2, self.theta, position_ids.device)
        angles = (position_ids.to(torch.float32)[..., None] * inv_freq)[:, None]
        return angles.cos().to(dtype), angles.sin().to(dtype)

    def rotate(self, q, k, ctx):
        cos, sin = self.cos_sin(ctx.position_ids, q.dtype)
        return turn(q, cos, sin), turn(k, cos, sin)
