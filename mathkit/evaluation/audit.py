"""Audit tables: every answer scored correct, and every gold left ungraded, for a reader to check.

A grader that scores a wrong answer as right inflates a small model's accuracy more than any
other error (2 right answers out of 100 can all be false positives). Report 00 therefore shows
each completion scored correct with its gold, the extracted answers and the end of the
completion, so that each one can be checked by eye, and lists the golds that were not graded.
"""

from __future__ import annotations

from collections.abc import Iterable

_ANSWER_TAIL_CHARS = 160


def _tail(text: str, n: int) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= n else "…" + text[-n:]


def correct_answers_table(records: Iterable[dict], *, set_name: str | None = None,
                          tail_chars: int = _ANSWER_TAIL_CHARS) -> list[dict]:
    """One row per record scored correct (lenient or strict): set, id, gold, both extracted
    answers, which extractions were right, whether the completion finished, and the end of the
    completion (where the answer usually is)."""
    rows = []
    for r in records:
        if not (r.get("correct") or r.get("correct_strict")):
            continue
        rows.append({
            "set": set_name,
            "id": r.get("id"),
            "gold": r.get("gold"),
            "extracted": r.get("extracted"),
            "extracted_strict": r.get("extracted_strict"),
            "correct": bool(r.get("correct")),
            "correct_strict": bool(r.get("correct_strict")),
            "finished": r.get("finished"),
            "completion_end": _tail(r.get("completion", ""), tail_chars),
        })
    return rows


def ungradable_table(records: Iterable[dict], *, set_name: str | None = None) -> list[dict]:
    """One row per record whose gold has no single checkable answer, with the reason."""
    from mathkit.evaluation.checking import parse_gold

    return [{"set": set_name, "id": r.get("id"), "gold": r.get("gold"),
             "reason": parse_gold(str(r.get("gold"))).reason}
            for r in records if r.get("gradable") is False]


def audit_tables(records_by_set: dict[str, list[dict]]) -> dict[str, list[dict]]:
    """``{"correct": [...], "ungradable": [...]}`` over several evaluation sets (name -> records),
    the two tables report 00 shows."""
    return {
        "correct": [row for name, recs in records_by_set.items()
                    for row in correct_answers_table(recs, set_name=name)],
        "ungradable": [row for name, recs in records_by_set.items()
                       for row in ungradable_table(recs, set_name=name)],
    }
