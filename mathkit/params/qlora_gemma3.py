"""Parameters of notebook 03 (QLoRA fine-tuning of Gemma-3 on MathX-style ``<think>`` solutions).

The schema extends notebook 02's (:class:`~mathkit.params.lora_sft.LoraSftParams`: model, LoRA,
evaluation groups, reload check, trials, the ``training`` block of TRL ``SFTConfig`` fields) with
what QLoRA on MathX adds: where the MathX-shaped rows stream from, how many are taken, the dtype
the adapter is merged in, and the side measurements of the report (the other packing setting, and
LoRA on the un-quantized base). As for every notebook the defaults are the smoke run, identical to
the notebook's ``parameters`` cell: a tiny random Gemma-3 with the real gemma-3-270m tokenizer,
4-bit, three optimizer steps, saved, merged, reloaded, generating; about a minute.

The recipe is the seed project's: LoRA r=16, alpha=32, dropout 0.05 on every projection, NF4 with
double quantization, lr 2e-4, paged 8-bit AdamW on a GPU (plain 8-bit AdamW on a CPU), gradient
checkpointing, accumulation; the GPU profiles add its sequence length 2048, batch 2 x 8 and one
epoch on 10,000 streamed MathX-5M rows.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from mathkit.params.lora_sft import DEFAULT_TARGET_MODULES, EvalGroupSpecs, LoraSftParams, SourceSpecs

# sympy kinds with one answer each: roots and eigenvalues are lists, which the scorer leaves ungraded
SINGLE_ANSWER_KINDS = ("linear", "derivative", "integral", "determinant")
LOCAL_MATHX = "local"  # mathx_source: render `train_sources` into a MathX-shaped JSONL and stream that

# The smoke run's training (SFTConfig fields over mathkit.training.config's defaults): the seed's
# lr, optimizer and gradient checkpointing; three steps of 1 x 2 (accumulation).
DEFAULT_TRAINING: dict[str, Any] = {
    "num_train_epochs": 1.0,
    "max_steps": 3,                  # > 0 overrides epochs; -1: train by epochs
    "learning_rate": 2.0e-4,
    "warmup_steps": 0.03,            # below 1: a fraction of the steps
    "per_device_train_batch_size": 1,
    "per_device_eval_batch_size": 2,
    "gradient_accumulation_steps": 2,
    "max_length": 512,
    "packing": False,                # TRL's best-fit packing (padding-free); the report measures both
    "bf16": True,                    # the machine policy: bf16 where native, fp16 on T4, else fp32
    "optim": "paged_adamw_8bit",     # the seed's; the CPU policy uses adamw_8bit (no CUDA paging)
    "activation_checkpointing": True,
    "eval_steps": 3,
    "logging_steps": 1,
}


class QloraGemma3Params(LoraSftParams):
    """Notebook 03: QLoRA of Gemma-3 on MathX-shaped data, with merge and memory comparison."""

    output_dir: str = "reports/03_qlora_gemma3_mathx"
    training: dict[str, Any] = Field(default_factory=lambda: dict(DEFAULT_TRAINING))

    # ---- model: "tiny-random-gemma3" (smoke), "gemma-3-270m" (offline, the real base model),
    # or a hub id such as google/gemma-3-4b-it (GPU profiles; text only: LoRA skips its vision tower)
    base_model: str = "tiny-random-gemma3"
    model_dtype: Literal["auto", "float32", "bfloat16", "float16"] = "float32"  # 4-bit compute dtype
    load_in_4bit: bool = True
    # The adapter is merged into the base reloaded un-quantized in this dtype (merging into the
    # 4-bit base would requantize: lossy). float32 on a CPU; bfloat16 on a GPU.
    merge_dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    merge: bool = True

    # ---- data: MathX-5M's shape, streamed; `n_train` + `n_val` rows taken with islice
    # "local": the offline `train_sources` rendered as MathX rows (<think> reasoning + answer) into
    # a JSONL file, streamed back; else a .jsonl path or a hub id (XenArcAI/MathX-5M).
    mathx_source: str = LOCAL_MATHX
    shuffle_buffer: int = Field(0, ge=0)       # stream shuffle buffer (hub: 10,000; a local file is pre-shuffled)
    train_sources: SourceSpecs = Field(default_factory=lambda: [
        {"name": "gsm_symbolic", "split": "train", "n": 8},
        {"name": "sympy_problems", "split": "train", "n": 6},
    ], min_length=1)
    n_train: int = Field(12, gt=0)
    n_val: int = Field(2, gt=0)
    eval_groups: EvalGroupSpecs = Field(default_factory=lambda: {
        "in_template": [{"name": "gsm_symbolic", "split": "train", "n": 2}],
        "held_out": [{"name": "gsm8k_originals", "split": "test", "n": 2}],
        "sympy": [{"name": "sympy_problems", "split": "test", "n": 2, "options": {"kinds": list(SINGLE_ANSWER_KINDS)}}],
    })
    prompt_style: Literal["gsm8k", "think", "plain"] = "think"
    system_prompt: str | None = None           # None: the "expert mathematics tutor" prompt

    # ---- LoRA: the seed's r=16, alpha=32, dropout 0.05 on every projection
    lora_r: int = 16
    lora_alpha: float = 32.0
    lora_dropout: float = 0.05
    lora_target_modules: list[str] = Field(default_factory=lambda: list(DEFAULT_TARGET_MODULES))

    # ---- evaluation and checks
    eval_batch_size: int = Field(2, gt=0)
    max_new_tokens: int = Field(24, gt=0)
    calculator_check: bool = False
    n_reload_check: int = Field(2, ge=1)
    reload_max_new_tokens: int = Field(8, gt=0)
    merge_atol: float = Field(1e-3, gt=0)      # merged vs adapter-on-base: largest logit difference allowed

    # ---- side measurements of the report (0 steps: skipped): the same training for this many
    # optimizer steps with the other `packing` setting, and as LoRA on the un-quantized base
    probe_steps: int = Field(1, ge=0)
    n_samples_shown: int = Field(2, ge=0)      # sample <think> solutions printed from the fine-tuned model

    @field_validator("mathx_source")
    @classmethod
    def _source(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("name a source: 'local', a .jsonl file, or a hub id such as XenArcAI/MathX-5M")
        return value

    @field_validator("merge")
    @classmethod
    def _merge(cls, value: bool) -> bool:
        if not value:
            raise ValueError("this notebook always merges (the report compares the merged model with "
                             "the adapter on its base); leave merge at true")
        return value

    @field_validator("prompt_style")
    @classmethod
    def _think(cls, value: str) -> str:
        if value != "think":
            raise ValueError("MathX solutions are <think> reasoning: prompt_style must be 'think'")
        return value

    @field_validator("edge_targets")
    @classmethod
    def _no_edge_section(cls, value: list[str]) -> list[str]:
        if value:
            raise ValueError("notebook 03 has no edge section (notebook 02 has): export its merged model with "
                             "`python -m mathkit export --checkpoint <output>/merged --format onnx|gguf`")
        return value

    def _evaluation_dtypes(self) -> dict:
        """Notebook 03 evaluates the base and the merged model un-quantized, in ``merge_dtype``."""
        return {"dtype": self.merge_dtype, "compute_dtype": self.merge_dtype}
