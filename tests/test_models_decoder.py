"""The small decoder: config checks, sizes, padding-invariance, causality, loss, generate, Auto*,
sliding-window attention and per-layer hidden states."""

import json

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM

from mathkit.models.char_tokenizer import build_char_tokenizer
from mathkit.models.decoder import CACHE_FIELD, _positions_and_mask
from mathkit.models import (
    MODEL_SIZES,
    TARGET_PARAMETERS,
    MathDecoderConfig,
    MathDecoderForCausalLM,
    ModelConfigError,
    build_decoder,
    known_positional,
    load,
    save,
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
    ({"attention_window": 0}, "attention_window must be a positive integer .* or None"),
    ({"attention_window": -2}, "attention_window must be a positive integer"),
    ({"attention_window": 2.5}, "attention_window must be a positive integer"),
    ({"attention_window": True}, "attention_window must be a positive integer"),
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


# ---- sliding-window attention -------------------------------------------------------------------

PE_NAMES = known_positional(aliases=False)
# generate() is slower: one method of each kind, plus those that keep state on the cache
GENERATE_NAMES = ["nope", "rope", "alibi", "t5_relative", "learned", "abacus", "math_adaptive"]
DIGITS = "0123456789"


def windowed(tokenizer, name="rope", window=3, seed=0, **fields):
    torch.manual_seed(seed)
    return build_decoder("small", tokenizer, name, **{**TINY, "attention_window": window, **fields}).eval()


def test_window_mask_on_a_hand_checked_case():
    """Window 2: each token sees itself and the one real token before it; a pad sees itself only."""
    _, mask, _ = _positions_and_mask(torch.tensor([[0, 1, 1, 1, 1]]), 1, 5, 0, torch.device("cpu"), window=2)
    seen = (mask[0, 0] == 0).int().tolist()
    assert seen == [[1, 0, 0, 0, 0],   # pad
                    [0, 1, 0, 0, 0],   # position 0
                    [0, 1, 1, 0, 0],   # position 1
                    [0, 0, 1, 1, 0],   # position 2: not position 0
                    [0, 0, 0, 1, 1]]
    # one new token after 3 cached ones, no padding: it sees position 2 and itself
    _, mask, _ = _positions_and_mask(None, 1, 1, 3, torch.device("cpu"), window=2)
    assert (mask[0, 0] == 0).int().tolist() == [[0, 0, 1, 1]]
    # a window that cuts nothing leaves the fused causal path (no mask at all)
    assert _positions_and_mask(None, 1, 5, 0, torch.device("cpu"), window=5)[1] is None


def test_a_window_of_one_makes_each_token_see_only_itself(tokenizer):
    model = windowed(tokenizer, "nope", window=1)
    ids = torch.tensor([[5, 9, 7, 12, 6]])
    with torch.no_grad():
        logits = model(ids).logits[0]
        for t in range(ids.shape[1]):  # without positions, a token alone gives the same logits
            torch.testing.assert_close(logits[t], model(ids[:, t:t + 1]).logits[0, 0], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("name", PE_NAMES)
def test_a_one_layer_window_sees_exactly_the_last_tokens(tokenizer, name):
    """Window 3, one layer: the logits at t depend on tokens t-2..t and not on t-3 (digits are swapped
    for digits, so digit-place encodings keep their places)."""
    model = windowed(tokenizer, name, window=3, num_hidden_layers=1)
    digits = tokenizer.convert_tokens_to_ids(list(DIGITS))
    ids = torch.tensor([digits[1:8]])  # 7 digits
    t = 6
    with torch.no_grad():
        base = model(ids).logits[0, t]
        for source, inside in ((t - 3, False), (t - 4, False), (t - 2, True), (t - 1, True)):
            changed = ids.clone()
            changed[0, source] = digits[9]
            moved = (model(changed).logits[0, t] - base).abs().max().item()
            assert (moved > 1e-5) == inside, (source, moved)


@pytest.mark.parametrize("name", PE_NAMES)
def test_windowed_future_tokens_do_not_change_past_logits(tokenizer, name):
    model = windowed(tokenizer, name)
    ids = torch.tensor([[5, 6, 7, 8, 9, 10, 11, 12]])
    changed = ids.clone()
    changed[0, 5:] = 3
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits[:, :5], model(changed).logits[:, :5])


@pytest.mark.parametrize("name", PE_NAMES)
def test_windowed_cache_steps_equal_one_full_forward_on_a_left_padded_batch(tokenizer, name):
    """Teacher-forced over the window's edge: prefill, then one token, two at once, one."""
    model = windowed(tokenizer, name)
    prompt = encode(tokenizer, ["658+18", "3+5", "12*4"])
    new = torch.tensor([tokenizer(t)["input_ids"] for t in ("92=4", "37=1", "5=64")])
    ids = torch.cat([prompt["input_ids"], new], dim=1)
    mask = torch.cat([prompt["attention_mask"], torch.ones_like(new)], dim=1)
    with torch.no_grad():
        full = model(input_ids=ids, attention_mask=mask).logits
        out = model(**prompt, use_cache=True)
        at = prompt["input_ids"].shape[1]
        torch.testing.assert_close(out.logits, full[:, :at], atol=1e-5, rtol=1e-4)
        for width in (1, 2, 1):
            out = model(input_ids=ids[:, at:at + width], attention_mask=mask[:, :at + width],
                        cache=getattr(out, CACHE_FIELD), use_cache=True)
            torch.testing.assert_close(out.logits, full[:, at:at + width], atol=1e-5, rtol=1e-4)
            at += width


@pytest.mark.parametrize("name", GENERATE_NAMES)
def test_windowed_generation_with_cache_equals_without_and_ignores_padding(tokenizer, name):
    model = windowed(tokenizer, name)
    prompts = ["658+189=", "3+5=", "12*4="]
    kwargs = dict(max_new_tokens=8, do_sample=False, pad_token_id=tokenizer.pad_token_id, eos_token_id=None)
    with torch.no_grad():
        batch = encode(tokenizer, prompts)
        cached = model.generate(**batch, **kwargs)
        assert torch.equal(cached, model.generate(**batch, use_cache=False, **kwargs))
        for row, prompt in enumerate(prompts):
            alone = model.generate(**tokenizer([prompt], return_tensors="pt"), **kwargs)
            assert torch.equal(cached[row, -alone.shape[1]:], alone[0])


@pytest.mark.parametrize("name", GENERATE_NAMES)
def test_a_window_longer_than_the_input_gives_exactly_the_full_attention_logits(tokenizer, name):
    full = windowed(tokenizer, name, window=None)
    wide = windowed(tokenizer, name, window=17)  # prompt 8 + 8 new tokens = 16 slots at most
    wide.load_state_dict(full.state_dict())
    kwargs = dict(max_new_tokens=8, do_sample=False, pad_token_id=tokenizer.pad_token_id, eos_token_id=None)
    with torch.no_grad():
        for batch in (tokenizer(["658+189="], return_tensors="pt"), encode(tokenizer, ["658+189=", "3+5="])):
            assert torch.equal(wide(**batch).logits, full(**batch).logits)
            assert torch.equal(wide.generate(**batch, **kwargs), full.generate(**batch, **kwargs))


def test_the_window_is_saved_and_loaded(tokenizer, tmp_path):
    model = windowed(tokenizer, "alibi", window=4)
    save(model, tokenizer, tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["attention_window"] == 4
    loaded, _ = load(tmp_path, device="cpu")
    assert loaded.config.attention_window == 4
    batch = encode(tokenizer, ["658+189=", "3+5="])
    with torch.no_grad():
        assert torch.equal(loaded(**batch).logits, model(**batch).logits)
    assert MathDecoderConfig(vocab_size=20, **TINY).attention_window is None  # full attention by default


# ---- per-layer hidden states (hidden-state distillation reads them) ---------------------------

def test_output_hidden_states_gives_the_input_each_layer_and_the_final_norm(model, tokenizer):
    batch = encode(tokenizer, ["658+189=", "3+5="])
    outputs = []
    hooks = [layer.register_forward_hook(lambda mod, args, out: outputs.append(out)) for layer in model.model.layers]
    with torch.no_grad():
        out = model(**batch, output_hidden_states=True)
        plain = model(**batch)
    for hook in hooks:
        hook.remove()
    states = out.hidden_states
    assert len(states) == model.config.num_hidden_layers + 1 and plain.hidden_states is None
    assert torch.equal(states[0], model.model.embed_tokens(batch["input_ids"]))  # rope adds nothing at the input
    assert torch.equal(states[1], outputs[0])  # layer 0's output
    assert torch.equal(states[-1], model.model.norm(outputs[-1]))  # the last one is normed, as in transformers
    assert torch.equal(model.lm_head(states[-1]), out.logits)
    assert torch.equal(out.logits, plain.logits)
    picked = model(**batch, output_hidden_states=[-1, 1]).hidden_states  # transformers' index selection
    assert len(picked) == 2 and torch.equal(picked[0], states[1]) and torch.equal(picked[1], states[-1])


def test_hidden_states_carry_gradients_in_training(tokenizer):
    torch.manual_seed(0)
    model = build_decoder("small", tokenizer, positional_encoding="learned", **TINY).train()
    model.config.output_hidden_states = True  # the config default is honoured too
    ids = torch.randint(5, 20, (2, 6))
    states = model(ids).hidden_states
    states[1].pow(2).mean().backward()
    layer0 = model.model.layers[0]
    assert layer0.attn.qkv_proj.weight.grad.abs().sum() > 0
    assert layer0.positional.table.weight.grad.abs().sum() > 0  # the absolute encoding is in states[0]
    assert model.model.layers[1].attn.qkv_proj.weight.grad is None  # layer 1 comes after states[1]
