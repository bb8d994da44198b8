"""mathkit.models.load: aliases, our decoder, transformers folders, adapters, merge, 4-bit, devices."""

import json

import pytest
import torch

from mathkit.errors import HubUnavailableError, MathkitError, ParamsError
from mathkit.models import MathDecoderForCausalLM, ModelNotFoundError, build_decoder, load, save
from mathkit.models.char_tokenizer import build_char_tokenizer
from mathkit.models.registry import SMOLLM2_135M_INSTRUCT
from tests.test_evaluation_evaluator import tiny_llama as _tiny_llama
from tests.test_evaluation_evaluator import tiny_tokenizer  # noqa: F401  (the model tests import it from here)

PROMPTS = ["658+189=", "3+5=", "12*4="]


def tiny_llama(tokenizer, seed: int = 0, hidden: int = 64):
    """The evaluator tests' random two-layer Llama, 64 wide by default: bitsandbytes' CPU 4-bit
    needs that many inputs."""
    return _tiny_llama(tokenizer, seed=seed, hidden=hidden)


def logits(model, tokenizer, prompts=PROMPTS):
    tokenizer.padding_side = "left"
    batch = tokenizer(prompts, return_tensors="pt", padding=True)
    with torch.no_grad():
        return model(**batch).logits


def randomize_lora(peft_model):
    """LoRA B starts at zero; make the adapter matter."""
    torch.manual_seed(1)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.5)
    return peft_model.eval()


@pytest.fixture(scope="module")
def char_tok():
    return build_char_tokenizer()


@pytest.fixture(scope="module")
def decoder_dir(char_tok, tmp_path_factory):
    torch.manual_seed(0)
    model = build_decoder("small", char_tok, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                          intermediate_size=64, pe_options={"rope_theta": 500.0}).eval()
    return save(model, char_tok, tmp_path_factory.mktemp("decoder") / "model")


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory):
    tok = tiny_tokenizer()
    folder = tmp_path_factory.mktemp("llama")
    tiny_llama(tok).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def make_adapter(base_dir, out, target_modules=("q_proj", "v_proj")):
    from peft import LoraConfig, get_peft_model

    base, tok = load(base_dir)
    peft_model = randomize_lora(get_peft_model(base, LoraConfig(r=4, target_modules=list(target_modules))))
    return save(peft_model, tok, out), logits(peft_model, tok)


def test_decoder_folder_reloads_identically(decoder_dir, char_tok):
    from transformers import AutoModelForCausalLM

    model, tok = load(decoder_dir)
    assert isinstance(model, MathDecoderForCausalLM) and not model.training
    assert model.lm_head.weight is model.model.embed_tokens.weight
    text = "658+189=<think>8+9=17</think>847<end>"
    assert tok(text)["input_ids"] == char_tok(text)["input_ids"]
    original = AutoModelForCausalLM.from_pretrained(decoder_dir).eval()
    torch.testing.assert_close(logits(model, tok), logits(original, char_tok), rtol=0, atol=0)


def test_dtype_names_and_a_bad_dtype(llama_dir):
    model, tok = load(str(llama_dir), dtype="bfloat16")
    assert model.dtype == torch.bfloat16 and tok.pad_token == "<pad>"
    assert load(llama_dir, dtype=torch.float16)[0].dtype == torch.float16
    with pytest.raises(ParamsError, match="unknown dtype 'float13'"):
        load(llama_dir, dtype="float13")


def test_nf4_with_double_quantization_runs_on_the_cpu(llama_dir):
    model, tok = load(llama_dir, load_in_4bit=True, dtype="float32")
    layers = [m for m in model.modules() if type(m).__name__ == "Linear4bit"]
    assert layers and all(m.weight.quant_type == "nf4" for m in layers)
    assert model.config.quantization_config.bnb_4bit_use_double_quant
    assert model.config.quantization_config.bnb_4bit_compute_dtype == torch.float32
    full = logits(load(llama_dir)[0], tok)
    quantized = logits(model, tok)
    assert quantized.shape == full.shape and not torch.equal(quantized, full)
    torch.testing.assert_close(quantized, full, atol=0.5, rtol=0.1)  # close, not identical


def test_adapter_folder_loads_its_base_first(decoder_dir, char_tok, tmp_path):
    from peft import PeftModel

    folder, expected = make_adapter(decoder_dir, tmp_path / "adapter", ["qkv_proj", "o_proj"])
    assert json.loads((folder / "adapter_config.json").read_text())["base_model_name_or_path"] == \
        str(decoder_dir)
    model, tok = load(folder)
    assert isinstance(model, PeftModel) and not model.training
    torch.testing.assert_close(logits(model, tok), expected)
    plain, _ = load(decoder_dir)
    assert not torch.allclose(logits(plain, tok), expected)


def test_adapter_on_top_of_a_base_and_merged(llama_dir, tmp_path):
    from peft import PeftModel

    folder, expected = make_adapter(llama_dir, tmp_path / "adapter")
    with_adapter, tok = load(llama_dir, adapter=folder)
    assert isinstance(with_adapter, PeftModel)
    torch.testing.assert_close(logits(with_adapter, tok), expected)
    merged, _ = load(llama_dir, adapter=folder, merge=True)
    assert type(merged).__name__ == "LlamaForCausalLM" and not merged.training
    torch.testing.assert_close(logits(merged, tok), expected, atol=1e-5, rtol=1e-4)
    assert type(load(folder, merge=True)[0]).__name__ == "LlamaForCausalLM"


def test_adapter_misuse_is_refused_before_any_weight_changes(llama_dir, tmp_path):
    folder, _ = make_adapter(llama_dir, tmp_path / "adapter")
    with pytest.raises(ParamsError, match="refusing to merge .* 4-bit"):
        load(llama_dir, adapter=folder, merge=True, load_in_4bit=True)
    with pytest.raises(ParamsError, match="adapter folder already"):
        load(folder, adapter=folder)
    with pytest.raises(ParamsError, match="merge=True needs an adapter"):
        load(llama_dir, merge=True)
    with pytest.raises(ModelNotFoundError, match="no adapter_config.json"):
        load(llama_dir, adapter=llama_dir)
    config = json.loads((folder / "adapter_config.json").read_text())
    (folder / "adapter_config.json").write_text(json.dumps({**config, "base_model_name_or_path": None}))
    with pytest.raises(ModelNotFoundError, match="names no base_model_name_or_path"):
        load(folder)


def test_4bit_base_with_adapter_keeps_it_separate(llama_dir, tmp_path):
    from peft import PeftModel

    folder, expected = make_adapter(llama_dir, tmp_path / "adapter")
    model, tok = load(llama_dir, adapter=folder, load_in_4bit=True, dtype="float32")
    assert isinstance(model, PeftModel) and model.is_loaded_in_4bit
    torch.testing.assert_close(logits(model, tok), expected, atol=0.5, rtol=0.1)


def test_a_tokenizer_without_pad_token_gets_eos(tmp_path):
    tok = tiny_tokenizer()
    tiny_llama(tok).save_pretrained(tmp_path)
    tok.pad_token = None
    tok.save_pretrained(tmp_path)
    model, loaded_tok = load(tmp_path)
    assert loaded_tok.pad_token == "<eos>"
    assert model.config.pad_token_id is not None


def test_missing_and_empty_folders_are_not_hub_errors(tmp_path):
    for name in (tmp_path / "nowhere", str(tmp_path / "nowhere" / "model"), "./nowhere"):
        with pytest.raises(ModelNotFoundError, match="does not exist") as err:
            load(name)
        assert not isinstance(err.value, HubUnavailableError)
    with pytest.raises(ModelNotFoundError, match="holds no config.json"):
        load(tmp_path)


def test_hub_ids_offline_fail_fast_with_one_error(monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(HubUnavailableError, match="nobody/no-such-model.*smollm2-135m-instruct"):
        load("nobody/no-such-model")


def test_device_arguments_are_checked(llama_dir):
    with pytest.raises(ParamsError, match="device or device_map"):
        load(llama_dir, device="cpu", device_map="auto")
    if not torch.cuda.is_available():
        with pytest.raises(ParamsError, match="no CUDA GPU"):
            load(llama_dir, device="cuda")
    model, _ = load(llama_dir, device="cpu")
    assert next(model.parameters()).device.type == "cpu"


def test_adapter_on_an_alias_names_the_alias(monkeypatch, tmp_path):
    """An adapter trained on an alias names the alias as its base, not a cache path."""
    from peft import LoraConfig, get_peft_model

    from mathkit.models import gguf

    def fake_gguf(path):
        tok = tiny_tokenizer()
        return tiny_llama(tok), tok

    monkeypatch.setattr(gguf, "load_gguf", fake_gguf)
    monkeypatch.setenv("MATHKIT_CACHE", str(tmp_path / "cache"))
    model, tok = load("SmolLM2-135M-Instruct")
    assert model.name_or_path == str(tmp_path / "cache" / "models" / "smollm2-135m-instruct")
    assert tok.chat_template
    peft_model = randomize_lora(get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj"])))
    folder = save(peft_model, tok, tmp_path / "adapter")
    config = json.loads((folder / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == "smollm2-135m-instruct"
    reloaded, _ = load(folder)
    torch.testing.assert_close(logits(reloaded, tok), logits(peft_model, tok))
    # a checkpoint written by a trainer names this machine's cache folder; elsewhere it is absent
    config["base_model_name_or_path"] = "/elsewhere/.cache/mathkit/models/smollm2-135m-instruct"
    (folder / "adapter_config.json").write_text(json.dumps(config))
    torch.testing.assert_close(logits(load(folder)[0], tok), logits(peft_model, tok))


def test_a_cache_that_lost_its_chat_template_is_reported(monkeypatch, tmp_path):
    from mathkit.models import gguf

    monkeypatch.setattr(gguf, "load_gguf", lambda path: (tiny_llama(tiny_tokenizer()), tiny_tokenizer()))
    folder = gguf.convert(SMOLLM2_135M_INSTRUCT, tmp_path)
    config = json.loads((folder / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    for extra in folder.glob("chat_template.*"):
        extra.unlink()
    with pytest.raises(MathkitError, match="lost its chat template"):
        load("smollm2-135m-instruct", cache_dir=tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("name, cls, parameters, turn", [
    ("smollm2-135m-instruct", "LlamaForCausalLM", 134_515_008, "<|im_start|>user\nWhat is 2+3?<|im_end|>"),
    ("gemma-3-270m", "Gemma3ForCausalLM", 268_098_176, "<bos><start_of_turn>user\nWhat is 2+3?<end_of_turn>"),
])
def test_real_offline_models(name, cls, parameters, turn):
    """The real aliases from the user cache that the notebooks share (converted once if absent)."""
    model, tok = load(name)
    assert type(model).__name__ == cls and not model.training
    assert sum(p.numel() for p in model.parameters()) == parameters
    assert getattr(model, "hf_quantizer", None) is None and model.dtype == torch.float32
    assert tok.pad_token is not None
    prompt = tok.apply_chat_template([{"role": "user", "content": "What is 2+3?"}], tokenize=False,
                                     add_generation_prompt=True)
    assert turn in prompt
    ids = tok(prompt, return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=8, do_sample=False)
    assert out.shape[1] > ids["input_ids"].shape[1]
