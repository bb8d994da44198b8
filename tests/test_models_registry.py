"""The offline aliases: names, packages and the facts each entry claims about its GGUF; the random
stand-in (a tiny Gemma-3 with the real tokenizer) written once and loaded through the one loader."""

import importlib
import json

import pytest

from mathkit.models.registry import (GEMMA3_270M, OFFLINE_MODELS, SMOLLM2_135M_INSTRUCT, TINY_RANDOM_GEMMA3,
                                     find_offline, find_stand_in, resolve_stand_in, write_stand_in)


@pytest.mark.parametrize("name, entry", [
    ("smollm2-135m-instruct", SMOLLM2_135M_INSTRUCT), ("SmolLM2-135M-Instruct", SMOLLM2_135M_INSTRUCT),
    (" smollm2 ", SMOLLM2_135M_INSTRUCT), ("gemma-3-270m", GEMMA3_270M), ("Gemma3-270M", GEMMA3_270M),
])
def test_aliases_are_case_insensitive(name, entry):
    assert find_offline(name) is entry


@pytest.mark.parametrize("name", ["google/gemma-3-270m", "HuggingFaceTB/SmolLM2-135M-Instruct",
                                  "gemma-3-4b-it", "", "reports/02_lora_sft/adapter"])
def test_hub_ids_and_paths_are_not_aliases(name):
    assert find_offline(name) is None


def test_every_entry_is_named_once_and_says_it_is_dequantized_q4():
    spellings = [n for e in OFFLINE_MODELS.values() for n in (e.name, *e.aliases)]
    assert len(spellings) == len(set(spellings))
    for entry in OFFLINE_MODELS.values():
        assert entry.quantization.startswith("Q4") and "dequantized" in entry.weights
        assert entry.made_from in entry.weights and entry.distribution in entry.weights


def test_gemma_entry_matches_its_package():
    package = importlib.import_module(GEMMA3_270M.package)
    assert package.MODEL_NAME == GEMMA3_270M.gguf_file
    assert package.EXPECTED_SHA256 == GEMMA3_270M.sha256 and GEMMA3_270M.sha256.startswith("a5fd3b62")
    assert GEMMA3_270M.made_from == "google/gemma-3-270m"  # the base model, not -it
    assert GEMMA3_270M.chat_template and GEMMA3_270M.stop_tokens == ("<end_of_turn>",)


# ---- the random stand-in for smoke runs ------------------------------------------------------



def _cache_with_the_real_gemma(root):
    """A cache folder whose gemma-3-270m is the user cache's converted copy (converted if absent)."""
    from mathkit.models import gguf

    (root / "models").mkdir(parents=True)
    (root / "models" / "gemma-3-270m").symlink_to(gguf.convert(GEMMA3_270M))
    return root / "models"


@pytest.fixture(scope="module")
def stand_in(tmp_path_factory):
    cache = _cache_with_the_real_gemma(tmp_path_factory.mktemp("cache"))
    return write_stand_in(TINY_RANDOM_GEMMA3, cache), cache


def test_stand_in_names_are_their_own_and_other_names_pass_through():
    assert find_stand_in(" Tiny-Random-Gemma3 ") is TINY_RANDOM_GEMMA3
    assert find_offline("tiny-random-gemma3") is None and find_stand_in("gemma-3-270m") is None
    assert resolve_stand_in("gemma-3-270m") == "gemma-3-270m"
    assert resolve_stand_in("google/gemma-3-4b-it") == "google/gemma-3-4b-it"


def test_stand_in_is_a_text_only_gemma3_with_the_real_tokenizer_and_says_it_is_random(stand_in):
    from transformers import AutoTokenizer

    from mathkit.models.chat_templates import GEMMA3_TURNS

    folder, cache = stand_in
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == "gemma3_text" and config["architectures"] == ["Gemma3ForCausalLM"]
    assert config["hidden_size"] == 64 and config["vocab_size"] == 262_144
    tok, real = AutoTokenizer.from_pretrained(folder), AutoTokenizer.from_pretrained(cache / "gemma-3-270m")
    assert tok.chat_template == GEMMA3_TURNS and len(tok) == len(real)
    text = "<start_of_turn>user\nSolve 2x+1=5<end_of_turn>"
    assert tok(text)["input_ids"] == real(text)["input_ids"]
    assert json.loads((folder / "generation_config.json").read_text())["eos_token_id"] == [1, 106]
    source = json.loads((folder / "mathkit_source.json").read_text())
    assert source["random"] is True and source["tokenizer_of"] == "gemma-3-270m"


def test_stand_in_is_written_once(stand_in):
    folder, cache = stand_in
    stamp = (folder / "model.safetensors").stat().st_mtime_ns
    assert write_stand_in(TINY_RANDOM_GEMMA3, cache) == folder
    assert (folder / "model.safetensors").stat().st_mtime_ns == stamp


def test_stand_in_loads_through_the_one_loader_in_4_bits_and_generates(stand_in):
    """The smoke run's path: mathkit.models.load with NF4 on the CPU, text only, Gemma's stop tokens."""
    pytest.importorskip("bitsandbytes")
    import torch

    from mathkit.models import load

    folder, _ = stand_in
    model, tok = load(folder, load_in_4bit=True, dtype="float32")
    assert type(model).__name__ == "Gemma3ForCausalLM" and model.is_loaded_in_4bit
    assert sum(type(m).__name__ == "Linear4bit" for m in model.modules()) == 2 * 7  # 2 layers x 7 projections
    ids = tok("<start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n", return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=4, do_sample=False)
    assert out.shape[1] > ids["input_ids"].shape[1]


@pytest.mark.slow
def test_stand_in_weights_depend_on_the_seed_only(stand_in, tmp_path):
    import torch
    from safetensors.torch import load_file

    folder, _ = stand_in
    again = write_stand_in(TINY_RANDOM_GEMMA3, _cache_with_the_real_gemma(tmp_path))
    a, b = load_file(folder / "model.safetensors"), load_file(again / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
