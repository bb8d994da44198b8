"""FIRE: functional interpolation for relative positions (Li et al. 2023, "Functional Interpolation
for Relative Positions Improves Long Context Transformers", ICLR 2024, arXiv:2310.04418).

The bias of query position i on key position j is ``f(psi(i - j) / psi(max(L, i)))`` with
``psi(x) = log(c*x + 1)``: a learned MLP f (1 -> mlp_width -> heads, ReLU) of the distance
normalised by the query's own position, so every query sees distances in [0, 1] whatever the length
("progressive interpolation"). c (log-transform sharpness) and L (the normaliser's floor, so short
contexts are not over-stretched) are learned; L is ``|scale| * init_threshold`` with a learned
scale starting at 1, as in the reference implementation accompanying Abacus (McLeish et al. 2024).

Input contract: ``ctx.position_ids`` (B, T), ``ctx.key_positions`` (B, S). Options: ``mlp_width``,
``init_c``, ``init_threshold`` (32, 0.1 and 512 as in that reference code), ``eps``.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import initialization as init

from mathkit.models.positional.base import PositionalEncoding, register_positional


@register_positional("fire")
class FIRE(PositionalEncoding):
    """A learned function of the normalised log distance, one output per head."""

    kind = "bias"
    default_options = {"mlp_width": 32, "init_c": 0.1, "init_threshold": 512.0, "eps": 1e-6}

    @classmethod
    def check_config(cls, config):
        options = cls.resolve_options(config)
        if options["mlp_width"] < 1:
            raise ValueError("FIRE mlp_width must be a positive integer")
        if options["init_c"] <= 0 or options["init_threshold"] <= 0 or options["eps"] <= 0:
            raise ValueError("FIRE init_c, init_threshold and eps must be positive")

    def __init__(self, config, layer_idx: int):
        super().__init__(config, layer_idx)
        width = int(self.options["mlp_width"])
        self.mlp = nn.Sequential(nn.Linear(1, width), nn.ReLU(), nn.Linear(width, self.num_heads))
        self.c = nn.Parameter(torch.tensor(float(self.options["init_c"])))
        self.threshold_scale = nn.Parameter(torch.tensor(1.0))

    def reset_parameters(self):
        init.constant_(self.c, float(self.options["init_c"]))
        init.constant_(self.threshold_scale, 1.0)

    def attention_bias(self, ctx):
        c = self.c.float().abs()
        query = ctx.position_ids.to(torch.float32)
        distance = (query[:, :, None] - ctx.key_positions[:, None, :].to(torch.float32)).clamp_min(0)
        threshold = (self.threshold_scale.float() * float(self.options["init_threshold"])).abs()
        normaliser = torch.log(c * torch.maximum(query, threshold) + 1)[:, :, None]
        feature = torch.log(c * distance + 1) / (normaliser + float(self.options["eps"]))
        bias = self.mlp(feature[..., None].to(self.mlp[0].weight.dtype))  # (B, T, S, heads)
        return bias.permute(0, 3, 1, 2).to(torch.float32)
