"""Notebook 04's parameters: every profile valid, the grid checked, bad values fail naming the key."""

from pathlib import Path

import pytest

from mathkit.errors import ParamsError
from mathkit.params import load_params
from mathkit.params.pe_ablation import PeAblationParams, check_model

PARAMS_DIR = Path(__file__).parent.parent / "params" / "04_pe_ablation"


def write(tmp_path, text, name="p.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_defaults_are_valid():
    p = PeAblationParams()
    assert p.positional_encodings == ["rope", "nope"] and p.formats == ["reversed"] and p.seeds == [0]
    assert p.output_dir == "reports/04_pe_ablation" and p.max_digits == 3 and p.pe_layers is None
    assert p.training["max_steps"] == 200 and p.checkpoint_dir == ""


@pytest.mark.parametrize("profile", ["smoke", "cpu", "kaggle", "colab"])
def test_profiles_load(profile):
    p = load_params(PeAblationParams, PARAMS_DIR / f"{profile}.yaml")
    assert p.positional_encodings and p.formats and p.seeds


def test_smoke_profile_is_two_encodings_one_format_one_seed():
    p = load_params(PeAblationParams, PARAMS_DIR / "smoke.yaml")
    assert len(p.positional_encodings) == 2 and len(p.formats) == 1 and len(p.seeds) == 1
    assert p.training["max_steps"] <= 30 and p.checkpoint_dir == ""


def test_cpu_profile_has_three_seeds_and_keeps_runs_outside_the_reports():
    p = load_params(PeAblationParams, PARAMS_DIR / "cpu.yaml")
    assert len(p.seeds) >= 3 and p.checkpoint_dir.startswith("runs/") and p.threads == 1
    assert p.training.get("bf16", False) is False


def test_run_settings_leave_out_the_grid_and_where_things_go():
    a = PeAblationParams(positional_encodings=["rope"], seeds=[0], output_dir="x", threads=1)
    b = PeAblationParams(positional_encodings=["rope", "nope"], seeds=[0, 1], output_dir="y", threads=2)
    assert a.run_settings() == b.run_settings()
    assert "max_digits" in a.run_settings() and "training" in a.run_settings()
    assert PeAblationParams(max_digits=2).run_settings() != a.run_settings()


@pytest.mark.parametrize("text, key", [
    ("positional_encodings: [rope, sinusoidall]\n", "positional_encodings"),  # typo
    ("positional_encodings: [rope, rope]\n", "positional_encodings"),
    ("positional_encodings: []\n", "positional_encodings"),
    ("formats: [backwards]\n", "formats"),
    ("formats: [cot, cot]\n", "formats"),
    ("seeds: [0, 0]\n", "seeds"),
    ("seeds: []\n", "seeds"),
    ("max_digits: 13\n", "max_digits"),                       # index hints run out of letters
    ("max_digits: 0\n", "max_digits"),
    ("formats: [cot]\nmax_digits: 4\nmax_length: 64\n", "max_length"),  # 8-digit traces do not fit
    ("pe_options: {alibi: {max_bias: 8.0}}\n", "pe_options"),  # not in the grid
    ("pe_options: {rope: {rope_thetaa: 5.0}}\n", "pe_options"),  # the encoding has no such option
    ("n_eval: 0\n", "n_eval"),
    ("learning_rate: 1.0e-3\n", "learning_rate"),             # belongs in the training block
    ("training:\n  max_steps: 10\n", "training.warmup_steps"),  # default warmup (20) longer than the run
    ("neox: [{base_model: x, positional_encodings: [ropee]}]\n", "neox.0.positional_encodings"),
    ("neox: [{base_model: x, positional_encodings: [rope], lora_rr: 4}]\n", "neox.0.lora_rr"),
    ("neox: [{base_model: x, positional_encodings: [rope], pe_options: {alibi: {}}}]\n", "neox.0.pe_options"),
    ("neox: [{base_model: x, positional_encodings: [rope], training: {max_stepz: 3}}]\n",
     "training.max_stepz"),
    ("formats: [cot]\nneox: [{base_model: x, positional_encodings: [rope], formats: [reversed]}]\n", "neox"),
])
def test_bad_values_name_the_key(tmp_path, text, key):
    path = write(tmp_path, text)
    with pytest.raises(ParamsError) as err:
        load_params(PeAblationParams, path)
    message = str(err.value)
    assert f"'{key}" in message and str(path) in message, message


def test_neox_blocks_validate_their_own_training_block_over_the_lora_defaults():
    p = load_params(PeAblationParams, PARAMS_DIR / "kaggle.yaml")
    small, large = p.neox
    assert small.base_model == "EleutherAI/pythia-410m" and large.base_model == "EleutherAI/pythia-2.8b"
    assert large.training["per_device_train_batch_size"] == 1 and large.training["max_length"] == 512
    assert large.training["fp16"] and large.training["activation_checkpointing"] and large.model_dtype == "float16"
    assert large.recipe().gradient_checkpointing and not small.recipe().gradient_checkpointing
    assert small.training["learning_rate"] == 2.0e-4  # the LoRA default, not the small decoder's
    assert load_params(PeAblationParams, PARAMS_DIR / "cpu.yaml").neox == []


def test_neox_blocks_do_not_change_the_small_models_run_settings():
    a = PeAblationParams(formats=["cot"])
    b = PeAblationParams(formats=["cot"], neox=[{"base_model": "x", "positional_encodings": ["rope"]}])
    assert a.run_settings() == b.run_settings()
    block = b.neox[0]
    other = PeAblationParams(formats=["cot"], neox=[{"base_model": "x", "positional_encodings": ["rope"],
                                                     "lora_r": 8}]).neox[0]
    assert block.run_settings(b.run_settings()) != other.run_settings(b.run_settings())
    more = PeAblationParams(formats=["cot"], neox=[{"base_model": "x", "positional_encodings": ["rope", "nope"],
                                                    "seeds": [0, 1]}]).neox[0]
    assert block.run_settings(b.run_settings()) == more.run_settings(b.run_settings())


def test_max_length_message_says_how_long_the_longest_example_is(tmp_path):
    with pytest.raises(ParamsError, match="up to 99 tokens"):
        load_params(PeAblationParams, write(tmp_path, "formats: [cot]\nmax_digits: 4\nmax_length: 98\n"))
    assert load_params(PeAblationParams, write(tmp_path, "formats: [cot]\nmax_digits: 4\nmax_length: 99\n"))


def test_options_of_an_encoding_in_the_grid_are_accepted():
    p = PeAblationParams(pe_options={"rope": {"rope_theta": 500.0}})
    assert p.pe_options == {"rope": {"rope_theta": 500.0}}


def test_pe_layers_are_checked_by_the_decoder_config(tmp_path):
    check_model("rope", {}, [0, 1], "small")
    with pytest.raises(ParamsError, match="pe_layers"):
        load_params(PeAblationParams, write(tmp_path, "pe_layers: [0, 9]\n"))
    assert load_params(PeAblationParams, write(tmp_path, "pe_layers: [0]\n")).pe_layers == [0]


@pytest.mark.parametrize("name", ["abacus", "math_adaptive"])
def test_encodings_that_read_digit_ids_validate_without_a_model(name):
    check_model(name, {}, None, "small")  # digit ids come from the character tokenizer, as in build_decoder
    with pytest.raises(ValueError, match="digit_token_ids"):
        check_model(name, {"digit_token_ids": [999]}, None, "small")


def test_the_notebooks_parameters_cell_holds_the_schema_defaults():
    """papermill without the runner fills unset keys from the cell: it must hold the defaults."""
    import ast

    import jupytext

    nb = jupytext.read(Path(__file__).parent.parent / "notebooks" / "04_pe_ablation.py")
    (cell,) = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    values = {node.targets[0].id: ast.literal_eval(node.value) for node in ast.parse(cell.source).body}
    assert values == PeAblationParams().model_dump()
