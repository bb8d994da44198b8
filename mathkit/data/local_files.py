"""A user's own problems from JSON, JSONL, CSV or Parquet files (one file or a folder of them).

``columns`` maps unified names to the file's names, e.g. ``{"problem": "question",
"answer": "final"}``. Names not given are looked up among common aliases:

=========  =====================================================================
unified    file columns tried, in order
=========  =====================================================================
problem    problem, question, query, input, instruction, prompt
solution   solution, generated_solution, response, output, reasoning, rationale
answer     answer, expected_answer, final_answer, target, ground_truth, label
template   template; category: category, type, subject; id: id, unique_id
=========  =====================================================================

``problem`` is required, and an answer or a solution. A GSM8K-style answer column holding the
whole worked solution (``... #### 72``) is split into solution and answer; a missing answer is
taken from ``####`` or the last ``\\boxed{}`` of the solution. A folder with files named after
splits (``train.jsonl``, ``test.csv``) gives each split its files; otherwise every file is one
split, returned whatever ``split`` is asked.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from mathkit.data.schema import COLUMNS, as_text, last_boxed, make_record, split_hashes, to_dataset
from mathkit.errors import DataError

log = logging.getLogger(__name__)

FORMATS = {".json": "json", ".jsonl": "json", ".csv": "csv", ".parquet": "parquet"}
ALIASES: dict[str, tuple[str, ...]] = {
    "problem": ("problem", "question", "query", "input", "instruction", "prompt"),
    "solution": ("solution", "generated_solution", "response", "output", "reasoning", "rationale"),
    "answer": ("answer", "expected_answer", "final_answer", "target", "ground_truth", "label"),
    "template": ("template",),
    "category": ("category", "type", "subject"),
    "id": ("id", "unique_id"),
}
SPLIT_NAMES = ("train", "validation", "val", "test")


def looks_like_path(name: str) -> bool:
    """Whether a dataset name means a file or folder (it exists, or ends in a data file suffix)."""
    return Path(name).suffix.lower() in FORMATS or Path(name).exists()


def _files(path: Path, split: str | None) -> list[Path]:
    if path.is_file():
        if path.suffix.lower() not in FORMATS:
            raise DataError(f"{path}: unsupported file type {path.suffix!r}; use one of {sorted(FORMATS)}")
        return [path]
    if not path.is_dir():
        raise DataError(f"{path}: no such file or folder")
    files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in FORMATS)
    if not files:
        raise DataError(f"{path}: no {'/'.join(sorted(FORMATS))} files in this folder")
    named = {s: [p for p in files if p.stem.lower().startswith(s)] for s in SPLIT_NAMES}
    if split is not None and any(named.values()):
        wanted = named.get(split) or (named["val"] if split == "validation" else [])
        if not wanted:
            found = [s for s, ps in named.items() if ps]
            raise DataError(f"{path}: no files for split {split!r}; files are named for {found}")
        return wanted
    return files


def _resolve(columns: dict[str, str] | None, found: list[str], where: Path) -> dict[str, str]:
    columns = dict(columns or {})
    unknown = sorted(set(columns) - set(COLUMNS))
    if unknown:
        raise DataError(f"columns= maps unknown unified name(s) {unknown}; unified names are {list(COLUMNS)}")
    absent = {k: v for k, v in columns.items() if v not in found}
    if absent:
        raise DataError(f"{where}: column(s) {absent} not in the file; columns found: {found}")
    for unified, aliases in ALIASES.items():
        if unified not in columns:
            hit = next((a for a in aliases if a in found and a not in columns.values()), None)
            if hit:
                columns[unified] = hit
    if "problem" not in columns or not ({"answer", "solution"} & set(columns)):
        raise DataError(f"{where}: need a problem column and an answer or solution column; columns found: "
                        f"{found}. Name them with columns={{'problem': ..., 'answer': ...}}")
    return columns


def _row(raw: dict[str, Any], columns: dict[str, str], index: int, stem: str, source: str) -> dict[str, str]:
    get = {k: as_text(raw.get(v)) for k, v in columns.items()}
    solution, answer = get.get("solution", ""), get.get("answer", "")
    if "####" in answer and not solution:  # GSM8K style: the answer column holds the worked solution
        solution, answer = split_hashes(answer)
    if not answer:
        answer = split_hashes(solution)[1] if "####" in solution else last_boxed(solution)
    return make_record(id=get.get("id") or f"{stem}/{index}", source=source, problem=get["problem"],
                       solution=solution, answer=answer, template=get.get("template", ""),
                       category=get.get("category") or source)


def load_local(path: str | Path, split: str | None = None, columns: dict[str, str] | None = None):
    """Problems from a file or folder as a unified ``datasets.Dataset`` (see the module docstring)."""
    from datasets import load_dataset

    path = Path(path)
    files = _files(path, split)
    kinds = {FORMATS[p.suffix.lower()] for p in files}
    if len(kinds) > 1:
        raise DataError(f"{path}: mixed file types {sorted(kinds)}; keep one format per folder")
    try:
        data = load_dataset(kinds.pop(), data_files=[str(p) for p in files], split="train")
    except Exception as err:  # noqa: BLE001 - pyarrow/json errors: report which files
        raise DataError(f"{path}: could not read {[p.name for p in files]}: {type(err).__name__}: {err}") from err
    columns = _resolve(columns, list(data.column_names), path)
    source = f"local:{path.name}"
    stem = path.stem if path.is_file() else path.name
    log.info("%s: %d rows, columns %s", path, len(data), columns)
    return to_dataset(_row(raw, columns, i, stem, source) for i, raw in enumerate(data))
