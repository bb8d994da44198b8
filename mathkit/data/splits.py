"""Checks between a training pool and an evaluation set: leaks, and examples too long to train on."""

from __future__ import annotations

import logging

from mathkit.data.gsm_symbolic import HELD_OUT_TEMPLATES

log = logging.getLogger(__name__)


def find_leaks(train_rows, eval_rows) -> dict:
    """What of the evaluation set the training pool already contains; both lists must be empty.

    ``held_out_templates``: held-out GSM-Symbolic templates (``HELD_OUT_TEMPLATES``) with any
    problem in training; evaluating on them would measure memorised structure, not reasoning.
    ``problems``: evaluation problems whose exact text is in training. Originals of *training*
    templates may be evaluated (as an in-distribution control) as long as they were not trained on.
    Both arguments are ``datasets.Dataset``s with a ``problem`` (and optionally ``template``) column.
    """
    def templates(ds):
        return {t for t in ds["template"] if t} if "template" in ds.column_names else set()

    held_out = templates(eval_rows) & set(HELD_OUT_TEMPLATES) & templates(train_rows)
    seen = {p.strip() for p in train_rows["problem"]}
    return {"held_out_templates": sorted(held_out),
            "problems": sorted({p for p in eval_rows["problem"] if p.strip() in seen})}


def drop_long_examples(dataset, tokenizer, max_length: int):
    """``(kept, n_dropped)``: formatted examples whose prompt + completion fit in ``max_length`` tokens.

    TRL would truncate longer ones, cutting the final answer and the end-of-turn token off, which
    teaches the model to run on instead of concluding; long worked solutions (NuminaMath's QwQ
    traces) are dropped rather than trained on truncated.
    """
    lengths = [len(tokenizer(p + c)["input_ids"]) for p, c in zip(dataset["prompt"], dataset["completion"])]
    keep = [i for i, n in enumerate(lengths) if n <= max_length]
    dropped = len(lengths) - len(keep)
    if dropped:
        log.info("dropped %d of %d examples longer than %d tokens", dropped, len(lengths), max_length)
    return (dataset.select(keep) if dropped else dataset), dropped
