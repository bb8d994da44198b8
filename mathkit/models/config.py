"""Configuration of the small decoder, as a transformers config so it saves to ``config.json``.

transformers 5 configs are strict dataclasses: fields below are type-checked on creation, and
``__post_init__`` checks that the shape makes sense before any weight is allocated.
"""

from __future__ import annotations

import logging
from typing import Any

from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig

from mathkit.errors import ParamsError
from mathkit.models import positional

log = logging.getLogger(__name__)

NORMS = ("rmsnorm", "layernorm")
MLPS = ("swiglu", "gelu")


class ModelConfigError(ParamsError, ValueError):
    """A model configuration value is invalid (a ValueError too, as transformers raises)."""


@strict
class MathDecoderConfig(PreTrainedConfig):
    """Sizes and options of :class:`~mathkit.models.decoder.MathDecoderForCausalLM`.

    ``positional_encoding`` names a method registered in :mod:`mathkit.models.positional`;
    ``pe_options`` are that method's options (e.g. ``{"rope_theta": 10000.0}``); ``pe_layers``
    lists the layers that get it (the others get NoPE). None means every layer. An absolute method
    is added once, at the input, by layer 0: ``pe_layers`` then only says whether (0 listed or None).

    ``attention_window``: sliding-window attention in every layer; a token attends to itself and the
    ``attention_window - 1`` tokens before it (counted in positions, so padding does not use up the
    window). None is full causal attention.
    """

    model_type = "mathkit_decoder"

    vocab_size: int = 20
    hidden_size: int = 128
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    intermediate_size: int = 512
    max_position_embeddings: int = 128
    dropout: float = 0.0
    norm: str = "rmsnorm"
    norm_eps: float = 1e-5
    mlp: str = "swiglu"
    initializer_range: float = 0.02
    positional_encoding: str = "rope"
    pe_options: dict | None = None
    pe_layers: list[int] | None = None
    attention_window: int | None = None
    pad_token_id: int | None = None
    bos_token_id: int | None = None
    eos_token_id: int | None = None
    tie_word_embeddings: bool = True
    use_cache: bool = True

    def __post_init__(self, **kwargs: Any):
        self.pe_options = dict(self.pe_options or {})
        self._check()
        super().__post_init__(**kwargs)

    def _check(self) -> None:
        for field in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                      "intermediate_size", "max_position_embeddings"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ModelConfigError(f"{field} must be a positive integer, got {value!r}")
        if self.hidden_size % self.num_attention_heads:
            lower = self.hidden_size - self.hidden_size % self.num_attention_heads
            options = [h for h in (lower, lower + self.num_attention_heads) if h > 0]
            raise ModelConfigError(
                f"hidden_size ({self.hidden_size}) must be divisible by num_attention_heads "
                f"({self.num_attention_heads}); e.g. hidden_size {' or '.join(map(str, options))}")
        if not 0.0 <= float(self.dropout) < 1.0:
            raise ModelConfigError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.norm not in NORMS:
            raise ModelConfigError(f"unknown norm {self.norm!r}; use one of {', '.join(NORMS)}")
        if self.mlp not in MLPS:
            raise ModelConfigError(f"unknown mlp {self.mlp!r}; use one of {', '.join(MLPS)}")
        try:
            positional.validate_positional(self)
        except ValueError as err:
            raise ModelConfigError(str(err)) from None
        self._check_pe_layers()
        window = self.attention_window
        if window is not None and (isinstance(window, bool) or not isinstance(window, int) or window < 1):
            raise ModelConfigError(f"attention_window must be a positive integer (tokens a query sees, itself "
                                   f"included) or None for full causal attention, got {window!r}")
        for field in ("pad_token_id", "bos_token_id", "eos_token_id"):
            value = getattr(self, field)
            if value is not None and not 0 <= value < self.vocab_size:
                raise ModelConfigError(f"{field}={value} is outside the vocabulary (size {self.vocab_size})")

    def _check_pe_layers(self) -> None:
        layers = self.pe_layers
        if layers is None:
            return
        n = self.num_hidden_layers
        if not isinstance(layers, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in layers):
            raise ModelConfigError(f"pe_layers must be a list of layer indices or None, got {layers!r}")
        if any(not 0 <= i < n for i in layers):
            raise ModelConfigError(f"pe_layers {layers} has indices outside 0..{n - 1} ({n} layers)")
        if len(set(layers)) != len(layers):
            raise ModelConfigError(f"pe_layers {layers} repeats a layer; list each layer once")
        if positional.positional_class(self.positional_encoding).kind == "absolute" and set(layers) - {0}:
            log.warning("%r is absolute: it is added once, at the input, when pe_layers lists layer 0 "
                        "(here %s: %s); other layers never add it again", self.positional_encoding, layers,
                        "added" if 0 in layers else "not added")
        self.pe_layers = sorted(layers)

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    def positional_layers(self) -> list[int]:
        """The layers whose positional encoding is the configured method (the others get NoPE).
        An absolute method lives in layer 0 alone (it is added once, at the input), when
        ``pe_layers`` is None or lists 0."""
        layers = list(range(self.num_hidden_layers)) if self.pe_layers is None else list(self.pe_layers)
        if positional.positional_class(self.positional_encoding).kind == "absolute":
            return [0] if 0 in layers else []
        return layers

    def pe_config(self) -> dict[str, Any]:
        """The positional-encoding part of the config, as written to ``pe_config.json`` (with
        ``pe_layers`` only when the method is not on its default layers)."""
        cls = positional.positional_class(self.positional_encoding)
        config = {"positional_encoding": self.positional_encoding, "kind": cls.kind,
                  "pe_options": {**cls.default_options, **self.pe_options}}
        if self.pe_layers is not None:
            config["pe_layers"] = list(self.pe_layers)
        return config


# Shapes for the three sizes of the seed project. Its table (4x256 / 6x512 / 8x512 widths) would
# give ~2M / ~13M / ~25M parameters, not the ~1M / ~5M / ~10M it names; we keep its depths and the
# names' parameter budgets and narrow the widths (SwiGLU counts 3 * hidden * intermediate per MLP).
MODEL_SIZES: dict[str, dict[str, int]] = {
    "small": {"hidden_size": 128, "num_hidden_layers": 4, "num_attention_heads": 4, "intermediate_size": 512},
    "medium": {"hidden_size": 256, "num_hidden_layers": 6, "num_attention_heads": 8, "intermediate_size": 768},
    "large": {"hidden_size": 320, "num_hidden_layers": 8, "num_attention_heads": 8, "intermediate_size": 896},
}
TARGET_PARAMETERS = {"small": 1_000_000, "medium": 5_000_000, "large": 10_000_000}
