"""The positional-encoding interface, the per-forward :class:`PositionContext`, and the registry.

A method is a small :class:`PositionalEncoding` subclass registered by name; each decoder layer
builds its own instance (so a method may learn per-layer parameters, and no layer shares one).
The model builds one :class:`PositionContext` per forward and calls three hooks, no-ops by default:

- ``embed(hidden, ctx)`` (kind ``absolute``): once, at the model input, on layer 0's instance only;
- ``rotate(q, k, ctx)`` (kind ``rotary``): queries and keys (B, heads, T, head_dim), before the KV
  cache stores the keys (so cached keys are already rotated);
- ``attention_bias(ctx)`` (kind ``bias``): an additive fp32 score bias broadcastable to
  (B, heads, T, S), S = cached + new keys.

Positions come from the attention mask, so a left-padded prompt sees the same positions as the same
prompt unpadded. A method that needs per-row state across generation steps (the digit run of the
last token, for Abacus) keeps it on the cache through :func:`cache_state`, never on ``self``: one
model may serve several generations, and the state must live and die with the one it belongs to.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from mathkit.errors import MathkitError

KINDS = ("none", "absolute", "rotary", "bias")

_REGISTRY: dict[str, type["PositionalEncoding"]] = {}
_STATE_ATTRIBUTE = "positional_state"  # the dict a cache carries for positional encodings


class SharedParameterError(MathkitError, ValueError):
    """Two layers' positional encodings hold the same tensor (each layer must own its own)."""


@dataclass
class PositionContext:
    """Everything a positional encoding may need about one forward, built once by the model."""

    position_ids: torch.Tensor            # (B, T) positions of the new (query) tokens, from the mask
    key_positions: torch.Tensor           # (B, S) positions of every key (cached + new); S = past + T
    input_ids: torch.Tensor | None        # (B, T) ids of the new tokens (None when inputs_embeds given)
    attention_mask: torch.Tensor | None   # (B, S) 2D mask, 1 = real token (None = no padding)
    past_length: int                      # tokens already in the KV cache
    cache: object | None                  # the transformers Cache of this forward (None = no cache)


class PositionalEncoding(nn.Module):
    """One layer's positional encoding. Subclasses override only the hooks of their kind.

    ``config`` is any object with ``hidden_size``, ``num_attention_heads``,
    ``max_position_embeddings``, ``pe_options`` (dict) and optionally ``head_dim``.
    ``options`` holds ``default_options`` updated with ``pe_options``; unknown option names are
    rejected by :func:`validate_positional`, and ``check_config`` rejects bad values or shapes.
    """

    name: ClassVar[str] = ""
    kind: ClassVar[str] = "none"
    default_options: ClassVar[dict[str, Any]] = {}

    def __init__(self, config, layer_idx: int):
        super().__init__()
        self.layer_idx = layer_idx
        self.hidden_size = config.hidden_size
        self.num_heads = config.num_attention_heads
        self.head_dim = head_dim_of(config)
        self.max_positions = config.max_position_embeddings
        self.options = self.resolve_options(config)

    @classmethod
    def resolve_options(cls, config) -> dict[str, Any]:
        return {**cls.default_options, **(getattr(config, "pe_options", None) or {})}

    @classmethod
    def check_config(cls, config) -> None:
        """Raise ValueError when an option value or the model's shape does not suit this method."""

    def reset_parameters(self) -> None:
        """(Re)initialise parameters that are not inside an nn.Linear/nn.Embedding (the model's
        ``_init_weights`` calls this; use ``transformers.initialization`` so loaded weights stay)."""

    def embed(self, hidden: torch.Tensor, ctx: PositionContext) -> torch.Tensor:
        """Absolute encodings: ``hidden`` (B, T, H) with positions mixed in (model input only)."""
        return hidden

    def rotate(self, q: torch.Tensor, k: torch.Tensor,
               ctx: PositionContext) -> tuple[torch.Tensor, torch.Tensor]:
        """Rotary encodings: q, k (B, heads, T, head_dim) turned by position."""
        return q, k

    def attention_bias(self, ctx: PositionContext) -> torch.Tensor | None:
        """Bias encodings: an additive fp32 bias broadcastable to (B, heads, T, S), or None."""
        return None

    def extra_repr(self) -> str:
        return f"layer_idx={self.layer_idx}, options={self.options}"


def head_dim_of(config) -> int:
    return getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads


def check_positions_below(positions: torch.Tensor, limit: int, what: str) -> None:
    """A table lookup past its end would fail deep inside torch (or assert on a GPU): say why here."""
    if positions.numel() and int(positions.max()) >= limit:
        raise ValueError(f"{what} {int(positions.max())} is beyond this model's table of {limit}; "
                         f"raise max_position_embeddings or shorten the input")


def cache_state(ctx: PositionContext, key: str) -> dict | None:
    """A dict kept on this forward's KV cache under ``key`` (None without a cache), for state that
    must follow one generation from step to step."""
    if ctx.cache is None:
        return None
    states = getattr(ctx.cache, _STATE_ATTRIBUTE, None)
    if states is None:
        states = {}
        setattr(ctx.cache, _STATE_ATTRIBUTE, states)
    return states.setdefault(key, {})


def register_positional(name: str, *, aliases: tuple[str, ...] = ()):
    """Class decorator: make a :class:`PositionalEncoding` subclass buildable by ``name`` (and by
    each alias, e.g. an old name that saved models and parameter files still use)."""

    def decorate(cls: type[PositionalEncoding]) -> type[PositionalEncoding]:
        if not (isinstance(cls, type) and issubclass(cls, PositionalEncoding)):
            raise TypeError(f"@register_positional({name!r}) needs a PositionalEncoding subclass, got {cls!r}")
        if cls.kind not in KINDS:
            raise ValueError(f"positional encoding {name!r} has kind {cls.kind!r}; use one of {KINDS}")
        for key in (name, *aliases):
            if key in _REGISTRY and _REGISTRY[key] is not cls:
                raise ValueError(f"a positional encoding named {key!r} is already registered "
                                 f"({_REGISTRY[key].__qualname__})")
        cls.name = name
        for key in (name, *aliases):
            _REGISTRY[key] = cls
        return cls

    return decorate


def known_positional(aliases: bool = True) -> list[str]:
    """Names :func:`build_positional` accepts, sorted; ``aliases=False`` leaves out the alternative
    names of a method (one name per method, e.g. to loop over every method once)."""
    return sorted(key for key, cls in _REGISTRY.items() if aliases or cls.name == key)


def positional_class(name: str) -> type[PositionalEncoding]:
    """The registered class for ``name``; ValueError listing the known names otherwise."""
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown positional encoding {name!r}; known: {', '.join(known_positional())}") from None


def _wrong_type(default: Any, value: Any) -> bool:
    if isinstance(default, bool) or default is None or isinstance(default, (list, tuple, dict)):
        return isinstance(default, bool) and not isinstance(value, bool)  # others: check_config
    if isinstance(default, numbers.Real):
        wanted = numbers.Integral if isinstance(default, numbers.Integral) else numbers.Real
        return isinstance(value, bool) or not isinstance(value, wanted)
    return not isinstance(value, type(default))


def validate_positional(config, name: str | None = None) -> None:
    """Check the method name (``config.positional_encoding`` unless given), its option names (a
    typo would otherwise be silently ignored) and values, and that the model's shape suits it;
    ValueError saying what to change otherwise."""
    name = config.positional_encoding if name is None else name
    cls = positional_class(name)
    given = getattr(config, "pe_options", None) or {}
    unknown = sorted(set(given) - set(cls.default_options))
    if unknown:
        allowed = ", ".join(sorted(cls.default_options)) or "none"
        raise ValueError(f"positional encoding {name!r} has no option(s) {unknown}; it takes: {allowed}")
    for key, value in given.items():
        if _wrong_type(cls.default_options[key], value):
            raise ValueError(f"positional encoding {name!r}: option {key}={value!r} should be like "
                             f"its default {cls.default_options[key]!r}")
    cls.check_config(config)


def build_positional(config, layer_idx: int, name: str | None = None) -> PositionalEncoding:
    """The positional encoding instance for one layer (``config.positional_encoding`` unless given)."""
    return positional_class(config.positional_encoding if name is None else name)(config, layer_idx)


def check_unshared(model: nn.Module) -> None:
    """Raise :class:`SharedParameterError` when two positional-encoding modules of ``model`` hold
    the same parameter or buffer (tying them by hand would silently couple the layers, and
    safetensors refuses shared tensors)."""
    owner: dict[tuple[str, int], str] = {}
    for module_name, module in model.named_modules():
        if not isinstance(module, PositionalEncoding):
            continue
        tensors = [*module.named_parameters(), *module.named_buffers()]
        for tensor_name, tensor in tensors:
            keys = {("object", id(tensor))}
            if tensor.device.type != "meta" and tensor.numel():
                keys.add(("storage", tensor.untyped_storage().data_ptr()))
            here = f"{module_name}.{tensor_name}"
            for key in keys:
                if key in owner and not owner[key].startswith(f"{module_name}."):
                    raise SharedParameterError(
                        f"{here} and {owner[key]} are the same tensor: every layer's positional encoding "
                        f"must own its parameters; build each with build_positional(config, layer_idx)")
                owner.setdefault(key, here)
