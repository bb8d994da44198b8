"""Shapes of the models mathkit names, and parameter counts computed from them.

The memory estimate (:mod:`mathkit.models.memory_estimate`) needs a model's shape before the model
is loaded, or where it cannot be (a 7B model on this CPU, a gated hub model offline). An
:class:`Architecture` holds the numbers of a model's ``config.json`` that memory depends on, and
knows its linear layers, hence its parameters: which are matrices bitsandbytes would quantize,
which stay in full precision (embeddings, norms, biases), and which LoRA can target.

:func:`architecture` takes a known name (:data:`KNOWN`, with the published ``config.json`` values
written below; no network), an offline alias or random stand-in of :mod:`mathkit.models.registry`,
a saved model folder, a transformers config (Llama/Mistral, Gemma-3 text or vision-language,
GPT-NeoX, the small decoder's :class:`~mathkit.models.config.MathDecoderConfig`) or a model.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from mathkit.errors import ParamsError

FAMILIES = ("llama", "gemma3", "gpt_neox", "mathkit_decoder")
POSITIONAL_KINDS = ("rotary", "absolute", "bias", "none")


@dataclass(frozen=True)
class Linear:
    """One linear layer of a decoder block. ``reads`` names the tensor it takes as input (layers
    that read the same tensor share it: q/k/v read ``attn_in``), which decides what training keeps
    for the backward pass."""

    name: str
    inputs: int
    outputs: int
    part: str  # "attention" or "mlp"
    reads: str  # "attn_in", "attn_out", "mlp_in" or "mlp_mid"
    bias: bool = False

    @property
    def parameters(self) -> int:
        return self.inputs * self.outputs + (self.outputs if self.bias else 0)


@dataclass(frozen=True)
class Architecture:
    """What memory depends on in a decoder-only model (one ``config.json``'s worth of numbers).

    ``family`` fixes the block's layout: ``llama`` (Llama, Mistral, SmolLM2, TinyLlama: separate
    q/k/v/o, SwiGLU, RMSNorm), ``gemma3`` (the same plus query/key norms and norms after attention
    and MLP), ``gpt_neox`` (Pythia: fused QKV with biases, GELU MLP, LayerNorm, parallel
    residual), ``mathkit_decoder`` (fused QKV, SwiGLU or GELU, RMSNorm or LayerNorm).
    ``vision_parameters``: a vision tower and projector loaded with the model (Gemma-3 4B), of
    which ``vision_linear_parameters`` sit in ``nn.Linear`` weights.
    """

    name: str
    family: str
    layers: int
    hidden: int
    intermediate: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    tied_embeddings: bool
    gated_mlp: bool = True
    layer_norm: bool = False  # LayerNorm (weight + bias) instead of RMSNorm (weight)
    attention_bias: bool = False
    mlp_bias: bool = False
    sliding_window: int | None = None  # tokens a sliding-window layer's KV cache keeps
    sliding_layers: int = 0
    positional_parameters: int = 0  # learned positional tables (the small decoder's encodings)
    positional_kind: str = "rotary"  # rotary, absolute, bias or none: what attention keeps differs
    positional_layers: int | None = None  # blocks with that encoding (None: all; the others have none)
    vision_parameters: int = 0
    vision_linear_parameters: int = 0
    source: str = ""

    def __post_init__(self):
        if self.family not in FAMILIES:
            raise ParamsError(f"unknown architecture family {self.family!r}; use one of {', '.join(FAMILIES)}")
        for field in ("layers", "hidden", "intermediate", "heads", "kv_heads", "head_dim", "vocab"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ParamsError(f"{self.name}: {field} must be a positive integer, got {value!r}")
        if self.positional_kind not in POSITIONAL_KINDS:
            raise ParamsError(f"{self.name}: positional_kind {self.positional_kind!r} is not one of "
                              f"{', '.join(POSITIONAL_KINDS)}")
        if self.heads % self.kv_heads:
            raise ParamsError(f"{self.name}: heads ({self.heads}) must be a multiple of kv_heads ({self.kv_heads})")

    @property
    def q_dim(self) -> int:
        return self.heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.kv_heads * self.head_dim

    def linears(self) -> tuple[Linear, ...]:
        """The linear layers of one decoder block, with the module names peft targets."""
        h, q, kv, i = self.hidden, self.q_dim, self.kv_dim, self.intermediate
        if self.family in ("llama", "gemma3"):
            ab, mb = self.attention_bias, self.mlp_bias
            return (Linear("q_proj", h, q, "attention", "attn_in", ab),
                    Linear("k_proj", h, kv, "attention", "attn_in", ab),
                    Linear("v_proj", h, kv, "attention", "attn_in", ab),
                    Linear("o_proj", q, h, "attention", "attn_out", ab),
                    Linear("gate_proj", h, i, "mlp", "mlp_in", mb), Linear("up_proj", h, i, "mlp", "mlp_in", mb),
                    Linear("down_proj", i, h, "mlp", "mlp_mid", mb))
        if self.family == "gpt_neox":
            return (Linear("query_key_value", h, q + 2 * kv, "attention", "attn_in", self.attention_bias),
                    Linear("dense", q, h, "attention", "attn_out", self.attention_bias),
                    Linear("dense_h_to_4h", h, i, "mlp", "mlp_in", self.mlp_bias),
                    Linear("dense_4h_to_h", i, h, "mlp", "mlp_mid", self.mlp_bias))
        up = 2 * i if self.gated_mlp else i  # the small decoder fuses gate and up into one GEMM
        return (Linear("qkv_proj", h, q + 2 * kv, "attention", "attn_in"),
                Linear("o_proj", q, h, "attention", "attn_out"),
                Linear("up_proj", h, up, "mlp", "mlp_in"), Linear("down_proj", i, h, "mlp", "mlp_mid"))

    @property
    def norms_per_layer(self) -> int:
        return 4 if self.family == "gemma3" else 2

    @property
    def norm_parameters(self) -> int:
        """Every norm's weights (and LayerNorm biases): per block, the final norm, Gemma's q/k norms."""
        per_norm = self.hidden * (2 if self.layer_norm else 1)
        qk = 2 * self.head_dim if self.family == "gemma3" else 0
        return self.layers * (self.norms_per_layer * per_norm + qk) + per_norm

    @property
    def embedding_parameters(self) -> int:
        """The input embedding, and the output head when it is not tied to it."""
        return self.vocab * self.hidden * (1 if self.tied_embeddings else 2)

    @property
    def linear_weight_parameters(self) -> int:
        """The matrices of the decoder blocks (what 4-bit/8-bit loading quantizes there)."""
        return self.layers * sum(lin.inputs * lin.outputs for lin in self.linears())

    @property
    def bias_parameters(self) -> int:
        return self.layers * sum(lin.outputs for lin in self.linears() if lin.bias)

    @property
    def quantizable_parameters(self) -> int:
        """Weights bitsandbytes stores in 4 or 8 bits: every ``nn.Linear`` matrix except the output
        head (transformers keeps it and anything tied to it in full precision; embeddings, norms and
        biases are never quantized)."""
        return self.linear_weight_parameters + self.vision_linear_parameters

    @property
    def parameters(self) -> int:
        return (self.embedding_parameters + self.linear_weight_parameters + self.bias_parameters
                + self.norm_parameters + self.positional_parameters + self.vision_parameters)

    def lora_targets(self, targets) -> tuple[Linear, ...]:
        """The block's linear layers that ``targets`` names: ``"all-linear"``, ``"attention"``,
        ``"mlp"`` or a list of module names (a notebook's ``lora_target_modules``)."""
        linears = self.linears()
        if isinstance(targets, str):
            if targets in ("all-linear", "all"):
                return linears
            if targets in ("attention", "mlp"):
                return tuple(lin for lin in linears if lin.part == targets)
            targets = [targets]
        names = {lin.name for lin in linears}
        unknown = [t for t in targets if t not in names]
        if unknown or not targets:
            raise ParamsError(f"LoRA targets {list(targets)}: {unknown or 'none given'} not in {self.name}'s "
                              f"blocks; use 'all-linear', 'attention', 'mlp' or names from {sorted(names)}")
        return tuple(lin for lin in linears if lin.name in targets)


# ---- published configurations (config.json on the hub; no network here) ---------------------

def siglip_parameters(*, layers: int, hidden: int, intermediate: int, patch: int, image: int,
                      channels: int = 3, pooling_head: bool = False) -> tuple[int, int]:
    """(all, in ``nn.Linear`` weights) of a SigLIP vision tower: patch convolution, position
    table, blocks of q/k/v/out + fc1/fc2 with biases and two LayerNorms, a final LayerNorm, and the
    attention-pooling head where the config has one (Gemma-3's has not)."""
    patches = (image // patch) ** 2
    block_linear = 4 * hidden * hidden + 2 * hidden * intermediate
    block_other = 4 * hidden + intermediate + hidden + 4 * hidden  # biases, two LayerNorms
    linear = layers * block_linear
    total = linear + layers * block_other + 2 * hidden + channels * patch * patch * hidden + hidden + patches * hidden
    if pooling_head:  # a probe, nn.MultiheadAttention (its in-projection is not an nn.Linear), a block's MLP
        mlp = 2 * hidden * intermediate
        linear += hidden * hidden + mlp
        total += hidden + 4 * (hidden * hidden + hidden) + 2 * hidden + mlp + intermediate + hidden
    return total, linear


# Gemma-3 4B's vision tower (SigLIP So400m, 896 px, patch 14) and its projector into the text width
# (an nn.Parameter matrix and an RMSNorm, not nn.Linear: never quantized).
_GEMMA3_4B_VISION, _GEMMA3_4B_VISION_LINEAR = siglip_parameters(layers=27, hidden=1152, intermediate=4304,
                                                                patch=14, image=896)
_GEMMA3_4B_PROJECTOR = 1152 * 2560 + 1152

KNOWN: dict[str, Architecture] = {a.name: a for a in (
    Architecture("smollm2-135m", "llama", layers=30, hidden=576, intermediate=1536, heads=9, kv_heads=3,
                 head_dim=64, vocab=49152, tied_embeddings=True,
                 source="HuggingFaceTB/SmolLM2-135M-Instruct config.json"),
    Architecture("gemma-3-270m", "gemma3", layers=18, hidden=640, intermediate=2048, heads=4, kv_heads=1,
                 head_dim=256, vocab=262144, tied_embeddings=True, sliding_window=512, sliding_layers=15,
                 source="google/gemma-3-270m config.json (5 sliding-window layers per full one)"),
    Architecture("tinyllama-1.1b", "llama", layers=22, hidden=2048, intermediate=5632, heads=32, kv_heads=4,
                 head_dim=64, vocab=32000, tied_embeddings=False,
                 source="TinyLlama/TinyLlama-1.1B-Chat-v1.0 config.json"),
    Architecture("pythia-410m", "gpt_neox", layers=24, hidden=1024, intermediate=4096, heads=16, kv_heads=16,
                 head_dim=64, vocab=50304, tied_embeddings=False, gated_mlp=False, layer_norm=True,
                 attention_bias=True, mlp_bias=True, source="EleutherAI/pythia-410m config.json"),
    Architecture("pythia-2.8b", "gpt_neox", layers=32, hidden=2560, intermediate=10240, heads=32, kv_heads=32,
                 head_dim=80, vocab=50304, tied_embeddings=False, gated_mlp=False, layer_norm=True,
                 attention_bias=True, mlp_bias=True, source="EleutherAI/pythia-2.8b config.json"),
    Architecture("gemma-3-4b", "gemma3", layers=34, hidden=2560, intermediate=10240, heads=8, kv_heads=4,
                 head_dim=256, vocab=262208, tied_embeddings=True, sliding_window=1024, sliding_layers=29,
                 vision_parameters=_GEMMA3_4B_VISION + _GEMMA3_4B_PROJECTOR,
                 vision_linear_parameters=_GEMMA3_4B_VISION_LINEAR,
                 source="google/gemma-3-4b-it config.json (text_config; SigLIP vision tower loaded with it)"),
    Architecture("mistral-7b", "llama", layers=32, hidden=4096, intermediate=14336, heads=32, kv_heads=8,
                 head_dim=128, vocab=32000, tied_embeddings=False,
                 source="mistralai/Mistral-7B-Instruct-v0.2 config.json (no sliding window)"),
)}

ALIASES: dict[str, str] = {
    "smollm2-135m-instruct": "smollm2-135m", "smollm2": "smollm2-135m",
    "huggingfacetb/smollm2-135m": "smollm2-135m", "huggingfacetb/smollm2-135m-instruct": "smollm2-135m",
    "gemma3-270m": "gemma-3-270m", "google/gemma-3-270m": "gemma-3-270m", "google/gemma-3-270m-it": "gemma-3-270m",
    "tinyllama": "tinyllama-1.1b", "tinyllama/tinyllama-1.1b-chat-v1.0": "tinyllama-1.1b",
    "eleutherai/pythia-2.8b": "pythia-2.8b", "eleutherai/pythia-410m": "pythia-410m",
    "gemma3-4b": "gemma-3-4b", "gemma-3-4b-it": "gemma-3-4b", "google/gemma-3-4b-it": "gemma-3-4b",
    "google/gemma-3-4b-pt": "gemma-3-4b",
    "mistral-7b-instruct": "mistral-7b", "mistralai/mistral-7b-instruct-v0.2": "mistral-7b",
    "mistralai/mistral-7b-v0.1": "mistral-7b",
}


def known_names() -> list[str]:
    """The names :func:`architecture` accepts without a config (canonical names first)."""
    from mathkit.models.registry import RANDOM_STAND_INS

    return [*KNOWN, *RANDOM_STAND_INS]


def architecture(model) -> Architecture:
    """The :class:`Architecture` of ``model``: a known name or alias, an offline alias or random
    stand-in, a saved model folder, a transformers config, a model, or an Architecture."""
    if isinstance(model, Architecture):
        return model
    if isinstance(model, (str, Path)):
        return _from_name(str(model))
    config = getattr(model, "config", model)  # a model (or a peft wrapper of one) carries its config
    if not hasattr(config, "model_type"):
        raise ParamsError(f"cannot read an architecture from {type(model).__name__}; pass a known name "
                          f"({', '.join(known_names())}), a model folder or a transformers config")
    return from_config(config)


def _from_name(name: str) -> Architecture:
    from mathkit.models.registry import find_stand_in

    key = name.strip().lower()
    key = ALIASES.get(key, key)
    if key in KNOWN:
        return KNOWN[key]
    stand_in = find_stand_in(key)
    if stand_in is not None:
        from transformers import AutoConfig

        vocab = _from_name(stand_in.tokenizer_of).vocab
        config = AutoConfig.for_model(stand_in.model_type, vocab_size=vocab, **stand_in.config)
        return replace(from_config(config, name=stand_in.name), source=f"random stand-in of {stand_in.tokenizer_of}")
    folder = Path(name).expanduser()
    if (folder / "config.json").is_file():
        import mathkit.models.decoder  # noqa: F401  (registers mathkit_decoder with AutoConfig)
        from transformers import AutoConfig

        return from_config(AutoConfig.from_pretrained(str(folder)), name=folder.name)
    raise ParamsError(f"unknown model {name!r} for the memory estimate; known: {', '.join(known_names())} "
                      "(or pass a model folder, a transformers config or an Architecture)")


def from_config(config, name: str | None = None) -> Architecture:
    """An Architecture from a transformers config (see the module docstring for the families)."""
    kind = config.model_type
    name = name or getattr(config, "name_or_path", "") or kind
    if kind == "gemma3":  # the vision-language checkpoint: text decoder + SigLIP tower
        text = from_config(config.text_config, name=name)
        v = config.vision_config
        vision, vision_linear = siglip_parameters(layers=v.num_hidden_layers, hidden=v.hidden_size,
                                                  intermediate=v.intermediate_size, patch=v.patch_size,
                                                  image=v.image_size, channels=v.num_channels,
                                                  pooling_head=bool(getattr(v, "vision_use_head", False)))
        projector = v.hidden_size * text.hidden + v.hidden_size
        return replace(text, tied_embeddings=_tied(config, text.tied_embeddings),
                       vision_parameters=vision + projector, vision_linear_parameters=vision_linear)
    if kind == "mathkit_decoder":
        return _from_decoder_config(config, name)
    heads = config.num_attention_heads
    common = dict(name=name, layers=config.num_hidden_layers, hidden=config.hidden_size,
                  intermediate=config.intermediate_size, heads=heads, vocab=config.vocab_size,
                  kv_heads=getattr(config, "num_key_value_heads", None) or heads,
                  head_dim=getattr(config, "head_dim", None) or config.hidden_size // heads,
                  tied_embeddings=_tied(config, False), source=f"{kind} config")
    if kind in ("llama", "mistral"):
        window = getattr(config, "sliding_window", None)  # Mistral v0.1: every layer
        return Architecture(family="llama", attention_bias=bool(getattr(config, "attention_bias", False)),
                            mlp_bias=bool(getattr(config, "mlp_bias", False)), sliding_window=window,
                            sliding_layers=config.num_hidden_layers if window else 0, **common)
    if kind == "gemma3_text":
        types = list(getattr(config, "layer_types", None) or [])
        sliding = sum(t == "sliding_attention" for t in types)
        return Architecture(family="gemma3", attention_bias=bool(getattr(config, "attention_bias", False)),
                            sliding_window=config.sliding_window if sliding else None, sliding_layers=sliding,
                            **common)
    if kind == "gpt_neox":
        return Architecture(family="gpt_neox", gated_mlp=False, layer_norm=True,
                            attention_bias=bool(getattr(config, "attention_bias", True)), mlp_bias=True, **common)
    raise ParamsError(f"the memory estimate does not know model_type {kind!r}; it reads llama, mistral, "
                      "gemma3_text, gemma3, gpt_neox and mathkit_decoder configs (or pass an Architecture)")


def _tied(config, default: bool) -> bool:
    tied = getattr(config, "tie_word_embeddings", None)
    return default if tied is None else bool(tied)


def _from_decoder_config(config, name: str) -> Architecture:
    """The small decoder: its shape, plus whatever its positional encodings hold (learned tables,
    relative biases), counted by building them on the meta device rather than re-deriving each."""
    import torch

    from mathkit.models.positional import build_positional, positional_class

    layers = config.positional_layers()
    with torch.device("meta"):
        positional = sum(p.numel() for i in layers for p in build_positional(config, i).parameters())
    kind = positional_class(config.positional_encoding).kind
    return Architecture(name=name if name != config.model_type else "mathkit decoder", family="mathkit_decoder",
                        layers=config.num_hidden_layers, hidden=config.hidden_size,
                        intermediate=config.intermediate_size, heads=config.num_attention_heads,
                        kv_heads=config.num_attention_heads, head_dim=config.head_dim, vocab=config.vocab_size,
                        tied_embeddings=bool(config.tie_word_embeddings), gated_mlp=config.mlp == "swiglu",
                        layer_norm=config.norm == "layernorm", positional_parameters=positional,
                        positional_kind=kind, positional_layers=len(layers),
                        source=f"mathkit decoder ({config.positional_encoding})")
