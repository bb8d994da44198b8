"""GPT-NeoX with its rotary embedding swapped for each mathkit positional encoding: forward and
generate, cache and padding invariance, causality, the old rotary out of the picture, RoPE
reproducing Pythia, LoRA + encoding gradients, save/load of full models and adapters, errors."""

import json

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import (
    GPTNeoXConfig,
    GPTNeoXForCausalLM,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
)

from mathkit.errors import ParamsError
from mathkit.models import load, save
from mathkit.models.neox_positional import (
    attach_lora_with_pe,
    positional_settings,
    swap_positional,
)
from mathkit.models.positional import check_unshared, known_positional, positional_class

ENCODINGS = known_positional(aliases=False)
ROTARY_PCT = [1.0, 0.25]
# A head of 8 channels at rotary_pct 0.25 leaves 2 rotary channels: too few for math_adaptive (>= 4).
TOO_NARROW = {("math_adaptive", 0.25)}
CASES = [(n, pct) for n in ENCODINGS for pct in ROTARY_PCT if (n, pct) not in TOO_NARROW]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tokenizer():
    """A 64-token word-level tokenizer: specials, the ten digits (single tokens, as Abacus needs), letters."""
    words = ["<unk>", "<pad>", "<eos>", "+", "=", " ", *"0123456789", *"abcdefghijklmnopqrstuvwxyz"]
    words += [f"w{i}" for i in range(64 - len(words))]
    backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    return PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", pad_token="<pad>",
                                   eos_token="<eos>")


def tiny_neox(rotary_pct=1.0, attn="sdpa", seed=0):
    torch.manual_seed(seed)
    config = GPTNeoXConfig(vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                           intermediate_size=64, max_position_embeddings=64, rotary_pct=rotary_pct,
                           pad_token_id=1, eos_token_id=2, bos_token_id=2)
    config._attn_implementation = attn
    return GPTNeoXForCausalLM(config).eval()


def swapped(name, tokenizer, rotary_pct=1.0, attn="sdpa", pe_layers=None):
    return swap_positional(tiny_neox(rotary_pct, attn), name, pe_layers=pe_layers, tokenizer=tokenizer)


def ids(*rows):
    return torch.tensor(rows)


@torch.no_grad()
def logits(model, input_ids, attention_mask=None, **kw):
    return model(input_ids=input_ids, attention_mask=attention_mask, **kw).logits


# Rows with digit runs, so Abacus has something to index.
ROW = [10, 11, 12, 3, 13, 14, 4, 15, 16, 20, 21]
OTHER = [30, 31, 17, 18, 19, 3, 11, 4]


@pytest.mark.parametrize(("name", "rotary_pct"), CASES)
def test_forward_generate_cache_and_padding(name, rotary_pct, tokenizer):
    model = swapped(name, tokenizer, rotary_pct)
    pad = 1
    batch = ids([pad] * 3 + OTHER, ROW)
    mask = (batch != pad).long()
    full = logits(model, batch, mask)
    assert full.shape == (2, len(ROW), 64) and torch.isfinite(full).all()

    # left padding: the padded row's real tokens see what they see unpadded
    torch.testing.assert_close(full[0, 3:], logits(model, ids(OTHER))[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(full[1], logits(model, ids(ROW))[0], atol=1e-5, rtol=1e-5)

    # with a cache, step by step, equals the full forward
    out = model(input_ids=batch[:, :6], attention_mask=mask[:, :6], use_cache=True)
    steps, cache = [out.logits], out.cache
    for t in range(6, batch.shape[1]):
        out = model(input_ids=batch[:, t:t + 1], attention_mask=mask[:, :t + 1], cache=cache, use_cache=True)
        steps.append(out.logits)
        cache = out.cache
    torch.testing.assert_close(torch.cat(steps, dim=1)[0, 3:], full[0, 3:], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(torch.cat(steps, dim=1)[1], full[1], atol=1e-5, rtol=1e-5)

    # causality: changing the last token changes no real token before it
    changed = batch.clone()
    changed[:, -1] = 5
    after = logits(model, changed, mask)
    torch.testing.assert_close(after[0, 3:-1], full[0, 3:-1], rtol=0, atol=0)
    torch.testing.assert_close(after[1, :-1], full[1, :-1], rtol=0, atol=0)

    # greedy generation of the padded batch continues each row as it would alone
    def continuation(input_ids, attention_mask=None):
        out = model.generate(input_ids=input_ids, attention_mask=attention_mask, max_new_tokens=4,
                             do_sample=False, pad_token_id=pad)
        return out[:, input_ids.shape[1]:]

    together = continuation(batch, mask)
    assert together.shape == (2, 4)
    assert together[0].tolist() == continuation(ids(OTHER))[0].tolist()
    assert together[1].tolist() == continuation(ids(ROW))[0].tolist()
    check_unshared(model)


@pytest.mark.parametrize(("name", "rotary_pct"), CASES)
def test_the_models_own_rotary_no_longer_counts(name, rotary_pct, tokenizer):
    model = tiny_neox(rotary_pct)
    batch = ids(ROW)
    before = logits(model, batch)
    rotary = model.gpt_neox.rotary_emb
    rotary.inv_freq.mul_(3.0)
    assert not torch.allclose(logits(model, batch), before)  # it did count before the swap
    swap_positional(model, name, tokenizer=tokenizer)
    after = logits(model, batch)
    rotary.inv_freq.div_(7.0)
    torch.testing.assert_close(logits(model, batch), after, rtol=0, atol=0)


@pytest.mark.parametrize("rotary_pct", ROTARY_PCT)
def test_rope_with_pythias_theta_reproduces_pythia(rotary_pct, tokenizer):
    model = tiny_neox(rotary_pct)
    batch = ids(ROW, OTHER + [6, 7, 8])
    original = logits(model, batch)
    swap_positional(model, "rope", {"rope_theta": model.config.rope_parameters["rope_theta"]})
    torch.testing.assert_close(logits(model, batch), original, atol=1e-5, rtol=1e-5)
    # on the rotary channels only: a full-head RoPE would have changed the partial-rotary model
    assert positional_settings(model).head_dim == int(8 * rotary_pct)


@pytest.mark.parametrize("name", [n for n in ENCODINGS if positional_class(n).kind == "bias"])
def test_bias_encodings_agree_in_eager_and_sdpa(name, tokenizer):
    batch = ids([1, 1] + OTHER, ROW[:10])
    mask = (batch != 1).long()
    eager = logits(swapped(name, tokenizer, attn="eager"), batch, mask)
    sdpa = logits(swapped(name, tokenizer, attn="sdpa"), batch, mask)
    torch.testing.assert_close(eager[0, 2:], sdpa[0, 2:], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(eager[1], sdpa[1], atol=1e-5, rtol=1e-5)


def test_pe_layers_leave_other_layers_without_positions(tokenizer):
    model = swapped("alibi", tokenizer, pe_layers=[1])
    assert model.gpt_neox.layers[0].attention.positional is None
    assert model.gpt_neox.layers[1].attention.positional is not None
    everywhere = swapped("alibi", tokenizer)
    assert not torch.allclose(logits(model, ids(ROW)), logits(everywhere, ids(ROW)))
    learned = swapped("learned", tokenizer)  # absolute: layer 0 only, added once at the input
    assert [layer.attention.positional is not None for layer in learned.gpt_neox.layers] == [True, False]


def _pct(name):
    """Pythia's partial rotary (0.25) where the encoding fits on 2 channels, else a full head."""
    return 1.0 if (name, 0.25) in TOO_NARROW else 0.25


def _perturb_encodings(model, scale=0.5):
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".positional." in name:
                p.add_(scale * torch.randn_like(p))


@pytest.mark.parametrize("checkpointing", [False, True])
@pytest.mark.parametrize("name", ENCODINGS)
def test_gradients_reach_lora_and_encoding_only(name, checkpointing, tokenizer):
    pct = _pct(name)
    model = attach_lora_with_pe(swapped(name, tokenizer, rotary_pct=pct), r=4, alpha=8, dropout=0.0)
    model.train()
    if checkpointing:
        model.activation_checkpointing_enable()  # the Trainer's way, with transformers' defaults
        assert all(layer.gradient_checkpointing for layer in model.base_model.model.gpt_neox.layers)
    with torch.no_grad():  # LoRA's B starts at zero, which would leave A without gradient
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_()
    batch = ids(ROW, ROW[::-1])
    model(input_ids=batch, labels=batch).loss.backward()
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    with_grad = {n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    lora = {n for n in trainable if "lora_" in n}
    encoding = {n for n in trainable if ".positional.modules_to_save." in n}
    assert lora and trainable == lora | encoding
    assert with_grad == trainable
    expected = {"base_model.model." + n.replace(".positional.", ".positional.modules_to_save.default.")
                for n, p in swapped(name, tokenizer, pct).named_parameters() if ".positional." in n}
    assert encoding == expected  # every encoding parameter trains, in every layer that has one


@pytest.mark.parametrize("name", ENCODINGS)
def test_fp16_base_trains_encodings_and_lora_in_fp32(name, tokenizer):
    """fp16 mixed precision (the GPU profiles) refuses fp16 trainable tensors: the frozen base may be
    fp16, the encodings (built fp32 by the swap) and LoRA (peft upcasts) must not be."""
    model = swap_positional(tiny_neox().to(torch.float16), name, tokenizer=tokenizer)
    model = attach_lora_with_pe(model, r=4, alpha=8).train()
    batch = ids(ROW, ROW[::-1])
    mask = torch.ones_like(batch)
    mask[0, :2] = 0
    out = model(input_ids=batch, attention_mask=mask, labels=batch)
    out.loss.backward()
    assert out.logits.dtype == torch.float16 and torch.isfinite(out.loss)
    assert {p.dtype for p in model.parameters() if p.requires_grad} == {torch.float32}


@pytest.mark.parametrize("name", ENCODINGS)
def test_full_model_saves_and_loads_with_its_encoding(name, tokenizer, tmp_path):
    model = swapped(name, tokenizer, rotary_pct=_pct(name))
    _perturb_encodings(model)  # trained values, not the ones a fresh swap would build
    batch = ids(ROW)
    out = save(model, tokenizer, tmp_path / "model")
    config = json.loads((out / "pe_config.json").read_text())
    assert config["positional_encoding"] == name
    assert config["pe_layers"] == model.gpt_neox.positional_settings.pe_layers
    loaded, _ = load(out, device="cpu")
    torch.testing.assert_close(logits(loaded, batch), logits(model, batch), rtol=0, atol=0)


@pytest.mark.parametrize("name", ENCODINGS)
def test_adapter_saves_and_loads_with_trained_encodings(name, tokenizer, tmp_path):
    base_dir = save(tiny_neox(_pct(name)), tokenizer, tmp_path / "base")
    base, _ = load(base_dir, device="cpu")
    layers = None if positional_class(name).kind == "absolute" else [1]
    model = swap_positional(base, name, pe_layers=layers, tokenizer=tokenizer)
    model = attach_lora_with_pe(model, r=4, alpha=8)
    _perturb_encodings(model)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_()
    model.eval()
    batch = ids(ROW)
    out = save(model, tokenizer, tmp_path / "adapter")
    loaded, _ = load(out, device="cpu")
    torch.testing.assert_close(logits(loaded, batch), logits(model, batch), rtol=0, atol=0)
    merged, _ = load(out, merge=True, device="cpu")
    torch.testing.assert_close(logits(merged, batch), logits(model, batch), atol=1e-5, rtol=1e-5)


def test_clear_errors(tokenizer):
    with pytest.raises(ParamsError, match="unknown positional encoding 'spiral'"):
        swap_positional(tiny_neox(), "spiral")
    llama = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64,
                                         num_hidden_layers=1, num_attention_heads=4))
    with pytest.raises(ParamsError, match="GPT-NeoX"):
        swap_positional(llama, "alibi")
    with pytest.raises(ParamsError, match="no option"):
        swap_positional(tiny_neox(), "alibi", {"slope": 1.0})
    with pytest.raises(ParamsError, match="at least 4, got 2"):  # math_adaptive on 2 rotary channels
        swap_positional(tiny_neox(0.25), "math_adaptive", tokenizer=tokenizer)
    with pytest.raises(ParamsError, match="needs the digit token ids"):
        swap_positional(tiny_neox(), "abacus")
    with pytest.raises(ParamsError, match="pe_layers"):
        swap_positional(tiny_neox(), "alibi", pe_layers=[2])
    with pytest.raises(ParamsError, match="swap_positional first"):
        attach_lora_with_pe(tiny_neox())
    wrapped = attach_lora_with_pe(swapped("alibi", tokenizer))
    with pytest.raises(ParamsError, match="before attaching LoRA"):
        swap_positional(wrapped, "rope")
