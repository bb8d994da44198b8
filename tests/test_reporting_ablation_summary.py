"""Aggregating grid rows over seeds: spreads, ranking, headline and a conclusion written from them."""

import pytest

from mathkit.errors import DataError
from mathkit.evaluation.metrics import accuracy_summary
from mathkit.reporting.ablation_summary import (aggregate, best_run, conclusion_sentences, headline,
                                                longest_learned_length, ranking, spread, spread_text)

N = 2


def summary(acc: float, n: int = 100) -> dict:
    k = round(acc * n)
    return accuracy_summary([True] * k + [False] * (n - k))


def make_row(pe, fmt, seed, by_length, *, n_params=1000, seconds=60.0, thought=None, eval_loss=0.5):
    """A row as mathkit.training.ablation.summarize_run writes it, from accuracies per length."""
    in_dist = [acc for length, acc in by_length.items() if length <= N]
    beyond = [acc for length, acc in by_length.items() if length > N]
    return {
        "run_id": f"{pe}-{fmt}-seed{seed}", "positional_encoding": pe, "format": fmt, "seed": seed,
        "settings": "x", "max_digits": N, "n_params": n_params, "train_steps": 10, "train_seconds": seconds,
        "train_tokens_per_s": 1.0, "eval_seconds": 1.0, "final_train_loss": 0.4, "final_eval_loss": eval_loss,
        "perplexity": 2.0 ** eval_loss,
        "in_distribution": summary(sum(in_dist) / len(in_dist), 200),
        "beyond": summary(sum(beyond) / len(beyond), 200),
        "at_2n": summary(by_length[2 * N]),
        "overall": summary(0.5),
        "by_length": {str(k): summary(v) for k, v in by_length.items()},
        "by_cell": {f"{a}x{b}": summary(by_length[max(a, b)]) for a in range(1, 2 * N + 1) for b in range(1, 2 * N + 1)},
        "token_accuracy": 0.9, "thought_match": summary(0.5) if thought else None,
        "thought_text": thought, "truncated": 0,
    }


def rows():
    """rope generalizes (seeds 0.5 / 0.7 at 2N), none does not; both learn the training range."""
    out = []
    for seed, top in ((0, 0.5), (1, 0.7)):
        out.append(make_row("rope", "reversed", seed, {1: 1.0, 2: 1.0, 3: 0.8, 4: top}, n_params=1000))
        out.append(make_row("none", "reversed", seed, {1: 1.0, 2: 0.9, 3: 0.1, 4: 0.0}, n_params=900,
                            seconds=30.0 * (seed + 1)))
    return out


def test_spread_over_seeds():
    s = spread([0.5, 0.7])
    assert s["mean"] == pytest.approx(0.6) and (s["min"], s["max"], s["n_seeds"]) == (0.5, 0.7, 2)
    assert s["std"] == pytest.approx(0.1414, abs=1e-4)
    assert spread([0.3])["std"] == 0.0
    with pytest.raises(DataError):
        spread([])


def test_aggregate_per_format_and_encoding():
    agg = aggregate(rows())
    rope = agg["reversed"]["rope"]
    assert list(agg) == ["reversed"] and list(agg["reversed"]) == ["rope", "none"]
    assert rope["seeds"] == [0, 1] and rope["n_params"] == 1000
    assert rope["at_2n"]["mean"] == pytest.approx(0.6) and rope["at_2n"]["n"] == 100
    assert rope["at_2n"]["per_seed"] == [0.5, 0.7] and rope["in_distribution"]["n"] == 200
    assert sorted(rope["by_length"]) == [1, 2, 3, 4] and rope["by_length"][4]["min"] == 0.5
    assert rope["by_cell"]["4x1"] == pytest.approx(0.6) and len(rope["by_cell"]) == 16
    assert agg["reversed"]["none"]["train_seconds"]["mean"] == 45.0
    assert rope["bleu"] is None and rope["thought_match"] is None  # no chain of thought in this format


def test_thought_scores_are_averaged_where_the_format_has_them():
    agg = aggregate([make_row("rope", "cot", s, {1: 1, 2: 1, 3: 0, 4: 0}, thought={"bleu": b, "rouge_l": 0.5})
                     for s, b in ((0, 80.0), (1, 90.0))])
    assert agg["cot"]["rope"]["bleu"]["mean"] == 85.0 and agg["cot"]["rope"]["thought_match"]["mean"] == 0.5


def test_ranking_puts_2n_first_then_beyond_then_in_distribution():
    agg = aggregate(rows())
    assert ranking(agg["reversed"]) == ["rope", "none"]
    tie = aggregate([make_row("a", "plain", 0, {1: 0.9, 2: 0.9, 3: 0.0, 4: 0.0}),
                     make_row("b", "plain", 0, {1: 1.0, 2: 1.0, 3: 0.0, 4: 0.0}),
                     make_row("c", "plain", 0, {1: 0.5, 2: 0.5, 3: 0.3, 4: 0.0})])
    assert ranking(tie["plain"]) == ["c", "b", "a"]
    assert best_run({**agg, **tie}) == ("reversed", "rope")


def test_headline_gives_mean_min_max_and_n_per_seed():
    h = headline(aggregate(rows()))
    assert h["best_positional_encoding"] == "rope" and h["best_format"] == "reversed"
    at = h["exact_match_at_2n"]["reversed"]["rope"]
    assert at["value"] == pytest.approx(0.6) and (at["min"], at["max"], at["n"], at["n_seeds"]) == (0.5, 0.7, 100, 2)
    assert h["exact_match_in_distribution"]["reversed"]["none"]["value"] == pytest.approx(0.95)


def test_index_shows_the_headline_as_percentages():
    from mathkit.reporting.index import format_value

    h = headline(aggregate(rows()))
    text = format_value(h["exact_match_at_2n"], "exact_match_at_2n")
    assert "rope 60.00% (mean of 2 seeds, 50.00-70.00; n=100 each)" in text
    assert "none 0.00% (mean of 2 seeds" in text


def test_conclusion_is_written_from_the_numbers():
    sentences = conclusion_sentences(aggregate(rows()))
    text = " ".join(sentences)
    assert "1 of 2 format/encoding pairs reach a mean exact match of 99.00% or more" in text
    assert "the lowest is none in the reversed format, 95.00%" in text
    assert "highest for rope: 60.00% (mean of 2 seeds, 50.00-70.00%, n=100 each)" in text
    assert "lowest for none: 0.00%" in text and "The runner-up is none" in text
    assert "stays at 50% or more up to 4 digits, the longest tested" in text  # rope: 0.8 at 3, 0.6 at 4
    assert "a run trained for 45 s to 1.0 min (mean over seeds)" in text  # none 30 and 60 s, rope 60 s
    assert "models have 900 (none) to 1,000 (rope) parameters" in text


def test_overlapping_seeds_are_not_called_a_difference():
    close = [make_row("rope", "plain", s, {1: 1, 2: 1, 3: 0.5, 4: v}) for s, v in ((0, 0.4), (1, 0.6))]
    close += [make_row("fire", "plain", s, {1: 1, 2: 1, 3: 0.5, 4: v}) for s, v in ((0, 0.3), (1, 0.45))]
    text = " ".join(conclusion_sentences(aggregate(close)))
    assert "do not separate them" in text


def test_longest_learned_length_stops_at_the_first_length_below_half():
    numbers = aggregate(rows())["reversed"]["rope"]
    assert longest_learned_length(numbers) == 4
    assert longest_learned_length(aggregate(rows())["reversed"]["none"]) == 2
    assert spread_text(spread([0.25]) | {"n": 40}) == "25.00% (n=40)"


def test_learning_curves_read_the_validation_cross_entropy_of_every_run(tmp_path):
    import json

    from mathkit.reporting.ablation_summary import learning_curves

    runs = [{"run_id": "a-0", "arm": "a"}, {"run_id": "a-1", "arm": "a"}, {"run_id": "b-0", "arm": "b"}]
    lines = {"a-0": [{"kind": "eval", "step": 5, "eval_loss": 2.0}, {"kind": "train", "step": 5, "loss": 9.0},
                     {"kind": "eval", "step": 10, "eval_loss": 1.0}],
             "a-1": [{"kind": "eval", "step": 5, "eval_loss": 4.0}, {"kind": "eval", "step": 10, "eval_loss": 3.0}],
             "b-0": [{"kind": "eval", "step": 5, "eval_loss": 7.0, "eval_ce_loss": 1.5}]}
    for run_id, rows in lines.items():
        (tmp_path / run_id).mkdir()
        (tmp_path / run_id / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    curves = learning_curves(tmp_path, runs)
    assert curves["a"][5]["mean"] == 3.0 and curves["a"][5]["min"] == 2.0 and curves["a"][10]["max"] == 3.0
    assert curves["b"] == {5: spread([1.5])}, "a distilled run's curve is its cross-entropy, not its total loss"
