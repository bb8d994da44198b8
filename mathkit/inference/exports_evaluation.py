"""Evaluate each exported model on the same rows as the torch model it came from.

One evaluator for every backend (:func:`mathkit.evaluation.evaluator.evaluate_model`: same prompts,
greedy decoding, scorer and batch), each export opened, evaluated and closed in turn so that only
one of them holds memory at a time. :mod:`mathkit.reporting.edge_summary` turns the results into
the comparison table.
"""

from __future__ import annotations

from pathlib import Path


def evaluate_exports(exports, rows, *, threads: int | None = None, records_dir: str | Path | None = None,
                     **eval_kwargs) -> list[tuple]:
    """``[(export, EvalResult), ...]`` for each :class:`~mathkit.export.targets.EdgeModel` in
    ``exports`` on ``rows``; ``eval_kwargs`` go to ``evaluate_model`` (style, batch size, budget);
    records are written to ``records_dir/edge_<name>.jsonl`` when given."""
    from mathkit.evaluation.evaluator import evaluate_model

    results = []
    for export in exports:
        model, tokenizer = export.load(threads=threads)
        try:
            records = Path(records_dir) / f"edge_{export.name}.jsonl" if records_dir else None
            results.append((export, evaluate_model(model, tokenizer, rows, records_path=records, **eval_kwargs)))
        finally:
            close = getattr(model, "close", None)  # llama.cpp frees its context now, not at exit
            if close is not None:
                close()
    return results
