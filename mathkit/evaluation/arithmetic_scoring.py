"""Scoring an arithmetic model (notebook 01): exact answers, thoughts, token accuracy, by difficulty.

:class:`ArithmeticScorer` plugs into :func:`mathkit.evaluation.evaluator.evaluate_model`:

* Exact match: the final answer (after ``</think>``, or the text before ``<end>`` for plain
  examples) equals the true result as the record's format writes it
  (:func:`mathkit.data.arithmetic.formats.expected_answer`: ``847``, reversed ``748``, with index
  hints ``c8b4a7``), as a string, so ``0847`` for 847 is wrong. An unfinished think block counts
  as wrong.
* Thought match: the chain of thought equals the reference trace (CoT examples only), which
  tells "right for the right reasons" apart from lucky answers.
* Token accuracy: under teacher forcing, the share of completion tokens (``<end>`` included)
  that the model's argmax predicts; it cannot be gamed by the answer parser and moves
  smoothly early in training, when exact match is still 0.
* Breakdowns by the longer operand's digits, by operator and by the pair of operand lengths
  (``"3x2"``: a 3-digit first operand, a 2-digit second one), where carries get harder.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from tqdm.auto import tqdm

from mathkit.data.arithmetic import expected_answer, parse_completion
from mathkit.data.markers import THINK_END
from mathkit.evaluation.metrics import accuracy_by, accuracy_summary, token_accuracy
from mathkit.evaluation.scoring import Scorer


def operand_lengths(record: dict) -> str:
    """``"3x2"`` for 123+45: the digits of the first and of the second operand."""
    return f"{len(str(abs(int(record['a']))))}x{len(str(abs(int(record['b']))))}"


def score_arithmetic(record: dict, completion: str) -> dict:
    """The scored row of one arithmetic record: expected, got, correct, thought_correct, ..."""
    thought, answer = parse_completion(completion)
    ref_thought, _ = parse_completion(record["completion"])
    expected = expected_answer(record)
    return {
        "expression": record["expression"],
        "op": record["op"],
        "n_digits": record["n_digits"],
        "operand_lengths": operand_lengths(record),
        "expected": expected,
        "got": answer,
        "correct": answer == expected,
        # None for plain (no-CoT) records: there is no reference thought to match
        "thought_correct": (THINK_END in completion and thought == ref_thought) if ref_thought else None,
        "completion": completion,
    }


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


class ArithmeticScorer(Scorer):
    """Records of :mod:`mathkit.data.arithmetic` (``prompt``, reference ``completion``,
    ``result``, ``expression``, ``op``, ``a``, ``b``, ``n_digits``); the prompt is the record's
    own. ``token_accuracy=False`` skips the teacher-forced pass."""

    name = "arithmetic"
    required_columns = ("prompt", "completion", "result", "expression", "op", "a", "b", "n_digits")
    skip_special_tokens = False   # the markers (</think>, <end>) are part of the answer format
    add_special_tokens = False    # prompts are exactly what training saw
    display_columns = ("expression", "expected", "got", "correct", "completion")

    def __init__(self, *, token_accuracy: bool = True, margin_tokens: int = 8):
        self.token_accuracy = token_accuracy
        self.margin_tokens = margin_tokens

    def prompt_fn(self, tokenizer, *, style: str, system_prompt: str | None) -> Callable[[dict], str]:
        return lambda row: row["prompt"]

    def default_max_new_tokens(self, tokenizer, rows: list[dict]) -> int:
        """Room for the longest reference completion plus ``margin_tokens``."""
        return self.margin_tokens + max(
            len(tokenizer(r["completion"], add_special_tokens=False)["input_ids"]) for r in rows)

    def score(self, row: dict, completion: str, finished: bool) -> dict:
        return score_arithmetic(row, completion)

    def summarize(self, records: list[dict]) -> dict:
        exact = accuracy_summary(r["correct"] for r in records)
        with_thought = [r["thought_correct"] for r in records if r["thought_correct"] is not None]
        return {
            "n": exact["n"],
            "accuracy": exact["accuracy"],
            "correct": exact["correct"],
            "ci95": exact["ci95"],
            "exact_match": exact,
            "thought_match": accuracy_summary(with_thought) if with_thought else None,
            "n_failures": sum(not r["correct"] for r in records),
            "truncated": sum(not r.get("finished", True) for r in records),
            "by_digits": accuracy_by(records, "n_digits"),
            "by_op": accuracy_by(records, "op"),
            "by_operand_lengths": accuracy_by(records, "operand_lengths"),
        }

    def model_metrics(self, model, tokenizer, rows: list[dict], *, batch_size: int,
                      progress: bool) -> dict:
        from mathkit.evaluation.generation import is_external

        if not self.token_accuracy or is_external(model):  # an export gives the last position's logits only
            return {"token_accuracy": None}
        return {"token_accuracy": teacher_forced_token_accuracy(
            model, tokenizer, rows, batch_size=batch_size, progress=progress)}
