"""The training block: SFTConfig field names only, mathkit's defaults under it, one-line errors."""

import pytest

from mathkit.errors import ParamsError
from mathkit.params import TrainingSettingError
from mathkit.training.config import MATHKIT_DEFAULTS, build_sft_config, check_training, merged_settings


def test_mathkit_defaults_sit_under_the_block_and_deprecated_names_are_renamed():
    values = merged_settings({"learning_rate": 1e-3, "gradient_checkpointing": True}, has_eval=False)
    assert values["learning_rate"] == 1e-3 and values["lr_scheduler_type"] == "cosine"
    assert values["activation_checkpointing"] is True and "gradient_checkpointing" not in values
    assert values["report_to"] == "none" and values["bf16"] is False
    assert merged_settings({"report_to": "wandb"}, has_eval=False)["report_to"] == "wandb"


def test_evaluation_follows_checkpointing_when_there_is_a_validation_set():
    both = merged_settings({"eval_steps": 15}, has_eval=True)
    assert (both["eval_strategy"], both["save_steps"], both["metric_for_best_model"]) == ("steps", 15, "eval_loss")
    assert merged_settings({"save_steps": 7}, has_eval=True)["eval_steps"] == 7
    epochs = merged_settings({"save_strategy": "epoch"}, has_eval=True)
    assert epochs["eval_strategy"] == "epoch"
    none = merged_settings({"eval_steps": 15, "load_best_model_at_end": True}, has_eval=False)
    assert none["eval_strategy"] == "no" and none["load_best_model_at_end"] is False
    assert none["metric_for_best_model"] is None


def test_the_built_config_is_what_the_block_says(tmp_path):
    cfg = build_sft_config({"learning_rate": 3e-4, "max_steps": 5, "eval_steps": 5, "load_best_model_at_end": True},
                           output_dir=tmp_path, has_eval=True, quiet=True)
    assert cfg.learning_rate == 3e-4 and cfg.max_steps == 5 and cfg.load_best_model_at_end
    assert cfg.output_dir == str(tmp_path) and cfg.disable_tqdm and cfg.use_cpu
    assert cfg.activation_checkpointing is False and cfg.gradient_checkpointing is False
    assert cfg.include_num_input_tokens_seen == "non_padding" and cfg.greater_is_better is False
    assert set(MATHKIT_DEFAULTS) <= set(type(cfg).__dataclass_fields__)


def test_numbers_written_as_text_are_read_as_numbers_and_ints_stay_ints():
    assert check_training({"learning_rate": "1e-4", "warmup_steps": 20}) == {"learning_rate": 1e-4, "warmup_steps": 20}


@pytest.mark.parametrize("block, key, words", [
    ({"learning_rat": 1e-3}, "learning_rat", "did you mean 'learning_rate'"),
    ({"max_steps": 2.5}, "max_steps", "integer"),
    ({"max_steps": "ten"}, "max_steps", "integer"),
    ({"bf16": "yes"}, "bf16", "boolean"),
    ({"lr_scheduler_type": "cosinus"}, "lr_scheduler_type", "cosinus"),
    ({"optim": "adamw"}, "optim", "adamw"),
    ({"seed": 3}, "seed", "top-level `seed`"),
    ({"output_dir": "x"}, "output_dir", "checkpoint"),
    ({"learning_rate": 0.0}, "learning_rate", "> 0"),
    ({"weight_decay": -0.1}, "weight_decay", ">= 0"),
    ({"max_steps": 10, "warmup_steps": 20}, "warmup_steps", "exceed"),
    ({"load_best_model_at_end": True, "eval_steps": 3, "save_steps": 5}, "load_best_model_at_end", "multiple"),
])
def test_a_bad_key_or_value_fails_with_one_line_naming_it(block, key, words):
    with pytest.raises(ParamsError) as err:
        check_training(block)
    message = str(err.value)
    assert f"'training.{key}'" in message and words in message and "\n" not in message
    assert isinstance(err.value, TrainingSettingError) and err.value.key == key


def test_a_block_that_is_not_a_mapping_fails():
    with pytest.raises(ParamsError, match="mapping"):
        check_training(["max_steps", 3])
