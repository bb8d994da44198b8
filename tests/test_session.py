"""Notebook start-up: parameters (or the hosted profile on "Run all"), output folder, seed, threads,
stage timing and provenance."""

import logging
import random

import pytest
import torch

from mathkit import env, session
from mathkit.errors import ParamsError
from mathkit.params import NotebookParams
from mathkit.session import Session, parameters_injected, start


class Params(NotebookParams):
    output_dir: str = "reports/99_demo"
    n: int = 4
    threads: int = 0


@pytest.fixture
def local(monkeypatch):
    monkeypatch.delenv("KAGGLE_KERNEL_RUN_TYPE", raising=False)
    monkeypatch.delenv("COLAB_RELEASE_TAG", raising=False)
    monkeypatch.delenv(session.PROFILE_VARIABLE, raising=False)


@pytest.fixture
def kaggle(monkeypatch, tmp_path):
    """Kaggle's variables, a temporary working folder and a params folder with two profiles."""
    monkeypatch.setenv("KAGGLE_KERNEL_RUN_TYPE", "Interactive")
    monkeypatch.delenv(session.PROFILE_VARIABLE, raising=False)
    monkeypatch.setattr(env, "KAGGLE_WORKING", tmp_path / "working")
    params = tmp_path / "params" / "99_demo"
    params.mkdir(parents=True)
    (params / "kaggle.yaml").write_text("n: 500\nseed: 2\n")
    (params / "kaggle_big.yaml").write_text("n: 9000\n")
    monkeypatch.setenv(session.PARAMS_DIR_VARIABLE, str(tmp_path / "params"))
    return tmp_path


def test_start_locally_validates_seeds_and_makes_the_output_folder(local, tmp_path):
    before = torch.get_num_threads()
    try:
        s = start(Params, {"seed": 5, "n": 7, "threads": 1, "output_dir": str(tmp_path / "out"),
                           "unrelated": object()}, notebook="99_demo")
        first = random.random()
        assert s.params.n == 7 and s.out == tmp_path / "out" and s.out.is_dir()
        assert s.threads == 1 == torch.get_num_threads() and s.device in ("cpu", "cuda")
        assert s.profile is None
        start(Params, {"seed": 5, "output_dir": str(tmp_path / "out")}, notebook="99_demo")
        assert random.random() == first  # seeded the same way again
    finally:
        torch.set_num_threads(before)
    with pytest.raises(ParamsError, match="key 'n'"):
        start(Params, {"n": "many"}, notebook="99_demo")


def test_stages_models_data_and_provenance(local, tmp_path):
    s = start(Params, {"output_dir": str(tmp_path / "reports" / "99_demo")}, notebook="99_demo")
    with s.stage("data"):
        pass
    with pytest.raises(RuntimeError):
        with s.stage("train"):
            raise RuntimeError("a failing stage is still timed")
    s.record_model({"name": "tiny", "source": "a local folder", "path": str(tmp_path / "reports" / "m")})
    s.record_model([{"name": "tiny", "source": "a local folder", "path": str(tmp_path / "reports" / "m")}])
    s.record_data("champ", 270)
    with pytest.raises(TypeError):
        s.record_model("tiny")
    p = s.provenance()
    assert set(p["stages_seconds"]) == {"data", "train"} and p["wall_seconds"] >= 0
    assert p["models"] == [{"name": "tiny", "source": "a local folder", "path": "reports/m"}]  # once, relative
    assert p["data"] == {"champ": 270} and p["threads"] == torch.get_num_threads()
    assert p["git"].get("commit") or p["git"]["git"] == "not a git checkout"
    md = s.provenance_markdown()
    assert "| model | `tiny`: source: a local folder; path: reports/m |" in md and "champ: n=270" in md and "| wall time | data" in md


def test_show_provenance_updates_the_same_output(local, tmp_path, monkeypatch):
    shown = []

    class Handle:
        def update(self, obj):
            shown.append(("update", obj.data))

    def fake_display(obj, display_id=None):
        shown.append(("display", obj.data))
        return Handle()

    import IPython.display

    monkeypatch.setattr(IPython.display, "display", fake_display)
    s = start(Params, {"output_dir": str(tmp_path / "o")}, notebook="99_demo")
    s.show_provenance()
    s.record_data("champ", 3)
    s.show_provenance()
    assert [kind for kind, _ in shown] == ["display", "update"] and "champ: n=3" in shown[1][1]


def test_parameters_injected_reads_papermills_cell_from_the_history():
    assert not parameters_injected({})
    assert not parameters_injected({"In": ["", "seed = 0\n"]})
    assert parameters_injected({"In": ["", "seed = 0\n", "# Parameters\nseed = 3\n"]})


def test_run_all_on_kaggle_takes_the_kaggle_profile(kaggle, caplog):
    namespace = {"seed": 0, "n": 4, "output_dir": "reports/99_demo"}  # the small defaults cell
    with caplog.at_level(logging.WARNING, logger="mathkit.session"):
        s = start(Params, namespace, notebook="99_demo")
    assert s.params.n == 500 and s.params.seed == 2
    assert s.out == kaggle / "working" / "reports" / "99_demo" and s.out.is_dir()
    assert s.profile.endswith("kaggle.yaml") and "99_demo/kaggle.yaml" in caplog.text
    assert s.provenance()["hosted_profile"].endswith("params/99_demo/kaggle.yaml")


def test_injected_parameters_win_on_kaggle_and_another_profile_can_be_named(kaggle, monkeypatch):
    injected = {"n": 64, "In": ["# Parameters\nn = 64\n"]}
    assert start(Params, injected, notebook="99_demo").params.n == 64
    monkeypatch.setenv(session.PROFILE_VARIABLE, "kaggle_big")
    assert start(Params, {}, notebook="99_demo").params.n == 9000


def test_missing_hosted_profile_is_one_clear_error(kaggle, monkeypatch):
    monkeypatch.setenv("KAGGLE_KERNEL_RUN_TYPE", "Interactive")
    with pytest.raises(ParamsError, match=r"kaggle: 'Run all' .* no 98_none/kaggle.yaml was found"):
        start(Params, {}, notebook="98_none")


def test_session_is_a_plain_dataclass(tmp_path):
    s = Session(notebook="x", params=Params(), out=tmp_path, device="cpu", threads=1)
    assert s.models == [] and s.data == {} and s.stages == {}


def test_the_commit_is_read_when_the_run_starts(monkeypatch, tmp_path):
    """A commit made while a long run goes on must not be named as the run's source."""
    from mathkit.reporting import provenance as prov
    from mathkit import session as session_mod

    states = iter([{"commit": "a" * 40, "dirty": False}, {"commit": "b" * 40, "dirty": False}])
    monkeypatch.setattr(prov, "git_state", lambda folder: next(states))
    s = session_mod.Session(notebook="00_x", params=None, out=tmp_path, device="cpu", threads=1)
    assert s.provenance()["git"]["commit"] == "a" * 40
    assert s.provenance()["git"]["commit"] == "a" * 40
