"""Checks between a training pool and evaluation sets: leaks (between training and each evaluation
group, and between groups), and examples too long to train on."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from itertools import combinations

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


def _texts(rows) -> set[str]:
    return {p.strip() for p in rows["problem"]}


def _templates(rows) -> set[str]:
    return {t for t in rows["template"] if t} if "template" in rows.column_names else set()


def drop_seen(rows, seen_rows):
    """``(kept, n_dropped)``: ``rows`` without the problems whose text is in ``seen_rows``.

    A GSM-Symbolic template with few valid numbers can draw, under another seed, a variant that
    training already holds; such a problem is dropped from an evaluation group, not evaluated.
    """
    seen = _texts(seen_rows)
    keep = [i for i, p in enumerate(rows["problem"]) if p.strip() not in seen]
    dropped = len(rows) - len(keep)
    if dropped:
        log.info("dropped %d of %d evaluation problems already in training", dropped, len(rows))
    return (rows.select(keep) if dropped else rows), dropped


def group_leaks(train_rows, groups: Mapping[str, object]) -> dict:
    """Every leak between a training pool and named evaluation groups; all lists must be empty.

    ``groups``: name -> ``datasets.Dataset``. Per group (``"groups"``), :func:`find_leaks` against
    the training pool: held-out templates trained on, and problems whose exact text training
    holds (for the in-template group, variants of trained templates, this is the check that its
    new-number variants are new). ``"shared"``: problems two groups both hold, per ``"a & b"``
    pair, so that no problem counts in two groups. ``"unseen_templates"``: per group, the GSM
    templates that training never saw (an in-template group must have none).
    """
    trained_templates = _templates(train_rows)
    return {
        "groups": {name: find_leaks(train_rows, rows) for name, rows in groups.items()},
        "shared": {f"{a} & {b}": sorted(_texts(groups[a]) & _texts(groups[b]))
                   for a, b in combinations(groups, 2)},
        "unseen_templates": {name: sorted(_templates(rows) - trained_templates)
                             for name, rows in groups.items()},
    }


def leak_count(report: dict) -> int:
    """How many leaks a :func:`group_leaks` report holds (unseen templates are not leaks)."""
    per_group = sum(len(v) for leaks in report["groups"].values() for v in leaks.values())
    return per_group + sum(len(v) for v in report["shared"].values())


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
