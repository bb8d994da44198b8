"""Notebook 01's parameters: every profile valid, bad values fail naming the file and the key."""

from pathlib import Path

import pytest

from mathkit.errors import ParamsError
from mathkit.params import load_params
from mathkit.params.arithmetic_cot import ArithmeticCotParams

PARAMS_DIR = Path(__file__).parent.parent / "params" / "01_arithmetic_cot"


def write(tmp_path, text, name="p.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_defaults_are_valid():
    p = ArithmeticCotParams()
    assert p.ops == ["+"] and p.min_digits == 1 and p.max_digits == 3 and p.cot
    assert p.output_dir == "reports/01_arithmetic_cot" and p.positional_encoding == "rope"
    assert p.training["max_steps"] == 200 and p.checkpoint_dir == "" and p.threads == 0


@pytest.mark.parametrize("profile", ["smoke", "cpu", "kaggle", "colab"])
def test_profiles_load(profile):
    p = load_params(ArithmeticCotParams, PARAMS_DIR / f"{profile}.yaml")
    assert p.min_digits <= p.max_digits


def test_cpu_profile_is_the_committed_run():
    """The values of the committed report's run (1000 steps x 64, lr 2e-3, fp32, one thread)."""
    p = load_params(ArithmeticCotParams, PARAMS_DIR / "cpu.yaml")
    assert p.model_size == "small" and p.ops == ["+"] and (p.min_digits, p.max_digits) == (1, 3)
    assert p.n_test >= 2000 and p.threads == 1 and p.checkpoint_dir == "runs/01_arithmetic_cot"
    t = p.training
    assert (t["per_device_train_batch_size"], t["learning_rate"], t["max_steps"], t["warmup_steps"]) == (64, 2e-3, 1000, 50)
    assert (t["weight_decay"], t.get("bf16", False)) == (0.01, False)


def test_smoke_profile_writes_checkpoints_into_its_output_folder(tmp_path):
    p = load_params(ArithmeticCotParams, PARAMS_DIR / "smoke.yaml")
    assert p.checkpoint_dir == "" and p.checkpoint_folder(tmp_path) == tmp_path / "checkpoints"


def test_yaml_values(tmp_path):
    p = load_params(ArithmeticCotParams, write(tmp_path, "ops: ['+', '-', '*']\nmax_digits: 4\n"
                                                         "training:\n  learning_rate: 2.0e-3\n  report_to: wandb\n"))
    assert p.ops == ["+", "-", "*"] and p.training["learning_rate"] == 0.002
    assert p.training["report_to"] == "wandb" and p.training["max_steps"] == 200


@pytest.mark.parametrize("text, key", [
    ("n_trian: 10\n", "n_trian"),                 # unknown key (typo)
    ("n_train: ten\n", "n_train"),                # wrong type
    ("cot: 'yes'\n", "cot"),                      # strict: no string-to-bool
    ("learning_rate: 1.0e-3\n", "learning_rate"), # a training setting belongs in the training block
    ("max_digits: 7\n", "max_digits"),
    ("min_digits: 0\n", "min_digits"),
    ("min_digits: 3\nmax_digits: 2\n", "max_digits"),
    ("n_test: 0\n", "n_test"),
    ("ops: ['/']\n", "ops"),
    ("ops: []\n", "ops"),
    ("ops: ['+', '+']\n", "ops"),
    ("model_size: huge\n", "model_size"),
    ("positional_encoding: xpos\n", "positional_encoding"),
    ("threads: -1\n", "threads"),
    ("training:\n  max_steps: 10\n", "training.warmup_steps"),   # default warmup (20) longer than the run
    ("training:\n  per_device_train_batch_size: -1\n", "training.per_device_train_batch_size"),
    ("training:\n  eval_strategy: sometimes\n", "training.eval_strategy"),
])
def test_bad_values_name_the_key(tmp_path, text, key):
    path = write(tmp_path, text)
    with pytest.raises(ParamsError) as err:
        load_params(ArithmeticCotParams, path)
    message = str(err.value)
    assert f"'{key}" in message and str(path) in message, message


def test_from_namespace_validates():
    with pytest.raises(ParamsError, match="n_val"):
        ArithmeticCotParams.from_namespace({"n_val": 0, "unrelated_global": 1})
    p = ArithmeticCotParams.from_namespace({"n_val": 7, "seed": 3, "In": [], "json": None})
    assert p.n_val == 7 and p.seed == 3
