"""Notebook 02's parameters: the seed recipe by default, every profile valid, bad LoRA values fail
with one line naming the key before any model is loaded."""

from pathlib import Path

import pytest

from mathkit.errors import ParamsError
from mathkit.params import load_params
from mathkit.params.lora_sft import DEFAULT_TARGET_MODULES, LoraSftParams

ROOT = Path(__file__).parent.parent
PROFILES = sorted((ROOT / "params" / "02_lora_sft").glob("*.yaml"))


def _load(tmp_path, text):
    path = tmp_path / "p.yaml"
    path.write_text(text)
    return load_params(LoraSftParams, path)


def test_lora_recipe_defaults_are_the_seeds():
    p = LoraSftParams()
    assert (p.lora_r, p.lora_alpha, p.lora_dropout) == (32, 64.0, 0.1)
    assert tuple(p.lora_target_modules) == DEFAULT_TARGET_MODULES
    t = p.training
    assert (t["learning_rate"], t["warmup_steps"], t["weight_decay"], t["num_train_epochs"]) == (1e-4, 0.05, 0.05, 2.0)
    assert p.threads == 1 and t["load_best_model_at_end"]


def test_gpu_profile_trains_with_the_full_seed_recipe():
    p = load_params(LoraSftParams, ROOT / "params" / "02_lora_sft" / "kaggle.yaml")
    t = p.training
    assert (t["per_device_train_batch_size"], t["gradient_accumulation_steps"], t["num_train_epochs"]) == (4, 8, 2.0)
    assert t["max_steps"] == -1 and p.load_in_4bit and t["activation_checkpointing"] and t["bf16"]
    assert "optim" not in t  # paged 8-bit AdamW: the machine policy's choice on a GPU
    assert [s["name"] for s in p.train_sources] == ["gsm8k", "numinamath", "gsm_hard"]
    assert [s["n"] for s in p.train_sources] == [3000, 5000, 1000]


def test_cpu_profile_is_the_reference_recipe_in_fp32():
    p = load_params(LoraSftParams, ROOT / "params" / "02_lora_sft" / "cpu.yaml")
    t = p.training
    assert (t["learning_rate"], t["per_device_train_batch_size"] * t["gradient_accumulation_steps"]) == (1e-3, 8)
    assert (t["max_steps"], t["num_train_epochs"], t["optim"]) == (-1, 1.0, "adamw_torch_fused")
    assert t["train_sampling_strategy"] == "group_by_length" and t["max_length"] == 384
    assert t["bf16"] is False and p.eval_bf16 is False  # no native bf16 on this CPU: fp32 throughout
    assert (p.lora_r, p.lora_alpha, p.prompt_style) == (32, 64.0, "gsm8k")
    assert list(p.eval_groups) == ["in_template", "held_out", "arithmetic"] and p.eval_seed != p.seed
    assert p.trials and all(list(trial) == list(p.trials[0]) for trial in p.trials)


def test_every_profile_evaluates_held_out_templates_and_arithmetic_groups():
    for path in PROFILES:
        groups = load_params(LoraSftParams, path).eval_groups
        assert {"held_out", "arithmetic"} <= set(groups), path.name
        assert all(s.get("split") == "test" for s in groups["held_out"] + groups["arithmetic"]), path.name


def test_default_groups_are_the_three_of_the_report():
    p = LoraSftParams()
    assert list(p.eval_groups) == ["in_template", "held_out", "arithmetic"]
    assert p.eval_groups["in_template"][0]["split"] == "train" and (p.seed, p.eval_seed) == (0, 1)
    assert p.trials == []


def test_trials_are_one_table(tmp_path):
    p = _load(tmp_path, "trials:\n  - {lr: '5e-4', steps: 58}\n  - {lr: '1e-3', steps: 58}\n")
    assert [t["lr"] for t in p.trials] == ["5e-4", "1e-3"]


def test_profiles_exist_and_validate():
    names = {p.stem for p in PROFILES}
    assert {"smoke", "cpu", "kaggle", "kaggle_mistral7b"} <= names
    for path in PROFILES:
        load_params(LoraSftParams, path)


@pytest.mark.parametrize("text, key", [
    ("lora_r: 0\n", "lora_r"),
    ("lora_r: -4\n", "lora_r"),
    ("lora_alpha: 0\n", "lora_alpha"),
    ("lora_dropout: 1.0\n", "lora_dropout"),
    ("lora_dropout: -0.1\n", "lora_dropout"),
    ("lora_target_modules: [q_proj, qproj]\n", "lora_target_modules"),
    ("lora_target_modules: []\n", "lora_target_modules"),
    ("lora_target_modules: [q_proj, q_proj]\n", "lora_target_modules"),
    ("lora_r: 8.5\n", "lora_r"),
    ("precision: fp8\n", "precision"),
    ("training:\n  optim: adamw\n", "training.optim"),
    ("training:\n  gradient_accumulation_steps: 0\n", "training.gradient_accumulation_steps"),
    ("train_sources: [{n: 5}]\n", "train_sources"),
    ("train_sources: [{name: gsm_symbolic, per_template: 3}]\n", "train_sources"),
    ("prompt_style: cot\n", "prompt_style"),
    ("eval_sources: [{name: gsm_symbolic, n: 0}]\n", "eval_sources"),
    ("eval_groups: {}\n", "eval_groups"),
    ("eval_groups: {held_out: []}\n", "eval_groups"),
    ("eval_groups: {Held-Out: [{name: gsm8k_originals}]}\n", "eval_groups"),
    ("eval_groups: {held_out: [{name: gsm8k_originals, n: 0}]}\n", "eval_groups"),
    ("eval_groups: {held_out: [{name: gsm8k_originals, per_template: 2}]}\n", "eval_groups"),
    ("eval_groups: {held_out: [{split: test}]}\n", "eval_groups"),
    ("eval_seed: 0\n", "eval_seed"),
    ("seed: 3\neval_seed: 3\n", "eval_seed"),
    ("trials: [{lr: 1}, {steps: 2}]\n", "trials"),
    ("offload_folder: /tmp/off\n", "offload_folder"),
    ("lora_rank: 8\n", "lora_rank"),
])
def test_bad_values_fail_with_one_line_naming_the_key(tmp_path, text, key):
    with pytest.raises(ParamsError) as err:
        _load(tmp_path, text)
    msg = str(err.value)
    assert f"'{key}'" in msg and "\n" not in msg


def test_unknown_module_message_lists_known_ones(tmp_path):
    with pytest.raises(ParamsError) as err:
        _load(tmp_path, "lora_target_modules: [qproj]\n")
    assert "qproj" in str(err.value) and "q_proj" in str(err.value)


def test_yaml_exponent_without_dot_is_read_as_a_number(tmp_path):
    p = _load(tmp_path, "training:\n  learning_rate: 2e-4\nlora_alpha: 16\nlora_dropout: 5e-2\n")
    assert p.training["learning_rate"] == 2e-4 and p.lora_alpha == 16.0 and p.lora_dropout == 0.05


def test_offload_with_device_map_is_fine(tmp_path):
    p = _load(tmp_path, "device_map: auto\noffload_folder: /tmp/off\n")
    assert p.device_map == "auto"


def test_schema_lists_match_the_data_module():
    """The schema repeats two lists of mathkit.data to stay light; they must not drift apart."""
    from dataclasses import fields

    from mathkit.data import STYLES, SourceSpec
    from mathkit.params.lora_sft import SOURCE_SPEC_KEYS

    assert set(SOURCE_SPEC_KEYS) == {f.name for f in fields(SourceSpec)}
    assert set(LoraSftParams.model_fields["prompt_style"].annotation.__args__) == set(STYLES)


@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: p.stem)
def test_every_profile_has_a_memory_estimate_for_training_and_generation(profile):
    params = load_params(LoraSftParams, profile)
    tuning, generation = params.memory_estimates()
    assert tuning.method == ("qlora" if params.load_in_4bit else "lora")
    assert tuning.settings["lora_rank"] == params.lora_r and tuning.settings["batch"] == \
        params.training["per_device_train_batch_size"]
    assert generation.method == "inference" and generation.settings["batch"] == params.eval_batch_size
