"""MathX-5M-shaped training data: streamed, columns unified, a subset taken with ``islice``.

MathX-5M (``XenArcAI/MathX-5M``, millions of rows) is read the way its fine-tuning recipe reads
it: as a streamed ``IterableDataset`` (only the rows taken are downloaded), its columns unified
(some mirrors call the problem ``question``), and the first ``n`` usable rows materialized with
``itertools.islice``. A row holds ``problem``, ``generated_solution`` (``<think>`` reasoning
``</think>``, then a short write-up ending in ``\\boxed{}``) and ``expected_answer``.

Offline, the same code reads a local JSONL file of that shape, also streamed
(``load_dataset("json", streaming=True)``): :func:`to_mathx_row` renders unified rows
(GSM-Symbolic variants, sympy problems) as MathX rows, ``<think>`` reasoning plus the final
answer, and :func:`write_mathx_jsonl` writes them. Reading back, :func:`to_record` keeps the
reasoning inside ``<think>`` as the solution and drops the write-up after it:
:mod:`mathkit.data.formatting`'s ``think`` style writes the final answer itself, in one fixed form
the evaluator reads, so the model is not taught two answer formats. A MathX row without
``<think>`` tags keeps its whole solution. The row mapping beyond that (problem, answer, id) is
the hub source's (:func:`mathkit.data.hub.map_mathx`).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Iterator, Mapping
from itertools import islice
from pathlib import Path
from typing import Any

from mathkit.data.formatting import completion_text
from mathkit.data.hub import DEFAULT_SHUFFLE_BUFFER, HUB_SOURCES, check_hub_reachable, map_mathx
from mathkit.data.markers import THINK_END, THINK_START
from mathkit.data.schema import to_dataset
from mathkit.errors import DataError, HubUnavailableError
from mathkit.jsonl import write_jsonl

log = logging.getLogger(__name__)

MATHX_REPO = HUB_SOURCES["mathx"].repo
MATHX_COLUMNS = ("problem", "generated_solution", "expected_answer")
# Column unification: other names of MathX's columns in mirrors and derived sets -> MathX's own.
COLUMN_ALIASES: dict[str, tuple[str, ...]] = {
    "problem": ("problem", "question"),
    "generated_solution": ("generated_solution", "solution"),
    "expected_answer": ("expected_answer", "answer"),
}
LOCAL_SUFFIXES = (".jsonl", ".json")
_THINK = re.compile(re.escape(THINK_START) + r"(.*?)" + re.escape(THINK_END), re.S)


# ---- writing MathX-shaped rows --------------------------------------------------------------

def to_mathx_row(record: Mapping[str, Any]) -> dict[str, str]:
    """A unified row as a MathX row: ``<think>`` reasoning ``</think>`` and the boxed answer."""
    return {"problem": str(record["problem"]), "generated_solution": completion_text(record, "think"),
            "expected_answer": str(record.get("answer") or "")}


def write_mathx_jsonl(records: Iterable[Mapping[str, Any]], path: str | Path) -> Path:
    """Write unified rows as a MathX-shaped JSONL file (atomically); returns the path."""
    return write_jsonl((to_mathx_row(r) for r in records), path)


# ---- reading: stream, unify, take -----------------------------------------------------------

def is_local(source: str | Path) -> bool:
    """Whether ``source`` names a local JSON/JSONL file rather than a hub dataset."""
    return Path(str(source)).suffix.lower() in LOCAL_SUFFIXES


def open_stream(source: str | Path = MATHX_REPO, *, split: str = "train", seed: int = 0,
                shuffle_buffer: int = DEFAULT_SHUFFLE_BUFFER, revision: str | None = None):
    """A streamed ``IterableDataset`` of ``source``: a local ``.jsonl``/``.json`` file, or a hub
    dataset id (default MathX-5M). With ``shuffle_buffer`` > 0 the stream is shuffled with
    ``seed`` (shard order and a buffer of that many rows), deterministic for one seed."""
    from datasets import load_dataset

    if is_local(source):
        path = Path(source)
        if not path.is_file():
            raise DataError(f"{path}: no such file; write it first (mathkit.data.mathx.write_mathx_jsonl)")
        stream = load_dataset("json", data_files=str(path), split="train", streaming=True)
    else:
        check_hub_reachable(str(source))
        try:
            stream = load_dataset(str(source), split=split, streaming=True, revision=revision)
        except Exception as err:  # noqa: BLE001 - the hub fails in many library-specific ways; say it once
            raise HubUnavailableError(f"cannot stream {source} ({split} split): {type(err).__name__}: "
                                      f"{err}") from err
    return stream.shuffle(seed=seed, buffer_size=shuffle_buffer) if shuffle_buffer else stream


def unify_columns(row: Mapping[str, Any]) -> dict[str, Any]:
    """One streamed row with MathX's column names (``question`` -> ``problem``, ...)."""
    out = {}
    for column, names in COLUMN_ALIASES.items():
        found = next((n for n in names if n in row), None)
        if found is None:
            raise DataError(f"row lacks a {column!r} column (tried {list(names)}); it has {sorted(row)}")
        out[column] = row[found]
    return out


def reasoning(generated_solution: str) -> str:
    """The reasoning inside ``<think>...</think>`` (all of them, joined), or the text without tags."""
    parts = [p.strip() for p in _THINK.findall(generated_solution or "")]
    if parts:
        return "\n\n".join(p for p in parts if p)
    return (generated_solution or "").replace(THINK_START, "").replace(THINK_END, "").strip()


def to_record(row: Mapping[str, Any], index: int, split: str = "train") -> dict[str, str]:
    """A unified record (:mod:`mathkit.data.schema`) from a MathX-shaped row."""
    mathx = unify_columns(row)
    record = map_mathx(mathx, index, split)
    record["solution"] = reasoning(str(mathx["generated_solution"]))
    return record


def unified_records(stream, split: str = "train", source: str | None = None) -> Iterator[dict[str, str]]:
    """The stream's rows as unified records, lazily (``source`` renames their source column);
    rows without a problem are skipped."""
    for index, row in enumerate(stream):
        try:
            record = to_record(row, index, split)
        except DataError as err:
            if "empty problem" not in str(err):
                raise
            log.debug("skipped row %d: %s", index, err)
            continue
        yield {**record, "source": source} if source else record


def take(stream, n: int, split: str = "train", source: str | None = None):
    """The first ``n`` unified records of ``stream``, materialized (``islice``) as a ``datasets.Dataset``."""
    if n < 1:
        raise DataError(f"n must be a positive number of rows, got {n}")
    rows = list(islice(unified_records(stream, split, source), n))
    if len(rows) < n:
        log.warning("the stream ended after %d usable rows of the %d asked", len(rows), n)
    return to_dataset(rows)


def load_mathx(source: str | Path = MATHX_REPO, n: int = 10_000, *, split: str = "train", seed: int = 0,
               shuffle_buffer: int = DEFAULT_SHUFFLE_BUFFER, revision: str | None = None):
    """``n`` unified rows of a MathX-shaped source: :func:`open_stream`, :func:`unify_columns`
    and :func:`to_record` row by row, :func:`take` (``islice``). Rows of a local file have the
    source ``local:<file name>``, hub rows ``mathx``."""
    stream = open_stream(source, split=split, seed=seed, shuffle_buffer=shuffle_buffer, revision=revision)
    log.info("streaming %d rows of %s", n, source)
    return take(stream, n, split, source=f"local:{Path(source).name}" if is_local(source) else None)
