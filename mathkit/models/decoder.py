"""A small pre-norm decoder-only transformer for character-level arithmetic.

It is a transformers ``PreTrainedModel``: ``save_pretrained``/``from_pretrained`` write and read
safetensors, ``generate`` works (greedy, batched, left padding) and it uses the library's
``DynamicCache``, so generation reads each new token once instead of re-running the prompt.

Positions come from the attention mask (``cumsum - 1``), so a left-padded prompt gets the same
positions, hence the same logits, as the same prompt unpadded. Padded keys are masked with an
additive -inf mask; each token may always attend to itself, so no row is all -inf (no NaN).
``config.attention_window`` turns on sliding-window attention in every layer, in the same mask
(counted in positions, so padding does not shorten it); the KV cache keeps every key, so cached and
uncached generation see the same keys. ``output_hidden_states`` returns the per-layer hidden states
the way transformers' decoders do (for hidden-state distillation).

Positional encodings (:mod:`mathkit.models.positional`): each forward builds one
``PositionContext``; an absolute method is added once at the input by layer 0's instance, each layer
then calls its own instance's ``rotate`` (before the cache stores keys) and ``attention_bias`` (added
to SDPA's ``attn_mask``). Layers outside ``config.pe_layers`` get NoPE.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, GenerationMixin, PreTrainedModel
from transformers import initialization as init
from transformers.cache_utils import DynamicCache
from transformers.modeling_outputs import BaseModelOutputWithPast, CausalLMOutputWithPast

from mathkit.models.config import MODEL_SIZES, MathDecoderConfig, ModelConfigError
from mathkit.models.positional import (
    NoPositionalEncoding,
    PositionalEncoding,
    PositionContext,
    build_positional,
    check_unshared,
    positional_class,
)

# transformers renamed the KV-cache argument and output field from ``past_key_values`` to ``cache``
# (5.2x); hosted images may carry an older 5.x, so we accept both names and answer in the local one.
CACHE_FIELD = "cache" if "cache" in CausalLMOutputWithPast.__dataclass_fields__ else "past_key_values"


def _cache_argument(cache, kwargs: dict):
    legacy = kwargs.pop("past_key_values", None)
    return cache if cache is not None else legacy


def _norm(config: MathDecoderConfig) -> nn.Module:
    if config.norm == "layernorm":
        return nn.LayerNorm(config.hidden_size, eps=config.norm_eps)
    return nn.RMSNorm(config.hidden_size, eps=config.norm_eps)


class MathDecoderAttention(nn.Module):
    """Causal multi-head self-attention through ``F.scaled_dot_product_attention``."""

    def __init__(self, config: MathDecoderConfig, layer_idx: int):
        super().__init__()
        self.layer_idx = layer_idx
        self.num_heads = config.num_attention_heads
        self.head_dim = config.head_dim
        self.dropout = config.dropout
        self.qkv_proj = nn.Linear(config.hidden_size, 3 * config.hidden_size, bias=False)  # one GEMM
        self.o_proj = nn.Linear(config.hidden_size, config.hidden_size, bias=False)
        self.o_proj.is_residual_output = True

    def forward(self, hidden, *, positional: PositionalEncoding, ctx: PositionContext, mask):
        batch, length, _ = hidden.shape
        qkv = self.qkv_proj(hidden).view(batch, length, 3, self.num_heads, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, heads, T, head_dim)
        q, k = positional.rotate(q, k, ctx)
        if ctx.cache is not None:
            k, v = ctx.cache.update(k, v, self.layer_idx)
        bias = positional.attention_bias(ctx)
        if bias is not None:
            if mask is None and length > 1:  # the bias replaces is_causal, so mask the future here
                mask = torch.full((length, length), float("-inf"), device=q.device).triu_(1)
            mask = bias if mask is None else mask + bias
        if mask is not None:
            mask = mask.to(q.dtype)  # fp32 mask, bf16 queries under autocast
        # is_causal only when nothing else masks: a full causal square without cache or padding.
        is_causal = mask is None and length > 1
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, is_causal=is_causal,
            dropout_p=self.dropout if self.training else 0.0)
        return self.o_proj(out.transpose(1, 2).reshape(batch, length, -1))


class MathDecoderMLP(nn.Module):
    """SwiGLU (gate and up projections fused into one GEMM) or a plain GELU MLP."""

    def __init__(self, config: MathDecoderConfig):
        super().__init__()
        self.gated = config.mlp == "swiglu"
        width = 2 * config.intermediate_size if self.gated else config.intermediate_size
        self.up_proj = nn.Linear(config.hidden_size, width, bias=False)
        self.down_proj = nn.Linear(config.intermediate_size, config.hidden_size, bias=False)
        self.down_proj.is_residual_output = True

    def forward(self, hidden):
        up = self.up_proj(hidden)
        if self.gated:
            gate, up = up.chunk(2, dim=-1)
            return self.down_proj(F.silu(gate) * up)
        return self.down_proj(F.gelu(up))


class MathDecoderLayer(nn.Module):
    """Pre-norm block: x + attn(norm(x)), then x + mlp(norm(x)); owns its positional encoding."""

    def __init__(self, config: MathDecoderConfig, layer_idx: int):
        super().__init__()
        if layer_idx in config.positional_layers():
            self.positional = build_positional(config, layer_idx)
        else:
            self.positional = NoPositionalEncoding(config, layer_idx)
        self.attn_norm = _norm(config)
        self.attn = MathDecoderAttention(config, layer_idx)
        self.mlp_norm = _norm(config)
        self.mlp = MathDecoderMLP(config)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, hidden, *, ctx: PositionContext, mask):
        hidden = hidden + self.dropout(self.attn(
            self.attn_norm(hidden), positional=self.positional, ctx=ctx, mask=mask))
        return hidden + self.dropout(self.mlp(self.mlp_norm(hidden)))


class MathDecoderPreTrainedModel(PreTrainedModel):
    config_class = MathDecoderConfig
    config: MathDecoderConfig
    base_model_prefix = "model"
    main_input_name = "input_ids"
    _no_split_modules = ["MathDecoderLayer"]
    _supports_sdpa = True

    def _init_weights(self, module):
        # GPT-2 style: the projections that write into the residual stream start smaller with
        # depth, so the stream does not grow layer by layer.
        if isinstance(module, PositionalEncoding):
            module.reset_parameters()  # its own nn.Parameters; its Linear/Embedding come next
        elif isinstance(module, nn.Linear) and getattr(module, "is_residual_output", False):
            std = self.config.initializer_range / (2 * self.config.num_hidden_layers) ** 0.5
            init.normal_(module.weight, mean=0.0, std=std)  # skips weights already loaded
        else:
            super()._init_weights(module)

    def save_pretrained(self, *args, **kwargs):
        check_unshared(self)  # before anything is written
        return super().save_pretrained(*args, **kwargs)


def _positions_and_mask(attention_mask: torch.Tensor | None, batch: int, length: int, past: int,
                        device: torch.device, window: int | None = None):
    """Key positions (B, S) from the 2D mask, the additive mask (B, 1, T, S) or None, and the 2D
    padding mask (None when nothing is padded).

    None means "plain causal" and lets SDPA use its fused causal kernel: no padding, no window that
    cuts anything (``window`` >= S keys), and either no cache (a full causal square) or one new token
    (it sees every cached key). A window counts positions, not slots: a query at position p sees the
    keys at positions p - window + 1 .. p, so left padding gives the same result as no padding.
    """
    total = past + length
    windowed = window is not None and window < total
    if attention_mask is not None:
        if attention_mask.dim() != 2 or attention_mask.shape != (batch, total):
            raise ValueError(f"attention_mask must be 2D of shape (batch, past + new) = ({batch}, {total}), "
                             f"got {tuple(attention_mask.shape)}")
        keep = attention_mask.bool()
        # torch.export (the ONNX exporter) refuses a branch on tensor values: an exported graph
        # always takes the masked path, which gives the same result with or without padding
        if not torch.compiler.is_exporting() and bool(keep.all()):
            attention_mask = None
    if attention_mask is None:
        key_positions = torch.arange(total, device=device).expand(batch, total)
        if not windowed and (past == 0 or length == 1):
            return key_positions, None, None
        keep = torch.ones(batch, total, dtype=torch.bool, device=device)
    else:
        key_positions = (keep.long().cumsum(-1) - 1).clamp_min(0)
    query_index = torch.arange(past, total, device=device)[:, None]   # absolute slot of each query
    key_index = torch.arange(total, device=device)[None, :]
    allowed = (key_index <= query_index)[None] & keep[:, None, :]      # (B, T, S)
    if windowed:
        distance = key_positions[:, past:, None] - key_positions[:, None, :]
        allowed &= distance < window
    allowed |= key_index == query_index                                 # a padded token sees itself
    mask = torch.zeros(allowed.shape, device=device).masked_fill_(~allowed, float("-inf"))
    return key_positions, mask[:, None], attention_mask


def _select_hidden_states(states: list[torch.Tensor], wanted) -> tuple[torch.Tensor, ...]:
    """``output_hidden_states`` as transformers' own models read it: True for all N + 1 states,
    or an index (or list of indices, negative ones from the end) for only those, in layer order."""
    if isinstance(wanted, bool):
        return tuple(states)
    indices = [wanted] if isinstance(wanted, int) else list(wanted)
    n = len(states)
    chosen = {i % n for i in indices if -n <= i < n}
    return tuple(state for i, state in enumerate(states) if i in chosen)


class MathDecoderModel(MathDecoderPreTrainedModel):
    """Embeddings, the decoder layers and a final norm; returns hidden states."""

    def __init__(self, config: MathDecoderConfig):
        super().__init__(config)
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size, config.pad_token_id)
        self.dropout = nn.Dropout(config.dropout)
        self.layers = nn.ModuleList(MathDecoderLayer(config, i) for i in range(config.num_hidden_layers))
        self.norm = _norm(config)
        self.post_init()

    def get_input_embeddings(self):
        return self.embed_tokens

    def set_input_embeddings(self, value):
        self.embed_tokens = value

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, cache=None,
                inputs_embeds=None, use_cache=None, output_hidden_states=None,
                **kwargs) -> BaseModelOutputWithPast:
        """``output_hidden_states`` (default ``config.output_hidden_states``): also return
        ``hidden_states``, as transformers' decoders do: the input of layer 0 (embeddings, with an
        absolute positional encoding added), the output of each layer, and last the final-norm
        output (``last_hidden_state``), N + 1 tensors in all; an index or list of indices keeps
        only those."""
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids or inputs_embeds")
        cache = _cache_argument(cache, kwargs)
        hidden = self.embed_tokens(input_ids) if inputs_embeds is None else inputs_embeds
        batch, length = hidden.shape[:2]
        if use_cache is None:
            use_cache = self.config.use_cache and not self.training
        if use_cache and cache is None:
            cache = DynamicCache(config=self.config)
        if not use_cache:
            cache = None
        past = cache.get_seq_length() if cache is not None else 0
        key_positions, mask, padding = _positions_and_mask(attention_mask, batch, length, past, hidden.device,
                                                           self.config.attention_window)
        if position_ids is None:
            position_ids = key_positions[:, past:]
        ctx = PositionContext(position_ids=position_ids, key_positions=key_positions, input_ids=input_ids,
                              attention_mask=padding, past_length=past, cache=cache)
        if output_hidden_states is None:
            output_hidden_states = self.config.output_hidden_states
        hidden = self.dropout(self.layers[0].positional.embed(hidden, ctx))  # absolute: once, here
        states = [hidden] if output_hidden_states else None  # kept only when asked (memory)
        for layer in self.layers:
            hidden = layer(hidden, ctx=ctx, mask=mask)
            if states is not None:
                states.append(hidden)
        hidden = self.norm(hidden)
        if states is not None:
            states[-1] = hidden  # the last state is the normed one, as in transformers' decoders
            states = _select_hidden_states(states, output_hidden_states)
        return BaseModelOutputWithPast(last_hidden_state=hidden, hidden_states=states, **{CACHE_FIELD: cache})


class MathDecoderForCausalLM(MathDecoderPreTrainedModel, GenerationMixin):
    """The decoder with a (tied) language-model head; loss on labels != -100, shifted inside."""

    _tied_weights_keys = {"lm_head.weight": "model.embed_tokens.weight"}

    def __init__(self, config: MathDecoderConfig):
        super().__init__(config)
        self.model = MathDecoderModel(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    def get_input_embeddings(self):
        return self.model.embed_tokens

    def set_input_embeddings(self, value):
        self.model.embed_tokens = value

    def get_output_embeddings(self):
        return self.lm_head

    def set_output_embeddings(self, value):
        self.lm_head = value

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, cache=None,
                inputs_embeds=None, labels=None, use_cache=None, logits_to_keep: int = 0,
                output_hidden_states=None, return_dict=None, **kwargs) -> CausalLMOutputWithPast:
        cache = _cache_argument(cache, kwargs)
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                         cache=cache, inputs_embeds=inputs_embeds, use_cache=use_cache,
                         output_hidden_states=output_hidden_states)
        hidden = out.last_hidden_state
        if logits_to_keep:
            hidden = hidden[:, -logits_to_keep:]
        logits = self.lm_head(hidden)
        loss = None
        if labels is not None:
            loss = self.loss_function(logits=logits, labels=labels, vocab_size=self.config.vocab_size, **kwargs)
        return CausalLMOutputWithPast(loss=loss, logits=logits, hidden_states=out.hidden_states,
                                      **{CACHE_FIELD: getattr(out, CACHE_FIELD)})


DIGITS = tuple("0123456789")


def digit_token_ids(tokenizer) -> list[int]:
    """Ids of the single-character tokens "0".."9"; ModelConfigError when the tokenizer has none."""
    ids = tokenizer.convert_tokens_to_ids(list(DIGITS))
    if any(i is None or i == tokenizer.unk_token_id for i in ids):
        raise ModelConfigError("this tokenizer has no single-character digit tokens; pass "
                               "pe_options={'digit_token_ids': [...]} explicitly")
    return list(ids)


def build_decoder(size: str, tokenizer, positional_encoding: str = "rope",
                  max_position_embeddings: int = 128, *, pe_options: dict | None = None,
                  pe_layers: list[int] | None = None, **overrides) -> MathDecoderForCausalLM:
    """A freshly initialised decoder of a named size (see ``MODEL_SIZES``) for ``tokenizer``:
    :func:`decoder_config`'s model. Seed before calling."""
    return MathDecoderForCausalLM(decoder_config(size, tokenizer, positional_encoding, max_position_embeddings,
                                                 pe_options=pe_options, pe_layers=pe_layers, **overrides))


def decoder_config(size: str, tokenizer, positional_encoding: str = "rope", max_position_embeddings: int = 128, *,
                   pe_options: dict | None = None, pe_layers: list[int] | None = None,
                   **overrides) -> MathDecoderConfig:
    """The config of a decoder of a named size (see ``MODEL_SIZES``) for ``tokenizer``, without
    its weights (what the memory estimate reads before a model is built).

    Vocabulary size and pad/bos/eos ids come from the tokenizer, and so do ``digit_token_ids``
    for a positional encoding that takes that option (Abacus, math_adaptive) when not given.
    ``pe_options``/``pe_layers`` configure the positional encoding; ``overrides`` set any other
    config field (``dropout``, ``mlp``, or a shape).
    """
    if size not in MODEL_SIZES:
        raise ModelConfigError(f"unknown model size {size!r}; use one of {', '.join(MODEL_SIZES)}")
    pe_options = dict(pe_options or {})
    try:
        takes_digits = "digit_token_ids" in positional_class(positional_encoding).default_options
    except ValueError as err:
        raise ModelConfigError(str(err)) from None
    if takes_digits and pe_options.get("digit_token_ids") is None:
        pe_options["digit_token_ids"] = digit_token_ids(tokenizer)
    fields = {
        **MODEL_SIZES[size],
        "vocab_size": len(tokenizer),
        "pad_token_id": tokenizer.pad_token_id,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "positional_encoding": positional_encoding,
        "max_position_embeddings": max_position_embeddings,
        "pe_options": pe_options,
        "pe_layers": None if pe_layers is None else list(pe_layers),
    }
    fields.update(overrides)
    return MathDecoderConfig(**fields)


# So that AutoConfig / AutoModelForCausalLM.from_pretrained(dir) read a saved mathkit_decoder.
AutoConfig.register(MathDecoderConfig.model_type, MathDecoderConfig, exist_ok=True)
AutoModel.register(MathDecoderConfig, MathDecoderModel, exist_ok=True)
AutoModelForCausalLM.register(MathDecoderConfig, MathDecoderForCausalLM, exist_ok=True)
