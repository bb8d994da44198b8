"""How the ablation grid builds a run's model: a seeded small decoder, or a GPT-NeoX with its
rotary embedding swapped and LoRA (trained parameters in fp32 whatever the base's dtype)."""

import pytest
import torch
from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

from mathkit.errors import ParamsError
from mathkit.models import save
from mathkit.training.ablation import Run, build_data, train_and_evaluate
from mathkit.training.ablation_models import ModelRecipe, NeoXRecipe
from tests.tiny_llama import build_tokenizer, save_tiny_llama


@pytest.fixture(scope="module")
def neox_folder(tmp_path_factory):
    tokenizer = build_tokenizer()
    config = GPTNeoXConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                           intermediate_size=64, max_position_embeddings=128, rotary_pct=0.25,
                           pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                           bos_token_id=tokenizer.bos_token_id)
    torch.manual_seed(0)
    return save(GPTNeoXForCausalLM(config), tokenizer, tmp_path_factory.mktemp("neox") / "model")


def test_models_of_one_seed_start_from_the_same_weights():
    from mathkit.models.char_tokenizer import build_char_tokenizer

    tokenizer, recipe = build_char_tokenizer(32), ModelRecipe("small", 32, pe_options={"rope": {"rope_theta": 500.0}})
    a, b = recipe.build("rope", tokenizer, 4), recipe.build("rope", tokenizer, 4)
    assert all((p == q).all() for p, q in zip(a.parameters(), b.parameters()))
    assert a.config.pe_options == {"rope_theta": 500.0}
    assert not all((p == q).all() for p, q in zip(a.parameters(), recipe.build("rope", tokenizer, 5).parameters()))


@pytest.mark.parametrize("encoding", ["alibi", "abacus"])
def test_neox_recipe_swaps_the_encoding_and_trains_lora_with_it(neox_folder, encoding):
    recipe = NeoXRecipe(str(neox_folder), lora_r=4, lora_alpha=8.0)
    tokenizer = recipe.load_tokenizer()
    model = recipe.build(encoding, tokenizer, 0)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert any("lora_" in n for n in trainable)
    assert all("lora_" in n or ".positional." in n for n in trainable), trainable
    assert model.base_model.model.config.model_type == "gpt_neox"
    from mathkit.models.neox_positional import positional_settings

    assert positional_settings(model.base_model.model).positional_encoding == encoding


def test_neox_recipe_keeps_trained_parameters_in_fp32_on_a_half_precision_base(neox_folder):
    model = NeoXRecipe(str(neox_folder), dtype="float16", lora_r=4).build("fire", build_tokenizer(), 0)
    dtypes = {p.dtype for p in model.parameters() if p.requires_grad}
    frozen = {p.dtype for n, p in model.named_parameters() if not p.requires_grad and ".positional." not in n}
    assert dtypes == {torch.float32} and frozen == {torch.float16}


def test_neox_recipe_refuses_another_architecture(tmp_path):
    folder = save_tiny_llama(tmp_path / "llama", build_tokenizer())
    with pytest.raises(ParamsError, match="GPT-NeoX"):
        NeoXRecipe(str(folder)).build("rope", build_tokenizer(), 0)


def test_a_neox_run_becomes_a_row_with_its_trainable_share(neox_folder, tmp_path):
    recipe = NeoXRecipe(str(neox_folder), lora_r=4, lora_alpha=8.0)
    tokenizer = recipe.load_tokenizer()
    data = build_data(formats=["reversed"], max_digits=1, n_train=16, n_val=4, n_test=12, test_seed=0)
    training = {"per_device_train_batch_size": 8, "per_device_eval_batch_size": 8, "learning_rate": 1e-3,
                "max_steps": 2, "warmup_steps": 0, "eval_steps": 2, "save_steps": 1, "logging_steps": 1,
                "max_length": 64}
    row = train_and_evaluate(Run("alibi", "reversed", 0), data=data, recipe=recipe, tokenizer=tokenizer,
                             training=training, folder=tmp_path, resume=True, eval_batch_size=12, max_new_tokens=6)
    assert row["train_steps"] == 2 and row["overall"]["n"] == 12
    assert 0 < row["n_trainable"] < row["n_params"]
    assert not list((tmp_path / "alibi-reversed-seed0").glob("checkpoint-*"))


def test_distillation_recipe_binds_each_arms_teachers_and_loss(tmp_path):
    import pickle

    from mathkit.models.char_tokenizer import build_char_tokenizer
    from mathkit.training.ablation_models import DistillationRecipe

    tokenizer = build_char_tokenizer(32)
    teacher_dir = save(ModelRecipe("small", 32).build("rope", tokenizer, 0), tokenizer, tmp_path / "teacher")
    recipe = DistillationRecipe("small", 32, overrides={"hidden_size": 32, "num_hidden_layers": 2},
                                arms={"scratch": {}, "kd": {"teachers": [str(teacher_dir)], "distillation": {"kd": "reverse"}}})
    student = recipe.build("rope", tokenizer, 0)
    assert student.config.hidden_size == 32 and student.config.num_hidden_layers == 2
    assert recipe.trainer_class(Run("rope", "cot", 0, "scratch")) is None
    trainer = recipe.trainer_class(Run("rope", "cot", 0, "kd"))
    assert trainer is not None and str(teacher_dir) in recipe._teachers
    assert pickle.loads(pickle.dumps(recipe))._teachers == {}, "worker processes load their own teachers"
    assert recipe.arm_settings(Run("rope", "cot", 0, "kd")) != recipe.arm_settings(Run("rope", "cot", 0, "scratch"))
    assert Run("rope", "cot", 0, "kd").run_id == "kd-rope-cot-seed0" and Run("rope", "cot", 0).run_id == "rope-cot-seed0"


def test_model_recipe_config_is_the_config_its_models_are_built_from():
    from mathkit.models.char_tokenizer import build_char_tokenizer
    from mathkit.training.ablation_models import ModelRecipe

    tokenizer = build_char_tokenizer(model_max_length=64)
    recipe = ModelRecipe("small", 64, pe_options={"alibi": {"slopes": [0.5, 0.25, 0.125, 0.0625]}})
    for encoding in ("rope", "alibi", "abacus"):
        assert recipe.config(encoding, tokenizer).to_dict() == recipe.build(encoding, tokenizer, 0).config.to_dict()
