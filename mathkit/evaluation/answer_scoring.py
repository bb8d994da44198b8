"""Scoring answers to math word problems: extract the answer (lenient and strict), check it by value.

Each gold is parsed once (:func:`mathkit.evaluation.checking.parse_gold`); a gold with no single
checkable answer is recorded as ungradable (``gradable: false``, outcomes None) and left out of
every accuracy, counted and listed in the summary. Completions cut off at the token limit are
counted apart (``truncated``), their correct answers too, and the accuracy over finished
completions alone is reported next to the headline.
"""

from __future__ import annotations

from collections.abc import Callable

from mathkit.evaluation.checking import is_correct, parse_gold
from mathkit.evaluation.extraction import extract_answer, extract_answer_strict
from mathkit.evaluation.metrics import accuracy_by, accuracy_summary
from mathkit.evaluation.scoring import Scorer


def score_completion(completion: str, gold: str, *, finished: bool = True) -> dict:
    """Both extractions of one completion and whether each is correct (None: ungradable gold)."""
    parsed = parse_gold(str(gold))
    lenient = extract_answer(completion, finished=finished)
    strict = extract_answer_strict(completion, finished=finished)
    return {
        "gradable": parsed.gradable,
        "extracted": lenient,
        "extracted_strict": strict,
        "correct": is_correct(lenient, parsed) if parsed.gradable else None,
        "correct_strict": is_correct(strict, parsed) if parsed.gradable else None,
    }


class MathAnswerScorer(Scorer):
    """Rows with ``problem`` and ``answer`` (``id``, ``source``, ``category``, ``template`` are
    carried into the records when present); prompts from :func:`mathkit.data.formatting.build_prompt`."""

    name = "math_answer"
    required_columns = ("problem", "answer")
    display_columns = ("id", "gold", "extracted", "correct", "finished", "completion")
    stops_at_answer = True  # the extractor reads the first marked answer; what follows is never scored

    def prompt_fn(self, tokenizer, *, style: str, system_prompt: str | None) -> Callable[[dict], str]:
        from mathkit.data.formatting import build_prompt

        kwargs = {"style": style}
        if system_prompt is not None:
            kwargs["system_prompt"] = system_prompt
        return lambda row: build_prompt(tokenizer, row["problem"], **kwargs)

    def score(self, row: dict, completion: str, finished: bool) -> dict:
        gold = str(row["answer"])
        return {
            "source": row.get("source"),
            "category": row.get("category"),
            "template": row.get("template"),
            "problem": row["problem"],
            "gold": gold,
            "completion": completion,
            **score_completion(completion, gold, finished=finished),
        }

    def summarize(self, records: list[dict]) -> dict:
        """Lenient (headline) and strict accuracy over gradable golds; ungradable golds, answers
        that could not be extracted and cut-off completions counted apart."""
        graded = [r for r in records if r["gradable"]]
        finished = [r for r in graded if r.get("finished", True)]
        cut = [r for r in graded if not r.get("finished", True)]
        lenient = accuracy_summary(r["correct"] for r in graded)
        return {
            "n": lenient["n"],
            "accuracy": lenient["accuracy"],
            "correct": lenient["correct"],
            "ci95": lenient["ci95"],
            "lenient": lenient,
            "strict": accuracy_summary(r["correct_strict"] for r in graded),
            "n_examples": len(records),
            "ungradable": len(records) - len(graded),
            "ungradable_ids": [r["id"] for r in records if not r["gradable"]],
            "unparsable": sum(r["extracted"] is None for r in graded),
            "unparsable_strict": sum(r["extracted_strict"] is None for r in graded),
            "truncated": sum(not r.get("finished", True) for r in records),
            "truncated_correct": {"lenient": sum(bool(r["correct"]) for r in cut),
                                  "strict": sum(bool(r["correct_strict"]) for r in cut)},
            "finished_only": {"lenient": accuracy_summary(r["correct"] for r in finished),
                              "strict": accuracy_summary(r["correct_strict"] for r in finished)},
            "by_category": accuracy_by(records, "category"),
            "by_source": accuracy_by(records, "source"),
        }
