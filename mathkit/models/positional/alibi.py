"""ALiBi: attention with linear biases (Press et al. 2021, "Train Short, Test Long", arXiv:2108.12409).

Each head h adds ``-slope_h * (i - j)`` to the score of query position i on key position j: a
penalty growing linearly with distance, steeper for some heads than for others. No parameters.

Input contract: ``ctx.position_ids`` (B, T) and ``ctx.key_positions`` (B, S) (cached keys included,
so nothing is kept between generation steps). Option ``slopes``: None for the paper's geometric
sequence by head count, or one number per head.
"""

from __future__ import annotations

import math
import numbers

import torch

from mathkit.models.positional.base import PositionalEncoding, register_positional


def geometric_slopes(num_heads: int) -> list[float]:
    """The paper's slopes: for n a power of two, 2**(-8/n), 2**(-16/n), ..., 2**-8; otherwise those
    of the nearest smaller power of two, then every other slope of the next power of two."""
    def power_of_two(n: int) -> list[float]:
        start = 2 ** (-8 / n)
        return [start ** (i + 1) for i in range(n)]

    lower = 2 ** math.floor(math.log2(num_heads))
    if lower == num_heads:
        return power_of_two(num_heads)
    return power_of_two(lower) + power_of_two(2 * lower)[0::2][: num_heads - lower]


@register_positional("alibi")
class ALiBi(PositionalEncoding):
    """A fixed linear distance penalty per head."""

    kind = "bias"
    default_options = {"slopes": None}

    @classmethod
    def check_config(cls, config):
        slopes = cls.resolve_options(config)["slopes"]
        if slopes is None:
            return
        heads = config.num_attention_heads
        if (not isinstance(slopes, (list, tuple)) or len(slopes) != heads
                or not all(isinstance(s, numbers.Real) and not isinstance(s, bool) for s in slopes)):
            raise ValueError(f"ALiBi slopes must be None or a list of {heads} numbers (one per head), "
                             f"got {slopes!r}")

    def __init__(self, config, layer_idx: int):
        super().__init__(config, layer_idx)
        given = self.options["slopes"]
        self.slopes = [float(s) for s in given] if given is not None else geometric_slopes(self.num_heads)

    def attention_bias(self, ctx):
        distance = (ctx.position_ids[:, :, None] - ctx.key_positions[:, None, :]).clamp_min(0)
        slopes = torch.tensor(self.slopes, device=distance.device, dtype=torch.float32)
        return -slopes[None, :, None, None] * distance[:, None].to(torch.float32)
