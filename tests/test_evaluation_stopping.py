"""Stop strings and answer ends: where a completion ends, and that ending it there does not change
the answer it is scored on."""

import pytest
import torch

from mathkit.evaluation.extraction import extract_answer, extract_answer_strict
from mathkit.evaluation.stopping import RowStopper, StopRule, StopRuleCriteria, answer_end
from tests.test_evaluation_evaluator import tiny_tokenizer

# Completions as small models write them: the answer, then more of the same or a new problem.
RAMBLING = [
    ("Tom has 3 boxes of 6 pens, 3*6=18 pens.\n#### 18\n\nQuestion: Ann has 4 cats...\n#### 9\n", 18),
    ("She pays 2*5=$10.\n#### $10\n#### 12\nThe answer is 12", 10),
    ("<think>\n5+7=12\n</think>\n\nThe final answer is $\\boxed{12}$.\nSo we have 13 left.\n", 12),
    ("The total is 1,200.\nThe final answer is $\\boxed{1,200}$.\n\nProblem: 5 pens cost 10, 3 cost\n", 1200),
    ("#### 7.5\nThen 7.5*2=15 and 15+3=18", 7.5),
]
# No stop before these ends: the answer line is not finished, or the text is still thinking.
NOT_YET = [
    "3*6=18 pens.\n#### 18",                     # the line after #### is not complete yet
    "<think>\n#### 18\nwait\n",                    # a marker inside an unclosed <think>
    "The final answer is $\\boxed{12",            # the box is still open
    "So the answer is 18.\nThen 18 more.\n",      # no marked answer at all
    "####\nand then\n",                           # #### without a number
]


@pytest.mark.parametrize("text,gold", RAMBLING)
def test_the_scored_answer_is_the_same_with_and_without_early_stopping(text, gold):
    cut, stopped = StopRule(answer_end=True).apply(text)
    assert stopped and len(cut) < len(text)
    for finished in (True, False):  # whether the full text had ended or had been cut off
        assert extract_answer(cut) == extract_answer(text, finished=finished)
        assert extract_answer_strict(cut) == extract_answer_strict(text, finished=finished)
    assert float(extract_answer(cut).replace(",", "")) == gold


@pytest.mark.parametrize("text", NOT_YET)
def test_no_answer_end_before_a_complete_marked_answer(text):
    assert answer_end(text) is None


def test_answer_end_is_the_newline_after_the_answer_line():
    text = "a\n#### 18\nmore"
    assert text[:answer_end(text)] == "a\n#### 18"
    assert answer_end("<think>\n#### 3\n</think>\n#### 4\nx") == len("<think>\n#### 3\n</think>\n#### 4")


def test_stop_strings_cut_before_the_first_one_as_the_harness_does():
    rule = StopRule(stop_strings=("Question:", "</s>", ""))
    assert rule.stop_strings == ("Question:", "</s>")      # empty strings are dropped
    assert rule.apply("18 apples.\n\nQuestion: next</s>") == ("18 apples.\n\n", True)
    assert rule.apply("no stop here") == ("no stop here", False)
    both = StopRule(stop_strings=("Question:",), answer_end=True)
    assert both.apply("#### 5\nQuestion: x")[0] == "#### 5"
    assert both.apply("5 Question: #### 6\n")[0] == "5 "
    assert not StopRule().active and StopRule().apply("#### 5\nx") == ("#### 5\nx", False)


@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer()


def test_row_stopper_reads_the_decoded_tokens(tok):
    stopper = RowStopper(StopRule(answer_end=True), tok)
    ids = tok("#### 18\n", add_special_tokens=False)["input_ids"]
    assert [stopper.stopped(ids[:k]) for k in range(1, len(ids) + 1)] == [False] * (len(ids) - 1) + [True]
    strings = RowStopper(StopRule(stop_strings=("Q:",)), tok)
    ids = tok("ab Q: c", add_special_tokens=False)["input_ids"]
    assert [strings.stopped(ids[:k]) for k in range(1, len(ids) + 1)] == [False, False, False, False, True, True, True]
    assert not RowStopper(StopRule(), tok).stopped(ids)


def test_stopping_criteria_flag_each_row_of_a_batch(tok):
    prompt_length = 2  # "xx"; each row as generate holds it at the step its answer line ends
    rows = ["xx#### 4\n", "xxno ans.", "xx#### 5\n"]
    batch = torch.tensor([tok(r, add_special_tokens=False)["input_ids"] for r in rows])
    done = StopRuleCriteria(StopRule(answer_end=True), tok, prompt_length)(batch, None)
    assert done.tolist() == [True, False, True]
