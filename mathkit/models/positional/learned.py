"""Learned absolute positions (as in GPT-2; Radford et al. 2019, and Gehring et al. 2017,
"Convolutional Sequence to Sequence Learning", arXiv:1705.03122).

One trained vector per position, looked up and added once to the token embeddings at the model
input. Only layer 0's instance holds the table (an absolute encoding is never added per layer).

Input contract: ``ctx.position_ids`` (B, T), each below ``max_position_embeddings``. No options.
"""

from __future__ import annotations

from torch import nn

from mathkit.models.positional.base import PositionalEncoding, check_positions_below, register_positional


@register_positional("learned")
class LearnedPositionalEncoding(PositionalEncoding):
    """A ``max_position_embeddings x hidden_size`` table added at the input."""

    kind = "absolute"

    def __init__(self, config, layer_idx: int):
        super().__init__(config, layer_idx)
        self.table = nn.Embedding(self.max_positions, self.hidden_size) if layer_idx == 0 else None

    def embed(self, hidden, ctx):
        if self.table is None:
            return hidden
        check_positions_below(ctx.position_ids, self.max_positions, "position")
        return hidden + self.table(ctx.position_ids).to(hidden.dtype)
