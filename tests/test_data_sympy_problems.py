"""Sympy-generated problems: exact answers that math-verify checks, seeded, split by content."""

import re
from collections import Counter

import pytest
import sympy
from math_verify import parse, verify

from mathkit.data import sympy_problems as sp_
from mathkit.errors import DataError


@pytest.fixture(scope="module")
def rows():
    return sp_.generate(60, seed=0, split="train")


def test_kinds_in_turn_with_their_categories(rows):
    assert Counter(r["category"] for r in rows) == {c: 10 for c, _ in sp_.KINDS.values()}
    assert len({r["problem"] for r in rows}) == 60
    assert all(r["answer"].startswith("$") and r["answer"].endswith("$") for r in rows)
    assert all(len(r["solution"].splitlines()) >= 1 for r in rows)


def _expr(tex: str):
    """A polynomial as this module writes it in LaTeX (``- 2 x^{2} + 3 x``) back to sympy."""
    text = tex.replace("^{", "**(").replace("}", ")")
    return sympy.sympify(re.sub(r"(\d)\s*x", r"\1*x", text))


def test_answers_parse_and_match_an_independent_sympy_solution(rows):
    x = sympy.Symbol("x")
    checked = Counter()
    for r in rows:
        gold = parse(r["answer"])
        assert gold, r["answer"]
        math = r["problem"].split("$")[-2]
        if r["category"] in ("algebra/linear", "algebra/quadratic"):
            lhs, rhs = math.split("=")
            roots = sympy.solve(sympy.Eq(_expr(lhs), _expr(rhs)), x)
            expected = "$" + ", ".join(sympy.latex(v) for v in sorted(roots, key=float)) + "$"
            assert verify(gold, parse(expected)), (r["problem"], r["answer"])
        elif r["category"] == "calculus/integral":
            lo, hi = (int(v) for v in re.findall(r"_\{(-?\d+)\}\^\{(-?\d+)\}", math)[0])
            poly = math.split("\\left(")[1].split("\\right)")[0]
            assert verify(gold, parse(f"${sympy.latex(sympy.integrate(_expr(poly), (x, lo, hi)))}$"))
        elif r["category"].startswith("linear_algebra"):
            entries = math.split("\\begin{matrix}")[1].split("\\end{matrix}")[0]
            m = sympy.Matrix([[int(v) for v in row.split("&")] for row in entries.split("\\\\")])
            truth = m.det() if r["category"].endswith("determinant") else sorted(m.eigenvals(), key=float)
            expected = f"${truth}$" if r["category"].endswith("determinant") else \
                "$" + ", ".join(str(v) for v in truth) + "$"
            assert verify(gold, parse(expected)), (r["problem"], r["answer"])
        else:
            assert r["category"] == "calculus/derivative"
            f = parse("$" + math.split("=", 1)[1] + "$")[0]
            (var,) = f.free_symbols
            assert verify(gold, parse(f"${sympy.latex(sympy.diff(f, var))}$")), (r["problem"], r["answer"])
        checked[r["category"]] += 1
    assert len(checked) == 6


def test_logs_are_written_as_ln_because_math_verify_reads_log_as_log10():
    rows = sp_.generate(40, seed=3, kinds=["derivative"])
    assert any("\\ln" in r["problem"] for r in rows)
    assert not any("\\log" in r["problem"] + r["answer"] + r["solution"] for r in rows)


def test_a_model_style_answer_verifies_against_the_gold():
    quad = next(r for r in sp_.generate(12, seed=1, kinds=["quadratic"]) if "," in r["answer"])
    lo, hi = quad["answer"].strip("$").split(", ")
    assert verify(parse(quad["answer"]), parse(f"The roots are \\boxed{{{hi}, {lo}}}"))


def test_seeded_and_splits_never_share_a_problem():
    a = sp_.generate(30, seed=5, split="train")
    assert a == sp_.generate(30, seed=5, split="train")
    assert a != sp_.generate(30, seed=6, split="train")
    test = sp_.generate(60, seed=5, split="test")
    train = sp_.generate(200, seed=9, split="train")
    strip = lambda r: r["problem"].split(":", 1)[-1]  # noqa: E731 - compare the math, not the wording
    assert not {strip(r) for r in test} & {strip(r) for r in train}


def test_kinds_option_and_errors():
    only = sp_.generate(4, seed=0, kinds=["integral"])
    assert {r["category"] for r in only} == {"calculus/integral"}
    with pytest.raises(DataError, match="unknown sympy problem kind"):
        sp_.generate(2, kinds=["topology"])
    with pytest.raises(DataError, match="splits"):
        sp_.generate(2, split="dev")
