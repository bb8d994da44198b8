"""Language-model students made of a teacher's layers, trained with cross-entropy or distilled.

The second experiment of notebook 05: :func:`~mathkit.models.layer_subset.student_from_layers`
cuts a student out of the teacher (DistilBERT's initialisation), and :func:`train_layer_student`
trains it with the one training function, with or without the distillation trainer, from the
same initialisation for every arm. Each student is saved to ``<folder>/model`` (a transformers
folder that ``python -m mathkit generate --checkpoint`` and ``evaluate --model`` take) with
``student.json``: the settings it was trained with and its training numbers. A notebook run again
with the same settings loads it instead of training it again; an interrupted one resumes from its
last checkpoint.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

MANIFEST = "student.json"
TRAIN_KEYS = ("global_step", "train_runtime_s", "step_seconds", "train_tokens", "tokens_per_s",
              "final_train_loss", "final_eval_loss", "memory")


def _plain(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def saved_student(folder: str | Path, settings: dict) -> dict | None:
    """The manifest of a student saved in ``folder`` with these ``settings`` (None: none is)."""
    manifest = Path(folder) / "model" / MANIFEST
    if not manifest.is_file():
        return None
    saved = json.loads(manifest.read_text())
    return saved if saved.get("settings") == _plain(settings) else None


def train_layer_student(teacher, tokenizer, layers: list[int], train_dataset, eval_dataset, *,
                        training: dict[str, Any], distillation: dict[str, Any] | None, folder: str | Path,
                        settings: dict[str, Any], resume: bool = True):
    """``(student, training numbers)``: a student of ``teacher``'s ``layers`` trained on the
    prompt/completion data; with a ``distillation`` block (a DistillationConfig mapping) by the
    distillation trainer with ``teacher`` as its teacher, without one on the labels alone.

    ``settings`` is what makes two students the same (data, layers, training, loss): a saved
    student with equal settings is loaded instead of trained."""
    from transformers import AutoModelForCausalLM

    from mathkit.models import save
    from mathkit.models.layer_subset import student_from_layers
    from mathkit.training.distillation import DistillationConfig, distillation_trainer
    from mathkit.training.trainer import remove_checkpoints, train

    folder = Path(folder)
    settings = {**settings, "layers": list(layers), "distillation": distillation, "training": training}
    if resume and (saved := saved_student(folder, settings)) is not None:
        log.info("student %s: reusing the saved one", folder)
        return AutoModelForCausalLM.from_pretrained(folder / "model").eval(), saved["train"]
    student = student_from_layers(teacher, layers)
    trainer_class = (distillation_trainer([teacher], DistillationConfig.from_dict(distillation))
                     if distillation else None)
    result = train(student, tokenizer, train_dataset, eval_dataset, output_dir=folder / "checkpoints",
                   training=training, resume=resume, trainer_class=trainer_class)
    numbers = {k: v for k, v in result.as_dict().items() if k in TRAIN_KEYS}
    save(student, tokenizer, folder / "model")
    (folder / "model" / MANIFEST).write_text(json.dumps({"settings": _plain(settings), "train": _plain(numbers)},
                                                        indent=2) + "\n")
    remove_checkpoints(folder / "checkpoints")
    return student.eval(), _plain(numbers)
