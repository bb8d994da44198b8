"""GGUF aliases converted once into the cache: atomic, complete (template, pad, stops), faithful."""

import json
from dataclasses import replace

import pytest
import torch

from mathkit.errors import MathkitError
from mathkit.models import gguf
from mathkit.models.chat_templates import GEMMA3_TURNS
from mathkit.models.registry import GEMMA3_270M, SMOLLM2_135M_INSTRUCT
from tests.test_models_loading import tiny_llama, tiny_tokenizer


def fake_loader(monkeypatch, *, extra_tokens=(), chat_template=True):
    """Stand a tiny Llama in for the 25-60 s GGUF load; return the list of paths it was asked for."""
    calls = []

    def load(path):
        calls.append(path)
        tok = tiny_tokenizer()
        tok.pad_token = None  # like many GGUF tokenizers: conversion must set one
        if not chat_template:
            tok.chat_template = None
        if extra_tokens:
            tok.add_special_tokens({"additional_special_tokens": list(extra_tokens)})
        return tiny_llama(tok), tok

    monkeypatch.setattr(gguf, "load_gguf", load)
    return calls


def test_packaged_gguf_is_found_without_importing_the_package():
    path = gguf.packaged_gguf(SMOLLM2_135M_INSTRUCT)
    assert path.name == SMOLLM2_135M_INSTRUCT.gguf_file and path.stat().st_size > 50_000_000


def test_missing_package_says_what_to_install():
    entry = replace(SMOLLM2_135M_INSTRUCT, package="no_such_package_here", distribution="no-such-package")
    with pytest.raises(MathkitError, match="pip install no-such-package"):
        gguf.packaged_gguf(entry)
    with pytest.raises(MathkitError, match="pip install no-such-package"):
        gguf.assemble_gguf(entry, None)


def test_cache_location_follows_mathkit_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("MATHKIT_CACHE", str(tmp_path))
    assert gguf.cache_path(GEMMA3_270M) == tmp_path / "models" / "gemma-3-270m"
    assert gguf.cache_path(GEMMA3_270M, tmp_path / "x") == tmp_path / "x" / "gemma-3-270m"
    monkeypatch.delenv("MATHKIT_CACHE")
    assert gguf.mathkit_cache_dir() == gguf.Path.home() / ".cache" / "mathkit"


def test_conversion_happens_once_and_records_its_source(monkeypatch, tmp_path):
    calls = fake_loader(monkeypatch)
    folder = gguf.convert(SMOLLM2_135M_INSTRUCT, tmp_path)
    assert gguf.convert(SMOLLM2_135M_INSTRUCT, tmp_path) == folder and len(calls) == 1
    assert calls[0] == gguf.packaged_gguf(SMOLLM2_135M_INSTRUCT)
    assert [p.name for p in tmp_path.iterdir()] == ["smollm2-135m-instruct"]  # no temp folder left
    assert (folder / "model.safetensors").is_file() and gguf.is_converted(folder)
    source = gguf.read_source(folder)
    assert source["made_from"] == "HuggingFaceTB/SmolLM2-135M-Instruct" and source["quantization"] == "Q4_1"
    tokenizer_config = json.loads((folder / "tokenizer_config.json").read_text())
    assert tokenizer_config["pad_token"] == "<eos>"  # the GGUF had none
    gguf.convert(SMOLLM2_135M_INSTRUCT, tmp_path, force=True)
    assert len(calls) == 2


def test_gemma_is_assembled_from_its_chunks_then_deleted(monkeypatch, tmp_path):
    calls = fake_loader(monkeypatch, extra_tokens=("<start_of_turn>", "<end_of_turn>"))
    folder = gguf.convert(GEMMA3_270M, tmp_path)
    assert calls[0].name == "gemma-3-270m-q4_k_m.gguf"  # the package's assemble checked its sha256
    assert not list(tmp_path.rglob("*.gguf")) and [p.name for p in tmp_path.iterdir()] == ["gemma-3-270m"]
    from transformers import AutoTokenizer, GenerationConfig

    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert tokenizer.chat_template == GEMMA3_TURNS
    stops = GenerationConfig.from_pretrained(folder).eos_token_id
    assert stops == [tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("<end_of_turn>")]
    assert gguf.read_source(folder)["gguf_sha256"] == GEMMA3_270M.sha256


def test_a_stop_token_outside_the_vocabulary_is_refused(monkeypatch, tmp_path):
    fake_loader(monkeypatch)  # no <end_of_turn> in this vocabulary
    monkeypatch.setattr(gguf, "assemble_gguf", lambda entry, folder: folder / entry.gguf_file)
    with pytest.raises(MathkitError, match="stop token"):
        gguf.convert(GEMMA3_270M, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_interrupted_conversion_leaves_no_cache(monkeypatch, tmp_path):
    fake_loader(monkeypatch)

    def broken_save(self, *args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("transformers.PreTrainedModel.save_pretrained", broken_save)
    with pytest.raises(KeyboardInterrupt):
        gguf.convert(SMOLLM2_135M_INSTRUCT, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_a_tokenizer_without_chat_template_is_refused(monkeypatch, tmp_path):
    fake_loader(monkeypatch, chat_template=False)
    with pytest.raises(MathkitError, match="chat template"):
        gguf.convert(SMOLLM2_135M_INSTRUCT, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_a_copy_that_does_not_reproduce_the_model_is_not_cached(monkeypatch, tmp_path):
    from transformers import LlamaForCausalLM

    fake_loader(monkeypatch)
    real_save = LlamaForCausalLM.save_pretrained

    def save_with_a_changed_weight(self, folder, **kwargs):
        with torch.no_grad():
            self.model.norm.weight.add_(1e-3)
        try:
            return real_save(self, folder, **kwargs)
        finally:
            with torch.no_grad():
                self.model.norm.weight.sub_(1e-3)

    monkeypatch.setattr(LlamaForCausalLM, "save_pretrained", save_with_a_changed_weight)
    with pytest.raises(MathkitError, match="does not reproduce"):
        gguf.convert(SMOLLM2_135M_INSTRUCT, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_the_copy_check_is_recorded(monkeypatch, tmp_path):
    fake_loader(monkeypatch)
    check = gguf.read_source(gguf.convert(SMOLLM2_135M_INSTRUCT, tmp_path))["copy_check"]
    assert check["identical_ids"] and check["identical_logits"] and check["text"] == gguf.PROBE_TEXT


def test_a_cache_made_before_the_copy_check_is_converted_again(monkeypatch, tmp_path):
    calls = fake_loader(monkeypatch)
    folder = gguf.convert(SMOLLM2_135M_INSTRUCT, tmp_path)
    record = gguf.read_source(folder)
    del record["copy_check"]
    (folder / gguf.SOURCE_FILE).write_text(json.dumps(record))
    assert gguf.convert(SMOLLM2_135M_INSTRUCT, tmp_path) == folder and len(calls) == 2
    assert "copy_check" in gguf.read_source(folder)
    gguf.convert(SMOLLM2_135M_INSTRUCT, tmp_path)
    assert len(calls) == 2  # checked now: kept


@pytest.mark.slow
def test_cached_copy_gives_the_logits_of_the_dequantized_gguf():
    """The real GGUF (25 s to read) against the copy in the user cache (converted if absent),
    read independently of the conversion's own check. Gemma-3-270m's GGUF takes 60 s to read: its
    copy is held to the same standard by the check every conversion runs (asserted recorded in
    the next test), not read a second time here."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    entry = SMOLLM2_135M_INSTRUCT
    folder = gguf.convert(entry)
    gguf_model, gguf_tok = gguf.load_gguf(gguf.packaged_gguf(entry))
    assert getattr(gguf_model, "hf_quantizer", None) is None  # dequantized: trainable, saveable
    model, tok = AutoModelForCausalLM.from_pretrained(folder), AutoTokenizer.from_pretrained(folder)
    assert tok(gguf.PROBE_TEXT)["input_ids"] == gguf_tok(gguf.PROBE_TEXT)["input_ids"]
    ids = torch.tensor([tok(gguf.PROBE_TEXT)["input_ids"]])
    with torch.no_grad():
        assert torch.equal(model(ids).logits, gguf_model(ids).logits)


@pytest.mark.slow
@pytest.mark.parametrize("entry", [SMOLLM2_135M_INSTRUCT, GEMMA3_270M], ids=lambda e: e.name)
def test_every_cached_copy_passed_the_copy_check(entry):
    check = gguf.read_source(gguf.convert(entry))["copy_check"]
    assert check["identical_ids"] and check["identical_logits"] and check["tokens"] > 5
