"""load_math_dataset: one entry point for offline sources, hub sources and local files."""

import json

import pytest

from mathkit.data import HUB_SOURCES, OFFLINE_SOURCES, _OFFLINE, known_sources, load_math_dataset
from mathkit.data.schema import COLUMNS
from mathkit.errors import DataError, HubUnavailableError


def test_registry_lists_every_source():
    assert set(_OFFLINE) == set(OFFLINE_SOURCES)
    assert set(known_sources()) == set(OFFLINE_SOURCES) | set(HUB_SOURCES)
    assert known_sources()["gsm8k"] == "openai/gsm8k" and known_sources()["champ"] == "offline"


@pytest.mark.parametrize("name,kwargs", [
    ("gsm8k_originals", {}), ("gsm_symbolic", {"split": "train"}), ("gsm_symbolic", {"split": "test"}),
    ("champ", {}), ("arithmetic", {"split": "train"}), ("sympy_problems", {"split": "test"}),
])
def test_offline_sources_give_n_unified_rows_deterministically(name, kwargs):
    ds = load_math_dataset(name, n=25, seed=1, **kwargs)
    assert ds.column_names == list(COLUMNS) and len(ds) == 25
    assert all(p and a for p, a in zip(ds["problem"], ds["answer"]))
    assert list(ds["id"]) == list(load_math_dataset(name, n=25, seed=1, **kwargs)["id"])
    assert len(set(ds["id"])) == 25


def test_seed_changes_the_subsample_and_smaller_n_nests():
    a = set(load_math_dataset("champ", n=20, seed=0)["id"])
    assert a != set(load_math_dataset("champ", n=20, seed=1)["id"])
    assert a <= set(load_math_dataset("champ", n=60, seed=0)["id"])
    assert len(load_math_dataset("gsm8k_originals", split="test")) == 20


def test_options_reach_the_source_and_unknown_ones_are_refused():
    deu = load_math_dataset("gsm8k_originals", n=3, language="deu")
    assert deu[0]["id"].startswith("gsm8k_originals/deu/")
    assert set(load_math_dataset("arithmetic", n=20, ops=["*"])["category"]) == {"arithmetic:*"}
    many = load_math_dataset("gsm_symbolic", split="test", per_template=3, include_originals=False)
    assert len(many) == 60
    with pytest.raises(DataError, match=r"does not take option\(s\) \['lang'\]"):
        load_math_dataset("gsm8k_originals", lang="deu")
    with pytest.raises(DataError, match="n must be >= 0"):
        load_math_dataset("champ", n=-1)


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(DataError, match="unknown dataset 'gsm9k'.*champ.*gsm8k.*path"):
        load_math_dataset("gsm9k")


def test_hub_source_offline_is_a_hub_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(HubUnavailableError, match="gsm8k_originals"):
        load_math_dataset("gsm8k", split="test", n=10)


def test_local_file_with_columns(tmp_path):
    path = tmp_path / "mine.jsonl"
    path.write_text("".join(json.dumps({"q": f"What is {i}+{i}?", "a": str(2 * i)}) + "\n" for i in range(10)))
    ds = load_math_dataset(str(path), n=4, seed=0, columns={"problem": "q", "answer": "a"})
    assert len(ds) == 4 and all(int(a) % 2 == 0 for a in ds["answer"])
    assert len(load_math_dataset(path, columns={"problem": "q", "answer": "a"})) == 10
    with pytest.raises(DataError, match=r"does not take option\(s\) \['language'\]; it takes \['columns'\]"):
        load_math_dataset(path, language="deu")
