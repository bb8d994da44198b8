"""Answer extraction (lenient and strict) on the cases that trip graders: formats, fragments,
list markers and completions cut off at the token limit."""

import pytest

from mathkit.evaluation.extraction import (
    canonical_answer,
    complete_part,
    extract_answer,
    extract_answer_strict,
    is_fragment,
    last_boxed,
)

# (completion, lenient answer, strict answer)
EXTRACTION_CASES = [
    # boxed, nested braces, LaTeX
    (r"So the result is \boxed{42}.", "42", "42"),
    (r"\boxed{\frac{\sqrt{2}}{2}}", r"\frac{\sqrt{2}}{2}", r"\frac{\sqrt{2}}{2}"),
    (r"\boxed{\dfrac{1}{2}}", "1/2", "1/2"),
    (r"\boxed{-\frac{3}{4}}", "-3/4", "-3/4"),
    (r"\boxed{(1, 2]}", "(1, 2]", "(1, 2]"),
    (r"\boxed{18 \text{ dollars}}", "18", "18"),
    (r"\boxed{1{,}000}", "1000", "1000"),
    (r"\boxed{x = 5}", "5", "5"),
    (r"first \boxed{3} then \boxed{7}", "7", "7"),
    (r"\boxed{-3}", "-3", "-3"),
    (r"\fbox{12}", "12", "12"),
    ("So he earns 30 dollars.\nThe final answer is $\\boxed{answer}$.", "30", None),  # copied placeholder
    (r"cut off \boxed{\frac{1}{2", "2", None),  # unbalanced box: lenient falls back, strict gives up
    # ####
    ("#### 1,000", "1000", "1000"),
    ("#### $1,234.50", "1234.5", "1234.5"),
    ("#### 72\n\nQuestion: next one has 5", "72", "72"),
    ("#### 8\n#### 9", "8", "8"),  # the first commitment counts
    ("#### 70 = 7 * 10", "70", "70"),
    ("#### 16 - 3 - 4 = 9", "9", "9"),
    ("#### 5 apples", "5", "5"),
    ("#### 3.5.", "3.5", "3.5"),
    ("#### 10%", "10", "10"),
    (r"#### \frac{1}{2}", "1/2", "1/2"),
    # "The answer is"
    ("The answer is 1,000.", "1000", None),
    ("The answer is $18.00.", "18", None),
    (r"The answer is $\frac{1}{2}$.", "1/2", None),
    (r"The answer is \( \frac{3}{4} \)", "3/4", None),
    ("The answer is 4 * $12 = $48.", "48", None),
    ("The final answer is: 16 - 3 - 4 = 9", "9", None),
    ("**Answer:** 42", "42", None),
    ("answer: \u22127", "-7", None),
    ("The answer is yes.", "yes", None),
    ("The answer is 3.5. Then we check 2 more.", "3.5", None),
    # "Therefore ..."
    ("Therefore, Janet makes $18 every day.\nShe smiles 2 times.", "18", None),
    ("Thus the total is 16 - 3 - 4 = 9 eggs. Later 2 hens", "9", None),
    # last number
    ("She pays $18.00 in total.", "18", None),
    ("so x = 5", "5", None),
    ("She has 5 apples.", "5", None),
    ("The temperature is -3 degrees.", "-3", None),
    ("The discount is 50%.", "50", None),
    ("3-4 = -1 so it is x^2", "-1", None),
    ("1/2 of the cake", "1/2", None),
    ("total 12cm", "12", None),
    ("It costs 0.50 dollars", "0.5", None),
    ("We need 1,250,000 bricks", "1250000", None),
    # nothing to find
    ("No number here", None, None),
    ("", None, None),
    # thinking models
    ("<think>2+2=4, maybe 5</think> The answer is 4", "4", "4"),
    ("<think>I think it is 5", "5", None),          # unfinished thought: strict refuses
    ("<think>7 * 6 = 42</think>42", "42", "42"),
    ("<think>7 * 6 = 42</think>", "42", None),      # empty answer after the thought
    # fragments and list markers
    ("The final answer is f(x) = 1/(x^", None, None),  # the answer breaks off: no answer
    (r"The answer is \frac{1}{", None, None),
    ("Steps:\n8. Multiply 12 * 20 = 240 cupcakes.\n9. We can think of this", "240", None),
    ("1) add them\n2) The sum is 14", "14", None),
]


@pytest.mark.parametrize("text,lenient,strict", EXTRACTION_CASES)
def test_extraction(text, lenient, strict):
    assert extract_answer(text) == lenient
    assert extract_answer_strict(text) == strict


def test_last_boxed_handles_nesting_and_absence():
    assert last_boxed(r"a \boxed{\frac{a}{b^{2}}} b") == r"\frac{a}{b^{2}}"
    assert last_boxed("no box") is None
    assert last_boxed(r"\boxed{open") is None


def test_canonical_answer():
    assert canonical_answer(" **$1,000.00** ") == "1000"
    assert canonical_answer(r"\$5") == "5"
    assert canonical_answer(r"90^\circ") == "90"
    assert canonical_answer("x = 5") == "5"
    assert canonical_answer("") is None
    assert canonical_answer("1/(x^") is None        # a fragment is no answer
    assert canonical_answer("(1, 2]") == "(1, 2]"   # an interval's brackets balance


@pytest.mark.parametrize("text,fragment", [
    ("1/(x^", True), (r"\frac{1}{", True), ("5 +", True), ("2^", True), ("(1, 2]", False),
    (r"\{1, 2\}", False), ("n!", False), ("x)", True), ("12", False),
])
def test_is_fragment(text, fragment):
    assert is_fragment(text) is fragment


def test_complete_part_drops_the_unfinished_sentence():
    assert complete_part("So 12 * 20 = 240.\nThen 13 * $11 + $1") == "So 12 * 20 = 240.\n"
    assert complete_part("He has 5 apples. She has 1") == "He has 5 apples."
    assert complete_part("no end at all") == ""


def test_cut_off_completions_are_read_up_to_their_last_complete_sentence():
    """The number being written at the token limit ($11 of $110...) is not an answer."""
    cut = "So, 13 * $11 = $143.\n\nFinally, 13 flowers * $11/flower + $11"
    assert extract_answer(cut) == "11"                       # as if it had finished
    assert extract_answer(cut, finished=False) == "143"
    assert extract_answer("#### 30\nThe answer is 30.\n#### 3", finished=False) == "30"
    assert extract_answer_strict("Let me think... #### 3", finished=False) is None
    assert extract_answer("It is 1", finished=False) is None


