"""Metrics with their uncertainty: every accuracy is reported with n and a 95% interval."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable


def wilson_interval(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """95% Wilson score interval for a binomial proportion.

    Used instead of the normal approximation because it stays inside [0, 1] and is honest near
    0% and 100%, which is exactly where small models (2/100) and arithmetic models (99.9%) sit.
    """
    if n <= 0:
        return (0.0, 0.0)
    if not 0 <= successes <= n:
        raise ValueError(f"successes={successes} must lie between 0 and n={n}")
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def accuracy_summary(correct: Iterable) -> dict:
    """``{"accuracy", "n", "correct", "ci95": [lo, hi]}`` for per-example outcomes; None
    outcomes (not graded: an ungradable gold, no reference thought) are left out."""
    graded = [bool(c) for c in correct if c is not None]
    n, k = len(graded), sum(graded)
    lo, hi = wilson_interval(k, n)
    return {"accuracy": k / n if n else 0.0, "n": n, "correct": k, "ci95": [lo, hi]}


def accuracy_by(records: Iterable[dict], key: str | Callable[[dict], object], *,
                outcome: str = "correct") -> dict:
    """:func:`accuracy_summary` of ``record[outcome]`` per group: ``key`` is a record field
    (``"category"``, ``"n_digits"``) or a function of the record. Empty or None groups become
    ``"unknown"``; ungraded records (outcome None) are left out; groups in sorted order."""
    group_of = key if callable(key) else (lambda r: r.get(key))
    by: dict = {}
    for r in records:
        if r.get(outcome) is None:
            continue
        g = group_of(r)
        by.setdefault("unknown" if g is None or g == "" else g, []).append(r[outcome])
    return {g: accuracy_summary(by[g]) for g in sorted(by, key=_natural_order)}


def _natural_order(group) -> tuple:
    """Numbers before names; ``"2x3"`` before ``"10x2"``."""
    if isinstance(group, str):
        return (1, [(0, int(t), "") if t.isdigit() else (1, 0, t) for t in re.split(r"(\d+)", group)])
    return (0, group)


def headline_accuracy(summary: dict) -> dict:
    """``{"value", "n", "ci95"}`` of an :func:`accuracy_summary`: the form results.json
    headlines give an accuracy."""
    return {"value": summary["accuracy"], "n": summary["n"], "ci95": list(summary["ci95"])}


def format_interval(summary: dict) -> str:
    """``"99.96% [99.86%, 99.99%] (n=5000)"`` for an :func:`accuracy_summary`."""
    lo, hi = summary["ci95"]
    return f"{summary['accuracy']:.2%} [{lo:.2%}, {hi:.2%}] (n={summary['n']})"


def answer_accuracy(predictions: list[str | None], golds: list[str]) -> dict:
    """Accuracy of extracted answers against gold ones (numeric / symbolic equivalence through
    :func:`mathkit.evaluation.checking.is_correct`), with n and the Wilson 95% interval.
    Ungradable golds (:func:`mathkit.evaluation.checking.parse_gold`) are left out of n."""
    from mathkit.evaluation.checking import is_correct, parse_gold

    _same_length(predictions, golds)
    parsed = [parse_gold(str(g)) for g in golds]
    return accuracy_summary([is_correct(p, g) if g.gradable else None
                             for p, g in zip(predictions, parsed)])


def exact_match(predictions: list[str | None], golds: list[str], *, canonical: bool = True) -> dict:
    """String exact match (after :func:`mathkit.evaluation.extraction.canonical_answer` unless
    ``canonical=False``), with n and the Wilson 95% interval. Stricter than
    :func:`answer_accuracy`: ``0.5`` and ``1/2`` differ here."""
    from mathkit.evaluation.extraction import canonical_answer

    _same_length(predictions, golds)
    if canonical:
        predictions = [canonical_answer(p) for p in predictions]
        golds = [canonical_answer(g) for g in golds]
    return accuracy_summary([p is not None and p == g for p, g in zip(predictions, golds)])


def token_accuracy(predictions, labels, *, ignore_index: int = -100, shift: bool = False) -> dict:
    """Share of target tokens predicted exactly: ``{"accuracy", "n_tokens", "correct"}``.

    ``predictions`` are token ids shaped like ``labels`` or logits with one more (vocabulary)
    dimension, whose argmax is taken. ``shift=True`` aligns a causal LM's logits at position t
    with the label at t+1 (as HF computes its loss). Label positions equal to ``ignore_index``
    (prompt, padding) are skipped. No interval: tokens of one sequence are not independent.
    """
    import torch

    pred = torch.as_tensor(predictions)
    lab = torch.as_tensor(labels)
    if pred.dim() == lab.dim() + 1:
        pred = pred.argmax(-1)
    if shift:
        pred, lab = pred[..., :-1], lab[..., 1:]
    if pred.shape != lab.shape:
        raise ValueError(f"predictions {tuple(pred.shape)} and labels {tuple(lab.shape)} differ "
                         "in shape (pass logits with a vocabulary dimension, or ids like labels)")
    mask = lab != ignore_index
    n = int(mask.sum())
    k = int(((pred == lab) & mask).sum())
    return {"accuracy": k / n if n else 0.0, "n_tokens": n, "correct": k}


def bleu(hypotheses: list[str], references: list[str]) -> float:
    """Corpus BLEU (0-100) of ``hypotheses`` against one reference each, via sacrebleu."""
    import sacrebleu

    _same_length(hypotheses, references)
    return float(sacrebleu.corpus_bleu(list(hypotheses), [list(references)]).score)


def rouge_l(predictions: list[str], references: list[str]) -> float:
    """Mean ROUGE-L F1 (0-1, stemmed) via rouge-score; no hub download as ``evaluate.load``."""
    from rouge_score import rouge_scorer

    _same_length(predictions, references)
    if not predictions:
        return 0.0
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    scores = [scorer.score(ref, pred)["rougeL"].fmeasure  # target first
              for pred, ref in zip(predictions, references)]
    return sum(scores) / len(scores)


def perplexity_from_loss(mean_loss: float) -> float:
    """``exp(mean token cross-entropy)``; the loss Trainer logs is already that mean."""
    return math.exp(mean_loss) if mean_loss < 700 else math.inf


def _prompt_lengths(tokenizer, texts: list[str], prompts: list[str], add_special_tokens: bool) -> list[int]:
    """Tokens of each prompt inside its text; the text's tokens must begin with the prompt's own."""
    if len(prompts) != len(texts):
        raise ValueError(f"{len(prompts)} prompts for {len(texts)} texts")
    lengths = []
    for i, (text, prompt) in enumerate(zip(texts, prompts)):
        if not text.startswith(prompt):
            raise ValueError(f"text {i} does not begin with its prompt")
        p_ids = tokenizer(prompt, add_special_tokens=add_special_tokens)["input_ids"]
        t_ids = tokenizer(text, add_special_tokens=add_special_tokens)["input_ids"]
        if t_ids[:len(p_ids)] != p_ids:
            raise ValueError(f"text {i}: its tokens do not begin with its prompt's tokens (the boundary merges)")
        lengths.append(len(p_ids))
    return lengths


def perplexity(model, tokenizer, texts: list[str], *, batch_size: int = 8,
               max_length: int | None = None, add_special_tokens: bool = True,
               prompts: list[str] | None = None) -> dict:
    """Token-weighted perplexity of ``model`` on ``texts``: ``{"perplexity", "mean_loss",
    "n_tokens", "per_text_loss"}`` (the last: each text's mean token loss, for paired comparisons). Each text is scored on its own (right padding masked out), so batch size
    does not change the result; texts longer than ``max_length`` tokens are truncated.
    ``prompts``: each text's prompt (a prefix of it), whose tokens are context, not scored: the
    perplexity of the completions given their prompts, as training's loss on completions."""
    import torch
    import torch.nn.functional as F

    if not texts:
        raise ValueError("perplexity needs at least one text")
    skip = _prompt_lengths(tokenizer, texts, prompts, add_special_tokens) if prompts is not None else None
    model.eval()
    device = next(model.parameters()).device
    old_side = tokenizer.padding_side
    tokenizer.padding_side = "right"
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    total_loss, total_tokens, per_text = 0.0, 0, []
    try:
        with torch.no_grad():
            for start in range(0, len(texts), batch_size):
                enc = tokenizer(list(texts[start:start + batch_size]), return_tensors="pt",
                                padding=True, truncation=max_length is not None,
                                max_length=max_length, add_special_tokens=add_special_tokens)
                enc = enc.to(device)
                logits = model(input_ids=enc["input_ids"],
                               attention_mask=enc["attention_mask"]).logits[:, :-1].float()
                target = enc["input_ids"][:, 1:]
                mask = enc["attention_mask"][:, 1:].bool()
                if skip is not None:  # target j is token j + 1: the prompt's tokens are not targets
                    cut = torch.tensor(skip[start:start + batch_size], device=device) - 1
                    mask &= torch.arange(mask.shape[1], device=device)[None, :] >= cut[:, None]
                loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), target.reshape(-1),
                                       reduction="none").view_as(target)
                total_loss += float(loss[mask].sum())
                total_tokens += int(mask.sum())
                per_text += [(float(l[m].sum()), int(m.sum())) for l, m in zip(loss, mask)]
    finally:
        tokenizer.padding_side = old_side
    if total_tokens == 0:
        raise ValueError("the texts hold no predictable tokens (each needs at least two)")
    mean = total_loss / total_tokens
    return {"perplexity": perplexity_from_loss(mean), "mean_loss": mean, "n_tokens": total_tokens,
            "per_text_loss": [l / n if n else None for l, n in per_text]}


def mcnemar_exact(fixed: int, broken: int) -> float:
    """Two-sided exact McNemar p-value for paired outcomes (before/after on the same examples):
    a binomial test on the discordant pairs. Small p: the change is unlikely to be noise."""
    n = fixed + broken
    if n == 0:
        return 1.0
    k = min(fixed, broken)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n
    return min(1.0, 2 * tail)


def _same_length(a, b) -> None:
    if len(a) != len(b):
        raise ValueError(f"got {len(a)} predictions but {len(b)} references")
