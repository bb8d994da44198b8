"""What a scorer is: the part of an evaluation that knows the task.

:func:`mathkit.evaluation.evaluator.evaluate_model` does everything that is the same for every task
(rows in, prompts, batched greedy generation, records in dataset order, JSONL, generation speed);
a :class:`Scorer` supplies what differs: which columns a row needs, how its prompt is built, how a
completion is scored into a record, and the summary of the records (always with ``n``,
``accuracy``, ``correct`` and the Wilson ``ci95`` of the headline outcome). Two scorers exist:
:class:`mathkit.evaluation.answer_scoring.MathAnswerScorer` (word problems, answers checked by value)
and :class:`mathkit.evaluation.arithmetic_scoring.ArithmeticScorer` (notebook 01's arithmetic).
"""

from __future__ import annotations

from collections.abc import Callable


class Scorer:
    """Base class; subclasses override :meth:`score` and :meth:`summarize` at least."""

    name = "scorer"
    required_columns: tuple[str, ...] = ()
    skip_special_tokens = True            # decode completions without special tokens
    add_special_tokens: bool | None = None  # None: add them unless the prompts start with BOS
    display_columns: tuple[str, ...] = ()   # what EvalResult.table shows
    # Whether generation may stop once a completion has given its final answer: only when the
    # answer ends where the scorer stops reading (math answers); arithmetic traces need their end.
    stops_at_answer = False

    def prompt_fn(self, tokenizer, *, style: str, system_prompt: str | None) -> Callable[[dict], str]:
        """The prompt of a row (used when the caller passes no ``prompt_fn``)."""
        raise NotImplementedError

    def default_max_new_tokens(self, tokenizer, rows: list[dict]) -> int:
        """The generation budget when the caller gives none."""
        return 256

    def score(self, row: dict, completion: str, finished: bool) -> dict:
        """The record of one row (without ``id``, ``new_tokens``, ``finished``: the evaluator adds
        them). An outcome of None means "not graded" and is left out of every accuracy."""
        raise NotImplementedError

    def summarize(self, records: list[dict]) -> dict:
        """JSON-ready numbers: ``n``, ``accuracy``, ``correct``, ``ci95`` and the task's own."""
        raise NotImplementedError

    def model_metrics(self, model, tokenizer, rows: list[dict], *, batch_size: int,
                      progress: bool) -> dict:
        """Numbers that need the model itself rather than its completions (none by default)."""
        return {}
