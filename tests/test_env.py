"""Where we run, the output folder on Kaggle, seeding, threads, and the machine's description."""

import random
from pathlib import Path

import numpy as np
import pytest
import torch

from mathkit import env


@pytest.fixture
def local(monkeypatch):
    monkeypatch.delenv("KAGGLE_KERNEL_RUN_TYPE", raising=False)
    monkeypatch.delenv("COLAB_RELEASE_TAG", raising=False)


def test_detect_platform(local, monkeypatch):
    assert env.detect_platform() == "local"
    monkeypatch.setenv("COLAB_RELEASE_TAG", "release-1")
    assert env.detect_platform() == "colab"
    monkeypatch.setenv("KAGGLE_KERNEL_RUN_TYPE", "Interactive")
    assert env.detect_platform() == "kaggle"


def test_output_dir_on_kaggle_goes_under_the_working_folder(monkeypatch, tmp_path):
    monkeypatch.setenv("KAGGLE_KERNEL_RUN_TYPE", "Batch")
    monkeypatch.setattr(env, "KAGGLE_WORKING", tmp_path / "working")
    assert env.resolve_output_dir("reports/00_base_model_eval") == tmp_path / "working/reports/00_base_model_eval"
    assert env.resolve_output_dir(tmp_path / "elsewhere") == tmp_path / "elsewhere"  # absolute stays


def test_output_dir_locally_is_taken_from_the_repository_root(local, monkeypatch):
    root = env.repo_root()
    monkeypatch.chdir(root / "notebooks")  # a notebook opened from notebooks/ writes to the same reports/
    assert env.resolve_output_dir("reports/x") == root / "reports/x"


def test_repo_root_outside_a_checkout(tmp_path):
    assert env.repo_root(tmp_path) is None
    (tmp_path / "mathkit").mkdir()
    (tmp_path / "pyproject.toml").write_text("")
    assert env.repo_root(tmp_path / "mathkit") == tmp_path


def test_seed_everything_repeats_python_numpy_and_torch():
    def draw():
        return random.random(), np.random.rand(), torch.rand(1).item()

    env.seed_everything(7)
    first = draw()
    env.seed_everything(7)
    assert draw() == first
    env.seed_everything(8)
    assert draw() != first


def test_set_threads_zero_keeps_default_and_negative_fails():
    before = torch.get_num_threads()
    try:
        assert env.set_threads(0) == before
        assert env.set_threads(1) == 1 == torch.get_num_threads()
        with pytest.raises(ValueError, match=">= 0"):
            env.set_threads(-1)
    finally:
        torch.set_num_threads(before)


def test_machine_description():
    assert env.cpu_cores() >= 1 and env.cpu_model()
    versions = env.package_versions()
    assert versions["mathkit"] and versions["torch"] == torch.__version__
    info = env.runtime_info()
    assert info["device"] in ("cpu", "gpu") and info["cpu_threads"] == torch.get_num_threads()
    assert isinstance(env.KAGGLE_WORKING, Path)
