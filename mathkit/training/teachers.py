"""Teachers for distillation: a saved arithmetic model, or a small decoder trained here first.

A teacher trained here is saved to ``<folder>/<name>`` with ``teacher_settings.json``; a notebook
run again with the same settings reuses it instead of training it again (its training resumes
from its last checkpoint if it was cut short).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from mathkit.errors import DataError

log = logging.getLogger(__name__)

SETTINGS_FILE = "teacher_settings.json"


def checkpoint_folder(checkpoint: str | Path) -> Path:
    """A saved model folder (relative paths from the repository root, as outputs are); DataError
    saying how to make it when it holds no model."""
    from mathkit.env import resolve_output_dir

    folder = resolve_output_dir(checkpoint)
    if not (folder / "config.json").is_file():
        raise DataError(f"no model at {folder} (config.json missing): run the notebook that saves it first "
                        "(e.g. `python -m mathkit run 01 --profile cpu` for reports/01_arithmetic_cot/model), "
                        "or give the teacher `train: true`")
    return folder


def train_teacher(name: str, *, size: str, encoding: str, seed: int, tokenizer, data, fmt: str,
                  training: dict[str, Any], max_length: int, folder: str | Path, resume: bool = True) -> Path:
    """Train a small decoder as notebook 01 does (seeded; ``data.train_val(fmt, seed)``) and save it
    to ``folder/name``; reuse the saved one when its settings are the same."""
    from mathkit.models import save
    from mathkit.training.ablation_models import ModelRecipe
    from mathkit.training.trainer import remove_checkpoints, train

    out = Path(folder) / name
    settings = {"size": size, "encoding": encoding, "seed": seed, "format": fmt, "training": training,
                "max_length": max_length, "max_digits": data.max_digits, "n_train": data.n_train}
    saved = out / SETTINGS_FILE
    if saved.is_file() and json.loads(saved.read_text()) == json.loads(json.dumps(settings, default=str)):
        log.info("teacher %s: reusing %s", name, out)
        return out
    model = ModelRecipe(size, max_length).build(encoding, tokenizer, seed)
    train_set, val_set = data.train_val(fmt, seed)
    train(model, tokenizer, train_set, val_set, output_dir=Path(folder) / f"{name}-checkpoints",
          training={**training, "seed": seed}, resume=resume)
    save(model, tokenizer, out)
    saved.write_text(json.dumps(settings, indent=2, default=str) + "\n")
    remove_checkpoints(Path(folder) / f"{name}-checkpoints")
    return out
