"""Teachers: a saved folder must hold a model; a teacher trained here is saved and reused."""

import pytest

from mathkit.errors import DataError
from mathkit.training import teachers
from mathkit.training.ablation import build_data

TRAINING = {"per_device_train_batch_size": 8, "per_device_eval_batch_size": 8, "max_steps": 2, "warmup_steps": 0,
            "eval_steps": 2, "save_steps": 1, "logging_steps": 1}


def test_a_checkpoint_without_a_model_says_how_to_make_one(tmp_path):
    with pytest.raises(DataError, match="train: true"):
        teachers.checkpoint_folder(tmp_path / "nothing")
    (tmp_path / "config.json").write_text("{}")
    assert teachers.checkpoint_folder(tmp_path) == tmp_path


def test_a_teacher_trained_here_is_saved_and_reused(tmp_path, monkeypatch):
    from mathkit.models import load
    from mathkit.models.char_tokenizer import build_char_tokenizer

    tokenizer = build_char_tokenizer(32)
    data = build_data(formats=["cot"], max_digits=1, n_train=16, n_val=4, n_test=4, test_seed=0)
    kwargs = dict(size="small", encoding="alibi", seed=3, tokenizer=tokenizer, data=data, fmt="cot",
                  training=TRAINING, max_length=32, folder=tmp_path)
    folder = teachers.train_teacher("t", **kwargs)
    model, _ = load(folder)
    assert model.config.positional_encoding == "alibi" and (folder / teachers.SETTINGS_FILE).is_file()
    assert not list((tmp_path / "t-checkpoints").glob("checkpoint-*"))

    def no_training(*args, **kw):
        raise AssertionError("a saved teacher was trained again")

    monkeypatch.setattr("mathkit.training.trainer.train", no_training)
    assert teachers.train_teacher("t", **kwargs) == folder
    with pytest.raises(AssertionError, match="trained again"):
        teachers.train_teacher("t", **{**kwargs, "seed": 4})
