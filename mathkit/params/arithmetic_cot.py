"""Parameters of notebook 01 (arithmetic chain-of-thought from scratch).

Names follow the math-llm seed's generator/model/eval options; training settings are the
``training`` block of TRL ``SFTConfig`` fields (:mod:`mathkit.params.training`). The defaults are
the notebook's quick CPU values (a run of a minute or so); ``params/01_arithmetic_cot/*.yaml``
change only what differs. YAML note: write floats with a dot (``1.0e-3``).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator

from mathkit.params.training import TrainingParams

MAX_DIGITS = 6  # longest training operand; the 128-token default context fits 6-digit + and -

# The notebook's quick run: 200 steps of batch 64 (TRL's SFTConfig fields; see mathkit.training.config
# for mathkit's defaults under them: cosine schedule, fp32, no gradient checkpointing).
DEFAULT_TRAINING: dict[str, Any] = {
    "per_device_train_batch_size": 64,
    "per_device_eval_batch_size": 256,
    "learning_rate": 2.0e-3,
    "weight_decay": 0.01,
    "max_steps": 200,
    "warmup_steps": 20,
    "eval_steps": 50,
    "save_steps": 100,
    "logging_steps": 10,
}


class ArithmeticCotParams(TrainingParams):
    """Data, model, training and evaluation settings for the arithmetic CoT notebook."""

    output_dir: str = "reports/01_arithmetic_cot"
    training: dict[str, Any] = Field(default_factory=lambda: dict(DEFAULT_TRAINING))

    # data
    ops: list[Literal["+", "-", "*"]] = Field(default_factory=lambda: ["+"], min_length=1)
    min_digits: int = Field(1, ge=1, le=MAX_DIGITS)
    max_digits: int = Field(3, ge=1, le=MAX_DIGITS)
    cot: bool = True
    n_train: int = Field(12800, gt=0)
    n_val: int = Field(200, gt=0)
    n_test: int = Field(500, gt=0)
    # extrapolation: test also on this many digit lengths beyond max_digits (0 = none),
    # n_test_ood examples per length
    ood_digits: int = Field(1, ge=0, le=3)
    n_test_ood: int = Field(100, ge=0)

    # model
    model_size: Literal["small", "medium", "large"] = "small"
    positional_encoding: str = "rope"
    max_length: int = Field(128, ge=16, le=4096)  # the model's context; every example must fit

    # evaluation and display
    eval_batch_size: int = Field(256, gt=0)  # generation batch
    max_new_tokens: int = Field(0, ge=0)  # 0: long enough for the longest test completion
    n_failures_shown: int = Field(10, ge=0)
    n_samples_shown: int = Field(5, ge=0)

    @field_validator("ops")
    @classmethod
    def _unique_ops(cls, ops: list[str]) -> list[str]:
        if len(set(ops)) != len(ops):
            raise ValueError(f"operators repeat in {ops}; list each of + - * at most once")
        return ops

    @field_validator("positional_encoding")
    @classmethod
    def _known_positional(cls, name: str) -> str:
        from mathkit.models.positional import known_positional  # imports torch: only when checked

        known = known_positional()
        if name not in known:
            raise ValueError(f"unknown positional encoding {name!r}; known: {', '.join(known)}")
        return name

    # A cross-field check as a field validator on the later field, so the error names a key
    # (fields are validated in declaration order; ``info.data`` holds the earlier ones).
    @field_validator("max_digits")
    @classmethod
    def _min_le_max(cls, value: int, info: ValidationInfo) -> int:
        low = info.data.get("min_digits")
        if low is not None and low > value:
            raise ValueError(f"max_digits ({value}) must be >= min_digits ({low})")
        return value
