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


@pytest.mark.parametrize("profile", ["smoke", "cpu", "kaggle", "colab"])
def test_profiles_load(profile):
    p = load_params(ArithmeticCotParams, PARAMS_DIR / f"{profile}.yaml")
    assert p.min_digits <= p.max_digits


def test_cpu_profile_is_the_issue_target():
    p = load_params(ArithmeticCotParams, PARAMS_DIR / "cpu.yaml")
    assert p.model_size == "small" and p.ops == ["+"] and (p.min_digits, p.max_digits) == (1, 3)
    assert p.n_test >= 2000 and not p.bf16


def test_yaml_values(tmp_path):
    p = load_params(ArithmeticCotParams, write(tmp_path, "ops: ['+', '-', '*']\nlearning_rate: 2.0e-3\n"
                                                         "max_digits: 4\nreport_to: wandb\n"))
    assert p.ops == ["+", "-", "*"] and p.learning_rate == 0.002 and p.report_to == "wandb"


@pytest.mark.parametrize("text, key", [
    ("n_trian: 10\n", "n_trian"),                 # unknown key (typo)
    ("n_train: ten\n", "n_train"),                # wrong type
    ("cot: 'yes'\n", "cot"),                      # strict: no string-to-bool
    ("learning_rate: 1e-3\n", "learning_rate"),   # YAML reads 1e-3 as a string
    ("learning_rate: 1.5\n", "learning_rate"),    # out of (0, 1)
    ("max_digits: 7\n", "max_digits"),
    ("min_digits: 0\n", "min_digits"),
    ("min_digits: 3\nmax_digits: 2\n", "max_digits"),
    ("n_test: 0\n", "n_test"),
    ("ops: ['/']\n", "ops"),
    ("ops: []\n", "ops"),
    ("ops: ['+', '+']\n", "ops"),
    ("model_size: huge\n", "model_size"),
    ("report_to: tensorboard\n", "report_to"),
    ("positional_encoding: nope\n", "positional_encoding"),
    ("max_steps: 10\n", "warmup_steps"),          # default warmup (30) longer than the run
    ("batch_size: -1\n", "batch_size"),
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
