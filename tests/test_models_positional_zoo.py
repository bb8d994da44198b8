"""Every registered positional encoding, through the whole decoder: the contract each must keep.

Shapes, gradients, causality, dtype/device moves, save -> load, cached vs uncached greedy decoding
on left-padded batches, padding invariance, per-layer injection (pe_layers) and unshared
parameters. Tiny models (hidden 32, 2 layers, 4 heads, the character vocabulary): seconds in all.
"""

import json

import pytest
import torch

from mathkit.models import build_decoder, load, save
from mathkit.models.char_tokenizer import build_char_tokenizer
from mathkit.models.decoder import CACHE_FIELD
from mathkit.models.positional import (
    NoPositionalEncoding,
    PositionContext,
    SharedParameterError,
    check_unshared,
    known_positional,
    positional_class,
)

NAMES = known_positional()
TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64)
PROMPTS = ["658+189=", "3+5=", "12*4="]
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU"))]


@pytest.fixture(scope="module")
def tokenizer():
    return build_char_tokenizer()


def build(tokenizer, name, seed=0, **fields):
    torch.manual_seed(seed)
    return build_decoder("small", tokenizer, name, **{**TINY, **fields}).eval()


def encode(tokenizer, prompts, side="left"):
    tokenizer.padding_side = side
    try:
        return tokenizer(prompts, return_tensors="pt", padding=True)
    finally:
        tokenizer.padding_side = "right"


def pe_parameters(model):
    return {n: p for n, p in model.named_parameters() if ".positional." in n}


def same_weights_without_pe(model, tokenizer):
    """A NoPE model holding ``model``'s other weights, to isolate what the PE contributes."""
    nope = build(tokenizer, "nope", max_position_embeddings=model.config.max_position_embeddings)
    nope.load_state_dict({k: v for k, v in model.state_dict().items() if ".positional." not in k})
    return nope


def has_effect(name):
    return positional_class(name).kind != "none"


def test_the_zoo_is_complete():
    assert set(NAMES) >= {"rope", "alibi", "sinusoidal", "learned", "t5_relative", "diet_abs", "diet_rel",
                          "nope", "none", "fire", "abacus", "math_adaptive"}


@pytest.mark.parametrize("name", NAMES)
def test_output_and_hook_shapes(tokenizer, name):
    model = build(tokenizer, name)
    batch = encode(tokenizer, PROMPTS)
    ids, mask = batch["input_ids"], batch["attention_mask"]
    with torch.no_grad():
        assert model(**batch).logits.shape == (3, ids.shape[1], len(tokenizer))
    positions = (mask.cumsum(-1) - 1).clamp_min(0)
    ctx = PositionContext(position_ids=positions, key_positions=positions, input_ids=ids,
                          attention_mask=mask, past_length=0, cache=None)
    pe = model.model.layers[0].positional
    q = k = torch.randn(3, 4, ids.shape[1], 8)
    hidden = torch.randn(3, ids.shape[1], 32)
    assert pe.embed(hidden, ctx).shape == hidden.shape
    assert [t.shape for t in pe.rotate(q, k, ctx)] == [q.shape, k.shape]
    bias = pe.attention_bias(ctx)
    assert (bias is None) == (pe.kind != "bias")
    if bias is not None:
        assert bias.dtype == torch.float32
        assert torch.broadcast_shapes(bias.shape, (3, 4, ids.shape[1], ids.shape[1])) == (3, 4, ids.shape[1], ids.shape[1])


@pytest.mark.parametrize("name", NAMES)
def test_gradients_reach_every_pe_parameter(tokenizer, name):
    model = build(tokenizer, name).train()
    batch = encode(tokenizer, PROMPTS)
    model(**batch, labels=batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)).loss.backward()
    params = pe_parameters(model)
    assert bool(params) == (name in {"learned", "t5_relative", "diet_abs", "diet_rel", "fire", "abacus",
                                     "math_adaptive"})
    for pname, param in params.items():
        assert param.grad is not None and param.grad.abs().sum() > 0, pname


@pytest.mark.parametrize("name", NAMES)
def test_a_later_token_never_changes_earlier_logits(tokenizer, name):
    model = build(tokenizer, name)
    ids = tokenizer(["12+345=6"], return_tensors="pt")["input_ids"]
    for position, token in ((4, "+"), (2, "7"), (7, "=")):  # digit -> operator, operator -> digit, ...
        changed = ids.clone()
        changed[0, position] = tokenizer.convert_tokens_to_ids(token)
        assert not torch.equal(changed, ids)
        with torch.no_grad():
            before, after = model(ids).logits, model(changed).logits
        torch.testing.assert_close(after[:, :position], before[:, :position], atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
@pytest.mark.parametrize("name", NAMES)
def test_moves_to_another_dtype_and_device(tokenizer, name, dtype, device):
    model = build(tokenizer, name)
    batch = encode(tokenizer, PROMPTS)
    with torch.no_grad():
        reference = model(**batch).logits
        moved = model.to(device=device, dtype=dtype)
        logits = moved(**{k: v.to(device) for k, v in batch.items()}).logits
    assert logits.dtype == dtype and logits.device.type == device
    assert all(p.dtype == dtype for p in pe_parameters(moved).values())
    logits = logits.float().cpu()
    if dtype == torch.float64:
        torch.testing.assert_close(logits, reference, atol=1e-5, rtol=1e-4)
    else:  # bf16 keeps ~3 significant digits
        assert ((logits - reference).norm() / reference.norm()).item() < 0.05


@pytest.mark.parametrize("name", NAMES)
def test_save_and_load_give_identical_logits_and_a_pe_config(tokenizer, name, tmp_path):
    model = build(tokenizer, name)
    folder = save(model, tokenizer, tmp_path / name)
    pe_config = json.loads((folder / "pe_config.json").read_text())
    cls = positional_class(name)
    assert pe_config["positional_encoding"] == name and pe_config["kind"] == cls.kind
    assert set(pe_config["pe_options"]) == set(cls.default_options)
    assert pe_config["pe_options"] == model.config.pe_config()["pe_options"]
    loaded, _ = load(folder, device="cpu")
    batch = encode(tokenizer, PROMPTS)
    with torch.no_grad():
        assert torch.equal(loaded(**batch).logits, model(**batch).logits)
    assert type(loaded.model.layers[0].positional) is cls


@pytest.mark.parametrize("name", NAMES)
def test_cached_greedy_generation_equals_uncached_on_left_padded_batches(tokenizer, name):
    model = build(tokenizer, name)
    batch = encode(tokenizer, PROMPTS)
    kwargs = dict(max_new_tokens=8, do_sample=False, pad_token_id=tokenizer.pad_token_id, eos_token_id=None)
    with torch.no_grad():
        cached = model.generate(**batch, **kwargs)
        uncached = model.generate(**batch, use_cache=False, **kwargs)
    assert torch.equal(cached, uncached)


@pytest.mark.parametrize("name", NAMES)
def test_step_by_step_with_the_cache_equals_one_full_forward(tokenizer, name):
    """Teacher-forced, so digit runs and distances really cross the prompt/step boundary."""
    model = build(tokenizer, name)
    prompt = encode(tokenizer, ["658+18", "3+5", "12*4"])  # ends inside a number
    new = torch.tensor([tokenizer(t)["input_ids"] for t in ("92=4", "37=1", "5=64")])  # 4 more each
    ids = torch.cat([prompt["input_ids"], new], dim=1)
    mask = torch.cat([prompt["attention_mask"], torch.ones_like(new)], dim=1)
    with torch.no_grad():
        full = model(input_ids=ids, attention_mask=mask).logits
        out = model(**prompt, use_cache=True)
        torch.testing.assert_close(out.logits, full[:, :prompt["input_ids"].shape[1]], atol=1e-5, rtol=1e-4)
        at = prompt["input_ids"].shape[1]
        for width in (1, 2, 1):  # one token, then two at once (a masked square with a cache), then one
            out = model(input_ids=ids[:, at:at + width], attention_mask=mask[:, :at + width],
                        cache=getattr(out, CACHE_FIELD), use_cache=True)
            torch.testing.assert_close(out.logits, full[:, at:at + width], atol=1e-5, rtol=1e-4)
            at += width


@pytest.mark.parametrize("name", NAMES)
def test_left_padded_prompts_give_the_logits_of_unpadded_ones(tokenizer, name):
    model = build(tokenizer, name)
    batch = encode(tokenizer, PROMPTS)
    assert batch["attention_mask"][1, 0] == 0
    with torch.no_grad():
        padded = model(**batch).logits
        for row, prompt in enumerate(PROMPTS):
            alone = model(**tokenizer([prompt], return_tensors="pt")).logits[0]
            torch.testing.assert_close(padded[row, -alone.shape[0]:], alone, atol=1e-5, rtol=1e-4)


def _layer0_output(model, batch):
    seen = []
    handle = model.model.layers[0].register_forward_hook(lambda mod, args, out: seen.append(out))
    with torch.no_grad():
        logits = model(**batch).logits
    handle.remove()
    return seen[0], logits


@pytest.mark.parametrize("name", NAMES)
def test_pe_layers_are_honoured(tokenizer, name):
    batch = encode(tokenizer, PROMPTS)
    # pe_layers=[]: no positional encoding anywhere, exactly a NoPE model
    model = build(tokenizer, name, pe_layers=[])
    assert pe_parameters(model) == {}
    assert all(type(layer.positional) is NoPositionalEncoding for layer in model.model.layers)
    with torch.no_grad():
        assert torch.equal(model(**batch).logits, same_weights_without_pe(model, tokenizer)(**batch).logits)
    if positional_class(name).kind == "absolute":  # added once, at the input, by layer 0 alone
        without_0 = build(tokenizer, name, pe_layers=[1])
        assert pe_parameters(without_0) == {}
        with torch.no_grad():
            assert torch.equal(without_0(**batch).logits, same_weights_without_pe(without_0, tokenizer)(**batch).logits)
            assert torch.equal(build(tokenizer, name, pe_layers=[0, 1])(**batch).logits,
                               build(tokenizer, name)(**batch).logits)
        return
    # pe_layers=[1]: layer 0 has no PE parameters and computes exactly what a NoPE layer computes
    model = build(tokenizer, name, pe_layers=[1])
    assert not any(n.startswith("model.layers.0.") for n in pe_parameters(model))
    assert type(model.model.layers[0].positional) is NoPositionalEncoding
    assert type(model.model.layers[1].positional) is positional_class(name)
    first, logits = _layer0_output(model, batch)
    nope_first, nope_logits = _layer0_output(same_weights_without_pe(model, tokenizer), batch)
    assert torch.equal(first, nope_first)
    assert torch.equal(logits, nope_logits) == (not has_effect(name))  # ... while layer 1's PE acts


@pytest.mark.parametrize("name", NAMES)
def test_check_unshared_catches_a_shared_parameter(tokenizer, name, tmp_path):
    model = build(tokenizer, name)
    check_unshared(model)  # as built: every layer owns its own
    shared = torch.nn.Parameter(torch.zeros(3))
    for layer in model.model.layers:
        layer.positional.register_parameter("tied", shared)
    with pytest.raises(SharedParameterError, match=r"layers\.1\.positional\.tied and .*layers\.0\.positional\.tied"):
        check_unshared(model)
    with pytest.raises(SharedParameterError):
        save(model, tokenizer, tmp_path / "model")
    assert not (tmp_path / "model").exists()  # refused before anything was written
    with pytest.raises(SharedParameterError):
        model.save_pretrained(tmp_path / "direct")
