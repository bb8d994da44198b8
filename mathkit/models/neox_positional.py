"""Put any mathkit positional encoding into a GPT-NeoX (Pythia) model in place of its rotary one.

:func:`swap_positional` turns a ``GPTNeoXForCausalLM`` into the same model whose attention layers
take their positions from a registered :class:`~mathkit.models.positional.PositionalEncoding`
(one instance per layer, under ``<layer>.attention.positional``); the model-level rotary module
still runs but its cos/sin are ignored. The three hooks meet the model here:

- ``embed``: once, on the token embeddings (or the caller's ``inputs_embeds``), by layer 0's instance;
- ``rotate``: on queries and keys before the KV-cache update. Pythia turns only the first
  ``rotary_pct`` of each head (a quarter); the encoding gets exactly those channels (its
  ``head_dim`` is that width) and the rest stay position-free, as the pretrained weights expect.
  So ``rope`` with Pythia's theta reproduces the original model, and any other rotary method
  replaces RoPE on the same channels;
- ``attention_bias``: added to the causal/padding mask as one float mask, which the eager and SDPA
  attention paths take as is (flash and flex attention cannot take an arbitrary bias: refused).

Positions come from the 2D attention mask, so left-padded prompts see the positions unpadded ones
do. :func:`mathkit.models.save` writes the choice to ``pe_config.json`` and
:func:`mathkit.models.load` applies it again (:func:`apply_saved_positional`) to a saved model or
adapter folder.
:func:`attach_lora_with_pe` puts LoRA on the attention projections and trains the encodings' own
parameters through peft's ``modules_to_save``, which (unlike flipping ``requires_grad``) saves them
in the adapter and restores them on load.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import GPTNeoXForCausalLM
from transformers.cache_utils import DynamicCache
from transformers.models.gpt_neox.modeling_gpt_neox import (
    GPTNeoXAttention,
    GPTNeoXModel,
    eager_attention_forward,
)
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.utils.deprecation import deprecate_kwarg
from transformers.utils.generic import merge_with_config_defaults

from mathkit.errors import ParamsError
from mathkit.models.decoder import digit_token_ids
from mathkit.models.io import PE_CONFIG, ModelNotFoundError, read_side_config, unwrap
from mathkit.models.positional import PositionContext, positional_class, validate_positional

log = logging.getLogger(__name__)

ARCHITECTURE = "gpt_neox"
PE_MODULE = "positional"                       # attribute of each attention layer holding its encoding
ATTENTION_PROJECTIONS = ("query_key_value", "dense")
PE_INTERNALS = rf".*\.{PE_MODULE}\..*"         # LoRA never goes inside an encoding (it is trained whole)


@dataclass
class NeoXPositionalSettings:
    """What an encoding is built from: the fields its constructor reads, from a GPTNeoXConfig.

    ``head_dim`` is the width ``rotate`` receives: the rotary channels of a head.
    """

    positional_encoding: str
    pe_options: dict
    pe_layers: list[int]
    hidden_size: int
    num_attention_heads: int
    max_position_embeddings: int
    head_dim: int
    vocab_size: int

    def pe_config(self) -> dict:
        """The content of ``pe_config.json``."""
        cls = positional_class(self.positional_encoding)
        return {"architecture": ARCHITECTURE, "positional_encoding": self.positional_encoding,
                "kind": cls.kind, "pe_options": {**cls.default_options, **self.pe_options},
                "pe_layers": list(self.pe_layers)}


def _core(model) -> GPTNeoXModel:
    """The ``GPTNeoXModel`` of a (not yet peft-wrapped) causal LM; ParamsError otherwise."""
    if hasattr(model, "peft_config"):
        raise ParamsError("swap the positional encoding before attaching LoRA: call swap_positional on "
                          "the plain GPTNeoXForCausalLM, then attach_lora_with_pe")
    if not isinstance(model, GPTNeoXForCausalLM):
        raise ParamsError(f"swap_positional works on GPT-NeoX models (Pythia: GPTNeoXForCausalLM), got "
                          f"{type(model).__name__}; our own decoder takes positional_encoding in its config")
    return model.gpt_neox


def _default_layers(kind: str, n_layers: int) -> list[int]:
    """Absolute encodings are added once, at the input (layer 0's instance); the others act in every layer."""
    return [0] if kind == "absolute" else list(range(n_layers))


def _settings(config, name: str, pe_options, pe_layers, tokenizer) -> NeoXPositionalSettings:
    try:
        cls = positional_class(name)
    except ValueError as err:
        raise ParamsError(str(err)) from None
    options = dict(pe_options or {})
    if "digit_token_ids" in cls.default_options and options.get("digit_token_ids") is None:
        if tokenizer is None:
            raise ParamsError(f"positional encoding {name!r} needs the digit token ids: pass tokenizer= "
                              "or pe_options={'digit_token_ids': [...]}")
        options["digit_token_ids"] = digit_token_ids(tokenizer)
    n_layers = config.num_hidden_layers
    layers = _default_layers(cls.kind, n_layers) if pe_layers is None else sorted(set(pe_layers))
    if any(not isinstance(i, int) or not 0 <= i < n_layers for i in layers):
        raise ParamsError(f"pe_layers {pe_layers} must be layer indices in [0, {n_layers})")
    if cls.kind == "absolute" and 0 not in layers:
        raise ParamsError(f"{name!r} is added once at the input by layer 0's instance: pe_layers must "
                          f"include 0 (or be None), got {pe_layers}")
    head_size = config.hidden_size // config.num_attention_heads
    settings = NeoXPositionalSettings(
        positional_encoding=name, pe_options=options, pe_layers=layers, hidden_size=config.hidden_size,
        num_attention_heads=config.num_attention_heads,
        max_position_embeddings=config.max_position_embeddings,
        head_dim=int(head_size * config.rope_parameters.get("partial_rotary_factor", 1.0)),
        vocab_size=config.vocab_size)
    try:
        validate_positional(settings)
    except ValueError as err:
        raise ParamsError(str(err)) from None
    return settings


def swap_positional(model, name: str, pe_options: dict | None = None,
                    pe_layers: list[int] | None = None, *, tokenizer=None):
    """Replace ``model``'s rotary embedding by the encoding ``name`` (in place; returns ``model``).

    ``pe_layers``: the layers that get an instance (the others get no positions at all, NoPE);
    None means every layer, or only the input for an absolute encoding. ``tokenizer`` fills
    ``digit_token_ids`` for encodings that need it. Calling it again replaces the encoding.
    """
    core = _core(model)
    settings = _settings(core.config, name, pe_options, pe_layers, tokenizer)
    cls = positional_class(name)
    # The classes are swapped per instance (not patched globally) so that parameter names, and
    # with them pretrained checkpoints and LoRA target names, stay those of GPT-NeoX.
    core.__class__ = NeoXPositionalModel
    for i, layer in enumerate(core.layers):
        layer.attention.__class__ = NeoXPositionalAttention
        device = layer.attention.query_key_value.weight.device  # layers may sit on several GPUs
        encoding = _new_encoding(core, cls, settings, i).to(device) if i in settings.pe_layers else None
        layer.attention.register_module(PE_MODULE, encoding)
    core.positional_settings = settings
    log.info("GPT-NeoX: %s in layers %s (rotary part of each head: %d of %d channels)", name,
             settings.pe_layers, settings.head_dim, settings.hidden_size // settings.num_attention_heads)
    return model


def _new_encoding(core: GPTNeoXModel, cls, settings: NeoXPositionalSettings, layer_idx: int):
    """One layer's encoding, initialised as the host model initialises its own weights (normal with
    its ``initializer_range``: a pretrained model starts close to NoPE, not under N(0, 1) noise)."""
    encoding = cls(settings, layer_idx)
    encoding.apply(core._init_weights)
    encoding.reset_parameters()
    return encoding.train(core.training)  # a model in eval mode gets an encoding in eval mode


def positional_settings(model) -> NeoXPositionalSettings | None:
    """The settings of a swapped model (also inside a peft wrapper), None for an unswapped one."""
    inner = unwrap(model)
    core = getattr(inner, "gpt_neox", None)
    return getattr(core, "positional_settings", None)


def position_context(attention_mask, position_ids, input_ids, batch: int, length: int, cache,
                     device) -> PositionContext:
    """The positions of one forward: from the 2D mask (left padding shifts them), else the given
    ``position_ids`` (no cache), else ``past .. past + length - 1``."""
    past = cache.get_seq_length() if cache is not None else 0
    total = past + length
    if attention_mask is not None:
        if attention_mask.dim() != 2 or tuple(attention_mask.shape) != (batch, total):
            raise ValueError(f"a swapped GPT-NeoX needs a 2D attention_mask of shape (batch, past + new) = "
                             f"({batch}, {total}), got {tuple(attention_mask.shape)}")
        key_positions = (attention_mask.long().cumsum(-1) - 1).clamp_min(0)
    elif position_ids is not None and past == 0:
        key_positions = position_ids.to(device).long().expand(batch, length)
    else:
        key_positions = torch.arange(total, device=device).expand(batch, total)
    return PositionContext(position_ids=key_positions[:, past:], key_positions=key_positions,
                           input_ids=input_ids, attention_mask=attention_mask, past_length=past,
                           cache=cache)


class NeoXPositionalModel(GPTNeoXModel):
    """GPTNeoXModel that builds the PositionContext, adds an absolute encoding at the input and
    hands the context to every attention layer."""

    @merge_with_config_defaults
    @deprecate_kwarg("past_key_values", "5.40.0", new_name="cache")
    def forward(self, input_ids=None, attention_mask=None, position_ids=None, inputs_embeds=None,
                cache=None, use_cache=None, **kwargs):
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids or inputs_embeds")
        if inputs_embeds is None:
            inputs_embeds = self.embed_in(input_ids)
        if use_cache and cache is None:  # made here, not in the parent, so the context holds it
            cache = DynamicCache(config=self.config)
        batch, length = inputs_embeds.shape[:2]
        context = position_context(attention_mask, position_ids, input_ids, batch, length, cache,
                                   inputs_embeds.device)
        first = getattr(self.layers[0].attention, PE_MODULE)
        if first is not None:
            inputs_embeds = first.embed(inputs_embeds, context).to(inputs_embeds.dtype)
        return super().forward(inputs_embeds=inputs_embeds, attention_mask=attention_mask,
                               position_ids=position_ids, cache=cache, use_cache=use_cache,
                               position_context=context, **kwargs)


def biased_mask(mask: torch.Tensor | None, bias: torch.Tensor, query: torch.Tensor,
                key: torch.Tensor, past: int) -> torch.Tensor:
    """One additive float mask (query dtype): the model's mask (None = plain causal, bool, or
    float) plus ``bias``; masked entries stay at the dtype's minimum (finite: no NaN rows)."""
    length, keys = query.shape[-2], key.shape[-2]
    bias = bias.float()
    if bias.shape[-1] < keys:  # a static cache has more slots than tokens; the extra ones are masked
        bias = torch.nn.functional.pad(bias, (0, keys - bias.shape[-1]))
    if mask is None:
        allowed = (torch.arange(keys, device=query.device)[None, :]
                   <= torch.arange(past, past + length, device=query.device)[:, None])
        base = torch.zeros(allowed.shape, device=query.device).masked_fill_(~allowed, float("-inf"))
    elif mask.dtype == torch.bool:
        base = torch.zeros(mask.shape, device=query.device).masked_fill_(~mask, float("-inf"))
    else:
        base = mask.float()
    low = torch.finfo(query.dtype).min
    return (base[..., :keys] + bias[..., :keys]).clamp_min(low).to(query.dtype)


class NeoXPositionalAttention(GPTNeoXAttention):
    """GPTNeoXAttention with positions from ``self.positional`` (None: no positions) instead of
    the model's rotary cos/sin; otherwise the parent's forward, line for line."""

    def forward(self, hidden_states, attention_mask, layer_past=None, position_embeddings=None,
                position_context: PositionContext | None = None, **kwargs):
        if position_context is None:
            raise RuntimeError("NeoXPositionalAttention needs the PositionContext that the swapped "
                               "GPTNeoXModel passes; call the model, not the layer")
        input_shape = hidden_states.shape[:-1]
        qkv = self.query_key_value(hidden_states).view(*input_shape, -1, 3 * self.head_size).transpose(1, 2)
        query, key, value = qkv.chunk(3, dim=-1)

        encoding, bias = getattr(self, PE_MODULE), None
        if encoding is not None:
            query, key = self._rotate(encoding, query, key, position_context)
            bias = encoding.attention_bias(position_context)
        if layer_past is not None:
            key, value = layer_past.update(key, value, self.layer_idx)
        implementation = self.config._attn_implementation
        if bias is not None:
            if implementation not in ("eager", "sdpa"):
                raise ValueError(f"{type(encoding).__name__} adds an attention bias, which "
                                 f"{implementation!r} attention cannot take: load the model with "
                                 "attn_implementation='sdpa' or 'eager'")
            attention_mask = biased_mask(attention_mask, bias, query, key, position_context.past_length)

        interface = ALL_ATTENTION_FUNCTIONS.get_interface(implementation, eager_attention_forward)
        output, weights = interface(self, query, key, value, attention_mask, scaling=self.scaling,
                                    dropout=0.0 if not self.training else self.attention_dropout, **kwargs)
        output = self.dense(output.reshape(*input_shape, -1).contiguous())
        return output, weights

    def _rotate(self, encoding, query, key, context):
        """The encoding's ``rotate`` on the rotary channels; the other channels pass unchanged."""
        n = self.rotary_ndims
        q_rot, k_rot = encoding.rotate(query[..., :n], key[..., :n], context)
        if n == query.shape[-1]:
            return q_rot.to(query.dtype), k_rot.to(key.dtype)
        return (torch.cat([q_rot.to(query.dtype), query[..., n:]], dim=-1),
                torch.cat([k_rot.to(key.dtype), key[..., n:]], dim=-1))


def attach_lora_with_pe(model, r: int = 32, alpha: float = 64, dropout: float = 0.1, *,
                        gradient_checkpointing: bool = False):
    """LoRA on the attention projections (``query_key_value``, ``dense``) of a swapped model, with
    every encoding's own parameters trained too (peft ``modules_to_save``: saved in the adapter)."""
    from mathkit.training.lora import attach_lora, build_lora_config

    if positional_settings(model) is None:
        raise ParamsError("attach_lora_with_pe needs a swapped model: call swap_positional first")
    config = build_lora_config(r=r, alpha=alpha, dropout=dropout, target_modules=ATTENTION_PROJECTIONS)
    config = dataclasses.replace(config, modules_to_save=[PE_MODULE], exclude_modules=PE_INTERNALS)
    return attach_lora(model, config, gradient_checkpointing=gradient_checkpointing)


def _encoding_state(folder: Path) -> dict[str, torch.Tensor]:
    """The encodings' tensors in a full model's safetensors files (from_pretrained drops them)."""
    from safetensors import safe_open

    marker = f".attention.{PE_MODULE}."
    state = {}
    for file in sorted(folder.glob("*.safetensors")):
        if file.name.startswith("adapter_model"):
            continue
        with safe_open(str(file), framework="pt") as f:
            state.update({k: f.get_tensor(k) for k in f.keys() if marker in k})
    return state


def saved_swap(folder: str | Path) -> bool:
    """True when ``folder`` holds a GPT-NeoX model or adapter saved with a swapped encoding."""
    config = read_side_config(folder, PE_CONFIG)
    return config is not None and config.get("architecture") == ARCHITECTURE


def apply_saved_positional(model, folder: str | Path, *, weights: bool = True):
    """Re-apply the swap recorded in ``folder``'s ``pe_config.json`` to a freshly loaded model;
    with ``weights``, also restore the encodings' parameters from the folder's safetensors."""
    folder = Path(folder)
    config = read_side_config(folder, PE_CONFIG)
    if config is None or config.get("architecture") != ARCHITECTURE:
        raise ModelNotFoundError(f"{folder} holds no GPT-NeoX {PE_CONFIG}.json: it was not saved by "
                                 "mathkit.models.save")
    swap_positional(model, config["positional_encoding"], config["pe_options"], config["pe_layers"])
    if weights:
        expected = {k for k in model.state_dict() if f".attention.{PE_MODULE}." in k}
        state = _encoding_state(folder)
        if set(state) != expected:
            raise ModelNotFoundError(f"{folder}: the saved encoding tensors {sorted(state)} do not match "
                                     f"the model's {sorted(expected)}")
        if state:  # the loader listed these as UNEXPECTED: they belong to the encodings, restored here
            model.load_state_dict(state, strict=False)
            log.info("restored %d positional-encoding tensors from %s", len(state), folder)
    return model
