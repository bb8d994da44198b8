"""Batched greedy generation: the caller's order, EOS handling, and bf16 autocast that really runs
in bf16 and agrees with fp32 where the model's choices are clear."""

import pytest
import torch

from mathkit.evaluation.generation import generate_batched, stop_token_ids
from mathkit.evaluation.stopping import StopRule
from tests.test_evaluation_evaluator import tiny_llama, tiny_tokenizer

PROMPTS = ["Question: What is 5+7?\nAnswer:", "Q: 1+1?\nA:", "Question: A long one about pens?\nAnswer:",
           "Q: 10-3?\nA:", "Q: half of 1?\nA:"]


@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer()


@pytest.fixture(scope="module")
def decisive_model(tok):
    """A tiny random Llama whose output layer is scaled up: the best next token leads the
    second by far more than bf16 rounding can move a logit, so greedy choices must not change."""
    model = tiny_llama(tok, seed=3, hidden=64)
    with torch.no_grad():
        model.lm_head.weight.mul_(400.0)
    return model


def _logit_dtypes(model):
    seen = []
    handle = model.lm_head.register_forward_hook(lambda mod, args, out: seen.append(out.dtype))
    return seen, handle


def test_bf16_generation_runs_in_bf16_and_agrees_with_fp32(decisive_model, tok):
    kw = dict(max_new_tokens=12, batch_size=1, progress=False)
    seen, handle = _logit_dtypes(decisive_model)
    try:
        fp32 = generate_batched(decisive_model, tok, PROMPTS, bf16=False, **kw)
        fp32_dtypes = set(seen)
        seen.clear()
        bf16 = generate_batched(decisive_model, tok, PROMPTS, bf16=True, **kw)
        bf16_dtypes = set(seen)
    finally:
        handle.remove()
    assert fp32_dtypes == {torch.float32}
    assert bf16_dtypes == {torch.bfloat16}      # autocast really ran the matmuls in bf16
    assert bf16.completions == fp32.completions
    assert bf16.new_tokens == fp32.new_tokens and all(n > 0 for n in bf16.new_tokens)


def test_batched_results_come_back_in_the_callers_order(decisive_model, tok):
    one = [generate_batched(decisive_model, tok, [p], max_new_tokens=8, progress=False).completions[0]
           for p in PROMPTS]
    batched = generate_batched(decisive_model, tok, PROMPTS, max_new_tokens=8, batch_size=2,
                               progress=False)
    assert batched.completions == one
    assert len(batched.finished) == len(PROMPTS) and batched.seconds > 0
    with pytest.raises(ValueError, match="batch_size"):
        generate_batched(decisive_model, tok, PROMPTS, batch_size=0)


def test_stop_token_ids_include_the_generation_config_eos(decisive_model, tok):
    decisive_model.generation_config.eos_token_id = [tok.eos_token_id, 7]
    try:
        assert stop_token_ids(decisive_model, tok) == [tok.eos_token_id, 7]
    finally:
        decisive_model.generation_config.eos_token_id = tok.eos_token_id


def _stopping_model(decisive_model, tok):
    """The decisive model with two common characters as extra stop tokens (rows end apart)."""
    decisive_model.generation_config.eos_token_id = [tok.eos_token_id] + tok.convert_tokens_to_ids(["e", "7"])
    return decisive_model


@pytest.mark.parametrize("stop", [None, StopRule(stop_strings=("(",)),
                                  StopRule(stop_strings=("m8", "Q;"))])
def test_compacting_and_generate_give_the_same_completions(decisive_model, tok, stop):
    model = _stopping_model(decisive_model, tok)
    try:
        kw = dict(max_new_tokens=16, batch_size=3, progress=False, stop=stop)
        compact = generate_batched(model, tok, PROMPTS, decoder="compact", **kw)
        static = generate_batched(model, tok, PROMPTS, decoder="generate", **kw)
        auto = generate_batched(model, tok, PROMPTS, **kw)
    finally:
        model.generation_config.eos_token_id = tok.eos_token_id
    assert auto.decoder == "compact" and static.decoder == "generate"
    for field in ("completions", "new_tokens", "finished", "stopped_early"):
        assert getattr(compact, field) == getattr(static, field) == getattr(auto, field), field
    assert compact.slot_use == 1.0 and compact.decode_slots <= static.decode_slots
    if stop is not None:
        assert any(compact.stopped_early)
        for text, early in zip(compact.completions, compact.stopped_early):
            assert not any(s in text for s in stop.stop_strings)  # cut before the stop string


def test_decoder_choice(decisive_model, tok):
    from mathkit.evaluation.generation import choose_decoder
    from tests.test_evaluation_evaluator import OracleLM

    assert choose_decoder(decisive_model, "auto", calculator=False) == "compact"
    assert choose_decoder(decisive_model, "auto", calculator=True) == "generate"
    assert choose_decoder(OracleLM(tok, {}), "auto", calculator=False) == "generate"
    with pytest.raises(ValueError, match="calculator"):
        choose_decoder(decisive_model, "compact", calculator=True)
    with pytest.raises(ValueError, match="DynamicCache"):
        choose_decoder(OracleLM(tok, {}), "compact", calculator=False)
    with pytest.raises(ValueError, match="unknown decoder"):
        choose_decoder(decisive_model, "paged", calculator=False)


def test_rows_ended_by_the_rule_count_the_same_tokens_when_pad_is_eos(decisive_model):
    """SmolLM2 pads with its EOS: generate's padding after a rule-ended row is no new token."""
    tok = tiny_tokenizer()
    tok.pad_token = tok.eos_token
    kw = dict(max_new_tokens=16, batch_size=5, progress=False, stop=StopRule(stop_strings=("(",)))
    compact = generate_batched(decisive_model, tok, PROMPTS, decoder="compact", **kw)
    static = generate_batched(decisive_model, tok, PROMPTS, decoder="generate", **kw)
    assert any(static.stopped_early) and not all(static.stopped_early)
    assert static.new_tokens == compact.new_tokens and static.completions == compact.completions


class _ExternalGreedy:
    """A model outside torch, as ONNX Runtime or llama.cpp backends are: it decodes a batch
    itself through ``greedy_rows``; here by running the torch model's own compacting loop."""

    def __init__(self, model):
        self.inner, self.device, self.calls = model, torch.device("cpu"), 0

    def greedy_rows(self, input_ids, attention_mask, *, max_new_tokens, stop_ids, stopper):
        from mathkit.evaluation.decoding import greedy_compacting

        self.calls += 1
        return greedy_compacting(self.inner, input_ids, attention_mask, max_new_tokens=max_new_tokens,
                                 stop_ids=stop_ids, stopper=stopper)


def test_an_external_model_decodes_through_greedy_rows(decisive_model, tok):
    from mathkit.evaluation.generation import choose_decoder

    external = _ExternalGreedy(decisive_model)
    stop_ids = stop_token_ids(decisive_model, tok)
    assert choose_decoder(external, "auto", calculator=False) == "external"
    with pytest.raises(ValueError, match="outside torch"):
        choose_decoder(external, "compact", calculator=False)
    with pytest.raises(ValueError, match="calculator"):
        choose_decoder(external, "auto", calculator=True)
    with pytest.raises(ValueError, match="greedy_rows"):
        choose_decoder(decisive_model, "external", calculator=False)
    # the wrapper has no stop ids of its own: generate_batched asks the tokenizer, so give it the same
    external.generation_config = decisive_model.generation_config
    out = generate_batched(external, tok, PROMPTS, max_new_tokens=12, batch_size=2, progress=False)
    ref = generate_batched(decisive_model, tok, PROMPTS, max_new_tokens=12, batch_size=2, progress=False)
    assert out.decoder == "external" and external.calls == 3
    assert out.completions == ref.completions and out.new_tokens == ref.new_tokens
    assert stop_ids == stop_token_ids(external, tok)
