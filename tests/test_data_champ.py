"""CHAMP: 270 problems with solutions and answers, from the package's JSON."""

from collections import Counter

import pytest

from mathkit.data import champ
from mathkit.data.schema import COLUMNS
from mathkit.errors import DataError


def test_all_270_problems_with_solutions_answers_and_categories():
    rows = champ.load_champ()
    assert len(rows) == 270 and len({r["id"] for r in rows}) == 270
    assert all(list(r) == list(COLUMNS) for r in rows)
    assert all(r["problem"] and r["solution"] and r["answer"] for r in rows)
    assert Counter(r["category"] for r in rows) == {
        "champ/Number-Theory": 80, "champ/Inequality": 50, "champ/Polynomial": 50,
        "champ/Sequence": 50, "champ/Combinatorics": 40}
    assert not any("@@" in r["problem"] + r["solution"] + r["answer"] for r in rows)


def test_a_known_problem_is_mapped_exactly():
    first = next(r for r in champ.load_champ() if r["id"] == "champ/P_Combinatorics_1")
    assert first["problem"].startswith("Let a string consist of digit 1, 2, 3.")
    assert first["answer"] == "239"
    assert first["solution"].startswith("Let x_n, y_n, z_n be the number of length-n strings")
    inequality = next(r for r in champ.load_champ() if r["id"] == "champ/P_Inequality_11")
    assert inequality["answer"] == "2^n"


def test_callers_get_copies_and_champ_has_no_train_split():
    rows = champ.load_champ("test")
    rows[0]["answer"] = "changed"
    assert champ.load_champ()[0]["answer"] != "changed"
    with pytest.raises(DataError, match="evaluation set"):
        champ.load_champ("train")
