"""The positional-encoding package: registry and options, and what each method computes by itself.

The contract every method keeps inside the decoder (causality, cache, padding, dtypes, save/load,
pe_layers) is tested for all of them in test_models_positional_zoo.py.
"""

import math

import pytest
import torch

from mathkit.models import MathDecoderConfig, MathDecoderForCausalLM, ModelConfigError, build_decoder
from mathkit.models.char_tokenizer import build_char_tokenizer
from mathkit.models.positional import (
    FIRE,
    Abacus,
    MathAdaptiveRotary,
    NoPositionalEncoding,
    PositionalEncoding,
    PositionContext,
    RotaryPositionalEncoding,
    build_positional,
    causal_bucket,
    geometric_slopes,
    known_positional,
    positional_class,
    register_positional,
)
from mathkit.models.positional import base

TOKENIZER = build_char_tokenizer()
DIGIT_IDS = TOKENIZER.convert_tokens_to_ids(list("0123456789"))
TINY = dict(vocab_size=len(TOKENIZER), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
            intermediate_size=64, pad_token_id=0, eos_token_id=2)


def tiny_config(**overrides) -> MathDecoderConfig:
    return MathDecoderConfig(**{**TINY, **overrides})


def context(ids, mask=None, past=0, cache=None) -> PositionContext:
    """What the decoder builds for new tokens ``ids`` (positions from the mask, like the model)."""
    full = mask if mask is not None else torch.ones(ids.shape[0], past + ids.shape[1], dtype=torch.long)
    keys = (full.cumsum(-1) - 1).clamp_min(0)
    return PositionContext(position_ids=keys[:, past:], key_positions=keys, input_ids=ids,
                           attention_mask=mask, past_length=past, cache=cache)


def encode(text):
    return torch.tensor([TOKENIZER(text)["input_ids"]])


@pytest.fixture
def registry(monkeypatch):
    """A copy of the registry, so test-only methods do not leak into other tests."""
    monkeypatch.setattr(base, "_REGISTRY", dict(base._REGISTRY))
    return base._REGISTRY


# --- registry and options ------------------------------------------------------------------------

def test_unknown_name_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown positional encoding 'xpos'; known: abacus, alibi, .*rope"):
        positional_class("xpos")
    with pytest.raises(ModelConfigError, match="unknown positional encoding 'xpos'"):
        tiny_config(positional_encoding="xpos")


def test_none_is_an_alias_of_nope():
    assert positional_class("none") is positional_class("nope") is NoPositionalEncoding
    assert NoPositionalEncoding.name == "nope"
    assert "none" in known_positional() and "none" not in known_positional(aliases=False)
    assert tiny_config(positional_encoding="none").pe_config()["positional_encoding"] == "none"


def test_each_layer_builds_its_own_instance():
    config = tiny_config()
    a, b = build_positional(config, 0), build_positional(config, 1)
    assert isinstance(a, RotaryPositionalEncoding) and a is not b
    assert (a.layer_idx, b.layer_idx) == (0, 1)
    model = MathDecoderForCausalLM(config)
    assert [layer.positional.layer_idx for layer in model.model.layers] == [0, 1]


def test_construction_takes_any_config_object_with_the_contract_fields():
    class Adapter:  # e.g. what another architecture builds from its own config
        hidden_size, num_attention_heads, max_position_embeddings = 32, 4, 64
        pe_options = {"num_buckets": 8, "max_distance": 16}

    pe = build_positional(Adapter(), 1, name="t5_relative")
    assert (pe.num_buckets, pe.head_dim, pe.layer_idx) == (8, 8, 1)


def test_register_rejects_duplicates_non_subclasses_and_bad_kinds(registry):
    with pytest.raises(ValueError, match="already registered"):
        register_positional("rope")(type("OtherRope", (PositionalEncoding,), {}))
    with pytest.raises(ValueError, match="'none' is already registered"):
        register_positional("fresh", aliases=("none",))(type("Other", (PositionalEncoding,), {}))
    with pytest.raises(TypeError, match="PositionalEncoding subclass"):
        register_positional("thing")(object)
    with pytest.raises(ValueError, match="kind 'sideways'"):
        register_positional("odd")(type("Odd", (PositionalEncoding,), {"kind": "sideways"}))


@pytest.mark.parametrize("name", known_positional())
def test_an_unknown_option_is_rejected_with_the_allowed_ones(name):
    allowed = ", ".join(sorted(positional_class(name).default_options)) or "none"
    with pytest.raises(ModelConfigError, match=rf"{name!r} has no option\(s\) \['bogus'\]; it takes: {allowed}$"):
        tiny_config(positional_encoding=name, pe_options={"bogus": 1})


@pytest.mark.parametrize("name, options, message", [
    ("rope", {"rope_theta": "big"}, "rope_theta='big' should be like its default 10000.0"),
    ("rope", {"rope_theta": 1.0}, "rope_theta must be greater than 1"),
    ("alibi", {"slopes": [0.5, 0.25]}, "list of 4 numbers"),
    ("t5_relative", {"num_buckets": 2}, "at least 4"),
    ("t5_relative", {"num_buckets": 32, "max_distance": 10}, r"max_distance \(10\) must exceed"),
    ("t5_relative", {"num_buckets": 8.5}, "should be like its default 32"),
    ("diet_abs", {"rank": 0}, "rank must be a positive integer"),
    ("diet_rel", {"max_distance": 0}, "max_distance must be a positive integer"),
    ("fire", {"init_c": -1.0}, "must be positive"),
    ("abacus", {}, "needs pe_options\\['digit_token_ids'\\]"),
    ("abacus", {"digit_token_ids": [5, 5]}, "distinct token ids"),
    ("abacus", {"digit_token_ids": DIGIT_IDS, "max_offset": -1}, "max_offset must be >= 0"),
    ("math_adaptive", {"digit_token_ids": [99]}, "inside the vocabulary"),
])
def test_bad_option_values_are_rejected(name, options, message):
    with pytest.raises(ModelConfigError, match=message):
        tiny_config(positional_encoding=name, pe_options=options)


def test_options_reach_the_method():
    assert build_positional(tiny_config(pe_options={"rope_theta": 500.0}), 0).theta == 500.0
    alibi = build_positional(tiny_config(positional_encoding="alibi", pe_options={"slopes": [1, 2, 3, 4]}), 0)
    assert alibi.slopes == [1.0, 2.0, 3.0, 4.0]
    abacus = build_positional(tiny_config(positional_encoding="abacus",
                                          pe_options={"digit_token_ids": DIGIT_IDS, "max_offset": 7}), 0)
    assert abacus.table.num_embeddings == 128 + 7 + 1


# --- RoPE, NoPE ----------------------------------------------------------------------------------

def test_rope_scores_depend_only_on_relative_position():
    rope = build_positional(tiny_config(), 0)
    torch.manual_seed(0)
    q, k = torch.randn(1, 1, 1, 8), torch.randn(1, 1, 1, 8)

    def turned(x, position):
        at = torch.tensor([[position]])
        ctx = PositionContext(position_ids=at, key_positions=at, input_ids=None, attention_mask=None,
                              past_length=0, cache=None)
        return rope.rotate(x, x, ctx)[0]

    def score(m, n):
        return (turned(q, m) * turned(k, n)).sum().item()

    assert score(3, 1) == pytest.approx(score(10, 8), abs=1e-5)
    assert score(3, 1) != pytest.approx(score(3, 2), abs=1e-3)
    torch.testing.assert_close(turned(q, 0), q)                    # position 0 is the identity
    torch.testing.assert_close(turned(q, 7).norm(), q.norm())      # a rotation keeps the norm


def test_rope_needs_even_head_dim():
    with pytest.raises(ValueError, match="even head dimension"):
        tiny_config(hidden_size=36, num_attention_heads=4)    # head_dim 9


# --- absolute methods: added once, at the input ------------------------------------------------

@pytest.mark.parametrize("name", ["sinusoidal", "learned", "abacus"])
@pytest.mark.parametrize("pe_layers", [None, [0], [0, 1]])
def test_absolute_methods_are_added_once_at_the_input(monkeypatch, name, pe_layers):
    torch.manual_seed(0)
    model = build_decoder("small", TOKENIZER, name, pe_layers=pe_layers, hidden_size=32, num_hidden_layers=2,
                          num_attention_heads=4, intermediate_size=64).eval()
    cls = positional_class(name)
    assert not any(n.startswith("model.layers.1.positional") for n, _ in model.named_parameters())
    assert type(model.model.layers[1].positional) is NoPositionalEncoding
    calls, original = [], cls.embed

    def counting(self, hidden, ctx):
        out = original(self, hidden, ctx)
        calls.append(not torch.equal(out, hidden))
        return out

    monkeypatch.setattr(cls, "embed", counting)
    entering = []
    model.model.layers[0].register_forward_pre_hook(lambda mod, args, kwargs: entering.append(args[0]),
                                                    with_kwargs=True)
    ids = encode("12+345=")
    with torch.no_grad():
        model(ids)
    assert calls == [True]                           # one call that changed the hidden states
    pe = model.model.layers[0].positional
    ctx = context(ids)
    added = (pe.table(pe.indices(ctx)) if name == "abacus" else pe.table(ctx.position_ids)
             if name == "learned" else pe.embed(torch.zeros(1, 7, 32), ctx))
    torch.testing.assert_close(entering[0], model.model.embed_tokens(ids) + added)


def test_sinusoidal_values_of_the_papers_table_with_scale_1():
    pe = build_positional(tiny_config(positional_encoding="sinusoidal", pe_options={"scale": 1.0}), 0)
    table = pe.embed(torch.zeros(1, 3, 32), context(torch.zeros(1, 3, dtype=torch.long)))[0]
    torch.testing.assert_close(table[0], torch.tensor([0.0, 1.0] * 16))
    assert table[2, 0].item() == pytest.approx(math.sin(2)) and table[2, 1].item() == pytest.approx(math.cos(2))
    assert table[2, 2].item() == pytest.approx(math.sin(2 / 10000 ** (2 / 32)))


def test_sinusoidal_default_scale_puts_the_table_at_the_token_embeddings_size():
    config = tiny_config(positional_encoding="sinusoidal")
    pe = build_positional(config, 0)
    table = pe.embed(torch.zeros(1, 64, 32), context(torch.zeros(1, 64, dtype=torch.long)))[0]
    rms = table.pow(2).mean().sqrt().item()
    assert rms == pytest.approx(config.initializer_range / math.sqrt(2), rel=1e-3)
    with pytest.raises(ValueError, match="scale must be positive"):
        tiny_config(positional_encoding="sinusoidal", pe_options={"scale": 0.0})


# --- ALiBi, T5, DIET, FIRE ---------------------------------------------------------------------

def test_alibi_slopes_for_8_heads_are_the_papers_geometric_sequence():
    assert geometric_slopes(8) == [2.0 ** -i for i in range(1, 9)]
    assert geometric_slopes(4) == [2.0 ** (-2 * i) for i in range(1, 5)]


@pytest.mark.parametrize("heads", [3, 6, 12])
def test_alibi_slopes_for_other_head_counts_match_bloom(heads):
    from transformers.models.bloom.modeling_bloom import _get_alibi_slopes

    torch.testing.assert_close(torch.tensor(geometric_slopes(heads)), _get_alibi_slopes(heads, "cpu"))


def test_alibi_bias_is_minus_slope_times_distance():
    alibi = build_positional(tiny_config(positional_encoding="alibi"), 0)
    bias = alibi.attention_bias(context(torch.zeros(1, 3, dtype=torch.long)))
    assert bias.shape == (1, 4, 3, 3) and bias.dtype == torch.float32
    torch.testing.assert_close(bias[0, 0], torch.tensor([[0.0, 0, 0], [-0.25, 0, 0], [-0.5, -0.25, 0]]))
    torch.testing.assert_close(bias[0, 3, 2, 0], torch.tensor(-2 * 2.0 ** -8))


def test_t5_buckets_match_a_hand_computed_table():
    # num_buckets 8: distances 0..3 exact; 4..16 in 4 log buckets (4 + floor(log(d/4)/log(4) * 4)).
    distance = torch.tensor([-3, 0, 1, 3, 4, 5, 6, 7, 8, 11, 12, 15, 16, 100])
    expected = torch.tensor([0, 0, 1, 3, 4, 4, 5, 5, 6, 6, 7, 7, 7, 7])
    assert causal_bucket(distance, num_buckets=8, max_distance=16).tolist() == expected.tolist()


def test_t5_buckets_agree_with_transformers_t5():
    from transformers.models.t5.modeling_t5 import T5Attention

    distance = torch.arange(0, 400)
    theirs = T5Attention._relative_position_bucket(-distance, bidirectional=False, num_buckets=32, max_distance=128)
    assert torch.equal(causal_bucket(distance, 32, 128), theirs)


def test_t5_and_diet_rel_biases_depend_only_on_relative_distance():
    for name in ("t5_relative", "diet_rel"):
        pe = build_positional(tiny_config(positional_encoding=name), 0)
        bias = pe.attention_bias(context(torch.zeros(1, 6, dtype=torch.long)))[0]
        torch.testing.assert_close(bias[:, 3, 1], bias[:, 5, 3])          # distance 2 at two places
        assert not torch.equal(bias[:, 3, 1], bias[:, 3, 2])


def test_diet_rel_clips_far_distances_and_diet_abs_is_a_low_rank_product():
    rel = build_positional(tiny_config(positional_encoding="diet_rel", pe_options={"max_distance": 2}), 0)
    bias = rel.attention_bias(context(torch.zeros(1, 6, dtype=torch.long)))[0]
    torch.testing.assert_close(bias[:, 5, 0], bias[:, 5, 3])          # distances 5 and 2 share a scalar
    torch.testing.assert_close(bias[:, 5, 0], rel.bias.weight[2])
    dabs = build_positional(tiny_config(positional_encoding="diet_abs", pe_options={"rank": 3}), 0)
    bias = dabs.attention_bias(context(torch.zeros(1, 4, dtype=torch.long)))[0]
    q, k = dabs.query_table.weight.view(128, 4, 3), dabs.key_table.weight.view(128, 4, 3)
    torch.testing.assert_close(bias[2, 3, 1], (q[3, 2] * k[1, 2]).sum() / math.sqrt(3))


def test_fire_is_its_formula():
    fire = build_positional(tiny_config(positional_encoding="fire", pe_options={"init_threshold": 2.0}), 0)
    assert isinstance(fire, FIRE) and fire.c.item() == pytest.approx(0.1)
    bias = fire.attention_bias(context(torch.zeros(1, 5, dtype=torch.long)))[0]  # (heads, 5, 5)
    psi = lambda x: math.log(0.1 * x + 1)  # noqa: E731
    for i, j in ((4, 1), (1, 0), (3, 3)):
        feature = torch.tensor([[psi(i - j) / (psi(max(2.0, i)) + 1e-6)]])
        torch.testing.assert_close(bias[:, i, j], fire.mlp(feature)[0])


# --- Abacus and math_adaptive: digit places --------------------------------------------------------

def abacus(**options):
    return build_positional(tiny_config(positional_encoding="abacus",
                                        pe_options={"digit_token_ids": DIGIT_IDS, **options}), 0)


def test_abacus_indices_count_places_within_each_number():
    pe = abacus().eval()
    assert pe.indices(context(encode("12+345="))).tolist() == [[1, 2, 0, 1, 2, 3, 0]]
    # left padding: padded slots are not digits; the real tokens keep their indices
    TOKENIZER.padding_side = "left"
    batch = TOKENIZER(["12+345=", "7+8="], return_tensors="pt", padding=True)
    TOKENIZER.padding_side = "right"
    indices = pe.indices(context(batch["input_ids"], batch["attention_mask"]))
    assert indices.tolist() == [[1, 2, 0, 1, 2, 3, 0], [0, 0, 0, 1, 0, 1, 0]]


def test_abacus_offset_applies_only_in_training_one_per_sequence():
    pe = abacus(max_offset=50)
    ids = encode("12+345=").repeat(16, 1)
    torch.manual_seed(0)
    trained = pe.train().indices(context(ids))
    offsets = trained[:, 0] - 1
    assert ((offsets >= 0) & (offsets <= 50)).all() and len(set(offsets.tolist())) > 1
    places = torch.tensor([1, 2, 0, 1, 2, 3, 0])
    assert torch.equal(trained, places + offsets[:, None] * (places > 0))   # non-digits stay 0
    assert pe.eval().indices(context(ids)).tolist() == [places.tolist()] * 16


def test_digit_places_continue_across_cached_steps():
    from transformers.cache_utils import DynamicCache

    pe, cache = abacus().eval(), DynamicCache()
    ids = encode("12+3456")
    assert pe.indices(context(ids[:, :4], cache=cache)).tolist() == [[1, 2, 0, 1]]
    assert pe.indices(context(ids[:, 4:5], past=4, cache=cache)).tolist() == [[2]]
    assert pe.indices(context(ids[:, 5:7], past=5, cache=cache)).tolist() == [[3, 4]]
    with pytest.raises(ValueError, match="digit run of the 3 cached tokens is unknown"):
        pe.indices(context(ids[:, 3:4], past=3, cache=DynamicCache()))


def test_abacus_needs_input_ids():
    ctx = context(encode("12"))
    ctx.input_ids = None
    with pytest.raises(ValueError, match="need input_ids"):
        abacus().indices(ctx)


def test_math_adaptive_rotates_half_the_pairs_by_position_and_half_by_digit_place():
    config = tiny_config(positional_encoding="math_adaptive", pe_options={"digit_token_ids": DIGIT_IDS})
    pe = build_positional(config, 0)
    assert isinstance(pe, MathAdaptiveRotary) and torch.equal(pe.digit_scale.data, torch.ones(4))
    torch.manual_seed(0)
    ids = encode("12+345=")
    ctx = context(ids)
    q = torch.randn(1, 4, 7, 8)
    turned, _ = pe.rotate(q, q, ctx)
    # pairs 0-1 (dims 0,1 and 4,5) turn as RoPE with 2 pairs would: compare on a 4-dim head
    small = RotaryPositionalEncoding(type("C", (), dict(hidden_size=16, num_attention_heads=4,
                                                        max_position_embeddings=128, pe_options={}))(), 0)
    expected, _ = small.rotate(q[..., [0, 1, 4, 5]], q[..., [0, 1, 4, 5]], ctx)
    torch.testing.assert_close(turned[..., [0, 1, 4, 5]], expected)
    # pairs 2-3 turn by the digit place: identity on non-digits, equal places turn equally
    torch.testing.assert_close(turned[..., 2, [2, 3, 6, 7]], q[..., 2, [2, 3, 6, 7]])   # "+"
    same = q.clone()
    same[:, :, 4] = same[:, :, 1]                                  # "4" (place 2) like "2" (place 2)
    turned_same, _ = pe.rotate(same, same, ctx)
    torch.testing.assert_close(turned_same[..., 4, [2, 3, 6, 7]], turned_same[..., 1, [2, 3, 6, 7]])
    # the learned per-head scale reaches the digit stream only
    with torch.no_grad():
        pe.digit_scale.zero_()
    zeroed, _ = pe.rotate(q, q, ctx)
    torch.testing.assert_close(zeroed[..., [2, 3, 6, 7]], q[..., [2, 3, 6, 7]])


def test_build_decoder_fills_digit_ids_from_the_tokenizer():
    model = build_decoder("small", TOKENIZER, "abacus", hidden_size=32, num_hidden_layers=1, num_attention_heads=4)
    assert model.config.pe_options["digit_token_ids"] == DIGIT_IDS
    assert isinstance(model.model.layers[0].positional, Abacus)
    given = build_decoder("small", TOKENIZER, "math_adaptive", pe_options={"digit_token_ids": [5, 6]},
                          hidden_size=32, num_hidden_layers=1, num_attention_heads=4)
    assert given.config.pe_options["digit_token_ids"] == [5, 6]
    assert "digit_token_ids" not in build_decoder("small", TOKENIZER, "rope").config.pe_options
