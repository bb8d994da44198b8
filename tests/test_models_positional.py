"""The positional-encoding seam: registry, RoPE, and that each hook kind reaches the model."""

import pytest
import torch

from mathkit.models import MathDecoderConfig, MathDecoderForCausalLM, ModelConfigError
from mathkit.models import positional as pe
from mathkit.models.positional import (
    PositionalEncoding,
    RotaryPositionalEncoding,
    build_positional,
    known_positional,
    register_positional,
)

TINY = dict(vocab_size=20, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
            intermediate_size=64, pad_token_id=0, eos_token_id=2)


def tiny_config(**overrides) -> MathDecoderConfig:
    return MathDecoderConfig(**{**TINY, **overrides})


@pytest.fixture
def registry(monkeypatch):
    """A copy of the registry, so test-only methods do not leak into other tests."""
    monkeypatch.setattr(pe, "_REGISTRY", dict(pe._REGISTRY))
    return pe._REGISTRY


def test_known_names_and_unknown_name_lists_them():
    assert {"rope", "none"} <= set(known_positional())
    with pytest.raises(ValueError, match=r"unknown positional encoding 'alibi'.*none.*rope"):
        pe.positional_class("alibi")
    with pytest.raises(ModelConfigError, match="known: none, rope"):
        tiny_config(positional_encoding="alibi")


def test_each_layer_builds_its_own_instance():
    config = tiny_config()
    a, b = build_positional(config, 0), build_positional(config, 1)
    assert isinstance(a, RotaryPositionalEncoding) and a is not b
    assert (a.layer_idx, b.layer_idx) == (0, 1)
    model = MathDecoderForCausalLM(config)
    assert [layer.positional.layer_idx for layer in model.model.layers] == [0, 1]


def test_register_rejects_duplicates_non_subclasses_and_bad_kinds(registry):
    with pytest.raises(ValueError, match="already registered"):
        register_positional("rope")(type("OtherRope", (PositionalEncoding,), {}))
    with pytest.raises(TypeError, match="PositionalEncoding subclass"):
        register_positional("thing")(object)
    with pytest.raises(ValueError, match="kind 'sideways'"):
        register_positional("odd")(type("Odd", (PositionalEncoding,), {"kind": "sideways"}))


def test_unknown_option_is_rejected_and_theta_is_used():
    with pytest.raises(ModelConfigError, match=r"no option\(s\) \['theta'\].*rope_theta"):
        tiny_config(pe_options={"theta": 500.0})
    with pytest.raises(ModelConfigError, match="takes: none"):
        tiny_config(positional_encoding="none", pe_options={"rope_theta": 1.0})
    assert build_positional(tiny_config(pe_options={"rope_theta": 500.0}), 0).theta == 500.0


def test_rope_scores_depend_only_on_relative_position():
    rope = build_positional(tiny_config(), 0)
    torch.manual_seed(0)
    q, k = torch.randn(1, 1, 1, 8), torch.randn(1, 1, 1, 8)

    def score(m, n):
        rq, _ = rope.rotate(q, q, torch.tensor([[m]]))
        _, rk = rope.rotate(k, k, torch.tensor([[n]]))
        return (rq * rk).sum().item()

    assert score(3, 1) == pytest.approx(score(10, 8), abs=1e-5)
    assert score(3, 1) != pytest.approx(score(3, 2), abs=1e-3)
    rq, _ = rope.rotate(q, k, torch.tensor([[0]]))
    torch.testing.assert_close(rq, q)                         # position 0 is the identity
    rq, _ = rope.rotate(q, k, torch.tensor([[7]]))
    torch.testing.assert_close(rq.norm(), q.norm())           # a rotation keeps the norm


def test_rope_needs_even_head_dim():
    with pytest.raises(ValueError, match="even head dimension"):
        tiny_config(hidden_size=36, num_attention_heads=4)    # head_dim 9


def test_none_gives_a_working_model_that_still_is_causal():
    model = MathDecoderForCausalLM(tiny_config(positional_encoding="none")).eval()
    ids = torch.tensor([[5, 6, 7, 8]])
    changed = ids.clone()
    changed[0, 3] = 9
    torch.testing.assert_close(model(ids).logits[:, :3], model(changed).logits[:, :3])


def _distance_bias_class():
    class DistancePenalty(PositionalEncoding):
        """ALiBi-like test method: score bias -slope * (query - key), per head."""

        kind = "bias"
        default_options = {"slope": 0.5}

        def attention_bias(self, query_positions, key_positions):
            distance = (query_positions[:, :, None] - key_positions[:, None, :]).clamp_min(0)
            slopes = self.options["slope"] * torch.arange(1, self.num_heads + 1, dtype=torch.float32)
            return -slopes[None, :, None, None] * distance[:, None].float()

    return DistancePenalty


def test_bias_kind_reaches_attention_and_matches_with_and_without_cache(registry):
    register_positional("test_distance")(_distance_bias_class())
    torch.manual_seed(0)
    model = MathDecoderForCausalLM(tiny_config(positional_encoding="test_distance")).eval()
    ids = torch.tensor([[0, 0, 5, 6, 7], [4, 5, 6, 7, 8]])
    mask = (ids != 0).long()
    # left padding: the padded row's logits equal the same prompt alone
    alone = model(torch.tensor([[5, 6, 7]])).logits
    torch.testing.assert_close(model(ids, attention_mask=mask).logits[:1, 2:], alone, atol=1e-5, rtol=1e-4)
    # a different slope changes the output, so the bias is really applied
    torch.manual_seed(0)
    other = MathDecoderForCausalLM(tiny_config(positional_encoding="test_distance",
                                               pe_options={"slope": 2.0})).eval()
    assert not torch.allclose(other(ids, attention_mask=mask).logits, model(ids, attention_mask=mask).logits)
    # the cache path hands all key positions to the bias: cached and uncached decoding agree
    kwargs = dict(attention_mask=mask, max_new_tokens=6, do_sample=False, pad_token_id=0, eos_token_id=None)
    torch.testing.assert_close(model.generate(ids, use_cache=True, **kwargs),
                               model.generate(ids, use_cache=False, **kwargs))


def test_absolute_kind_reaches_layer_input(registry):
    @register_positional("test_absolute")
    class LayerZeroLearned(PositionalEncoding):
        kind = "absolute"

        def __init__(self, config, layer_idx):
            super().__init__(config, layer_idx)
            self.table = torch.nn.Embedding(self.max_positions, self.hidden_size) if layer_idx == 0 else None

        def embed(self, hidden, position_ids):
            return hidden if self.table is None else hidden + self.table(position_ids)

    torch.manual_seed(0)
    model = MathDecoderForCausalLM(tiny_config(positional_encoding="test_absolute")).eval()
    names = {n for n, _ in model.named_parameters()}
    assert "model.layers.0.positional.table.weight" in names
    assert not any(n.startswith("model.layers.1.positional") for n in names)
    ids = torch.tensor([[0, 0, 5, 6, 7]])
    torch.testing.assert_close(model(ids, attention_mask=(ids != 0).long()).logits[:, 2:],
                               model(ids[:, 2:]).logits, atol=1e-5, rtol=1e-4)
    # the table really reaches the model, at the right position: changing row 3 changes the
    # logits from position 3 on and leaves the earlier positions (which cannot see it) alone
    plain = torch.tensor([[5, 6, 7, 8, 9]])
    with torch.no_grad():
        before = model(plain).logits
        model.model.layers[0].positional.table.weight[3].add_(1.0)
        after = model(plain).logits
    torch.testing.assert_close(after[:, :3], before[:, :3])
    assert not torch.allclose(after[:, 3], before[:, 3], atol=1e-4)
