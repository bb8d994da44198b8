"""Notebook 03's parameters: the seed's QLoRA recipe, the parameters cell equals the defaults, every
profile validates, the GPU profiles are the seed's run, the cpu profile computes in fp32 here, and
values the notebook cannot honour fail with one line naming the key."""

from pathlib import Path

import pytest

from mathkit.errors import ParamsError
from mathkit.params import load_params
from mathkit.params.lora_sft import DEFAULT_TARGET_MODULES
from mathkit.params.qlora_gemma3 import LOCAL_MATHX, QloraGemma3Params
from tests.test_params import parameters_cell

ROOT = Path(__file__).parent.parent
FOLDER = ROOT / "params" / "03_qlora_gemma3_mathx"


def _load(tmp_path, text):
    path = tmp_path / "p.yaml"
    path.write_text(text)
    return load_params(QloraGemma3Params, path)


def test_parameters_cell_equals_schema_defaults():
    assert parameters_cell("03_qlora_gemma3_mathx") == QloraGemma3Params().model_dump()


def test_defaults_are_the_seed_recipe_on_a_tiny_random_gemma():
    p = QloraGemma3Params()
    assert (p.lora_r, p.lora_alpha, p.lora_dropout) == (16, 32.0, 0.05)
    assert tuple(p.lora_target_modules) == DEFAULT_TARGET_MODULES
    assert p.load_in_4bit and p.prompt_style == "think" and p.system_prompt is None  # the tutor prompt
    t = p.training
    assert (t["learning_rate"], t["optim"], t["activation_checkpointing"]) == (2e-4, "paged_adamw_8bit", True)
    assert t["gradient_accumulation_steps"] > 1 and t["packing"] is False
    assert p.base_model == "tiny-random-gemma3" and p.mathx_source == LOCAL_MATHX and p.merge


def test_profiles_exist_and_validate():
    assert {p.stem for p in FOLDER.glob("*.yaml")} == {"smoke", "cpu", "kaggle", "colab"}
    for path in FOLDER.glob("*.yaml"):
        load_params(QloraGemma3Params, path)


@pytest.mark.parametrize("profile", ["kaggle", "colab"])
def test_gpu_profiles_run_the_seed(profile):
    p = load_params(QloraGemma3Params, FOLDER / f"{profile}.yaml")
    t = p.training
    assert p.base_model == "google/gemma-3-4b-it" and p.load_in_4bit
    assert (p.mathx_source, p.n_train, p.shuffle_buffer) == ("XenArcAI/MathX-5M", 10_000, 10_000)
    assert (t["max_length"], t["per_device_train_batch_size"], t["gradient_accumulation_steps"]) == (2048, 2, 8)
    assert (t["learning_rate"], t["num_train_epochs"], t["max_steps"]) == (2e-4, 1.0, -1)
    assert t["optim"] == "paged_adamw_8bit" and t["activation_checkpointing"] and p.threads == 0
    assert (p.lora_r, p.lora_alpha, p.lora_dropout) == (16, 32.0, 0.05)


def test_cpu_profile_is_the_real_gemma_in_4_bits_with_fp32_compute():
    p = load_params(QloraGemma3Params, FOLDER / "cpu.yaml")
    assert p.base_model == "gemma-3-270m" and p.load_in_4bit and p.mathx_source == LOCAL_MATHX
    assert p.model_dtype == "float32" and p.merge_dtype == "float32"  # no native bf16 on this CPU
    assert p.training["bf16"] is False and p.eval_bf16 is False
    assert {s["name"] for s in p.train_sources} == {"gsm_symbolic", "sympy_problems"}
    assert {"in_template", "held_out", "sympy"} == set(p.eval_groups) and p.eval_seed != p.seed
    assert p.probe_steps >= 1  # the report compares QLoRA, LoRA and full fine-tuning


@pytest.mark.parametrize("text, key", [
    ("merge: false\n", "merge"),
    ("prompt_style: gsm8k\n", "prompt_style"),
    ("mathx_source: '  '\n", "mathx_source"),
    ("merge_dtype: int8\n", "merge_dtype"),
    ("probe_steps: -1\n", "probe_steps"),
    ("shuffle_buffer: -5\n", "shuffle_buffer"),
    ("merge_atol: 0\n", "merge_atol"),
    ("lora_r: 0\n", "lora_r"),
    ("training:\n  packing: maybe\n", "training.packing"),
    ("seed: 2\neval_seed: 2\n", "eval_seed"),
])
def test_bad_values_fail_with_one_line_naming_the_key(tmp_path, text, key):
    with pytest.raises(ParamsError) as err:
        _load(tmp_path, text)
    assert f"'{key}'" in str(err.value) and "\n" not in str(err.value)


def test_memory_estimate_of_the_evaluations_is_for_the_unquantized_model_it_evaluates():
    p = QloraGemma3Params(merge_dtype="bfloat16")
    tuning, generation = p.memory_estimates()
    assert tuning.method == "qlora" and tuning.settings["dtype"] == "nf4"
    assert generation.settings["dtype"] == generation.settings["compute_dtype"] == "bfloat16"


def test_edge_targets_belong_to_notebook_02(tmp_path):
    with pytest.raises(ParamsError, match="notebook 03 has no edge section"):
        _load(tmp_path, "edge_targets: [onnx_int8]\nedge_group: held_out\n")
