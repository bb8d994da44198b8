"""Training: one training function over TRL (:func:`train`), its settings and machine policy,
its callbacks and result, and the LoRA/QLoRA set-up (:mod:`mathkit.training.lora`)."""

from mathkit.training.result import TrainResult
from mathkit.training.trainer import train

__all__ = ["TrainResult", "train"]
