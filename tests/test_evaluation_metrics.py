"""Metrics: intervals, answer accuracy, token accuracy, BLEU, ROUGE-L, perplexity, McNemar."""

import math

import pytest
import torch

from mathkit.evaluation.metrics import (
    accuracy_by,
    accuracy_summary,
    answer_accuracy,
    bleu,
    exact_match,
    format_interval,
    headline_accuracy,
    mcnemar_exact,
    perplexity,
    perplexity_from_loss,
    rouge_l,
    token_accuracy,
    wilson_interval,
)


def test_wilson_interval_known_values():
    lo, hi = wilson_interval(2, 100)
    assert lo == pytest.approx(0.0055, abs=1e-4) and hi == pytest.approx(0.0700, abs=1e-4)
    assert wilson_interval(0, 10)[0] == 0.0
    assert wilson_interval(10, 10)[1] == pytest.approx(1.0)
    assert wilson_interval(0, 0) == (0.0, 0.0)
    with pytest.raises(ValueError):
        wilson_interval(5, 3)


def test_accuracy_summary():
    s = accuracy_summary([True, False, True, True])
    assert s["accuracy"] == 0.75 and s["n"] == 4 and s["correct"] == 3
    assert s["ci95"][0] < 0.75 < s["ci95"][1]
    assert accuracy_summary([True, None, False]) == accuracy_summary([True, False])  # None: ungraded


def test_answer_accuracy_uses_equivalence_and_exact_match_does_not():
    preds, golds = ["0.5", "1,000", "7", None], ["1/2", "1000", "8", "3"]
    assert answer_accuracy(preds, golds)["correct"] == 2
    assert answer_accuracy(preds + ["1"], golds + ["The sequence is not periodic"])["n"] == 4
    assert exact_match(preds, golds)["correct"] == 1          # 1,000 == 1000 in canonical form
    assert exact_match(preds, golds, canonical=False)["correct"] == 0
    with pytest.raises(ValueError):
        answer_accuracy(["1"], ["1", "2"])


def test_token_accuracy_from_ids_and_logits():
    labels = torch.tensor([[-100, 1, 2, 3], [-100, -100, 4, 0]])
    ids = torch.tensor([[9, 1, 2, 0], [9, 9, 4, 1]])
    assert token_accuracy(ids, labels) == {"accuracy": 3 / 5, "n_tokens": 5, "correct": 3}
    logits = torch.nn.functional.one_hot(ids, num_classes=10).float()
    assert token_accuracy(logits, labels)["correct"] == 3
    # causal shift: the logit at t predicts the label at t+1
    shifted = torch.tensor([[1, 2, 3, 7]])
    assert token_accuracy(shifted, torch.tensor([[-100, 1, 2, 3]]), shift=True)["accuracy"] == 1.0
    with pytest.raises(ValueError):
        token_accuracy(torch.zeros(2, 3), torch.zeros(2, 4))


def test_bleu_and_rouge_l():
    refs = ["the cat sat on the mat", "two plus two is four"]
    assert bleu(refs, refs) == pytest.approx(100.0)
    assert bleu(["a dog ran far away", "nothing alike here"], refs) < 20
    assert rouge_l(refs, refs) == pytest.approx(1.0)
    partial = rouge_l(["the cat sat"], ["the cat sat on the mat"])
    assert partial == pytest.approx(2 * 1.0 * 0.5 / 1.5)  # precision 1, recall 1/2
    assert rouge_l(["cats sitting"], ["cat sits"]) == pytest.approx(1.0)  # stemmed


def test_perplexity_from_loss():
    assert perplexity_from_loss(0.0) == 1.0
    assert perplexity_from_loss(math.log(7)) == pytest.approx(7.0)
    assert perplexity_from_loss(1e4) == math.inf


def _tiny_lm_and_tokenizer():
    from transformers import LlamaConfig, LlamaForCausalLM

    from mathkit.models.char_tokenizer import build_char_tokenizer

    tok = build_char_tokenizer()
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64,
                      pad_token_id=tok.pad_token_id)
    return LlamaForCausalLM(cfg).eval(), tok


def test_perplexity_matches_the_model_loss_and_ignores_batching():
    model, tok = _tiny_lm_and_tokenizer()
    texts = ["12+34=46", "7*8=56<end>", "100-1=99"]
    one_by_one = perplexity(model, tok, texts, batch_size=1, add_special_tokens=False)
    batched = perplexity(model, tok, texts, batch_size=3, add_special_tokens=False)
    assert batched["n_tokens"] == one_by_one["n_tokens"] == sum(
        len(tok(t, add_special_tokens=False)["input_ids"]) - 1 for t in texts)
    assert batched["perplexity"] == pytest.approx(one_by_one["perplexity"], rel=1e-5)
    ids = tok(texts[0], return_tensors="pt", add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        loss = model(input_ids=ids, labels=ids).loss.item()
    single = perplexity(model, tok, texts[:1], add_special_tokens=False)
    assert single["mean_loss"] == pytest.approx(loss, rel=1e-5)
    with pytest.raises(ValueError):
        perplexity(model, tok, [])


def test_perplexity_of_completions_scores_only_the_tokens_after_each_prompt():
    model, tok = _tiny_lm_and_tokenizer()
    prompts, completions = ["12+34=", "7*8="], ["46<end>", "56<end>"]
    texts = [p + c for p, c in zip(prompts, completions)]
    got = perplexity(model, tok, texts, prompts=prompts, batch_size=2, add_special_tokens=False)
    assert got["n_tokens"] == sum(len(tok(c, add_special_tokens=False)["input_ids"]) for c in completions)
    ids = tok(texts[0], return_tensors="pt", add_special_tokens=False)["input_ids"]
    labels = ids.clone()
    labels[0, :len(prompts[0])] = -100  # one token per character: the prompt's tokens are context
    with torch.no_grad():
        loss = model(input_ids=ids, labels=labels).loss.item()
    assert perplexity(model, tok, texts[:1], prompts=prompts[:1], add_special_tokens=False)["mean_loss"] == \
        pytest.approx(loss, rel=1e-5)
    assert got["per_text_loss"][0] == pytest.approx(loss, rel=1e-5) and len(got["per_text_loss"]) == 2
    assert got["mean_loss"] != pytest.approx(perplexity(model, tok, texts, add_special_tokens=False)["mean_loss"])
    with pytest.raises(ValueError, match="begin with its prompt"):
        perplexity(model, tok, texts, prompts=["99+", "7*8="], add_special_tokens=False)
    with pytest.raises(ValueError, match="prompts for"):
        perplexity(model, tok, texts, prompts=prompts[:1], add_special_tokens=False)


def test_accuracy_by_a_field_or_a_function():
    records = [{"g": "a", "correct": True}, {"g": "b", "correct": False}, {"g": None, "correct": True},
               {"g": "a", "correct": None}]  # ungraded: left out
    g = accuracy_by(records, "g")
    assert list(g) == ["a", "b", "unknown"] and g["a"] == accuracy_summary([True])
    by_len = accuracy_by([{"k": k, "ok": True} for k in ("10x2", "2x3", "2x10")], "k", outcome="ok")
    assert list(by_len) == ["2x3", "2x10", "10x2"]  # natural order of operand lengths
    assert list(accuracy_by([{"d": 3, "correct": 1}, {"d": 1, "correct": 0}], "d")) == [1, 3]
    upper = accuracy_by(records, lambda r: (r["g"] or "").upper())
    assert list(upper) == ["A", "B", "unknown"]


def test_headline_and_interval_formatting():
    summary = accuracy_summary([1] * 999 + [0])
    assert headline_accuracy(summary) == {"value": 0.999, "n": 1000, "ci95": summary["ci95"]}
    assert format_interval(summary) == "99.90% [99.44%, 99.98%] (n=1000)"


def test_mcnemar():
    assert mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(5, 5) == 1.0
    assert mcnemar_exact(10, 0) == pytest.approx(2 / 2 ** 10)
    assert mcnemar_exact(2, 8) == pytest.approx(mcnemar_exact(8, 2))
