"""The language-model students' table and sentences, on hand-made numbers."""

from types import SimpleNamespace

from mathkit.evaluation.metrics import accuracy_summary
from mathkit.reporting import layer_student_summary as s


def _eval(correct, tokens, seconds):
    return SimpleNamespace(summary={**accuracy_summary(correct), "new_tokens": tokens, "generation_seconds": seconds})


def _model(params, losses, speed_seconds, correct):
    ppl = {"perplexity": 2.0 + sum(losses), "per_text_loss": losses}
    return {"parameters": params, "perplexity": ppl, "evals": {"held_out": _eval(correct, 100, speed_seconds)}}


MODELS = {"teacher": _model(100, [0.1, 0.2, 0.3, 0.4], 10.0, [1, 0, 0, 0]),
          "student_ce": _model(60, [0.9, 0.8, 0.7, 0.6], 5.0, [0, 0, 0, 0]),
          "student_kd": _model(60, [0.5, 0.5, 0.5, 0.6], 4.0, [0, 0, 1, 0])}


def test_rows_are_relative_to_the_teacher():
    rows = {r["model"]: r for r in s.model_rows(MODELS, "teacher")}
    assert rows["student_ce"]["size vs teacher"] == 0.6 and rows["teacher"]["speed vs teacher"] == 1.0
    assert rows["student_kd"]["generation tokens/s"] == 25.0 and rows["student_kd"]["speed vs teacher"] == 2.5
    assert rows["student_kd"]["held_out"].startswith("1/4 = 25.00%")


def test_paired_losses_and_the_perplexity_verdict():
    pair = s.paired_losses(MODELS["student_kd"]["perplexity"], MODELS["student_ce"]["perplexity"])
    assert (pair["n"], pair["a_lower"], pair["b_lower"]) == (4, 3, 0)  # the fourth is a tie
    text = s.perplexity_sentence("student_kd", MODELS["student_kd"], "student_ce", MODELS["student_ce"])
    assert "**student_kd** beats **student_ce**" in text and "cannot tell from chance" in text  # 3 of 3: p = 0.25
    worse = s.perplexity_sentence("student_ce", MODELS["student_ce"], "student_kd", MODELS["student_kd"])
    assert "does not beat" in worse


def test_cost_sentence_names_size_and_speed():
    text = s.cost_sentence(MODELS, "teacher", ["student_ce"])
    assert text == "student_ce has 60% of the teacher's parameters and generates at 2.00x its speed."
