"""The offline aliases: names, packages and the facts each entry claims about its GGUF."""

import importlib

import pytest

from mathkit.models.registry import GEMMA3_270M, OFFLINE_MODELS, SMOLLM2_135M_INSTRUCT, find_offline


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
