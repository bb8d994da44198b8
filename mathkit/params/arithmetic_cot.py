"""Parameters of notebook 01 (arithmetic chain-of-thought from scratch).

Names follow the math-llm seed's generator/train/eval options. The defaults are the notebook's
quick CPU values (a run of a minute or so); ``params/01_arithmetic_cot/*.yaml`` change only what
differs. YAML note: write floats with a dot (``1.0e-3``, not ``1e-3``, which YAML reads as text).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, ValidationInfo, field_validator

from mathkit.params import NotebookParams

MAX_DIGITS = 6  # longest training operand; the 128-token default context fits 6-digit + and -


class ArithmeticCotParams(NotebookParams):
    """Data, model, training and evaluation settings for the arithmetic CoT notebook."""

    output_dir: str = "reports/01_arithmetic_cot"
    # Training checkpoints live outside reports/ so that an interrupted run (which the runner rolls
    # back in reports/) keeps them: running again resumes from the last one.
    checkpoint_dir: str = "runs/01_arithmetic_cot"

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
    max_length: int = Field(128, ge=16, le=4096)

    # training
    batch_size: int = Field(64, gt=0)
    eval_batch_size: int = Field(256, gt=0)  # also the generation batch
    learning_rate: float = Field(2.0e-3, gt=0, lt=1)
    weight_decay: float = Field(0.01, ge=0, lt=1)
    max_steps: int = Field(200, gt=0)
    warmup_steps: int = Field(20, ge=0, validate_default=True)
    max_grad_norm: float = Field(1.0, gt=0)
    eval_steps: int = Field(50, gt=0)
    save_steps: int = Field(100, gt=0)
    logging_steps: int = Field(10, gt=0)
    save_total_limit: int = Field(2, gt=0)
    bf16: bool = False  # bf16 autocast (fp16 on GPUs without bf16); on this CPU it was slower
    report_to: Literal["none", "wandb"] = "none"
    # torch CPU threads (0: torch's default, one per core). On a CPU shared with other jobs,
    # 1 thread trained ~2.8x faster per step here than 2 oversubscribed ones.
    num_threads: int = Field(0, ge=0, le=256)

    # evaluation and display
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

    # Cross-field checks as field validators on the later field, so the error names a key
    # (fields are validated in declaration order; ``info.data`` holds the earlier ones).
    @field_validator("max_digits")
    @classmethod
    def _min_le_max(cls, value: int, info: ValidationInfo) -> int:
        low = info.data.get("min_digits")
        if low is not None and low > value:
            raise ValueError(f"max_digits ({value}) must be >= min_digits ({low})")
        return value

    @field_validator("warmup_steps")
    @classmethod
    def _warmup_le_steps(cls, value: int, info: ValidationInfo) -> int:
        steps = info.data.get("max_steps")
        if steps is not None and value > steps:
            raise ValueError(f"warmup_steps ({value}) exceeds max_steps ({steps})")
        return value
