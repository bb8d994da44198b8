"""The unified row every math source becomes, and the helpers that build and subsample it.

Every loader in :mod:`mathkit.data` returns a ``datasets.Dataset`` with exactly these string
columns, so training, evaluation and the per-problem-type breakdown never care where a problem
came from:

=========  ==================================================================================
column     meaning
=========  ==================================================================================
id         stable identifier inside its source (``"gsm8k/test/17"``, ``"champ/P_Sequence_6"``)
source     the source name given to ``load_math_dataset`` (``"gsm8k"``, ``"gsm_symbolic"``...)
problem    the question as the model should see it
solution   the worked reasoning *without* the source's final-answer marker line (``#### 72``,
           ``The answer is: 72``); :mod:`mathkit.data.formatting` writes the final answer in
           the style being trained, so it must not already be there
answer     the gold final answer as a string; numbers plain (``"72"``, ``"0.5"``), symbolic
           answers in LaTeX inside ``$...$`` so that math-verify parses them
template   GSM-Symbolic template id (``"0040"``), ``""`` when the row has none
category   problem type for breakdowns (``"gsm8k"``, ``"arithmetic:+"``, ``"algebra/linear"``,
           ``"champ/Number-Theory"``, ``"math/Algebra"``)
=========  ==================================================================================

The gold-answer helpers here read answers *as stored in datasets* (``####``, ``\\boxed{}``,
``The answer is:``); extracting answers from model outputs is :mod:`mathkit.evaluation.extraction`'s job.
"""

from __future__ import annotations

import hashlib
import math
import random
import re
from collections.abc import Iterable, Mapping
from typing import Any

from mathkit.errors import DataError

COLUMNS: tuple[str, ...] = ("id", "source", "problem", "solution", "answer", "template", "category")
REQUIRED_TEXT: tuple[str, ...] = ("problem",)


def features():
    """The ``datasets.Features`` of a unified dataset: every column a string."""
    from datasets import Features, Value

    return Features({c: Value("string") for c in COLUMNS})


def make_record(**fields: Any) -> dict[str, str]:
    """One unified row: every column present, every value a string, unknown keys refused.

    Missing optional columns become ``""``; ``None`` becomes ``""``; numbers become their ``str``.
    """
    unknown = set(fields) - set(COLUMNS)
    if unknown:
        raise DataError(f"unknown column(s) {sorted(unknown)} for a math record; columns are {list(COLUMNS)}")
    record = {c: as_text(fields.get(c)) for c in COLUMNS}
    if not record["problem"].strip():
        raise DataError(f"record {record['id']!r} from {record['source']!r} has an empty problem")
    return record


def as_text(value: Any) -> str:
    """A cell as text: ``""`` for missing (None, NaN), ``5`` rather than ``5.0`` for whole floats."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def check_split(source: str, split: str | None, allowed: tuple[str, ...] = ("train", "test")) -> None:
    """Raise DataError unless ``split`` is None or one of ``allowed`` for this source."""
    if split is not None and split not in allowed:
        names = ", ".join(repr(s) for s in allowed)
        raise DataError(f"{source} has splits {names} or None, not {split!r}")


def check_options(source: str, options: Mapping[str, Any], allowed: Iterable[str], also: str = "") -> None:
    """Raise DataError naming the options ``source`` does not take (``also``: a note on other accepted ones)."""
    allowed = list(allowed)
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise DataError(f"{source} does not take option(s) {unknown}; it takes {allowed or 'none'}"
                        + (f" {also}" if also else ""))


def to_dataset(records: Iterable[Mapping[str, Any]]):
    """A ``datasets.Dataset`` with the unified columns in their fixed order (empty input allowed)."""
    from datasets import Dataset

    rows = [r if set(r) == set(COLUMNS) else make_record(**r) for r in records]
    columns = {c: [r[c] for r in rows] for c in COLUMNS}
    return Dataset.from_dict(columns, features=features())


def check_columns(dataset) -> None:
    """Raise DataError unless ``dataset`` has every unified column (extra columns are allowed)."""
    missing = [c for c in COLUMNS if c not in dataset.column_names]
    if missing:
        raise DataError(f"dataset lacks the unified column(s) {missing}; it has {dataset.column_names}")


def subsample_indices(total: int, n: int | None, seed: int) -> list[int]:
    """Indices of a deterministic subsample of ``n`` out of ``total`` rows, in ascending order.

    The subsample is the first ``n`` of one seeded permutation, so for one seed a smaller ``n``
    is always a subset of a larger one (n=100 rows are among the n=500 rows).
    """
    if n is None or n >= total:
        return list(range(total))
    if n < 0:
        raise DataError(f"n must be >= 0 or None, got {n}")
    order = list(range(total))
    random.Random(seed).shuffle(order)
    return sorted(order[:n])


def subsample(dataset, n: int | None, seed: int):
    """``dataset`` cut to ``n`` rows chosen by :func:`subsample_indices` (all rows when n is None)."""
    if n is None or n >= len(dataset):
        return dataset
    return dataset.select(subsample_indices(len(dataset), n, seed))


def hash_bucket(key: str, modulus: int) -> int:
    """SHA-256 of ``key`` modulo ``modulus``: a bucket fixed by the text alone, whatever the seed."""
    return int(hashlib.sha256(key.encode("utf-8")).hexdigest(), 16) % modulus


def in_test_bucket(key: str, modulus: int = 5) -> bool:
    """Whether a generated problem belongs to the test split: SHA-256 of ``key`` is 0 mod ``modulus``.

    Generators (sympy_problems, arithmetic) split by this hash instead of by seed, so that
    ``split="train"`` and ``split="test"`` never share a problem whatever seeds they use.
    """
    return hash_bucket(key, modulus) == 0


# ---- gold answers as datasets store them -----------------------------------------------------

_CALC = re.compile(r"<<[^<>]*>>")


def number_text(text: str) -> str:
    """Tidy a numeric answer: drop thousands commas, ``$``, trailing ``.``; keep anything else."""
    t = text.strip().rstrip(".").strip()
    if re.fullmatch(r"[-+]?\$?\s*[\d,]*\.?\d+\s*%?", t):
        t = t.replace(",", "").replace("$", "").replace(" ", "")
    return t


def split_hashes(text: str) -> tuple[str, str]:
    """``(reasoning, answer)`` of a GSM8K-style text ending in ``#### answer``; ``(text, "")`` if none."""
    idx = text.rfind("####")
    if idx < 0:
        return text.strip(), ""
    return text[:idx].rstrip(), number_text(text[idx + 4:].strip().splitlines()[0] if text[idx + 4:].strip() else "")


def strip_calculator(text: str) -> str:
    """Remove GSM8K calculator annotations (``<<48/2=24>>``), which no model should learn to emit."""
    return _CALC.sub("", text)


def last_boxed(text: str) -> str:
    """Content of the last ``\\boxed{...}`` (or ``\\fbox{...}``) with balanced braces; ``""`` if none."""
    for marker in ("\\boxed", "\\fbox"):
        start = text.rfind(marker)
        if start < 0:
            continue
        i = start + len(marker)
        while i < len(text) and text[i] == " ":
            i += 1
        if i >= len(text) or text[i] != "{":
            continue
        depth, j = 0, i
        while j < len(text):
            if text[j] == "{":
                depth += 1
            elif text[j] == "}":
                depth -= 1
                if depth == 0:
                    return text[i + 1:j].strip()
            j += 1
    return ""


def split_answer_is(text: str) -> tuple[str, str]:
    """``(reasoning, answer)`` of a text ending in ``The answer is: X`` (MetaMathQA, MathInstruct)."""
    matches = list(re.finditer(r"The answer is:?", text, re.I))
    if not matches:
        return text.strip(), ""
    m = matches[-1]
    answer = text[m.end():].strip().splitlines()[0].strip() if text[m.end():].strip() else ""
    return text[:m.start()].rstrip(), number_text(answer.rstrip("."))


_THINK_TAGS = re.compile(r"</?think>")


def strip_think_tags(text: str) -> str:
    """Drop ``<think>``/``</think>`` tags (kept text) so formatting can add its own, once."""
    return _THINK_TAGS.sub("", text).strip()
