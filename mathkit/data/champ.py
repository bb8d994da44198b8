"""CHAMP: 270 competition problems with step-by-step solutions and answers, from ``champ-dataset``.

The package ships one JSON file (``champ_dataset/dataset_files/v0.json``, 72 MB, mostly model
conversations we do not need). We read only each problem's text, its solution steps and its
answer, and drop the ``@@`` math markers the package uses (its ``Problem.text`` does the same).
Categories: Combinatorics 40, Inequality 50, Number-Theory 80, Polynomial 50, Sequence 50.

Answers are short free text as the authors wrote them (``"239"``, ``"2^n"``, ``"1 and 19"``,
``"No"``): numeric ones verify with math-verify, the others need a lenient comparison.
CHAMP has no train/test split: it is an evaluation set, so ``split`` may be None or ``"test"``.
"""

from __future__ import annotations

import json
from functools import lru_cache

from mathkit.data.schema import make_record
from mathkit.errors import DataError

SOURCE = "champ"


def _clean(text: str | None) -> str:
    return (text or "").replace("@@", "").strip()


@lru_cache(maxsize=1)
def _records() -> tuple[dict[str, str], ...]:
    from importlib.resources import files

    path = files("champ_dataset") / "dataset_files" / "v0.json"
    with path.open("r", encoding="utf-8") as f:
        problems = json.load(f)["problems"]
    rows = []
    for key, p in problems.items():
        steps = [_clean(s.get("_raw_text")) for s in (p.get("solution") or {}).get("steps", [])]
        rows.append(make_record(
            id=f"champ/{key}", source=SOURCE, problem=_clean(p.get("_raw_text")),
            solution="\n".join(s for s in steps if s), answer=_clean(p.get("_raw_answer")),
            template="", category=f"champ/{p.get('category', 'unknown')}",
        ))
    return tuple(rows)


def load_champ(split: str | None = None) -> list[dict[str, str]]:
    """All 270 CHAMP problems as unified records (in the package's order)."""
    if split not in (None, "test"):
        raise DataError(f"champ is an evaluation set with no {split!r} split; use split=None or 'test'")
    return [dict(r) for r in _records()]
