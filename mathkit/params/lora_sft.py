"""Parameters of notebook 02 (LoRA fine-tuning for math reasoning, base vs fine-tuned).

As for every notebook, the defaults are the notebook's quick CPU values (the smoke run: the real
SmolLM2-135M, two optimizer steps, four problems in each evaluation group; about a minute), identical to its
``parameters`` cell, so papermill with or without the runner runs the same thing.
``params/02_lora_sft/*.yaml`` change only what differs. The LoRA recipe itself is the seed
project's (TinyLlama/Mistral LoRA: r=32, alpha=64, dropout 0.1 on every projection; lr 1e-4
cosine, warmup 5%, weight decay 0.05); the GPU files add its gradient accumulation 8 and 2 epochs.
Training settings are the ``training`` block of TRL ``SFTConfig`` fields
(:mod:`mathkit.params.training`).

Everything is checked here, before a model or dataset is loaded: an unknown LoRA target,
``r < 1`` or a dropout of 1 fail with one line naming the key. YAML note: write floats with a
dot (``1.0e-4``); ``1e-4`` (which YAML reads as text) is accepted too.

Importing this module imports nothing heavy (no torch, peft or trl); validating a ``training``
block imports trl.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, ValidationInfo, field_validator, model_validator

from mathkit.errors import ParamsError
from mathkit.params.training import TrainingParams

# Projection names of the decoder families this notebook targets (Llama/Mistral/Qwen/Gemma use
# the first seven), plus other common ones, so a typo fails here instead of inside peft.
DEFAULT_TARGET_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
KNOWN_TARGET_MODULES = DEFAULT_TARGET_MODULES + (
    "qkv_proj", "gate_up_proj",                       # Phi-3 fused projections
    "c_attn", "c_proj", "c_fc",                       # GPT-2
    "query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h",  # GPT-NeoX / Falcon
    "fc1", "fc2", "out_proj", "W_pack",               # OPT / Phi-1/2 / Baichuan
    "embed_tokens", "lm_head",                        # embeddings (tied in SmolLM2: kept tied)
    "all-linear",                                     # peft: every linear layer but the head
)
SOURCE_SPEC_KEYS = ("name", "n", "split", "options", "fallback")  # mathkit.data.SourceSpec fields
GROUP_NAME = re.compile(r"[a-z][a-z0-9_]*")

# The smoke run's training (TRL's SFTConfig fields over mathkit.training.config's defaults): the
# seed's lr, warmup and weight decay; two steps of batch 2; the best checkpoint by validation loss
# kept. bf16 is autocast on a CPU with native bf16 (fp32 elsewhere), fp16 on T4/P100.
DEFAULT_TRAINING: dict[str, Any] = {
    "num_train_epochs": 2.0,
    "max_steps": 2,                 # > 0 overrides epochs; -1: train by epochs
    "learning_rate": 1.0e-4,
    "warmup_steps": 0.05,           # below 1: a fraction of the steps
    "weight_decay": 0.05,
    "per_device_train_batch_size": 2,
    "per_device_eval_batch_size": 8,
    "gradient_accumulation_steps": 1,
    "max_length": 384,              # GSM-format examples here are at most ~370 tokens
    "bf16": True,
    "eval_steps": 2,                # validation loss + checkpoint every N steps
    "logging_steps": 1,
    "load_best_model_at_end": True,
}


def check_lora_settings(*, r: int, alpha: float, dropout: float, target_modules) -> None:
    """Raise :class:`ParamsError` for values LoRA cannot use; shared with :mod:`mathkit.training.lora`."""
    if not isinstance(r, int) or isinstance(r, bool) or r < 1:
        raise ParamsError(f"lora_r must be an integer >= 1 (got {r!r})")
    if not alpha > 0:
        raise ParamsError(f"lora_alpha must be > 0 (got {alpha!r})")
    if not 0 <= dropout < 1:
        raise ParamsError(f"lora_dropout must lie in [0, 1) (got {dropout!r})")
    modules = [target_modules] if isinstance(target_modules, str) else list(target_modules)
    if not modules:
        raise ParamsError("lora_target_modules is empty: name at least one projection, e.g. q_proj")
    unknown = [m for m in modules if m not in KNOWN_TARGET_MODULES]
    if unknown:
        raise ParamsError(f"lora_target_modules: unknown module(s) {unknown}; known: "
                          f"{', '.join(KNOWN_TARGET_MODULES)}")


def check_source_specs(specs: list[dict[str, Any]], where: str = "") -> None:
    """Raise ValueError for a spec combine_sources cannot take: no name, unknown key, bad n."""
    for i, spec in enumerate(specs):
        if not isinstance(spec, dict) or not isinstance(spec.get("name"), str) or not spec["name"]:
            raise ValueError(f"{where}entry {i} has no 'name' (a dataset name such as gsm_symbolic)")
        unknown = sorted(set(spec) - set(SOURCE_SPEC_KEYS))
        if unknown:
            raise ValueError(f"{where}entry {i} ({spec['name']}): unknown key(s) {unknown}; keys are "
                             f"{list(SOURCE_SPEC_KEYS)} (loader options go under 'options')")
        n = spec.get("n")
        if n is not None and (not isinstance(n, int) or isinstance(n, bool) or n < 1):
            raise ValueError(f"{where}entry {i} ({spec['name']}): n must be a positive integer, got {n!r}")


def check_eval_groups(value: dict[str, list[dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
    """Raise ValueError unless ``value`` names evaluation groups (name -> source specs) well."""
    if not value:
        raise ValueError("name at least one evaluation group, e.g. held_out: [{name: gsm8k_originals, split: test}]")
    for name, specs in value.items():
        if not GROUP_NAME.fullmatch(name):
            raise ValueError(f"group name {name!r}: use lower-case letters, digits and _ (it is a "
                             "results.json key and a records file name)")
        if not specs:
            raise ValueError(f"group {name!r} has no source")
        check_source_specs(specs, where=f"group {name!r} ")
    return value


def _checked_sources(value: list[dict[str, Any]]) -> list[dict[str, Any]]:
    check_source_specs(value)
    return value


# Field types that check themselves, for every schema with training sources or evaluation groups.
SourceSpecs = Annotated[list[dict[str, Any]], AfterValidator(_checked_sources)]
EvalGroupSpecs = Annotated[dict[str, list[dict[str, Any]]], AfterValidator(check_eval_groups)]


class LoraSftParams(TrainingParams):
    """Model, data, LoRA, training and evaluation settings of the LoRA SFT notebook."""

    output_dir: str = "reports/02_lora_sft"
    training: dict[str, Any] = Field(default_factory=lambda: dict(DEFAULT_TRAINING))
    # On a CPU shared with other jobs fewer threads than cores avoids OpenMP threads waiting on
    # each other (measured here: 1 thread 4x faster than 2); hosted profiles use torch's default.
    threads: int = Field(1, ge=0, le=256)

    # ---- model
    # "smollm2-135m-instruct" (bundled, offline), a local folder, or a hub id (GPU profiles).
    base_model: str = "smollm2-135m-instruct"
    model_dtype: Literal["auto", "float32", "bfloat16", "float16"] = "float32"
    load_in_4bit: bool = False                 # NF4 + double quantization (bitsandbytes): QLoRA
    device_map: str | None = None              # "auto": spread a 7B over GPU, CPU and disk
    offload_folder: str | None = None          # where device_map="auto" puts what fits nowhere

    # ---- data: source specs for mathkit.data.combine_sources ({name, n, split, options, fallback})
    train_sources: SourceSpecs = Field(default_factory=lambda: [
        {"name": "gsm_symbolic", "split": "train", "n": 12},
        {"name": "arithmetic", "split": "train", "n": 8},
    ], min_length=1)
    n_train: int = Field(12, gt=0)             # cap on the combined, shuffled training set
    n_val: int = Field(4, gt=0)                # held out of the training pool for eval loss
    drop_long_examples: bool = True            # drop (not truncate) examples over training.max_length
    # Evaluation groups, each its own evaluation (so one group's batches never depend on another's):
    # name -> source specs. in_template: new-number variants of the *training* templates (did it
    # learn the procedures?); held_out: templates training never saw (does it generalize?);
    # arithmetic. Every group is drawn with eval_seed and must be disjoint from training and from
    # the other groups (mathkit.data.splits.group_leaks).
    eval_groups: EvalGroupSpecs = Field(default_factory=lambda: {
        "in_template": [{"name": "gsm_symbolic", "split": "train", "n": 4}],
        "held_out": [{"name": "gsm8k_originals", "split": "test", "n": 4}],
        "arithmetic": [{"name": "arithmetic", "split": "test", "n": 4}],
    })
    # Seed of the evaluation draws. Variants are seeded per template by (seed, template), so with the
    # training seed the in-template group would draw the very variants training saw: it must differ.
    eval_seed: int = 1
    # Chain of thought with an explicit instruction (mathkit.data.formatting.STYLES). "plain"
    # ("step by step, then: The final answer is $\boxed{answer}$") because with "gsm8k" the base
    # SmolLM2 copies the instruction's example "#### 42" (107 of 200 answers were 42, 0 correct)
    # while with "plain" it scores ~3%: the base must get a prompt it can follow for a fair baseline.
    prompt_style: Literal["gsm8k", "think", "plain"] = "plain"
    system_prompt: str | None = None           # None: formatting's default tutor prompt

    # ---- LoRA (the seed's recipe)
    lora_r: int = 32
    lora_alpha: float = 64.0
    lora_dropout: float = 0.1
    lora_target_modules: list[str] = Field(default_factory=lambda: list(DEFAULT_TARGET_MODULES))
    keep_checkpoints: bool = False             # False: delete checkpoint-N/ once the adapter is saved

    # ---- evaluation (same prompts and greedy decoding before and after)
    eval_batch_size: int = Field(4, gt=0)
    max_new_tokens: int = Field(16, gt=0)
    eval_bf16: bool = False                    # bf16 autocast for generation (faster on CPU)
    # A third arm: the fine-tuned model again on every group, same batches, with a calculator writing
    # every "expression =" result (mathkit.evaluation.calculator): arithmetic vs set-up errors.
    calculator_check: bool = True

    # ---- edge: the fine-tuned model exported (mathkit.export.targets: onnx_fp32, onnx_int8, gguf_q8_0,
    # gguf_q4_k_m; adapter merged) and evaluated beside torch on one evaluation group, every backend at
    # `edge_batch_size` (1: one prompt at a time, as a device serves it). [] skips it. The gguf targets
    # need llama-cpp-python (pip install 'mathkit[edge]') and are skipped, with the reason, without it.
    edge_targets: list[str] = Field(default_factory=list)
    edge_group: str | None = None              # a name of eval_groups; required with edge_targets
    edge_batch_size: int = Field(1, gt=0)

    # ---- saving and display
    merge: bool = False                        # also save base+adapter merged (full precision)
    n_reload_check: int = Field(2, ge=1)       # prompts generated by trained and reloaded model
    reload_max_new_tokens: int = Field(8, gt=0)
    n_examples_shown: int = Field(1, ge=0)
    # The trials (learning rate, steps, data size ...) that chose this profile, recorded before the
    # run and shown in the report as a table; one mapping per trial, the same keys in each.
    trials: list[dict[str, str | int | float]] = Field(default_factory=list)

    @field_validator("lora_alpha", "lora_dropout", mode="before")
    @classmethod
    def _yaml_float_text(cls, value):
        # YAML 1.1 reads 1e-4 (no dot) as the string "1e-4"; accept it rather than confuse people.
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                return value
        return value

    @field_validator("lora_r")
    @classmethod
    def _r(cls, value: int) -> int:
        if value < 1:
            raise ValueError(f"LoRA rank must be >= 1 (got {value})")
        return value

    @field_validator("lora_alpha")
    @classmethod
    def _alpha(cls, value: float) -> float:
        if not value > 0:
            raise ValueError(f"LoRA alpha must be > 0 (got {value})")
        return value

    @field_validator("lora_dropout")
    @classmethod
    def _dropout(cls, value: float) -> float:
        if not 0 <= value < 1:
            raise ValueError(f"LoRA dropout must lie in [0, 1) (got {value})")
        return value

    @field_validator("lora_target_modules")
    @classmethod
    def _targets(cls, value: list[str]) -> list[str]:
        try:
            check_lora_settings(r=1, alpha=1.0, dropout=0.0, target_modules=value)
        except ParamsError as err:
            raise ValueError(str(err).removeprefix("lora_target_modules: ")) from None
        if len(set(value)) != len(value):
            raise ValueError(f"modules repeat in {value}")
        return value

    @field_validator("eval_seed")
    @classmethod
    def _eval_seed(cls, value: int, info: ValidationInfo) -> int:
        if value == info.data.get("seed"):
            raise ValueError(f"eval_seed equals seed ({value}): the in-template group would draw the "
                             "variants training draws; pick another seed")
        return value

    @field_validator("trials")
    @classmethod
    def _trials(cls, value: list[dict]) -> list[dict]:
        if value and any(list(t) != list(value[0]) for t in value):
            raise ValueError(f"every trial needs the same keys in the same order as the first "
                             f"({list(value[0])}): they are the columns of one table")
        return value

    @field_validator("edge_targets")
    @classmethod
    def _edge_targets(cls, value: list[str]) -> list[str]:
        from mathkit.export.targets import check_targets

        try:
            return check_targets(value)
        except ParamsError as err:
            raise ValueError(str(err)) from None

    @model_validator(mode="after")
    def _edge_group(self):
        if self.edge_targets and self.edge_group is None:
            raise ValueError("edge_targets needs edge_group: the evaluation group the exports answer")
        if self.edge_group is not None and self.edge_group not in self.eval_groups:
            raise ValueError(f"edge_group {self.edge_group!r} is not an evaluation group ({sorted(self.eval_groups)})")
        return self

    @field_validator("offload_folder")
    @classmethod
    def _offload(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value and info.data.get("device_map") is None:
            raise ValueError("offload_folder is only used with device_map (e.g. 'auto'); set both")
        return value

    def memory_estimates(self) -> list:
        """What this run needs, before the model is loaded: training (LoRA, or QLoRA on a 4-bit base,
        with the training block's batch, length and optimizer) and the evaluations' generation
        (``eval_batch_size`` sequences of the training ``max_length``: a prompt and its longest
        solution). :class:`~mathkit.models.memory_estimate.MemoryEstimate` objects; a model the
        estimator cannot read raises :class:`~mathkit.errors.ParamsError`."""
        from mathkit.models.memory_estimate import estimate, estimate_training_run

        training = self.training_settings()
        weights = self._weights_dtype()
        lora = dict(lora_rank=self.lora_r, lora_targets=self.lora_target_modules, lora_dropout=self.lora_dropout)
        if self.load_in_4bit:
            tuning = estimate_training_run(self.base_model, "qlora", training, compute_dtype=weights, **lora)
        else:
            tuning = estimate_training_run(self.base_model, "lora", training, dtype=weights, **lora)
        seq_len = training.get("max_length") or 512
        generation = estimate(self.base_model, "inference", seq_len=seq_len, batch=self.eval_batch_size,
                              **self._evaluation_dtypes())
        return [tuning, generation]

    def _evaluation_dtypes(self) -> dict:
        """The weights' and compute dtypes the evaluations generate with: the loaded model's (a
        4-bit base keeps its adapter unmerged, so its evaluations run on the 4-bit weights)."""
        weights = self._weights_dtype()
        return {"dtype": "nf4" if self.load_in_4bit else weights, "compute_dtype": weights}

    def _weights_dtype(self) -> str | None:
        """``model_dtype`` for the estimator (None for "auto": the estimator's default for the device)."""
        return None if self.model_dtype == "auto" else self.model_dtype
