"""Positional encodings for the small decoder: one interface, a registry, RoPE and "none".

Each decoder layer builds its own instance with :func:`build_positional` (per-layer injection), so
a method may behave differently by depth (e.g. add absolute positions only in layer 0, or learn a
bias per layer). The three kinds of method meet the layer at three hooks, all no-ops by default:

- ``embed(hidden, position_ids)``: absolute encodings add to the layer's input (sinusoidal, learned);
- ``rotate(q, k, position_ids)``: rotary encodings turn queries and keys (RoPE);
- ``attention_bias(query_positions, key_positions)``: additive attention biases (ALiBi, T5-relative).

Positions are per token and come from the attention mask, so left-padded prompts see the same
positions as unpadded ones. With a KV cache, keys are cached *after* ``rotate``; ``attention_bias``
receives the positions of all cached keys, so it never needs state of its own.

A method is a small subclass registered by name::

    @register_positional("alibi")
    class ALiBi(PositionalEncoding):
        kind = "bias"
        default_options = {"max_bias": 8.0}
        def attention_bias(self, query_positions, key_positions): ...
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn

if TYPE_CHECKING:  # the config imports this module to validate names; avoid the cycle at runtime
    from mathkit.models.config import MathDecoderConfig

KINDS = ("none", "absolute", "rotary", "bias")

_REGISTRY: dict[str, type["PositionalEncoding"]] = {}


class PositionalEncoding(nn.Module):
    """One layer's positional encoding. Subclasses override only the hooks of their kind.

    ``options`` holds ``default_options`` updated with the config's ``pe_options``; option names
    a method does not declare are rejected by :func:`validate_positional`, so typos fail early;
    ``check_config`` lets a method refuse a model shape it cannot serve (RoPE: odd head_dim).
    """

    name: ClassVar[str] = ""
    kind: ClassVar[str] = "none"
    default_options: ClassVar[dict[str, Any]] = {}

    def __init__(self, config: "MathDecoderConfig", layer_idx: int):
        super().__init__()
        self.layer_idx = layer_idx
        self.hidden_size = config.hidden_size
        self.num_heads = config.num_attention_heads
        self.head_dim = config.hidden_size // config.num_attention_heads
        self.max_positions = config.max_position_embeddings
        self.options = {**self.default_options, **(config.pe_options or {})}

    @classmethod
    def check_config(cls, config: "MathDecoderConfig") -> None:
        """Raise ValueError when the model's shape does not suit this method (called by the config)."""

    def embed(self, hidden: torch.Tensor, position_ids: torch.Tensor) -> torch.Tensor:
        """Absolute encodings: return ``hidden`` (B, T, H) with positions (B, T) mixed in."""
        return hidden

    def rotate(self, q: torch.Tensor, k: torch.Tensor,
               position_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Rotary encodings: return q, k (B, heads, T, head_dim) turned by positions (B, T)."""
        return q, k

    def attention_bias(self, query_positions: torch.Tensor,
                       key_positions: torch.Tensor) -> torch.Tensor | None:
        """Bias encodings: an additive score bias broadcastable to (B, heads, T, S), or None."""
        return None

    def extra_repr(self) -> str:
        return f"layer_idx={self.layer_idx}, options={self.options}"


def register_positional(name: str):
    """Class decorator: make a :class:`PositionalEncoding` subclass buildable by ``name``."""

    def decorate(cls: type[PositionalEncoding]) -> type[PositionalEncoding]:
        if not (isinstance(cls, type) and issubclass(cls, PositionalEncoding)):
            raise TypeError(f"@register_positional({name!r}) needs a PositionalEncoding subclass, got {cls!r}")
        if cls.kind not in KINDS:
            raise ValueError(f"positional encoding {name!r} has kind {cls.kind!r}; use one of {KINDS}")
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"a positional encoding named {name!r} is already registered "
                             f"({_REGISTRY[name].__qualname__})")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return decorate


def known_positional() -> list[str]:
    """Names :func:`build_positional` accepts, sorted."""
    return sorted(_REGISTRY)


def positional_class(name: str) -> type[PositionalEncoding]:
    """The registered class for ``name``; ValueError listing the known names otherwise."""
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown positional encoding {name!r}; known: {', '.join(known_positional())}") from None


def validate_positional(config: "MathDecoderConfig") -> None:
    """Check the config's method name, its options (a typo would otherwise be silently ignored)
    and that the model's shape suits the method; ValueError saying what to change otherwise."""
    name = config.positional_encoding
    cls = positional_class(name)
    unknown = sorted(set(config.pe_options or {}) - set(cls.default_options))
    if unknown:
        allowed = ", ".join(sorted(cls.default_options)) or "none"
        raise ValueError(f"positional encoding {name!r} has no option(s) {unknown}; it takes: {allowed}")
    cls.check_config(config)


def build_positional(config: "MathDecoderConfig", layer_idx: int) -> PositionalEncoding:
    """The positional encoding instance for one layer, from ``config.positional_encoding``."""
    return positional_class(config.positional_encoding)(config, layer_idx)


@register_positional("none")
class NoPositionalEncoding(PositionalEncoding):
    """NoPE: no explicit positions; a causal decoder can still infer order from the mask."""

    kind = "none"


@register_positional("rope")
class RotaryPositionalEncoding(PositionalEncoding):
    """RoPE (Su et al. 2021, arXiv:2104.09864), "rotate half" layout as in GPT-NeoX/Llama.

    Frequencies are computed on the fly (a few dozen numbers) rather than kept in a buffer, so
    there is no non-persistent state to rebuild when a model is loaded on the meta device.
    """

    kind = "rotary"
    default_options = {"rope_theta": 10000.0}

    @classmethod
    def check_config(cls, config):
        head_dim = config.hidden_size // config.num_attention_heads
        if head_dim % 2:
            raise ValueError(f"RoPE needs an even head dimension, got {head_dim} "
                             f"(hidden_size {config.hidden_size} / {config.num_attention_heads} heads)")

    def __init__(self, config: "MathDecoderConfig", layer_idx: int):
        super().__init__(config, layer_idx)
        self.theta = float(self.options["rope_theta"])

    def cos_sin(self, position_ids: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """cos and sin of shape (B, 1, T, head_dim // 2) for positions (B, T)."""
        half = self.head_dim // 2
        exponent = torch.arange(half, device=position_ids.device, dtype=torch.float32) / half
        inv_freq = self.theta ** -exponent
        angles = (position_ids.to(torch.float32)[..., None] * inv_freq)[:, None]
        return angles.cos().to(dtype), angles.sin().to(dtype)

    @staticmethod
    def _turn(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        # (x1, x2) -> (x1 cos - x2 sin, x2 cos + x1 sin): rotate-half written on the halves,
        # which avoids building rotate_half(x) and doubled cos/sin tables.
        x1, x2 = x.chunk(2, dim=-1)
        return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1)

    def rotate(self, q, k, position_ids):
        cos, sin = self.cos_sin(position_ids, q.dtype)
        return self._turn(q, cos, sin), self._turn(k, cos, sin)
