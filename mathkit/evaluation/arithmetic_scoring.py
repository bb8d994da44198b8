"""Scoring an arithmetic model: exact match with its interval, token accuracy, breakdowns, failures.

* Exact match: the final answer (after ``</think>``, or the text before ``<end>`` for plain
  examples) equals the true result, as a string, so ``0847`` for 847 is wrong. An unfinished
  think block counts as wrong. Greedy generation via :func:`mathkit.evaluation.generation.generate_batched`.
* Thought match: the chain of thought equals the reference trace (CoT examples only), which
  tells "right for the right reasons" apart from lucky answers.
* Token accuracy: under teacher forcing, the share of completion tokens (``<end>`` included)
  that the model's argmax predicts; it cannot be gamed by the answer parser and moves
  smoothly early in training, when exact match is still 0.

Scoring (:func:`score_completions`) is separate from generation so that it can be checked on
completions from anywhere, an oracle included.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from mathkit.data.arithmetic import THINK_END, parse_completion
from mathkit.evaluation.generation import generate_batched
from mathkit.evaluation.metrics import accuracy_summary, token_accuracy

log = logging.getLogger(__name__)


def score_completions(records: list[dict], completions: list[str]) -> list[dict]:
    """One row per record: expression, expected, got, correct, thought_correct, completion, ..."""
    if len(records) != len(completions):
        raise ValueError(f"{len(records)} records but {len(completions)} completions")
    rows = []
    for rec, completion in zip(records, completions):
        thought, answer = parse_completion(completion)
        ref_thought, _ = parse_completion(rec["completion"])
        expected = str(rec["result"])
        rows.append({
            "expression": rec["expression"],
            "op": rec["op"],
            "n_digits": rec["n_digits"],
            "expected": expected,
            "got": answer,
            "correct": answer == expected,
            # None for plain (no-CoT) records: there is no reference thought to match
            "thought_correct": (THINK_END in completion and thought == ref_thought) if ref_thought else None,
            "completion": completion,
        })
    return rows


def summarize_by(rows: list[dict], key: str) -> dict:
    """Exact-match summary per value of ``key`` (e.g. ``n_digits``, ``op``), keys sorted."""
    groups: dict = defaultdict(list)
    for r in rows:
        groups[r[key]].append(r["correct"])
    return {k: accuracy_summary(groups[k]) for k in sorted(groups)}


def format_interval(summary: dict) -> str:
    """``"99.96% [99.86%, 99.99%] (n=5000)"`` for an :func:`accuracy_summary`."""
    lo, hi = summary["ci95"]
    return f"{summary['accuracy']:.2%} [{lo:.2%}, {hi:.2%}] (n={summary['n']})"


def headline_accuracy(summary: dict) -> dict:
    """``{"value", "n", "ci95"}``: the shape results.json headlines use for an accuracy."""
    return {"value": summary["accuracy"], "n": summary["n"], "ci95": summary["ci95"]}


@torch.no_grad()
def teacher_forced_token_accuracy(model, tokenizer, records: list[dict], *, batch_size: int = 256,
                                  progress: bool = True) -> dict:
    """Share of completion tokens predicted correctly (argmax) given the true prefix.

    Returns ``{"accuracy", "n_tokens", "correct"}``. Prompt and completion are tokenized apart
    and concatenated, as in training, so the boundary is exact.
    """
    model.eval()
    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    correct = total = 0
    order = sorted(range(len(records)), key=lambda i: len(records[i]["text"]))
    bar = tqdm(total=len(records), desc="token accuracy", disable=not progress, unit="example")
    for start in range(0, len(order), batch_size):
        batch = [records[i] for i in order[start:start + batch_size]]
        prompts = [tokenizer(r["prompt"], add_special_tokens=False)["input_ids"] for r in batch]
        comps = [tokenizer(r["completion"], add_special_tokens=False)["input_ids"] for r in batch]
        width = max(len(p) + len(c) for p, c in zip(prompts, comps))
        ids = torch.full((len(batch), width), pad, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        labels = torch.full((len(batch), width), -100, dtype=torch.long)  # only completion tokens count
        for row, (p, c) in enumerate(zip(prompts, comps)):
            seq = p + c
            ids[row, :len(seq)] = torch.tensor(seq)
            mask[row, :len(seq)] = 1
            labels[row, len(p):len(seq)] = torch.tensor(c)
        logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
        batch_acc = token_accuracy(logits.cpu(), labels, shift=True)
        correct += batch_acc["correct"]
        total += batch_acc["n_tokens"]
        bar.update(len(batch))
    bar.close()
    return {"accuracy": correct / total if total else 0.0, "n_tokens": total, "correct": correct}


def default_max_new_tokens(tokenizer, records: list[dict], margin: int = 8) -> int:
    """Room for the longest reference completion plus ``margin`` tokens."""
    longest = max(len(tokenizer(r["completion"], add_special_tokens=False)["input_ids"]) for r in records)
    return longest + margin


@dataclass
class ArithmeticEvaluation:
    """Everything the notebook reports about one test set."""

    exact_match: dict                   # accuracy_summary: accuracy, n, correct, ci95
    thought_match: dict | None          # same, over CoT records; None without CoT
    token_accuracy: dict | None         # accuracy, n_tokens, correct; None when skipped
    by_digits: dict                     # n_digits -> accuracy_summary
    by_op: dict                         # op -> accuracy_summary
    rows: list[dict] = field(repr=False)
    generation_seconds: float = 0.0
    tokens_per_second: float = 0.0

    def failures(self, n: int | None = None) -> list[dict]:
        """The wrong answers: expression, expected, got, completion (first ``n``)."""
        bad = [{k: r[k] for k in ("expression", "expected", "got", "completion")}
               for r in self.rows if not r["correct"]]
        return bad if n is None else bad[:n]

    def samples(self, n: int) -> list[dict]:
        """The first ``n`` rows (expression, expected, got, correct, completion), for display."""
        return [{k: r[k] for k in ("expression", "expected", "got", "correct", "completion")}
                for r in self.rows[:n]]

    def to_metrics(self) -> dict:
        """JSON-ready numbers for results.json (no per-example rows)."""
        return {
            "exact_match": self.exact_match,
            "thought_match": self.thought_match,
            "token_accuracy": self.token_accuracy,
            "by_digits": self.by_digits,
            "by_op": self.by_op,
            "n_failures": sum(not r["correct"] for r in self.rows),
            "generation_seconds": self.generation_seconds,
            "generation_tokens_per_second": self.tokens_per_second,
        }


def evaluate_arithmetic(model, tokenizer, records: list[dict], *, batch_size: int = 256,
                        max_new_tokens: int | None = None, token_accuracy: bool = True,
                        bf16: bool = False, progress: bool = True) -> ArithmeticEvaluation:
    """Generate greedily for every record's prompt and score the answers (see module docstring)."""
    if not records:
        raise ValueError("no records to evaluate")
    max_new = max_new_tokens or default_max_new_tokens(tokenizer, records)
    gen = generate_batched(model, tokenizer, [r["prompt"] for r in records], max_new_tokens=max_new,
                           batch_size=batch_size, bf16=bf16, skip_special_tokens=False,
                           add_special_tokens=False, progress=progress, desc="solve")
    rows = score_completions(records, gen.completions)
    with_thought = [r["thought_correct"] for r in rows if r["thought_correct"] is not None]
    tok_acc = (teacher_forced_token_accuracy(model, tokenizer, records, batch_size=batch_size,
                                             progress=progress) if token_accuracy else None)
    result = ArithmeticEvaluation(
        exact_match=accuracy_summary([r["correct"] for r in rows]),
        thought_match=accuracy_summary(with_thought) if with_thought else None,
        token_accuracy=tok_acc,
        by_digits=summarize_by(rows, "n_digits"),
        by_op=summarize_by(rows, "op"),
        rows=rows,
        generation_seconds=gen.seconds,
        tokens_per_second=gen.tokens_per_second,
    )
    log.info("exact match %.4f (n=%d)", result.exact_match["accuracy"], result.exact_match["n"])
    return result
