"""mathkit.models.save: safetensors + tokenizer + side configs, checked names, origin records."""

import json
from pathlib import Path

import pytest
import torch

from mathkit.errors import ParamsError
from mathkit.models import build_decoder, load, save
from mathkit.models import gguf
from mathkit.models import io as model_io
from mathkit.models.char_tokenizer import build_char_tokenizer
from mathkit.models.registry import GEMMA3_270M
from tests.test_models_loading import logits, randomize_lora, tiny_llama, tiny_tokenizer

TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64)


@pytest.fixture(scope="module")
def tokenizer():
    return build_char_tokenizer()


@pytest.fixture(scope="module")
def model(tokenizer):
    torch.manual_seed(0)
    return build_decoder("small", tokenizer, pe_options={"rope_theta": 500.0}, **TINY).eval()


def test_save_writes_safetensors_tokenizer_and_side_configs(model, tokenizer, tmp_path):
    saved = save(model, tokenizer, tmp_path / "model", extra_configs={"data_config": {"max_digits": 3}})
    names = {p.name for p in saved.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "pe_config.json", "data_config.json"} <= names
    assert "mathkit_source.json" not in names  # not made from an offline alias
    assert json.loads((saved / "pe_config.json").read_text()) == {
        "positional_encoding": "rope", "kind": "rotary", "pe_options": {"rope_theta": 500.0}}
    assert model_io.read_side_config(saved, "data_config") == {"max_digits": 3}
    assert model_io.read_side_config(saved, "absent") is None


def test_other_model_types_have_no_positional_config(tmp_path):
    tok = tiny_tokenizer()
    save(tiny_llama(tok), tok, tmp_path)
    assert (tmp_path / "model.safetensors").is_file() and not (tmp_path / "pe_config.json").exists()


def test_adapter_folder_keeps_the_decoder_side_configs(model, tokenizer, tmp_path):
    from peft import LoraConfig, get_peft_model

    base = build_decoder("small", tokenizer, pe_options={"rope_theta": 500.0}, **TINY).eval()
    peft_model = randomize_lora(get_peft_model(base, LoraConfig(r=4, target_modules=["qkv_proj"])))
    folder = save(peft_model, tokenizer, tmp_path / "adapter")
    assert (folder / "adapter_config.json").is_file() and (folder / "pe_config.json").is_file()
    assert not (folder / "model.safetensors").exists()


def test_extra_config_names_and_conflicts_are_checked(model, tokenizer, tmp_path):
    for bad in ("config", "../escape", "mathkit_source", "x.json"):
        with pytest.raises(ParamsError, match="not usable"):
            save(model, tokenizer, tmp_path, extra_configs={bad: {}})
    with pytest.raises(ParamsError, match="contradicts"):
        save(model, tokenizer, tmp_path, extra_configs={"pe_config": {"positional_encoding": "none"}})
    assert not any(Path(tmp_path).iterdir())  # nothing written when the arguments are wrong
    save(model, tokenizer, tmp_path, extra_configs={"pe_config": {"note": "ablation A"}})
    assert model_io.read_side_config(tmp_path, "pe_config")["note"] == "ablation A"


def test_a_model_made_from_an_alias_keeps_that_origin_through_saves(monkeypatch, tmp_path):
    """Fine-tuned and saved, then loaded and saved again: still says dequantized Q4_K_M weights."""
    tok = tiny_tokenizer()
    tok.add_special_tokens({"additional_special_tokens": ["<start_of_turn>", "<end_of_turn>"]})
    monkeypatch.setattr(gguf, "load_gguf", lambda path: (tiny_llama(tok), tok))

    def assemble(entry, folder):  # skip joining the 253 MB of chunks
        (folder / entry.gguf_file).write_bytes(b"GGUF")
        return folder / entry.gguf_file

    monkeypatch.setattr(gguf, "assemble_gguf", assemble)
    model, loaded_tok = load("gemma-3-270m", cache_dir=tmp_path / "cache")
    first = save(model, loaded_tok, tmp_path / "tuned")
    record = model_io.read_side_config(first, "mathkit_source")
    assert record["base_model"] == "gemma-3-270m" and record["made_from"] == GEMMA3_270M.made_from
    assert "Q4_K_M GGUF" in record["weights"] and "dequantized" in record["weights"]
    again, _ = load(first)
    second = save(again, loaded_tok, tmp_path / "tuned_again")
    assert model_io.read_side_config(second, "mathkit_source") == record
    torch.testing.assert_close(logits(load(second)[0], loaded_tok), logits(model, loaded_tok))


def test_an_adapter_folder_names_its_alias_base_in_config_and_model_card(tmp_path):
    from mathkit.models.io import _name_alias_as_adapter_base

    cache = "/elsewhere/.cache/mathkit/models/smollm2-135m-instruct"  # another machine's cache folder
    (tmp_path / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": cache}))
    (tmp_path / "README.md").write_text(f"---\nbase_model: {cache}\ntags:\n- base_model:adapter:{cache}\n---\n")
    _name_alias_as_adapter_base(tmp_path)
    assert json.loads((tmp_path / "adapter_config.json").read_text())["base_model_name_or_path"] == \
        "smollm2-135m-instruct"
    card = (tmp_path / "README.md").read_text()
    assert cache not in card and "base_model: smollm2-135m-instruct" in card
