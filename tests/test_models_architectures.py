"""Architectures for the memory estimate: the written config values against the offline models'
configs, parameter counts against the published counts, transformers' own modules and the small
decoder, and the ways a model can be named."""

import math
from dataclasses import asdict, replace

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM

from mathkit.errors import ParamsError
from mathkit.models import MODEL_SIZES, MathDecoderConfig, MathDecoderForCausalLM, build_decoder, known_positional
from mathkit.models.architectures import KNOWN, Architecture, architecture, from_config, known_names
from mathkit.models.char_tokenizer import build_char_tokenizer

# Parameter counts published on the model cards / hub pages (the hub counts safetensors values).
PUBLISHED = {"smollm2-135m": 134_515_008, "gemma-3-270m": 268_098_176, "tinyllama-1.1b": 1_100_048_384,
             "pythia-2.8b": 2_775_208_960, "gemma-3-4b": 4_300_079_472, "mistral-7b": 7_241_732_096}


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_parameter_count_matches_the_published_count(name):
    assert KNOWN[name].parameters == PUBLISHED[name]


def _transformers_config(arch: Architecture):
    """The transformers config the architecture describes (to build the real modules from it)."""
    common = dict(hidden_size=arch.hidden, intermediate_size=arch.intermediate, num_hidden_layers=arch.layers,
                  num_attention_heads=arch.heads, vocab_size=arch.vocab, tie_word_embeddings=arch.tied_embeddings)
    if arch.family == "llama":
        return AutoConfig.for_model("llama", num_key_value_heads=arch.kv_heads, head_dim=arch.head_dim, **common)
    if arch.family == "gpt_neox":
        return AutoConfig.for_model("gpt_neox", rotary_pct=0.25, **common)
    text = AutoConfig.for_model("gemma3_text", num_key_value_heads=arch.kv_heads, head_dim=arch.head_dim, **common)
    if not arch.vision_parameters:
        return text
    vision = AutoConfig.for_model("siglip_vision_model", hidden_size=1152, intermediate_size=4304,
                                  num_hidden_layers=27, num_attention_heads=16, patch_size=14, image_size=896,
                                  vision_use_head=False)
    return AutoConfig.for_model("gemma3", text_config=text.to_dict(), vision_config=vision.to_dict())


@pytest.mark.parametrize("name", sorted(KNOWN))
def test_parameter_count_matches_the_transformers_modules(name):
    """The formula counts what transformers builds for the same numbers (on the meta device: no memory)."""
    arch = KNOWN[name]
    config = _transformers_config(arch)
    with torch.device("meta"):
        if config.model_type == "gemma3":
            from transformers import Gemma3ForConditionalGeneration
            model = Gemma3ForConditionalGeneration(config)
        else:
            model = AutoModelForCausalLM.from_config(config)
    assert sum(p.numel() for p in model.parameters()) == arch.parameters
    quantizable = sum(m.weight.numel() for n, m in model.named_modules()
                      if isinstance(m, torch.nn.Linear) and model.get_output_embeddings() is not m)
    assert quantizable == arch.quantizable_parameters
    assert from_config(config).parameters == arch.parameters  # and reading the config back agrees


def test_vision_tower_with_a_pooling_head():
    vision = AutoConfig.for_model("siglip_vision_model", hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                                  num_attention_heads=4, patch_size=14, image_size=56, vision_use_head=True)
    text = AutoConfig.for_model("gemma3_text", hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                                num_attention_heads=4, num_key_value_heads=1, head_dim=16, vocab_size=300)
    config = AutoConfig.for_model("gemma3", text_config=text.to_dict(), vision_config=vision.to_dict())
    from transformers import Gemma3ForConditionalGeneration
    with torch.device("meta"):
        model = Gemma3ForConditionalGeneration(config)
    arch = from_config(config)
    assert arch.parameters == sum(p.numel() for p in model.parameters())
    assert arch.quantizable_parameters == sum(m.weight.numel() for m in model.modules()
                                              if isinstance(m, torch.nn.Linear) and m is not model.lm_head)


@pytest.fixture(scope="module", params=["smollm2-135m-instruct", "gemma-3-270m"])
def offline(request):
    """(alias, folder) of a converted offline model (converted once when absent)."""
    from mathkit.models import gguf
    from mathkit.models.registry import find_offline

    return request.param, gguf.convert(find_offline(request.param))


def test_written_values_match_the_offline_config(offline):
    alias, folder = offline
    written, read = architecture(alias), architecture(folder)
    ignore = {"name", "source"}
    assert {k: v for k, v in asdict(written).items() if k not in ignore} == \
        {k: v for k, v in asdict(read).items() if k not in ignore}


def test_parameter_count_matches_the_offline_weights(offline):
    """Counted from the safetensors header (tied weights are stored once), without loading."""
    from safetensors import safe_open

    alias, folder = offline
    with safe_open(str(folder / "model.safetensors"), framework="pt") as f:
        total = sum(math.prod(f.get_slice(key).get_shape()) for key in f.keys())
    assert architecture(alias).parameters == total
    assert round(total / 1e6, 1) in (134.5, 268.1)


@pytest.mark.parametrize("size", sorted(MODEL_SIZES))
def test_small_decoder_count_matches_each_size(size):
    tokenizer = build_char_tokenizer()
    model = build_decoder(size, tokenizer)
    assert architecture(model.config).parameters == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("encoding", known_positional())
def test_small_decoder_count_includes_positional_parameters(encoding):
    """Learned tables, relative-bias buckets, FIRE's MLP: counted by building them, whatever they are."""
    torch.manual_seed(0)
    model = build_decoder("small", build_char_tokenizer(), positional_encoding=encoding, pe_layers=[0, 2])
    arch = architecture(model)  # a model works too: its config is read
    assert arch.parameters == sum(p.numel() for p in model.parameters())
    assert arch.positional_layers == len(model.config.positional_layers())


@pytest.mark.parametrize("overrides", [{"norm": "layernorm", "mlp": "gelu"}, {"tie_word_embeddings": False}])
def test_small_decoder_count_with_other_layouts(overrides):
    config = MathDecoderConfig(**MODEL_SIZES["small"], vocab_size=24, **overrides)
    model = MathDecoderForCausalLM(config)
    assert architecture(config).parameters == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", ["tiny-random-gemma3", "tiny-random-gpt-neox"])
def test_random_stand_ins_are_read_from_the_registry(name):
    from mathkit.models.registry import find_stand_in

    entry = find_stand_in(name)
    arch = architecture(name)
    config = AutoConfig.for_model(entry.model_type, vocab_size=arch.vocab, **entry.config)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    assert arch.parameters == sum(p.numel() for p in model.parameters())
    assert "random" in arch.source


@pytest.mark.parametrize("name, canonical", [
    ("SmolLM2-135M-Instruct", "smollm2-135m"), ("HuggingFaceTB/SmolLM2-135M-Instruct", "smollm2-135m"),
    ("google/gemma-3-4b-it", "gemma-3-4b"), ("EleutherAI/pythia-2.8b", "pythia-2.8b"),
    ("TinyLlama/TinyLlama-1.1B-Chat-v1.0", "tinyllama-1.1b"), ("mistralai/Mistral-7B-Instruct-v0.2", "mistral-7b"),
])
def test_hub_ids_and_aliases_name_the_known_architectures(name, canonical):
    assert architecture(name) is KNOWN[canonical]


def test_gemma_sliding_layers_and_vision_tower():
    small, large = KNOWN["gemma-3-270m"], KNOWN["gemma-3-4b"]
    assert (small.sliding_layers, small.sliding_window) == (15, 512)
    assert (large.sliding_layers, large.sliding_window) == (29, 1024)
    assert small.vision_parameters == 0 and 0 < large.vision_linear_parameters < large.vision_parameters
    assert large.embedding_parameters == 262208 * 2560  # tied: counted once


def test_lora_targets():
    arch = KNOWN["smollm2-135m"]
    assert [lin.name for lin in arch.lora_targets("attention")] == ["q_proj", "k_proj", "v_proj", "o_proj"]
    assert len(arch.lora_targets("all-linear")) == 7
    assert [lin.name for lin in arch.lora_targets(["q_proj", "v_proj"])] == ["q_proj", "v_proj"]
    assert [lin.name for lin in KNOWN["pythia-2.8b"].lora_targets("mlp")] == ["dense_h_to_4h", "dense_4h_to_h"]
    with pytest.raises(ParamsError, match="query_key_value.*not in smollm2-135m"):
        arch.lora_targets(["query_key_value"])


def test_unknown_names_and_configs_say_what_is_known():
    with pytest.raises(ParamsError, match="unknown model 'llama-70b'.*smollm2-135m.*mistral-7b"):
        architecture("llama-70b")
    assert "tiny-random-gemma3" in known_names()
    with pytest.raises(ParamsError, match="model_type 'bert'"):
        architecture(AutoConfig.for_model("bert"))
    with pytest.raises(ParamsError, match="cannot read an architecture from int"):
        architecture(3)
    with pytest.raises(ParamsError, match="multiple of kv_heads"):
        replace(KNOWN["smollm2-135m"], kv_heads=2)
    with pytest.raises(ParamsError, match="unknown architecture family"):
        replace(KNOWN["smollm2-135m"], family="t5")
