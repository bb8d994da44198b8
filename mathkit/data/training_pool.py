"""The training and validation sets of a fine-tuning run, drawn from its training sources.

One recipe for notebook 02 and ``python -m mathkit train``: the sources combined and shuffled
(:func:`mathkit.data.combine_sources`), cut to ``n_train + n_val`` rows (the *pool*, which leak
checks compare evaluation groups with), the validation set split off the pool with the run's seed;
then both formatted as prompt/completion pairs with the tokenizer's chat template and, where asked,
examples longer than the training ``max_length`` dropped (not truncated:
:func:`mathkit.data.splits.drop_long_examples`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mathkit.data import splits
from mathkit.data.combine import combine_sources
from mathkit.data.formatting import format_dataset


@dataclass
class TrainingPool:
    """The rows a run may train on: ``pool`` = ``train`` + ``validation``, and where they came from."""

    pool: Any               # datasets.Dataset, unified columns (problem, solution, answer, source, ...)
    train: Any
    validation: Any
    provenance: dict[str, Any]
    # Everything the sources gave, before the cut: groups drawn apart from it are apart from every
    # problem a run on the same sources with a larger n_train (e.g. a teacher's) could have seen.
    drawn: Any = None


def draw_training_pool(sources: list[dict[str, Any]], *, n_train: int, n_val: int, seed: int) -> TrainingPool:
    """``sources`` (``mathkit.data.SourceSpec`` mappings) combined, shuffled with ``seed``, cut to
    ``n_train + n_val`` rows, and ``n_val`` of them split off (with ``seed``) for validation."""
    drawn, provenance = combine_sources(sources, seed=seed)
    pool = drawn.select(range(min(n_train + n_val, len(drawn))))
    split = pool.train_test_split(test_size=n_val, seed=seed)
    return TrainingPool(pool=pool, train=split["train"], validation=split["test"], provenance=provenance,
                        drawn=drawn)


def format_training_sets(pool: TrainingPool, tokenizer, *, style: str, system_prompt: str | None,
                         max_length: int | None, drop_long: bool = True) -> tuple[Any, Any, dict[str, int]]:
    """``(train, validation, dropped)``: the pool's two sets as prompt/completion data for
    ``tokenizer``; with ``drop_long`` and a ``max_length``, examples longer than that many tokens
    are dropped, and ``dropped`` counts them per set."""
    kwargs = dict(style=style, system_prompt=system_prompt)
    train = format_dataset(pool.train, tokenizer, **kwargs)
    validation = format_dataset(pool.validation, tokenizer, **kwargs)
    dropped = {"train": 0, "validation": 0}
    if drop_long and max_length:
        train, dropped["train"] = splits.drop_long_examples(train, tokenizer, max_length)
        validation, dropped["validation"] = splits.drop_long_examples(validation, tokenizer, max_length)
    return train, validation, dropped
