"""Layer-subset students of a language model: cut from the teacher, trained with cross-entropy or
distilled, saved with their settings and reused only when the settings match."""

import json

import pytest
import torch
from datasets import Dataset

from mathkit.training.layer_students import MANIFEST, saved_student, train_layer_student
from tests.test_evaluation_evaluator import tiny_llama, tiny_tokenizer

TRAINING = {"max_steps": 3, "per_device_train_batch_size": 2, "per_device_eval_batch_size": 2, "learning_rate": 5e-3,
            "eval_steps": 3, "save_steps": 3, "logging_steps": 1, "bf16": False, "max_length": 64,
            "load_best_model_at_end": False, "warmup_steps": 0}


@pytest.fixture(scope="module")
def teacher_and_data():
    tok = tiny_tokenizer()
    teacher = tiny_llama(tok, seed=1, hidden=32)
    teacher.config.num_hidden_layers = 2
    pairs = [(f"Q: {a}+{b}?\nA:", f" {a + b}") for a, b in [(1, 2), (3, 4), (5, 6), (7, 8), (2, 2), (9, 1)]]
    data = Dataset.from_dict({"prompt": [p for p, _ in pairs], "completion": [c for _, c in pairs]})
    return teacher, tok, data


def _weights(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.usefixtures("one_thread")
def test_students_start_from_the_teacher_and_train_apart(teacher_and_data, tmp_path):
    teacher, tok, data = teacher_and_data
    before = _weights(teacher)
    ce, ce_numbers = train_layer_student(teacher, tok, [1], data, data.select(range(2)), training=TRAINING,
                                         distillation=None, folder=tmp_path / "ce", settings={"run": 1})
    kd, kd_numbers = train_layer_student(teacher, tok, [1], data, data.select(range(2)), training=TRAINING,
                                         distillation={"kd": "forward", "temperature": 1.0},
                                         folder=tmp_path / "kd", settings={"run": 1})
    assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items())  # the teacher is not trained
    assert ce.config.num_hidden_layers == kd.config.num_hidden_layers == 1
    assert ce_numbers["global_step"] == kd_numbers["global_step"] == 3
    # same initialisation and data, different losses: different weights
    assert not torch.equal(ce.model.layers[0].mlp.up_proj.weight, kd.model.layers[0].mlp.up_proj.weight)
    manifest = json.loads((tmp_path / "kd" / "model" / MANIFEST).read_text())
    assert manifest["settings"]["layers"] == [1] and manifest["settings"]["distillation"]["kd"] == "forward"
    assert not list((tmp_path / "ce" / "checkpoints").glob("checkpoint-*"))  # removed once saved


@pytest.mark.usefixtures("one_thread")
def test_a_saved_student_is_reused_only_with_the_same_settings(teacher_and_data, tmp_path):
    teacher, tok, data = teacher_and_data
    first, numbers = train_layer_student(teacher, tok, [0], data, None, training=TRAINING, distillation=None,
                                         folder=tmp_path, settings={"data": "a"})
    assert saved_student(tmp_path, {"data": "a", "layers": [0], "distillation": None, "training": TRAINING})
    again, again_numbers = train_layer_student(teacher, tok, [0], data, None, training=TRAINING, distillation=None,
                                               folder=tmp_path, settings={"data": "a"})
    assert again_numbers == numbers
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), again.state_dict().values()))
    assert saved_student(tmp_path, {"data": "b", "layers": [0], "distillation": None, "training": TRAINING}) is None
