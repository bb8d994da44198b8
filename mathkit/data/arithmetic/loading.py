"""Arithmetic records to evaluate a model on, named by a spec (``arithmetic:1-3:+``) or a JSONL file.

``arithmetic[:MIN-MAX[:OPS]]`` draws fresh records from the test bucket (operand lengths
MIN..MAX digits, default 1-3; OPS a string of ``+ - *``, default ``+``), so they never repeat an
expression a training set of :func:`mathkit.data.arithmetic.generation.generate_splits` held.
A ``.jsonl`` file holds records written with :func:`mathkit.jsonl.write_jsonl`, such as the
``data/test.jsonl`` notebook 01 saves next to its report.
"""

from __future__ import annotations

import re
from pathlib import Path

from mathkit.data.arithmetic.generation import generate_examples
from mathkit.errors import DataError

SPEC_RE = re.compile(r"arithmetic(?::(\d+)-(\d+))?(?::([+\-*]+))?")
SPEC_HELP = "'arithmetic[:MIN-MAX[:OPS]]', e.g. arithmetic:1-3:+"
DEFAULT_N = 500
_RECORD_KEYS = {"prompt", "completion", "result"}


def parse_arithmetic_spec(spec: str) -> dict | None:
    """``{"min_digits", "max_digits", "ops"}`` of a spec like ``arithmetic:1-3:+-``; None if ``spec`` is not one."""
    m = SPEC_RE.fullmatch(str(spec).strip())
    if not m:
        return None
    lo, hi, ops = m.groups()
    return {"min_digits": int(lo or 1), "max_digits": int(hi or 3), "ops": tuple(dict.fromkeys(ops or "+"))}


def load_arithmetic_records(dataset: str | Path, n: int | None = None, seed: int = 0) -> list[dict]:
    """Records for :func:`mathkit.evaluation.evaluator.evaluate_model` with the arithmetic scorer (module docstring).

    A spec gives ``n`` records (default 500); a file gives all its records, or ``n`` of them
    chosen with ``seed`` (in file order).
    """
    from mathkit.data.schema import subsample_indices
    from mathkit.jsonl import read_jsonl

    settings = parse_arithmetic_spec(str(dataset))
    if settings is not None:
        return generate_examples(DEFAULT_N if n is None else n, seed=seed, split="test", **settings)
    path = Path(dataset)
    if path.suffix != ".jsonl" or not path.is_file():
        raise DataError(f"arithmetic records come from a .jsonl file (notebook 01 writes data/test.jsonl) "
                        f"or a spec {SPEC_HELP}; got {str(dataset)!r}")
    records = read_jsonl(path)
    missing = _RECORD_KEYS - set(records[0] if records else {})
    if not records or missing:
        raise DataError(f"{path} holds no arithmetic records (missing {sorted(missing or _RECORD_KEYS)})")
    return [records[i] for i in subsample_indices(len(records), n, seed)]
