"""Math-adaptive rotary encoding: mathkit's own method, RoPE with a second, digit-place stream.

Definition. Let a head have ``n = head_dim / 2`` rotary pairs, split into ``n_pos = n // 2`` and
``n_dig = n - n_pos``. For a token at absolute position p (from the mask, as RoPE) whose digit place
is d (the Abacus index: 1-based place within its run of consecutive digit tokens, 0 for any other
token), the angle of pair m is

    m <  n_pos:  p * rope_theta  ** (-m / n_pos)              (RoPE on the first pairs)
    m >= n_pos:  d * s_h * digit_theta ** (-(m - n_pos) / n_dig)  (the digit stream)

with s_h a learned scale per head h (initialised to 1). Queries and keys are turned by these angles
("rotate half" layout, as :mod:`~mathkit.models.positional.rope`), so a score depends on the
relative position ``p_i - p_j`` and on the relative digit place ``s_h (d_i - d_j)``: digits at the
same place of two numbers line up (the idea of Abacus, McLeish et al. 2024, arXiv:2405.17399,
carried by rotation instead of an added embedding, as RoPE, Su et al. 2021, arXiv:2104.09864).
``digit_theta`` is small (100) because places are small numbers: the slowest digit frequencies
still turn noticeably between place 1 and place 20.

Causal: a place counts from its number's first digit, so it never depends on later tokens. With a
KV cache the digit run of the last cached token is kept on the cache, as for Abacus.

Input contract: ``ctx.input_ids`` (B, T), ``ctx.position_ids`` (B, T), ``ctx.attention_mask``;
q, k (B, heads, T, head_dim) with head_dim even and at least 4. Options: ``rope_theta``,
``digit_theta``, ``digit_token_ids`` (filled by ``build_decoder`` from the tokenizer).
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import initialization as init

from mathkit.models.positional.abacus import check_digit_ids, digit_places
from mathkit.models.positional.base import PositionalEncoding, head_dim_of, register_positional
from mathkit.models.positional.rope import inverse_frequencies, turn


@register_positional("math_adaptive")
class MathAdaptiveRotary(PositionalEncoding):
    """RoPE on half of each head's pairs, a learned-scale digit-place rotation on the other half."""

    kind = "rotary"
    default_options = {"rope_theta": 10000.0, "digit_theta": 100.0, "digit_token_ids": None}

    @classmethod
    def check_config(cls, config):
        head_dim = head_dim_of(config)
        if head_dim % 2 or head_dim < 4:
            raise ValueError(f"math_adaptive needs an even head dimension of at least 4, got {head_dim}")
        options = cls.resolve_options(config)
        if options["rope_theta"] <= 1 or options["digit_theta"] <= 1:
            raise ValueError("rope_theta and digit_theta must be greater than 1")
        check_digit_ids(config, options["digit_token_ids"])

    def __init__(self, config, layer_idx: int):
        super().__init__(config, layer_idx)
        self.digit_ids = [int(i) for i in self.options["digit_token_ids"]]
        pairs = self.head_dim // 2
        self.position_pairs, self.digit_pairs = pairs // 2, pairs - pairs // 2
        self.digit_scale = nn.Parameter(torch.ones(self.num_heads))

    def reset_parameters(self):
        init.ones_(self.digit_scale)

    def rotate(self, q, k, ctx):
        device = q.device
        position = ctx.position_ids.to(torch.float32)[:, None, :, None]  # (B, 1, T, 1)
        place = digit_places(ctx, self.digit_ids, self.name).to(torch.float32)[:, None, :, None]
        scale = self.digit_scale.to(torch.float32)[None, :, None, None]  # (1, heads, 1, 1)
        by_position = position * inverse_frequencies(self.position_pairs, self.options["rope_theta"], device)
        by_place = place * scale * inverse_frequencies(self.digit_pairs, self.options["digit_theta"], device)
        angles = torch.cat((by_position.expand(-1, self.num_heads, -1, -1), by_place), dim=-1)
        cos, sin = angles.cos().to(q.dtype), angles.sin().to(q.dtype)
        return turn(q, cos, sin), turn(k, cos, sin)
