"""GSM8K originals and GSM-Symbolic variants: template split, determinism, answers, languages."""

import random

import pytest

from mathkit.data import gsm_symbolic as gs
from mathkit.data.schema import COLUMNS
from mathkit.errors import DataError


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def test_held_out_templates_are_the_documented_seeded_draw():
    assert len(gs.HELD_OUT_TEMPLATES) == 20 == len(set(gs.HELD_OUT_TEMPLATES))
    drawn = sorted(random.Random(gs.HELD_OUT_SEED).sample(range(gs.N_TEMPLATES), 20))
    assert gs.HELD_OUT_TEMPLATES == tuple(f"{i:04d}" for i in drawn)


def test_originals_are_the_100_real_problems_with_numeric_answers():
    rows = gs.load_originals()
    assert len(rows) == 100
    assert sorted(r["template"] for r in rows) == [f"{i:04d}" for i in range(100)]
    for r in rows:
        assert list(r) == list(COLUMNS)
        assert _is_number(r["answer"]), r
        assert "####" not in r["solution"] and "<<" not in r["solution"]
        assert r["source"] == "gsm8k_originals" and r["category"] == "gsm8k"
    first = next(r for r in rows if r["template"] == "0000")
    assert first["problem"].startswith("Benny saw a 10-foot shark") and first["answer"] == "10"


def test_keep_calculator_keeps_annotations():
    kept = {r["template"]: r for r in gs.load_originals(keep_calculator=True)}
    assert "<<6*2=12>>" in kept["0000"]["solution"]


def test_template_split_never_shares_a_template_or_an_original():
    train = gs.load_variants("train", per_template=2, seed=0, include_originals=True)
    test = gs.load_variants("test", per_template=2, seed=0)
    train_t, test_t = {r["template"] for r in train}, {r["template"] for r in test}
    assert test_t == set(gs.HELD_OUT_TEMPLATES)
    assert len(train_t) == 80 and not train_t & test_t
    held_out_originals = {r["problem"] for r in gs.load_originals("test")}
    assert len(held_out_originals) == 20
    assert not held_out_originals & {r["problem"] for r in train}
    # the test split evaluates on the held-out originals and their variants
    assert held_out_originals <= {r["problem"] for r in test}
    assert sum(r["source"] == "gsm8k_originals" for r in test) == 20
    assert sum(r["source"] == "gsm_symbolic" for r in test) == 40
    assert {r["template"] for r in gs.load_originals("train")} == train_t


def test_variants_are_deterministic_distinct_and_new():
    a = gs.generate_variants("0001", 5, seed=0)
    b = gs.generate_variants("0001", 5, seed=0)
    c = gs.generate_variants("0001", 5, seed=1)
    assert a == b and a != c
    original = next(r for r in gs.load_originals() if r["template"] == "0001")["problem"]
    problems = [r["problem"] for r in a]
    assert len(set(problems)) == 5 and original not in problems
    assert all(_is_number(r["answer"]) for r in a)


def test_a_template_gives_the_same_variants_whatever_else_is_generated():
    alone = gs.generate_variants("0005", 3, seed=2)
    within = [r for r in gs.load_variants("test", per_template=3, seed=2) if r["template"] == "0005"
              and r["source"] == "gsm_symbolic"]
    assert within == alone


def test_variant_answers_follow_the_templates_rule():
    # template 0001: fog covers y miles, d miles every t minutes -> y // d * t minutes
    for r in gs.generate_variants("0001", 10, seed=5):
        numbers = [int(w) for w in r["problem"].replace("?", " ").replace(".", " ").split() if w.isdigit()]
        t, d, y = numbers[:3]
        assert int(r["answer"]) == y // d * t, r["problem"]


def test_rejection_draws_satisfy_conditions_and_enumeration_fallback_agrees(monkeypatch):
    sampler = gs._VariantSampler(gs._templates("eng")[2], gs._replacements("eng"))
    rng = random.Random(0)
    draws = [sampler._constrained(rng) for _ in range(20)]
    assert all(sampler._holds(d) for d in draws)
    monkeypatch.setattr(gs, "MAX_REJECTION_TRIES", 0)  # force the package's enumeration
    fallback = [sampler._constrained(random.Random(1)) for _ in range(5)]
    valid = sampler.q._evaluate_constrained_init_lines(sampler.q.constrained_lines, sampler.replacements)
    assert all(d in valid for d in fallback) and all(sampler._holds(d) for d in fallback)
    keys = {frozenset(d) for d in sampler._valid}
    for _ in range(3):
        sampler.draw(random.Random(2))
    assert {frozenset(d) for d in sampler._valid} == keys  # drawing never edits the cached combinations


def test_n_sets_per_template_and_split_none_uses_all_templates():
    rows = gs.load_variants(None, n=150, seed=0)
    assert len(rows) == 200  # ceil(150 / 100) = 2 per template; load_math_dataset cuts to n
    assert len({r["template"] for r in rows}) == 100
    assert all(r["source"] == "gsm_symbolic" for r in rows)


def test_other_languages_share_template_ids():
    # translations sometimes adapt the numbers (units, currencies), so answers may differ
    eng = {r["template"]: r for r in gs.load_originals()}
    deu = gs.load_originals(language="deu")
    assert {r["template"] for r in deu} == set(eng)
    assert all(_is_number(r["answer"]) for r in deu)
    assert sum(eng[r["template"]]["answer"] == r["answer"] for r in deu) >= 80
    assert deu[0]["problem"].startswith("Henrik") and eng["0000"]["problem"].startswith("Benny")
    hin = gs.generate_variants("0003", 2, seed=0, language="hin")
    assert all(_is_number(r["answer"]) for r in hin)


def test_delocalize_answer_handles_decimal_commas_and_devanagari():
    assert gs.delocalize_answer("0,5", "deu") == "0.5"
    assert gs.delocalize_answer("1,500", "eng") == "1500"
    assert gs.delocalize_answer("१२", "hin") == "12"


def test_bad_language_and_split_are_clear_errors():
    with pytest.raises(DataError, match="no language 'xx'.*eng"):
        gs.load_originals(language="xx")
    with pytest.raises(DataError, match="'train', 'test'"):
        gs.load_variants("validation")
    with pytest.raises(DataError, match="no active template '0100'"):
        gs.generate_variants("0100", 1)
