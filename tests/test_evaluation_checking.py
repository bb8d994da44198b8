"""Answer checking: golds parsed once into checkable forms, ungradable golds, exact integers,
fragments that never match, timeouts that count as wrong; the false positives of report 00."""

import threading
import time
from fractions import Fraction

import pytest

from mathkit.evaluation import checking
from mathkit.evaluation.checking import Gold, is_correct, parse_gold, to_number

# (prediction, gold, correct)
CORRECTNESS_CASES = [
    ("1,000", "1000", True),
    ("1000", "1,000", True),
    ("$18.00", "18", True),
    ("18", "$18", True),
    ("0.5", "1/2", True),
    (r"\frac{1}{2}", "0.5", True),
    (r"\dfrac{1}{2}", "1/2", True),
    ("-3", "-3", True),
    ("-3", "3", False),
    ("50%", "50", True),
    ("x = 5", "5", True),
    ("5 apples.", "5", True),
    ("5", "6", False),
    (r"\frac{\sqrt{2}}{2}", r"\frac{1}{\sqrt{2}}", True),
    (r"\sqrt{8}", r"2\sqrt{2}", True),
    (r"\sqrt{8}", "2", False),  # bare LaTeX must not parse as the number 2
    ("(1,2]", "(1, 2]", True),
    ("[1,2]", "(1,2)", False),
    (r"\{2, 1\}", r"\{1, 2\}", True),
    ("(x+1)^2", "x^2+2x+1", True),
    ("3.14159265", r"\pi", True),
    ("yes", "Yes", True),
    ("sey", "yes", False),  # words compare as words, not as the product y*e*s
    ("07", "7", True),
    # integers compare exactly; a tolerance only between decimals
    ("1000001", "1000000", False),
    ("999999", "1000000", False),
    ("1000000.5", "1000001", False),
    ("1000000.0", "1000000", True),
    ("0.3333333", "1/3", True),
    ("1/3", "0.3333333", True),
    ("1000001/3000000", "1/3", False),  # two exact fractions that differ
    ("2^3", "8", True),
    (r"\binom{10}{5}", "252", True),
    ("7.0", "7", True),
    ("2/4", "1/2", True),
    ("1/3", "0.33", False),
    ("1/0", "1", False),
    (None, "5", False),
    ("", "5", False),
    ("5", None, False),
    ("not a number at all", "5", False),
    (r"\frac{1}{", "1/2", False),  # unparsable prediction is wrong, not an error
    # equations: x=y=0 has one value
    ("0", "x=y=0", True),
    (r"\frac{n(n+1)}{2}", "n(n+1)/2", True),
    (r"2^{n-1}", "2^(n-1)", True),
    # prose gold answers as CHAMP writes them
    ("252", "C(10, 5), or equivalently 252", True),
    ("5/14", "5/14, or approximately 35.7%", True),
    ("0.357", "5/14, or approximately 35.7%", False),  # an approximation is not the answer
    ("100", "100 (i.e., all values)", True),
    ("3", "3 is the only possible value", True),
    ("2/3", "The limit exists and is equal to 2/3", True),
    ("4", "The limit exists and is equal to 2/3", False),
    ("no", "No", True),
]


@pytest.mark.parametrize("prediction,gold,expected", CORRECTNESS_CASES)
def test_is_correct(prediction, gold, expected):
    assert is_correct(prediction, gold) is expected


@pytest.mark.parametrize("gold,kind,forms", [
    ("18", "number", ["18"]),
    ("1,000", "number", ["1000"]),
    ("No", "word", ["No"]),
    ("C(10, 5), or equivalently 252", "expression", ["C(10, 5)", "252"]),
    ("5/14, or approximately 35.7%", "number", ["5/14"]),
    ("sum_(i=1)^n i^3, or equivalently (n(n+1)/2)^2", "expression", ["(n(n+1)/2)^2"]),
    ("((-1)^(n+1)+n+1)/(n+2) (i.e., 1 if for odd n, and n/(n+2) for even n)", "expression",
     ["((-1)^(n+1)+n+1)/(n+2)"]),
    ("100 (i.e., all values)", "number", ["100"]),
    ("3 is the only possible value", "number", ["3"]),
    ("The limit exists and is equal to (a+3b)/2", "expression", ["(a+3b)/2"]),
    ("98 values", "number", ["98"]),
    ("[-1, 1]", "expression", ["[-1, 1]"]),
])
def test_parse_gold_finds_the_checkable_forms(gold, kind, forms):
    parsed = parse_gold(gold)
    assert parsed.gradable and parsed.kind == kind and parsed.reason is None
    assert [f.text for f in parsed.forms] == forms


@pytest.mark.parametrize("gold,reason", [
    ("376 and 625", "several values"),
    ("x=6, y=5", "several values"),
    ("f(x)=0 or f(x)=1", "several values"),
    ("x=±1", "several values"),
    ("No integer solutions", "free text"),
    ("The sequence is not periodic", "free text"),
    ("x(n)<y(n-1) for all n≥3", "free text"),
    ("sum_(k=1)^n 1/k", "does not parse"),
    ("x(x-1)(x-2)...(x-2022)", "does not parse"),
])
def test_golds_without_a_single_checkable_answer_are_ungradable(gold, reason):
    parsed = parse_gold(gold)
    assert not parsed.gradable and parsed.kind == "ungradable" and reason in parsed.reason
    assert not is_correct(gold, parsed)  # matches nothing, not even itself


def test_parse_gold_is_cached_and_accepted_by_is_correct():
    assert parse_gold("(n(n+1)/2)^2") is parse_gold("(n(n+1)/2)^2")
    gold = parse_gold("C(10, 5), or equivalently 252")
    assert isinstance(gold, Gold) and is_correct("252", gold) and not is_correct("251", gold)


def test_to_number():
    assert to_number("3/4") == to_number("0.75") == Fraction(3, 4)
    assert to_number(r"\sqrt{2}") is None and to_number(None) is None


def _real_gold(source: str, example_id: str) -> str:
    from mathkit.data import load_math_dataset

    ds = load_math_dataset(source)
    return next(str(r["answer"]) for r in ds if r["id"] == example_id)


@pytest.mark.parametrize("example_id,answer_given", [
    ("champ/P_Combinatorics_33", "1"),   # gold sum_(i=1)^n i^3 = (n(n+1)/2)^2
    ("champ/P_Polynomial_28", "1"),      # gold ((-1)^(n+1)+n+1)/(n+2) (i.e., 1 if for odd n, ...)
    ("champ/P_Polynomial_35", "1/(x^"),  # gold 1: a fragment of 1/(x^1958+...)
])
def test_report_00_false_positives_on_champ_are_wrong_now(example_id, answer_given):
    gold = _real_gold("champ", example_id)
    assert not is_correct(answer_given, gold)
    assert parse_gold(gold).gradable


def test_the_real_champ_golds_still_accept_their_right_answers():
    assert is_correct(r"\left(\frac{n(n+1)}{2}\right)^2", _real_gold("champ", "champ/P_Combinatorics_33"))
    assert is_correct(r"\frac{(-1)^{n+1}+n+1}{n+2}", _real_gold("champ", "champ/P_Polynomial_28"))
    assert is_correct("1", _real_gold("champ", "champ/P_Polynomial_35"))


def test_is_correct_symbolic_outside_the_main_thread():
    """math-verify's signal-based timeout fails off the main thread; ours must not."""
    out = {}

    def worker():
        out["eq"] = is_correct(r"\frac{\sqrt{2}}{2}", r"\frac{1}{\sqrt{2}}")
        out["ne"] = is_correct(r"\sqrt{3}", r"\sqrt{2}")

    t = threading.Thread(target=worker)
    t.start()
    t.join()
    assert out == {"eq": True, "ne": False}


def test_a_math_verify_timeout_counts_as_wrong(monkeypatch):
    """A comparison that outlives the timeout is wrong. The stand-in comparison would say
    "equal" after 10 s; the 1 s alarm must stop it first (without a timeout the test fails)."""
    import math_verify.grader as grader

    def slow_equal(*args, **kwargs):
        end = time.monotonic() + 10
        while time.monotonic() < end:
            pass
        return True

    monkeypatch.setattr(checking, "VERIFY_TIMEOUT_S", 1)
    monkeypatch.setattr(grader, "sympy_expr_eq", slow_equal)
    assert is_correct("(x+1)^2", "x^2+2x+1") is False
