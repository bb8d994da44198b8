"""save_model / load_model: identical logits and generations after reload, dispatch, clear errors."""

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from mathkit.models.char_tokenizer import build_char_tokenizer
from mathkit.errors import HubUnavailableError, ParamsError
from mathkit.models import MathDecoderForCausalLM, ModelNotFoundError, build_decoder, load_model, save_model
from mathkit.models import io as model_io

TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64)
PROMPTS = ["658+189=", "3+5=", "12*4="]


@pytest.fixture(scope="module")
def tokenizer():
    return build_char_tokenizer()


@pytest.fixture(scope="module")
def model(tokenizer):
    torch.manual_seed(0)
    return build_decoder("small", tokenizer, pe_options={"rope_theta": 500.0}, **TINY).eval()


@pytest.fixture(scope="module")
def saved(model, tokenizer, tmp_path_factory):
    return save_model(model, tokenizer, tmp_path_factory.mktemp("saved") / "model",
                      extra_configs={"data_config": {"max_digits": 3}})


def logits(model, tokenizer):
    tokenizer.padding_side = "left"
    batch = tokenizer(PROMPTS, return_tensors="pt", padding=True)
    with torch.no_grad():
        return model(**batch).logits


def greedy(model, tokenizer):
    tokenizer.padding_side = "left"
    batch = tokenizer(PROMPTS, return_tensors="pt", padding=True)
    with torch.no_grad():
        return model.generate(**batch, max_new_tokens=10, do_sample=False,
                              pad_token_id=tokenizer.pad_token_id, eos_token_id=None)


def test_save_writes_safetensors_tokenizer_and_side_configs(saved):
    names = {p.name for p in saved.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "pe_config.json", "data_config.json"} <= names
    assert json.loads((saved / "pe_config.json").read_text()) == {
        "positional_encoding": "rope", "kind": "rotary", "pe_options": {"rope_theta": 500.0}}
    assert model_io.read_side_config(saved, "data_config") == {"max_digits": 3}
    assert model_io.read_side_config(saved, "absent") is None


def test_load_gives_identical_logits_generations_and_tokenizer(saved, model, tokenizer):
    loaded, loaded_tok = load_model(saved)
    assert isinstance(loaded, MathDecoderForCausalLM) and not loaded.training
    assert loaded.lm_head.weight is loaded.model.embed_tokens.weight
    assert loaded_tok("658+189=<think>8+9=17</think>847<end>")["input_ids"] == \
        tokenizer("658+189=<think>8+9=17</think>847<end>")["input_ids"]
    torch.testing.assert_close(logits(loaded, loaded_tok), logits(model, tokenizer), rtol=0, atol=0)
    torch.testing.assert_close(greedy(loaded, loaded_tok), greedy(model, tokenizer), rtol=0, atol=0)


def test_load_in_bf16(saved):
    loaded, _ = load_model(str(saved), dtype="bfloat16")
    assert next(loaded.parameters()).dtype == torch.bfloat16
    with pytest.raises(ParamsError, match="unknown dtype 'float13'"):
        load_model(saved, dtype="float13")


def test_other_model_types_go_through_auto(tmp_path, tokenizer):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    gpt2 = GPT2LMHeadModel(GPT2Config(vocab_size=len(tokenizer), n_embd=16, n_layer=1, n_head=2, n_positions=32))
    save_model(gpt2, tokenizer, tmp_path)
    assert not (tmp_path / "pe_config.json").exists()  # only our decoder has a positional config
    loaded, _ = load_model(tmp_path)
    assert type(loaded).__name__ == "GPT2LMHeadModel"
    ids = torch.tensor([[5, 6, 7]])
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids).logits, gpt2.eval()(ids).logits)


def test_peft_adapter_folder_loads_base_and_adapter(saved, tokenizer, tmp_path):
    from peft import LoraConfig, PeftModel, get_peft_model

    base, _ = load_model(saved)
    peft_model = get_peft_model(base, LoraConfig(r=4, target_modules=["qkv_proj", "o_proj"]))
    with torch.no_grad():  # LoRA B starts at zero; make the adapter matter
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.5)
    peft_model.eval()
    expected = logits(peft_model, tokenizer)
    folder = save_model(peft_model, tokenizer, tmp_path / "adapter")
    assert (folder / "adapter_config.json").is_file() and (folder / "pe_config.json").is_file()
    loaded, _ = load_model(folder)
    assert isinstance(loaded, PeftModel)
    torch.testing.assert_close(logits(loaded, tokenizer), expected)
    unadapted, _ = load_model(saved)
    assert not torch.allclose(logits(unadapted, tokenizer), expected)


def test_missing_or_empty_paths_give_a_mathkit_error(tmp_path):
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        load_model(tmp_path / "nowhere")
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        load_model(str(tmp_path / "nowhere" / "model"))
    with pytest.raises(ModelNotFoundError, match="holds no config.json"):
        load_model(tmp_path)


def test_unreachable_hub_name_becomes_hub_unavailable(monkeypatch):
    def offline(*args, **kwargs):
        raise OSError("We couldn't connect to 'https://huggingface.co'")

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", offline)
    with pytest.raises(HubUnavailableError, match="HuggingFaceTB/SmolLM2-135M"):
        load_model("HuggingFaceTB/SmolLM2-135M")


def test_extra_config_names_and_conflicts_are_checked(model, tokenizer, tmp_path):
    with pytest.raises(ParamsError, match="not usable"):
        save_model(model, tokenizer, tmp_path, extra_configs={"config": {}})
    with pytest.raises(ParamsError, match="not usable"):
        save_model(model, tokenizer, tmp_path, extra_configs={"../escape": {}})
    with pytest.raises(ParamsError, match="contradicts"):
        save_model(model, tokenizer, tmp_path, extra_configs={"pe_config": {"positional_encoding": "none"}})
    assert not any(Path(tmp_path).iterdir())  # nothing written when the arguments are wrong
    save_model(model, tokenizer, tmp_path, extra_configs={"pe_config": {"note": "ablation A"}})
    assert model_io.read_side_config(tmp_path, "pe_config")["note"] == "ablation A"
