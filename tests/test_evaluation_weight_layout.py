"""Column-major linear weights while decoding: the same model, other strides, undone afterwards."""

import pytest
import torch

from mathkit.evaluation.weight_layout import column_major_linears
from tests.test_evaluation_evaluator import tiny_llama, tiny_tokenizer


@pytest.fixture()
def model_and_tok():
    tok = tiny_tokenizer()
    tok.padding_side = "left"
    model = tiny_llama(tok, seed=3, hidden=48)
    model.config.tie_word_embeddings = True
    model.tie_weights()
    return model, tok


def _linear_weights(model):
    return {name: m.weight for name, m in model.named_modules() if isinstance(m, torch.nn.Linear)}


def test_weights_are_column_major_inside_and_bit_identical_and_contiguous_after(model_and_tok):
    model, tok = model_and_tok
    before = {n: w.detach().clone() for n, w in _linear_weights(model).items()}
    ids = tok(["Q: 12+30?", "x"], return_tensors="pt", padding=True)
    with torch.no_grad():
        reference = model(**ids).logits
        with column_major_linears(model) as changed:
            inside = _linear_weights(model)
            assert all(not w.is_contiguous() and w.t().is_contiguous() for w in inside.values())
            assert changed == len({id(w) for w in inside.values()})  # the tied lm_head / embedding once
            assert model.lm_head.weight is model.model.embed_tokens.weight
            torch.testing.assert_close(model(**ids).logits, reference)
    for name, weight in _linear_weights(model).items():
        assert weight.is_contiguous() and torch.equal(weight, before[name])


def test_the_layout_is_undone_when_the_block_raises(model_and_tok):
    model, _ = model_and_tok
    with pytest.raises(RuntimeError, match="boom"), column_major_linears(model):
        raise RuntimeError("boom")
    assert all(w.is_contiguous() for w in _linear_weights(model).values())


def test_views_and_other_dtypes_are_left_alone():
    shared = torch.nn.Parameter(torch.randn(40))
    view_layer, half_layer = torch.nn.Linear(4, 4), torch.nn.Linear(4, 4).to(torch.bfloat16)
    view_layer.weight.data = shared.data[:16].view(4, 4)  # contiguous, in a flat buffer (FSDP-like)
    assert view_layer.weight.is_contiguous()
    model = torch.nn.Sequential(view_layer, half_layer)
    with column_major_linears(model) as changed:
        assert changed == 0
        assert view_layer.weight.data_ptr() == shared.data_ptr() and half_layer.weight.is_contiguous()


def test_batched_generation_decodes_column_major_and_restores(model_and_tok, monkeypatch):
    from mathkit.evaluation import decoding
    from mathkit.evaluation.generation import generate_batched

    model, tok = model_and_tok
    seen = []
    real = decoding.greedy_loop

    def spy(*args, **kwargs):
        seen.append(model.model.layers[0].mlp.up_proj.weight.is_contiguous())
        return real(*args, **kwargs)

    monkeypatch.setattr(decoding, "greedy_loop", spy)
    prompts = ["Q: 1+1?", "Q: what is 7 times 6?", "x"]
    out = generate_batched(model, tok, prompts, max_new_tokens=6, batch_size=2, progress=False)
    assert seen == [False, False]  # both batches decoded with the transposed layout
    assert all(w.is_contiguous() for w in _linear_weights(model).values())
    # the layout does not change what is written: each prompt alone, weights row-major
    for prompt, completion in zip(prompts, out.completions):
        enc = tok([prompt], return_tensors="pt")
        rows, _ = decoding.greedy_compacting(model, enc["input_ids"], enc["attention_mask"], max_new_tokens=6,
                                             stop_ids=[tok.eos_token_id])
        assert tok.decode(rows[0], skip_special_tokens=True) == completion
