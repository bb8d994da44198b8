"""Base-model loading: the offline SmolLM2 cache, local folders, 4-bit, and hub failures."""

import os

import pytest
import torch

from mathkit.errors import HubUnavailableError, MathkitError
from mathkit.models import base
from tests.test_evaluation_evaluator import tiny_llama, tiny_tokenizer


@pytest.fixture
def fake_gguf(monkeypatch):
    """Stand in a tiny Llama for the 25-second GGUF load; count how often it is called."""
    calls = []

    def load(path):
        calls.append(path)
        tok = tiny_tokenizer()
        tok.pad_token = None  # like many hub tokenizers: conversion must set one
        return tiny_llama(tok), tok

    monkeypatch.setattr(base, "_load_gguf", load)
    return calls


@pytest.fixture
def offline(monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)


def test_gguf_file_is_found_without_importing_the_package():
    path = base.smollm2_gguf_path()
    assert path.name == base.SMOLLM2_GGUF and path.stat().st_size > 50_000_000


def test_cache_location_follows_mathkit_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("MATHKIT_CACHE", str(tmp_path))
    assert base.smollm2_cache_path() == tmp_path / "models" / "smollm2-135m-instruct"
    assert base.smollm2_cache_path(tmp_path / "x") == tmp_path / "x" / "smollm2-135m-instruct"
    monkeypatch.delenv("MATHKIT_CACHE")
    assert base.mathkit_cache_dir() == base.Path.home() / ".cache" / "mathkit"


def test_conversion_is_cached_and_reloads_identically(fake_gguf, monkeypatch, tmp_path):
    monkeypatch.setenv("MATHKIT_CACHE", str(tmp_path))
    model, tok = base.load_base_model("smollm2-135m-instruct")
    folder = tmp_path / "models" / "smollm2-135m-instruct"
    assert len(fake_gguf) == 1 and (folder / "model.safetensors").is_file()
    assert (folder / "mathkit_source.json").is_file()
    assert [p.name for p in folder.parent.iterdir()] == [folder.name]  # no temp folder left
    assert tok.pad_token is not None and tok.chat_template
    again, tok2 = base.load_base_model("SmolLM2-135M-Instruct")
    assert len(fake_gguf) == 1  # read from the cache, not converted again
    ids = torch.tensor([tok("What is 2+3?")["input_ids"]])
    with torch.no_grad():
        assert torch.equal(model(ids).logits, again(ids).logits)
    assert tok2.chat_template == tok.chat_template and not again.training


def test_interrupted_conversion_leaves_no_cache(fake_gguf, monkeypatch, tmp_path):
    def broken_save(self, *a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr("transformers.PreTrainedModel.save_pretrained", broken_save)
    with pytest.raises(KeyboardInterrupt):
        base.convert_smollm2(tmp_path)
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()


def test_conversion_refuses_a_tokenizer_without_chat_template(monkeypatch, tmp_path):
    def load(path):
        tok = tiny_tokenizer()
        tok.chat_template = None
        return tiny_llama(tok), tok

    monkeypatch.setattr(base, "_load_gguf", load)
    with pytest.raises(MathkitError, match="chat template"):
        base.convert_smollm2(tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_local_folder_with_dtype_and_4bit(tmp_path):
    tok = tiny_tokenizer()
    tiny_llama(tok, hidden=64).save_pretrained(tmp_path)  # bnb's CPU 4-bit needs >= 64 inputs
    tok.save_pretrained(tmp_path)
    model, tok2 = base.load_base_model(str(tmp_path), dtype="bfloat16")
    assert model.dtype == torch.bfloat16 and tok2.pad_token == "<pad>"
    q, _ = base.load_base_model(str(tmp_path), load_in_4bit=True, dtype=torch.float32)
    assert any(type(m).__name__ == "Linear4bit" for m in q.modules())
    with torch.no_grad():
        assert q(torch.tensor([[5, 6, 7]])).logits.shape == (1, 3, len(tok))


def test_unknown_hub_name_offline_fails_fast_with_one_error(offline):
    with pytest.raises(HubUnavailableError, match="nobody/no-such-model"):
        base.load_base_model("nobody/no-such-model")


def test_missing_local_folder_is_not_a_hub_error(tmp_path):
    with pytest.raises(MathkitError, match="does not exist") as err:
        base.load_base_model(str(tmp_path / "nothing" / "here"))
    assert not isinstance(err.value, HubUnavailableError)
    with pytest.raises(MathkitError, match="unknown dtype"):
        base.load_base_model(str(tmp_path), dtype="float8")


@pytest.mark.slow
def test_real_smollm2_conversion(monkeypatch, tmp_path):
    """The real GGUF: converts (~25 s), has its chat template, and the safetensors copy gives
    exactly the logits of the dequantized GGUF model."""
    monkeypatch.setenv("MATHKIT_CACHE", str(tmp_path))
    gguf_model, gguf_tok = base._load_gguf(base.smollm2_gguf_path())
    model, tok = base.load_base_model("smollm2-135m-instruct")
    assert os.listdir(tmp_path / "models") == ["smollm2-135m-instruct"]
    assert "<|im_start|>assistant" in tok.apply_chat_template(
        [{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)
    assert tok.pad_token is not None and model.config.model_type == "llama"
    ids = torch.tensor([tok("Natalia sold clips to 48 of her friends.")["input_ids"]])
    assert ids.tolist() == [gguf_tok("Natalia sold clips to 48 of her friends.")["input_ids"]]
    with torch.no_grad():
        assert torch.equal(model(ids).logits, gguf_model(ids).logits)
