"""The training block of a notebook schema: merged over the schema's defaults, validated by building
TRL's SFTConfig, errors naming the file and training.<key>; checkpoint folder and seed."""

from pathlib import Path

import pytest
from pydantic import Field

from mathkit.errors import ParamsError
from mathkit.params import load_params
from mathkit.params.training import TrainingParams


class DemoTraining(TrainingParams):
    output_dir: str = "reports/demo"
    training: dict = Field(default_factory=lambda: {"max_steps": 10, "learning_rate": 1e-3})


def write(tmp_path, text, name="p.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_a_block_changes_only_the_keys_it_names(tmp_path):
    p = load_params(DemoTraining, write(tmp_path, "training:\n  max_steps: 3\n"))
    assert p.training == {"max_steps": 3, "learning_rate": 1e-3}
    p = DemoTraining.from_namespace({"training": {"warmup_steps": 1}})
    assert p.training == {"max_steps": 10, "learning_rate": 1e-3, "warmup_steps": 1}


def test_later_files_and_dotted_overrides_merge_into_the_block(tmp_path):
    a = write(tmp_path, "training:\n  max_steps: 3\n", "a.yaml")
    b = write(tmp_path, "training:\n  logging_steps: 1\n", "b.yaml")
    p = load_params(DemoTraining, a, b, overrides={"training.learning_rate": 2.0e-3})
    assert p.training == {"max_steps": 3, "learning_rate": 2e-3, "logging_steps": 1}


@pytest.mark.parametrize("text, key", [
    ("training:\n  learning_rat: 1.0e-3\n", "learning_rat"),
    ("training:\n  max_steps: ten\n", "max_steps"),
    ("training:\n  lr_scheduler_type: cosinus\n", "lr_scheduler_type"),
    ("training:\n  seed: 1\n", "seed"),
    ("training:\n  warmup_steps: 50\n", "warmup_steps"),
])
def test_a_bad_training_key_names_the_file_and_the_key(tmp_path, text, key):
    path = write(tmp_path, text)
    with pytest.raises(ParamsError) as err:
        load_params(DemoTraining, path)
    message = str(err.value)
    assert message.startswith(f"{path}: key 'training.{key}'") and "\n" not in message


def test_a_training_block_that_is_not_a_mapping(tmp_path):
    with pytest.raises(ParamsError, match="key 'training'"):
        load_params(DemoTraining, write(tmp_path, "training: [1, 2]\n"))


def test_the_seed_goes_to_training_and_checkpoints_to_a_folder(tmp_path):
    p = DemoTraining.from_namespace({"seed": 7})
    assert p.training_settings() == {"max_steps": 10, "learning_rate": 1e-3, "seed": 7}
    assert p.checkpoint_folder(tmp_path) == tmp_path / "checkpoints"
    elsewhere = DemoTraining.from_namespace({"checkpoint_dir": str(tmp_path / "runs" / "x")})
    assert elsewhere.checkpoint_folder(tmp_path / "report") == tmp_path / "runs" / "x"
    relative = DemoTraining.from_namespace({"checkpoint_dir": "runs/x"})
    assert relative.checkpoint_folder("ignored").parts[-2:] == ("runs", "x")
    assert relative.checkpoint_folder("ignored").is_absolute()


def test_importing_a_schema_imports_nothing_heavy():
    """The runner lists notebooks and builds default schemas without torch; only validating a
    training block imports trl (it builds the config)."""
    import subprocess
    import sys

    code = ("import sys; from mathkit.params.lora_sft import LoraSftParams; "
            "from mathkit.params.arithmetic_cot import ArithmeticCotParams; LoraSftParams(); ArithmeticCotParams(); "
            "print(sorted(m for m in ('torch', 'peft', 'trl', 'transformers') if m in sys.modules))")
    root = Path(__file__).parent.parent
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root, check=True)
    assert out.stdout.strip() == "[]"
