"""Parameters every training notebook shares: the ``training:`` block, checkpoints, resume.

The ``training`` block holds TRL ``SFTConfig`` field names and values, nothing else; each
training notebook's schema gives its own default block (its quick CPU values). A block in a
parameter file or a papermill injection changes only the keys it names: it is merged over the
schema's default block. The runner also merges the blocks of several files key by key, and
``--set training.max_steps=5`` sets one key; papermill itself, given several files, keeps the last
file's block whole. Validation builds the ``SFTConfig`` (:func:`mathkit.training.config.check_training`),
so an unknown key or a value TRL refuses fails with one line naming ``training.<key>``. That
imports trl, but only when a block is validated, not when this module is imported.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, field_validator

from mathkit.params import NotebookParams


class TrainingParams(NotebookParams):
    """A notebook that trains: its ``training`` block and where checkpoints go."""

    training: dict[str, Any] = Field(default_factory=dict)
    # Folder for checkpoint-N/ (optimizer state included); "" = <output_dir>/checkpoints. A run
    # started again on the same folder resumes from its last checkpoint; a finished run is
    # trained again from scratch. A folder outside the reports survives a failed run, which the
    # runner rolls back.
    checkpoint_dir: str = ""
    resume: bool = True  # continue from the newest checkpoint-N in checkpoint_dir

    @field_validator("training")
    @classmethod
    def _training_block(cls, block: dict[str, Any]) -> dict[str, Any]:
        from mathkit.training.config import check_training  # imports trl: only when validating

        defaults = cls.model_fields["training"].default_factory()
        return check_training({**defaults, **block})

    def training_settings(self) -> dict[str, Any]:
        """The block handed to :func:`mathkit.training.train`, with the notebook's seed."""
        return {**self.training, "seed": self.seed}

    def checkpoint_folder(self, out: str | Path) -> Path:
        """Where checkpoints go: ``checkpoint_dir`` (resolved like an output folder) or ``out/checkpoints``."""
        from mathkit.env import resolve_output_dir

        return resolve_output_dir(self.checkpoint_dir) if self.checkpoint_dir else Path(out) / "checkpoints"
