"""The small decoder: config checks, sizes, padding-invariance, causality, loss, generate, Auto*."""

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM

from mathkit.models.char_tokenizer import build_char_tokenizer
from mathkit.models.decoder import CACHE_FIELD
from mathkit.models import (
    MODEL_SIZES,
    TARGET_PARAMETERS,
    MathDecoderConfig,
    MathDecoderForCausalLM,
    ModelConfigError,
    build_decoder,
)

TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64)


@pytest.fixture(scope="module")
def tokenizer():
    return build_char_tokenizer()


@pytest.fixture(scope="module")
def model(tokenizer):
    torch.manual_seed(0)
    return build_decoder("small", tokenizer, **TINY).eval()


def encode(tokenizer, prompts, side="left"):
    tokenizer.padding_side = side
    try:
        return tokenizer(prompts, return_tensors="pt", padding=True)
    finally:
        tokenizer.padding_side = "right"


@pytest.mark.parametrize("fields, message", [
    ({"hidden_size": 30}, r"divisible by num_attention_heads \(4\); e.g. hidden_size 28 or 32"),
    ({"positional_encoding": "xpos"}, "unknown positional encoding 'xpos'"),
    ({"pe_layers": [0, 2]}, r"pe_layers \[0, 2\] has indices outside 0..1 \(2 layers\)"),
    ({"pe_layers": [-1]}, "outside 0..1"),
    ({"pe_layers": [1, 1]}, "repeats a layer"),
    ({"pe_layers": [True]}, "list of layer indices"),
    ({"norm": "batchnorm"}, "unknown norm 'batchnorm'"),
    ({"mlp": "relu"}, "unknown mlp 'relu'"),
    ({"num_hidden_layers": 0}, "num_hidden_layers must be a positive integer"),
    ({"dropout": 1.0}, r"dropout must be in \[0, 1\)"),
    ({"eos_token_id": 20}, "eos_token_id=20 is outside the vocabulary"),
])
def test_config_rejects_bad_values(fields, message):
    with pytest.raises(ModelConfigError, match=message):
        MathDecoderConfig(**{"vocab_size": 20, **TINY, **fields})


def test_config_round_trips_through_dict():
    config = MathDecoderConfig(vocab_size=20, pe_options={"rope_theta": 500.0}, mlp="gelu", **TINY)
    again = MathDecoderConfig.from_dict(config.to_dict())
    assert again.to_dict() == config.to_dict()
    assert again.pe_config() == {"positional_encoding": "rope", "kind": "rotary",
                                 "pe_options": {"rope_theta": 500.0}}
    layered = MathDecoderConfig(vocab_size=20, positional_encoding="alibi", pe_layers=[1, 0], **TINY)
    assert layered.pe_layers == [0, 1]  # kept sorted
    assert MathDecoderConfig.from_dict(layered.to_dict()).pe_config() == {
        "positional_encoding": "alibi", "kind": "bias", "pe_options": {"slopes": None}, "pe_layers": [0, 1]}


def test_configs_saved_before_pe_layers_existed_still_load():
    old = {k: v for k, v in MathDecoderConfig(vocab_size=20, **TINY).to_dict().items() if k != "pe_layers"}
    config = MathDecoderConfig.from_dict(old)
    assert config.pe_layers is None and config.positional_layers() == [0, 1]
    assert MathDecoderConfig(vocab_size=20, positional_encoding="sinusoidal", **TINY).positional_layers() == [0]


@pytest.mark.parametrize("pe_layers, layers", [(None, [0]), ([0], [0]), ([0, 1], [0]), ([1], []), ([], [])])
def test_an_absolute_encoding_lives_in_layer_0_only(pe_layers, layers, caplog):
    config = MathDecoderConfig(vocab_size=20, positional_encoding="learned", pe_layers=pe_layers, **TINY)
    assert config.positional_layers() == layers
    assert ("added once, at the input" in caplog.text) == (pe_layers in ([0, 1], [1]))
    model = MathDecoderForCausalLM(config)
    assert [i for i, layer in enumerate(model.model.layers) if type(layer.positional).name == "learned"] == layers


def test_sizes_land_near_their_parameter_targets(tokenizer):
    for size in MODEL_SIZES:
        config = MathDecoderConfig(vocab_size=len(tokenizer), **MODEL_SIZES[size])
        with torch.device("meta"):  # count without allocating
            n = MathDecoderForCausalLM(config).num_parameters()
        assert 0.6 * TARGET_PARAMETERS[size] <= n <= 1.4 * TARGET_PARAMETERS[size], (size, n)
    with pytest.raises(ModelConfigError, match="unknown model size 'huge'; use one of small, medium, large"):
        build_decoder("huge", tokenizer)


def test_build_decoder_takes_ids_from_tokenizer_and_ties_embeddings(model, tokenizer):
    config = model.config
    assert config.vocab_size == len(tokenizer)
    assert (config.pad_token_id, config.eos_token_id) == (tokenizer.pad_token_id, tokenizer.eos_token_id)
    assert model.lm_head.weight is model.model.embed_tokens.weight


def test_left_padding_gives_the_same_logits_as_no_padding(model, tokenizer):
    prompts = ["658+189=", "3+5=", "12*4="]
    batch = encode(tokenizer, prompts)
    assert batch["attention_mask"][1, 0] == 0  # really padded on the left
    with torch.no_grad():
        padded = model(**batch).logits
        for row, prompt in enumerate(prompts):
            alone = model(**tokenizer([prompt], return_tensors="pt")).logits[0]
            torch.testing.assert_close(padded[row, -alone.shape[0]:], alone, atol=1e-5, rtol=1e-4)
            assert torch.isfinite(padded[row]).all()  # pad rows too


def test_right_padding_keeps_real_token_logits(model, tokenizer):
    batch = encode(tokenizer, ["658+189=", "3+5="], side="right")
    with torch.no_grad():
        padded = model(**batch).logits[1, :4]
        alone = model(**tokenizer(["3+5="], return_tensors="pt")).logits[0]
    torch.testing.assert_close(padded, alone, atol=1e-5, rtol=1e-4)


def test_future_tokens_do_not_change_past_logits(model):
    ids = torch.tensor([[5, 6, 7, 8, 9, 10]])
    changed = ids.clone()
    changed[0, 4:] = 3
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits[:, :4], model(changed).logits[:, :4])


def test_loss_is_cross_entropy_on_labelled_positions_only(model):
    ids = torch.tensor([[5, 6, 7, 8, 9]])
    labels = torch.tensor([[-100, -100, 7, 8, 9]])
    with torch.no_grad():
        out = model(ids, labels=labels)
    expected = torch.nn.functional.cross_entropy(out.logits[0, 1:4], ids[0, 2:])
    torch.testing.assert_close(out.loss, expected)


def test_training_mode_backpropagates_to_every_parameter(tokenizer):
    torch.manual_seed(0)
    model = build_decoder("small", tokenizer, dropout=0.1, **TINY).train()
    ids = torch.randint(5, 20, (3, 9))
    out = model(ids, labels=ids)
    assert getattr(out, CACHE_FIELD) is None  # no KV cache is built while training
    out.loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_layernorm_gelu_variant_and_bf16_autocast(tokenizer):
    torch.manual_seed(0)
    model = build_decoder("small", tokenizer, norm="layernorm", mlp="gelu", **TINY).eval()
    assert isinstance(model.model.norm, torch.nn.LayerNorm)
    batch = encode(tokenizer, ["12+34=", "5+6="])
    with torch.no_grad():
        full = model(**batch).logits
        with torch.autocast("cpu", dtype=torch.bfloat16):
            half = model(**batch).logits
    assert half.dtype == torch.bfloat16
    torch.testing.assert_close(half.float(), full, atol=0.1, rtol=0.1)


def test_batched_left_padded_generate_matches_one_at_a_time(model, tokenizer):
    prompts = ["658+189=", "3+5=", "12*4="]
    kwargs = dict(max_new_tokens=8, do_sample=False, pad_token_id=tokenizer.pad_token_id, eos_token_id=None)
    batch = encode(tokenizer, prompts)
    with torch.no_grad():
        cached = model.generate(**batch, **kwargs)
        uncached = model.generate(**batch, use_cache=False, **kwargs)
        torch.testing.assert_close(cached, uncached)
        for row, prompt in enumerate(prompts):
            alone = model.generate(**tokenizer([prompt], return_tensors="pt"), **kwargs)
            torch.testing.assert_close(cached[row, -alone.shape[1]:], alone[0])


def test_auto_classes_load_a_saved_decoder(model, tokenizer, tmp_path):
    model.save_pretrained(tmp_path)
    assert AutoConfig.from_pretrained(tmp_path).model_type == "mathkit_decoder"
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path)
    assert isinstance(loaded, MathDecoderForCausalLM)
    ids = torch.tensor([[5, 6, 7]])
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids).logits, model(ids).logits)


def test_residual_output_projections_start_smaller_with_depth(tokenizer):
    torch.manual_seed(0)
    model = build_decoder("small", tokenizer)  # 4 layers: std 0.02 / sqrt(8)
    layer = model.model.layers[0]
    assert layer.attn.o_proj.weight.std().item() == pytest.approx(0.02 / 8 ** 0.5, rel=0.05)
    assert layer.mlp.down_proj.weight.std().item() == pytest.approx(0.02 / 8 ** 0.5, rel=0.05)
    assert layer.attn.qkv_proj.weight.std().item() == pytest.approx(0.02, rel=0.05)
