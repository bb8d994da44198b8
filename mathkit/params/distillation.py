"""Parameters of notebook 05 (knowledge distillation into small arithmetic models).

The grid is ``arms`` x ``seeds``: every arm trains the same student shape on the same data for the
same ``training`` block; an arm names its teachers and its distillation loss (a
:class:`~mathkit.training.distillation.DistillationConfig` block), or no teachers (the student
trained from scratch on the labels). Teachers are saved arithmetic models (``checkpoint``, e.g.
notebook 01's) or are trained here first (``train: true``, with ``teacher_training``). The
defaults are the notebook's quick CPU values; ``params/05_distillation/*.yaml`` change only what
differs. YAML note: write floats with a dot (``1.0e-3``).

``language_model`` (optional) is the second experiment: a language model as the teacher (by default
SmolLM2-135M-Instruct with notebook 02's adapter where that folder exists) and a student made of a
subset of its layers, trained on GSM-style data twice from the same initialisation, with
cross-entropy only and with the distillation loss, and evaluated on notebook 02's kind of groups.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from mathkit.params.arithmetic_cot import DEFAULT_TRAINING as ARITHMETIC_TRAINING
from mathkit.params.lora_sft import EvalGroupSpecs, SourceSpecs
from mathkit.params.pe_ablation import MAX_DIGITS, known_encodings, unique
from mathkit.params.training import TrainingParams

# Students train as notebook 01's models do (its quick-run block), validating at the end.
DEFAULT_TRAINING: dict[str, Any] = {**ARITHMETIC_TRAINING, "eval_steps": 200}
# A notebook-01-like model trained here as a teacher.
DEFAULT_TEACHER_TRAINING: dict[str, Any] = {**ARITHMETIC_TRAINING, "max_steps": 600, "warmup_steps": 30,
                                            "eval_steps": 600, "save_steps": 300}
# Half the width and depth of notebook 01's "small" model (~1M parameters): ~0.14M.
DEFAULT_STUDENT = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 256}


class TeacherSpec(BaseModel):
    """A teacher: a saved model folder, or a small decoder trained here first."""

    model_config = ConfigDict(extra="forbid", strict=True)

    checkpoint: str = ""  # a saved arithmetic model (relative paths from the repository root)
    train: bool = Field(False, validate_default=True)  # train one here with teacher_training (then no checkpoint)
    model_size: Literal["small", "medium", "large"] = "small"
    positional_encoding: str = "rope"
    seed: int = 0

    @field_validator("positional_encoding")
    @classmethod
    def _known(cls, name: str) -> str:
        return known_encodings([name])[0]

    @field_validator("train")
    @classmethod
    def _one_source(cls, train: bool, info: ValidationInfo) -> bool:
        if train == bool(info.data.get("checkpoint")):
            raise ValueError("give a teacher either a checkpoint folder or train: true, not both or neither")
        return train


class ArmSpec(BaseModel):
    """One way of training the student: its teachers (none: from scratch) and its loss."""

    model_config = ConfigDict(extra="forbid", strict=True)

    teachers: list[str] = Field(default_factory=list)
    distillation: dict[str, Any] = Field(default_factory=dict)  # DistillationConfig fields

    @field_validator("distillation")
    @classmethod
    def _valid_loss(cls, block: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        from mathkit.training.distillation import DistillationConfig  # imports torch and trl

        if block and not info.data.get("teachers"):
            raise ValueError("a distillation block needs teachers; an arm without teachers trains from scratch")
        return DistillationConfig.from_dict(block).as_dict() if info.data.get("teachers") else {}


# The language-model students' training: full fine-tuning of a layer subset (every weight is
# trained; the cut model has to heal), TRL SFTConfig fields over mathkit.training.config's defaults.
DEFAULT_LM_TRAINING: dict[str, Any] = {
    "max_steps": 2, "learning_rate": 1.0e-4, "warmup_steps": 0.1, "weight_decay": 0.01,
    "per_device_train_batch_size": 2, "per_device_eval_batch_size": 8, "gradient_accumulation_steps": 1,
    "max_length": 384, "bf16": False, "eval_steps": 2, "save_steps": 2, "logging_steps": 1,
    "load_best_model_at_end": False,
}


class LanguageModelSpec(BaseModel):
    """Experiment 2: a layer-subset student of a language model, distilled vs cross-entropy only."""

    model_config = ConfigDict(extra="forbid", strict=True)

    teacher: str = "smollm2-135m-instruct"  # an alias, a folder or a hub id
    # A LoRA adapter merged into the teacher where the folder exists (notebook 02's, which a fresh
    # clone lacks: it is not committed); otherwise the base model teaches, and the report says so.
    adapter: str = "reports/02_lora_sft/adapter"
    require_adapter: bool = False           # True: fail instead of teaching with the base model
    student_layers: int = Field(2, ge=1)    # kept layers, spread evenly over the teacher's depth
    prompt_style: Literal["gsm8k", "think", "plain"] = "gsm8k"  # notebook 02's training style
    system_prompt: str | None = None
    train_sources: SourceSpecs = Field(default_factory=lambda: [
        {"name": "gsm_symbolic", "split": "train", "n": 8}], min_length=1)
    n_train: int = Field(6, gt=0)
    n_val: int = Field(2, gt=0)
    eval_groups: EvalGroupSpecs = Field(default_factory=lambda: {
        "in_template": [{"name": "gsm_symbolic", "split": "train", "n": 2}],
        "held_out": [{"name": "gsm8k_originals", "split": "test", "n": 2}],
        "arithmetic": [{"name": "arithmetic", "split": "test", "n": 2}]})
    eval_seed: int = 1
    perplexity_group: str = "held_out"      # the held-out solutions whose perplexity is compared
    distillation: dict[str, Any] = Field(default_factory=lambda: {"kd": "forward", "temperature": 1.0})
    training: dict[str, Any] = Field(default_factory=lambda: dict(DEFAULT_LM_TRAINING))
    eval_batch_size: int = Field(8, gt=0)
    max_new_tokens: int = Field(16, gt=0)
    threads: int = Field(0, ge=0, le=256)   # torch threads for this part (0: leave as they are)

    @field_validator("perplexity_group")
    @classmethod
    def _perplexity_group(cls, value: str, info: ValidationInfo) -> str:
        groups = info.data.get("eval_groups") or {}
        if value not in groups:
            raise ValueError(f"perplexity_group {value!r} is not one of the eval_groups {sorted(groups)}")
        return value

    @field_validator("distillation")
    @classmethod
    def _loss(cls, block: dict[str, Any]) -> dict[str, Any]:
        from mathkit.training.distillation import DistillationConfig  # imports torch and trl

        return DistillationConfig.from_dict(block).as_dict()

    @field_validator("training")
    @classmethod
    def _training(cls, block: dict[str, Any]) -> dict[str, Any]:
        from mathkit.training.config import check_training

        return check_training({**DEFAULT_LM_TRAINING, **block})


class DistillationParams(TrainingParams):
    """Teachers, student, arms, data, training and evaluation of the distillation notebook."""

    output_dir: str = "reports/05_distillation"
    training: dict[str, Any] = Field(default_factory=lambda: dict(DEFAULT_TRAINING))
    teacher_training: dict[str, Any] = Field(default_factory=lambda: dict(DEFAULT_TEACHER_TRAINING))

    teachers: dict[str, TeacherSpec] = Field(
        default_factory=lambda: {"notebook01": TeacherSpec(checkpoint="reports/01_arithmetic_cot/model")})
    arms: dict[str, ArmSpec] = Field(default_factory=lambda: {
        "scratch": ArmSpec(), "kd_forward": ArmSpec(teachers=["notebook01"], distillation={"kd": "forward"})})
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)

    # the student: a named size with config fields over it (narrower, shallower)
    student_size: Literal["small", "medium", "large"] = "small"
    student_overrides: dict[str, Any] = Field(default_factory=lambda: dict(DEFAULT_STUDENT))
    student_positional_encoding: str = "rope"

    # data: chain-of-thought additions with operands of 1..max_digits digits (notebook 01's task),
    # tested on 1..2*max_digits
    max_digits: int = Field(3, ge=1, le=MAX_DIGITS)
    n_train: int = Field(12800, gt=0)
    n_val: int = Field(200, gt=0)
    n_eval: int = Field(600, gt=0)
    max_length: int = Field(128, ge=16, le=4096)

    workers: int = Field(1, ge=1, le=64)  # runs trained at once, each in its own process on one thread
    eval_batch_size: int = Field(256, gt=0)
    max_new_tokens: int = Field(0, ge=0)  # 0: long enough for the longest test completion
    n_samples_shown: int = Field(5, ge=0)
    language_model: LanguageModelSpec | None = None  # experiment 2 (None: arithmetic only)

    @field_validator("teacher_training")
    @classmethod
    def _teacher_block(cls, block: dict[str, Any]) -> dict[str, Any]:
        from mathkit.training.config import check_training

        return check_training({**DEFAULT_TEACHER_TRAINING, **block})

    @field_validator("arms")
    @classmethod
    def _arms_name_known_teachers(cls, arms: dict[str, ArmSpec], info: ValidationInfo) -> dict[str, ArmSpec]:
        known = set(info.data.get("teachers") or {})
        for name, arm in arms.items():
            unknown = [t for t in arm.teachers if t not in known]
            if unknown:
                raise ValueError(f"arm {name!r} names teacher(s) {unknown}; known: {sorted(known)}")
            if not name.replace("_", "").isalnum():
                raise ValueError(f"arm name {name!r}: use letters, digits and _ only (it names folders)")
        if not arms:
            raise ValueError("list at least one arm")
        return arms

    @field_validator("student_positional_encoding")
    @classmethod
    def _student_encoding(cls, name: str) -> str:
        return known_encodings([name])[0]

    @field_validator("seeds")
    @classmethod
    def _unique_seeds(cls, seeds: list[int]) -> list[int]:
        return unique(seeds, "seeds")

    def run_settings(self) -> dict[str, Any]:
        """What makes two runs of one (arm, seed) the same run: data, student and training (the
        runner adds the arm's teachers and loss)."""
        keys = ("training", "max_digits", "n_train", "n_val", "n_eval", "max_length", "student_size",
                "student_overrides", "student_positional_encoding", "eval_batch_size", "max_new_tokens", "seed")
        return {k: v for k, v in self.model_dump().items() if k in keys}
