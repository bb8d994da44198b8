"""The math-answer scorer: both extractions per completion, ungradable golds left out, cut-off
completions counted apart, and the false positives report 00 once scored as right."""

import pytest

from mathkit.evaluation.answer_scoring import MathAnswerScorer, score_completion

# Real completions of SmolLM2-135M-Instruct (report 00, cpu profile), all cut off at 256 tokens,
# that the old grader scored as correct. Golds are read from the data loaders.
CUT_OFF_COMPLETIONS = {
    "champ/P_Combinatorics_33": (
        "To solve this problem, we need to find the number of ways to select four numbers from the set "
        "{1, 2, 3, ..., n+1} such that u>max(x, y, z) and u is greater than max(x, y, z).\n\nWe can start by "
        "considering the possible combinations of u and max(x, y, z) that satisfy these constraints. Let's "
        "break it down:\n\n- If u=max(x, y, z), then we have to choose four numbers from the set {1, 2, 3, "
        "..., n+1} with duplicates. This can be done in n+1 ways.\n- If u=max(x, y, z), then we have to "
        "choose four numbers from the set {1, 2, 3, ..., n+1} with duplicates. This can be done in n+1 "
        "ways.\n\nWe can see that there are n+1 ways to choose"),
    "champ/P_Polynomial_28": (
        "To solve this problem, we'll start by finding the polynomial P(n+1) and then find its derivative "
        "using the product rule of differentiation.\n\nLet's start by finding P(n+1). We can do this by "
        "using the formula for the derivative of a polynomial of degree n, which is P'(x) = (P(n+1))'(x) = "
        "(P(n+1))/(n+1)^2.\n\nTo find P(n+1), we'll multiply both sides of the equation P(n+1) = "
        "(P(n+1))'(x) by (n+1)^2. This is because the product of a polynomial of degree n and n+1 is always "
        "a polynomial of degree n+1.\n\nSo, we get P(n+1) = (P(n+1))'(x) = (P(n+1))/(n+1"),
    "champ/P_Polynomial_35": (
        "To solve this problem, we'll start by breaking it down into manageable parts. First, we'll find "
        "the derivative of f(x) with respect to x.\n\nThe derivative of f(x) is f'(x) = "
        "1/(x^1958+x^1957+2)^1959. Now, we'll find the derivative of f(x) with respect to x.\n\nThe "
        "derivative of f(x) is f'(x) = 1/(x^1958+x^1957+2)^1959.\n\nThe final answer is f(x) = 1/(x^"),
    "gsm_symbolic/eng/0064/0-3": (
        "1. First, we need to find the total number of cupcakes Laura can bake.\n2. We know that each "
        "cupcake can be made from 12 cupcakes. So, 12 * 1 cupcake = 12 cupcakes.\n7. We can think of this "
        "as a fraction of the total number of cupcakes. So, 12 * 20 = 240 cupcakes.\n8. Now, we need to "
        "find the total number of cupcakes Laura can bake.\n9. We can think of this as a fraction of the "
        "total number of cup"),
}


@pytest.fixture(scope="module")
def golds():
    from mathkit.data import load_math_dataset
    from mathkit.data.gsm_symbolic import generate_variants

    out = {r["id"]: str(r["answer"]) for r in load_math_dataset("champ")}
    out.update({r["id"]: str(r["answer"]) for r in generate_variants("0064", 4, seed=0)})
    return out


@pytest.mark.parametrize("example_id", sorted(CUT_OFF_COMPLETIONS))
@pytest.mark.parametrize("finished", [False, True])
def test_report_00_false_positives_are_scored_wrong(golds, example_id, finished):
    """Wrong whether or not the cut is taken into account: the grader itself must not match."""
    row = score_completion(CUT_OFF_COMPLETIONS[example_id], golds[example_id], finished=finished)
    assert row["gradable"] is True
    assert row["correct"] is False and row["correct_strict"] is False


def test_a_list_number_is_not_the_answer(golds):
    row = score_completion(CUT_OFF_COMPLETIONS["gsm_symbolic/eng/0064/0-3"], golds["gsm_symbolic/eng/0064/0-3"])
    assert golds["gsm_symbolic/eng/0064/0-3"] == "9" and row["extracted"] == "240"


def test_score_completion_reports_both_extractors():
    assert score_completion("I think it is 18 dollars", "18") == {
        "gradable": True, "extracted": "18", "extracted_strict": None, "correct": True,
        "correct_strict": False}
    ungraded = score_completion("#### 3", "376 and 625")
    assert ungraded["gradable"] is False and ungraded["correct"] is None and ungraded["extracted"] == "3"


def _record(i, completion, gold, finished=True):
    row = {"problem": f"p{i}", "answer": gold, "source": "s", "category": "c"}
    return {"id": i, **MathAnswerScorer().score(row, completion, finished), "finished": finished}


def test_summary_counts_ungradable_and_cut_off_completions_apart():
    records = [
        _record(0, "#### 5", "5"),                                 # right, finished
        _record(1, "So it is 7.\nThen 8 more and", "7", False),    # right, cut off after its answer
        _record(2, "The answer is 4.", "5"),                       # wrong
        _record(3, "#### 1", "The sequence is not periodic"),      # ungradable
    ]
    s = MathAnswerScorer().summarize(records)
    assert (s["n"], s["correct"], s["n_examples"]) == (3, 2, 4)
    assert s["ungradable"] == 1 and s["ungradable_ids"] == [3]
    assert s["truncated"] == 1 and s["truncated_correct"] == {"lenient": 1, "strict": 0}
    assert s["finished_only"]["lenient"]["n"] == 2 and s["finished_only"]["lenient"]["correct"] == 1
    assert s["strict"]["correct"] == 1 and s["unparsable_strict"] == 2
    assert s["lenient"] == {k: s[k] for k in ("accuracy", "n", "correct", "ci95")}
    assert s["by_category"]["c"]["n"] == 3
