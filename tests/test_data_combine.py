"""Mixing sources: caps, seeded shuffle, and loud, recorded fallbacks."""

import json
import logging

import pytest

from mathkit.data import SourceSpec, combine_sources, load_math_dataset
from mathkit.data.combine import spec_dicts
from mathkit.errors import DataError, HubUnavailableError


@pytest.fixture
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def test_mixture_caps_each_source_and_shuffles_with_the_seed(offline):
    specs = [{"name": "arithmetic", "n": 30, "split": "train"},
             SourceSpec("sympy_problems", n=12, split="train", options={"kinds": ["linear", "integral"]}),
             "champ"]
    ds, prov = combine_sources(specs, seed=0)
    assert len(ds) == 30 + 12 + 270 == prov["n_total"]
    assert [s["n_loaded"] for s in prov["sources"]] == [30, 12, 270]
    assert prov["fallbacks"] == [] and not any(s["fallback_used"] for s in prov["sources"])
    assert prov["sources"][1]["categories"] == {"algebra/linear": 6, "calculus/integral": 6}
    again, _ = combine_sources(specs, seed=0)
    other, _ = combine_sources(specs, seed=1)
    ids, other_ids = list(ds["id"]), list(other["id"])
    assert ids == list(again["id"]) and ids != other_ids
    json.dumps(prov)  # goes into results.json as is


def test_mixture_is_shuffled_across_and_within_sources(offline):
    # Sources whose rows do not depend on the seed, so only the shuffle can change their order.
    specs = [{"name": "gsm8k_originals", "split": "test"}, "champ"]
    ds, _ = combine_sources(specs, seed=0)
    other, _ = combine_sources(specs, seed=1)
    concatenated = [r["id"] for r in load_math_dataset("gsm8k_originals", split="test")] + [
        r["id"] for r in load_math_dataset("champ")]
    assert sorted(ds["id"]) == sorted(other["id"]) == sorted(concatenated)  # the same rows...
    assert list(ds["id"]) != concatenated and list(other["id"]) != list(ds["id"])  # ...in a seeded order
    first_rows = [i for i, source in enumerate(ds["source"]) if source == "gsm8k_originals"]
    assert max(first_rows) > len(ds) // 2  # the first source's 20 rows are spread, not kept in front
    champ_order = [i for i in ds["id"] if i.startswith("champ/")]
    assert champ_order != concatenated[20:]  # and rows are reordered within a source too


def test_hub_source_falls_back_loudly_and_says_so_in_provenance(offline, caplog):
    specs = [{"name": "gsm8k", "n": 50, "split": "train", "fallback": ["gsm8k_originals"]},
             {"name": "numinamath", "n": 20,
              "fallback": [{"name": "sympy_problems", "options": {"kinds": ["quadratic"]}}]}]
    with caplog.at_level(logging.WARNING, logger="mathkit.data.combine"):
        ds, prov = combine_sources(specs, seed=0)
    first, second = prov["sources"]
    assert prov["fallbacks"] == ["gsm8k -> gsm8k_originals", "numinamath -> sympy_problems"]
    assert first["requested"] == "gsm8k" and first["used"] == "gsm8k_originals" and first["fallback_used"]
    assert first["split"] == "train" and first["n_requested"] == 50 and first["n_loaded"] == 50
    assert "HF_HUB_OFFLINE" in first["errors"][0]["error"]
    assert second["used"] == "sympy_problems" and second["n_loaded"] == 20
    assert second["options"] == {"kinds": ["quadratic"]}
    assert set(ds["source"]) == {"gsm8k_originals", "sympy_problems"}
    assert any("FALLBACK gsm8k -> gsm8k_originals" in r.getMessage() for r in caplog.records)


def test_fallback_keeps_the_template_split(offline):
    ds, _ = combine_sources([{"name": "gsm8k", "split": "train", "fallback": ["gsm_symbolic"], "n": 100}], seed=3)
    from mathkit.data.gsm_symbolic import HELD_OUT_TEMPLATES

    assert not set(ds["template"]) & set(HELD_OUT_TEMPLATES)


def test_no_loadable_source_and_bad_specs_raise(offline):
    with pytest.raises(HubUnavailableError, match="tried gsm8k, math"):
        combine_sources([{"name": "gsm8k", "n": 5, "fallback": ["math"]}])
    with pytest.raises(DataError, match="unknown key"):
        combine_sources([{"name": "champ", "size": 5}])
    with pytest.raises(DataError, match="no 'name'"):
        combine_sources([{"n": 5}])
    with pytest.raises(DataError, match="no source specs"):
        combine_sources([])
    with pytest.raises(DataError, match="evaluation set"):  # a wrong spec is an error, not a fallback
        combine_sources([{"name": "champ", "split": "train", "fallback": ["gsm8k_originals"]}])


def test_spec_dicts_are_plain():
    out = spec_dicts([SourceSpec("arithmetic", n=5, options={"ops": ("+",)}, fallback=["champ"])])
    assert out == [{"name": "arithmetic", "n": 5, "split": None, "options": {"ops": ["+"]}, "fallback": ["champ"]}]
