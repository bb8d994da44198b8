"""NoPE: no explicit positions (Kazemnejad et al. 2023, "The Impact of Positional Encoding on Length
Generalization in Transformers", arXiv:2305.19466).

A causal decoder can still infer order from its mask (a token sees exactly the tokens before it).
It is also what a layer outside ``pe_layers`` gets. Registered as ``nope``; ``none``, the name the
first saved models and parameter files use, is an alias for the same class.

Input contract: none; every hook is the identity.
"""

from __future__ import annotations

from mathkit.models.positional.base import PositionalEncoding, register_positional


@register_positional("nope", aliases=("none",))
class NoPositionalEncoding(PositionalEncoding):
    """No positional information at all; no parameters."""

    kind = "none"
