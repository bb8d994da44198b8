"""Sinusoidal absolute positions (Vaswani et al. 2017, "Attention Is All You Need", arXiv:1706.03762).

``PE[pos, 2i] = sin(pos / base**(2i/d))``, ``PE[pos, 2i+1] = cos(pos / base**(2i/d))``, added once to
the token embeddings at the model input. No parameters; computed on the fly for the positions at
hand, so any length works and nothing is stored.

Input contract: ``ctx.position_ids`` (B, T); hidden (B, T, hidden_size) with an even hidden_size.
Options: ``base`` (10000 in the paper) and ``scale``, a factor on the table. The paper adds the table
(entries of RMS 1/sqrt(2)) to token embeddings multiplied by sqrt(d), so both have RMS about 1. Our
token embeddings start at std ``initializer_range`` (0.02) and are not multiplied: the unscaled table
is ~35x larger than them, positions drown the tokens, and a small model never learns to add (2% of
1-2-digit additions after 270 steps, where a learned table reaches 99%). The default ``scale`` 0.02
puts the table at the embeddings' size; ``scale: 1.0`` is the paper's table as is.
"""

from __future__ import annotations

import torch

from mathkit.models.positional.base import PositionalEncoding, register_positional


def sinusoid_table(position_ids: torch.Tensor, dim: int, base: float) -> torch.Tensor:
    """(B, T, dim) fp32 encodings of positions (B, T): sin on even, cos on odd dimensions."""
    inv_freq = base ** -(torch.arange(0, dim, 2, device=position_ids.device, dtype=torch.float32) / dim)
    angles = position_ids.to(torch.float32)[..., None] * inv_freq  # (B, T, dim/2)
    return torch.stack((angles.sin(), angles.cos()), dim=-1).flatten(-2)


@register_positional("sinusoidal")
class SinusoidalPositionalEncoding(PositionalEncoding):
    """Fixed sin/cos positions added at the input."""

    kind = "absolute"
    default_options = {"base": 10000.0, "scale": 0.02}

    @classmethod
    def check_config(cls, config):
        if config.hidden_size % 2:
            raise ValueError(f"sinusoidal positions need an even hidden_size, got {config.hidden_size}")
        options = cls.resolve_options(config)
        if options["base"] <= 1:
            raise ValueError("the sinusoidal base must be greater than 1")
        if options["scale"] <= 0:
            raise ValueError(f"the sinusoidal scale must be positive, got {options['scale']}")

    def embed(self, hidden, ctx):
        if self.layer_idx != 0:  # added once, at the input
            return hidden
        table = sinusoid_table(ctx.position_ids, self.hidden_size, float(self.options["base"]))
        return hidden + (float(self.options["scale"]) * table).to(hidden.dtype)
