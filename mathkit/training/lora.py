"""LoRA supervised fine-tuning through peft and TRL's ``SFTTrainer``, on CPU or GPU.

The recipe (r=32, alpha=64, dropout 0.1 on every attention and MLP projection; lr 1e-4 cosine,
warmup 5%, weight decay 0.05, gradient accumulation 8, epochs; 4-bit NF4 + paged 8-bit AdamW on
a GPU) comes from the TinyLlama/Mistral LoRA project this notebook reproduces. What this module
adds is the part that differs between machines: precision (bf16 autocast on a CPU that has
avx512_bf16, fp16 on T4/P100, bf16 on Ampere+), the optimizer, resuming from the last checkpoint,
a metrics.jsonl that charts read back, and training tokens/s that counts only the training steps.

The dataset handed to :func:`train_sft` is a prompt/completion dataset of strings, so TRL puts the
loss on the completion only and appends the EOS token itself.
"""

from __future__ import annotations

import json
import logging
import math
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from peft import LoraConfig, PeftModel, get_peft_model, prepare_model_for_kbit_training
from transformers import TrainerCallback
from transformers.trainer_utils import get_last_checkpoint

from mathkit.data.gsm_symbolic import HELD_OUT_TEMPLATES
from mathkit.env import cpu_supports_bf16
from mathkit.errors import MathkitError, ParamsError
from mathkit.evaluation.generation import generate_batched
from mathkit.memory import track_peak_memory
from mathkit.params.lora_sft import check_lora_settings

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- LoRA config


def is_quantized(model) -> bool:
    """True for a bitsandbytes 4-/8-bit model (merge and full-precision saving must avoid it)."""
    return bool(getattr(model, "is_loaded_in_4bit", False) or getattr(model, "is_loaded_in_8bit", False))


def has_tied_embeddings(model) -> bool:
    """True when the input embedding and the LM head share one weight (SmolLM2 does)."""
    try:
        inp, out = model.get_input_embeddings(), model.get_output_embeddings()
    except (AttributeError, NotImplementedError):
        return False
    return inp is not None and out is not None and inp.weight is out.weight


def build_lora_config(*, r: int = 32, alpha: float = 64, dropout: float = 0.1,
                      target_modules: list[str] | tuple[str, ...] = (),
                      tied_embeddings: bool = False) -> LoraConfig:
    """A causal-LM ``LoraConfig``; ``ensure_weight_tying`` when a tied embedding is targeted.

    Putting ``embed_tokens``/``lm_head`` into a model with tied embeddings unties them unless peft
    is asked to keep the tie (shared/PITFALLS.md).
    """
    check_lora_settings(r=r, alpha=alpha, dropout=dropout, target_modules=target_modules)
    touches_embeddings = any(m in ("embed_tokens", "lm_head") for m in target_modules)
    return LoraConfig(
        r=r,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=list(target_modules),
        bias="none",
        task_type="CAUSAL_LM",
        ensure_weight_tying=bool(tied_embeddings and touches_embeddings),
    )


def module_leaf_names(model) -> set[str]:
    """Last name component of every submodule (``q_proj``, ``up_proj``, ...)."""
    return {name.rsplit(".", 1)[-1] for name, _ in model.named_modules() if name}


def check_targets_exist(model, target_modules) -> None:
    """Fail with one line naming what the model does have, instead of peft's long error."""
    if target_modules == "all-linear" or list(target_modules) == ["all-linear"]:
        return
    have = module_leaf_names(model)
    missing = [m for m in target_modules if m not in have]
    if missing:
        linear = sorted({name.rsplit(".", 1)[-1] for name, mod in model.named_modules()
                         if isinstance(mod, torch.nn.Linear) or "Linear" in type(mod).__name__})
        raise ParamsError(
            f"lora_target_modules: {missing} not found in {type(model).__name__}; "
            f"its linear layers are {linear}")


@contextmanager
def _quiet_peft():
    """peft calls transformers 5's deprecated ``*gradient_checkpointing*`` aliases: noise, not news."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*gradient_checkpointing.*", category=FutureWarning)
        yield


def attach_lora(model, lora_config: LoraConfig, *, gradient_checkpointing: bool = False) -> PeftModel:
    """Wrap ``model`` with a trainable LoRA adapter (a 4-bit model is prepared for k-bit training
    first: norms in fp32, inputs requiring grad)."""
    check_targets_exist(model, lora_config.target_modules)
    with _quiet_peft():
        if is_quantized(model):
            model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=gradient_checkpointing)
        peft_model = get_peft_model(model, lora_config)
    stats = trainable_parameters(peft_model)
    log.info("LoRA: %d trainable of %d parameters (%.3f%%)", stats["trainable"], stats["total"],
             stats["percent"])
    return peft_model


def trainable_parameters(model) -> dict:
    """``{"trainable", "total", "percent"}``; 4-bit weights counted at their real size."""
    if hasattr(model, "get_nb_trainable_parameters"):
        trainable, total = model.get_nb_trainable_parameters()
    else:
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        total = sum(p.numel() for p in model.parameters())
    return {"trainable": int(trainable), "total": int(total),
            "percent": 100.0 * trainable / total if total else 0.0}


# --------------------------------------------------------------------------- training settings


@dataclass
class SftSettings:
    """The training knobs a notebook exposes; names match ``LoraSftParams`` fields.

    Defaults are the seed project's (for 1.1B/7B models on a GPU).
    """

    num_train_epochs: float = 2.0
    max_steps: int = -1                      # > 0 overrides epochs (smoke runs)
    learning_rate: float = 1e-4
    lr_scheduler_type: str = "cosine"
    warmup_ratio: float = 0.05
    weight_decay: float = 0.05
    per_device_train_batch_size: int = 4
    per_device_eval_batch_size: int = 8
    gradient_accumulation_steps: int = 8
    max_length: int = 512
    precision: str = "auto"                  # auto | bf16 | fp16 | fp32
    optim: str = "auto"                      # auto | an optimizer name transformers knows
    gradient_checkpointing: bool = True
    auto_find_batch_size: bool = False
    group_by_length: bool = False            # batch similar lengths together: less padding
    eval_steps: int = 0                      # 0: evaluate and save once per epoch
    save_total_limit: int = 2
    logging_steps: int = 5
    seed: int = 0

    @classmethod
    def from_params(cls, params: Any) -> "SftSettings":
        """Take the fields of the same name from a params object (or mapping)."""
        get = params.get if isinstance(params, dict) else (lambda k, d: getattr(params, k, d))
        return cls(**{f.name: get(f.name, f.default) for f in fields(cls)})


def resolve_precision(precision: str, device: str) -> tuple[bool, bool]:
    """``(bf16, fp16)`` mixed-precision flags for the Trainer.

    auto: bf16 on a GPU that supports it, fp16 on older GPUs (T4/P100 have no bf16); on CPU bf16
    autocast where the CPU has native bf16 matmuls (~1.5x faster LoRA training here), else fp32.
    """
    if precision not in ("auto", "bf16", "fp16", "fp32"):
        raise ParamsError(f"precision: '{precision}' is not one of auto, bf16, fp16, fp32")
    if device == "cuda":
        if precision == "auto":
            precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        elif precision == "bf16" and not torch.cuda.is_bf16_supported():
            raise ParamsError("precision: bf16 asked for, but this GPU has no bf16 (T4/P100): use fp16")
    else:
        if precision == "auto":
            precision = "bf16" if cpu_supports_bf16() else "fp32"
        elif precision == "fp16":
            raise ParamsError("precision: fp16 mixed precision needs a GPU; use bf16 or fp32 on CPU")
    return precision == "bf16", precision == "fp16"


def resolve_optimizer(optim: str, device: str) -> str:
    """auto: paged 8-bit AdamW on a GPU (bitsandbytes pages optimizer state to CPU under memory
    pressure), plain torch AdamW on CPU (bitsandbytes' CPU optimizers are much slower)."""
    if optim != "auto":
        return optim
    return "paged_adamw_8bit" if device == "cuda" else "adamw_torch"


def build_sft_config(settings: SftSettings, output_dir: str | Path, *, device: str,
                     has_eval: bool, progress: bool = True):
    """An ``SFTConfig`` with every machine-dependent choice spelled out.

    ``bf16``/``activation_checkpointing`` are always set explicitly: SFTConfig defaults to bf16 and
    gradient checkpointing on, and bf16 on a CPU without ``use_cpu=True`` raises.
    With ``has_eval`` the eval loss is computed at each save and the best checkpoint is loaded at
    the end (``metric_for_best_model="eval_loss"``).
    """
    from trl import SFTConfig  # heavy import, only when training

    bf16, fp16 = resolve_precision(settings.precision, device)
    strategy = "steps" if settings.eval_steps > 0 else "epoch"
    kwargs: dict[str, Any] = dict(
        output_dir=str(output_dir),
        num_train_epochs=settings.num_train_epochs,
        max_steps=settings.max_steps,
        learning_rate=settings.learning_rate,
        lr_scheduler_type=settings.lr_scheduler_type,
        warmup_steps=float(settings.warmup_ratio),   # a float < 1 is a ratio in transformers 5
        weight_decay=settings.weight_decay,
        per_device_train_batch_size=settings.per_device_train_batch_size,
        per_device_eval_batch_size=settings.per_device_eval_batch_size,
        gradient_accumulation_steps=settings.gradient_accumulation_steps,
        max_length=settings.max_length,
        bf16=bf16,
        fp16=fp16,
        use_cpu=device != "cuda",
        optim=resolve_optimizer(settings.optim, device),
        activation_checkpointing=settings.gradient_checkpointing,
        activation_checkpointing_kwargs={"use_reentrant": False} if settings.gradient_checkpointing else None,
        auto_find_batch_size=settings.auto_find_batch_size and device == "cuda",
        train_sampling_strategy="group_by_length" if settings.group_by_length else "random",
        logging_steps=settings.logging_steps,
        logging_first_step=True,
        save_strategy=strategy,
        save_total_limit=settings.save_total_limit,
        include_num_input_tokens_seen="non_padding",
        report_to="none",
        disable_tqdm=not progress,
        seed=settings.seed,
        data_seed=settings.seed,
        dataloader_num_workers=0,
    )
    if strategy == "steps":
        kwargs["save_steps"] = settings.eval_steps
    if has_eval:
        kwargs.update(eval_strategy=strategy, load_best_model_at_end=True,
                      metric_for_best_model="eval_loss", greater_is_better=False)
        if strategy == "steps":
            kwargs["eval_steps"] = settings.eval_steps
    return SFTConfig(**kwargs)


# --------------------------------------------------------------------------- metrics callback


class MetricsJsonlCallback(TrainerCallback):
    """Append every Trainer log (loss, lr, eval_loss, ...) as one JSON line, and time the steps.

    The step timer excludes evaluation and checkpoint saving, so tokens/s is training throughput.
    Appending keeps the history of a resumed run in one file.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.step_seconds = 0.0
        self.tokens_at_start = 0
        self._t = None

    def on_train_begin(self, args, state, control, **kwargs):
        self.tokens_at_start = int(state.num_input_tokens_seen or 0)

    def on_step_begin(self, args, state, control, **kwargs):
        self._t = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        if self._t is not None:
            self.step_seconds += time.perf_counter() - self._t
            self._t = None

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not logs:
            return
        row = {"step": int(state.global_step), "epoch": state.epoch}
        row.update({k: v for k, v in logs.items() if isinstance(v, (int, float, str))})
        if "train_runtime" in row and "train_loss" in row:
            # The end-of-training summary: its train_loss is the run's mean, not a point on the
            # curve, so it gets its own name (charts plot "loss"/"train_loss" against step).
            row["mean_train_loss"] = row.pop("train_loss")
        with self.path.open("a") as f:
            f.write(json.dumps(row) + "\n")


# --------------------------------------------------------------------------- training


@dataclass
class SftResult:
    """What a training run produced, as plain numbers for results.json."""

    metrics_path: Path
    global_step: int
    train_runtime_s: float          # wall time of trainer.train(), evaluation and saving included
    step_seconds: float             # time inside optimisation steps only
    train_tokens: int               # non-padding tokens fed to the model in this session
    tokens_per_s: float             # train_tokens / step_seconds
    train_loss: float | None
    best_checkpoint: str | None
    best_eval_loss: float | None
    resumed_from: str | None
    memory: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__}
        d["metrics_path"] = str(self.metrics_path)
        return d


def last_checkpoint(output_dir: str | Path) -> str | None:
    """The newest ``checkpoint-N`` folder under ``output_dir`` (None when there is none)."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return None
    return get_last_checkpoint(str(output_dir))


def find_leaks(train_rows, eval_rows) -> dict:
    """What of the evaluation set the training pool already contains; both lists must be empty.

    ``held_out_templates``: held-out GSM-Symbolic templates (``HELD_OUT_TEMPLATES``) with any
    problem in training; evaluating on them would measure memorised structure, not reasoning.
    ``problems``: evaluation problems whose exact text is in training. Originals of *training*
    templates may be evaluated (as an in-distribution control) as long as they were not trained on.
    """
    def templates(ds):
        return {t for t in ds["template"] if t} if "template" in ds.column_names else set()

    held_out = templates(eval_rows) & set(HELD_OUT_TEMPLATES) & templates(train_rows)
    seen = {p.strip() for p in train_rows["problem"]}
    return {"held_out_templates": sorted(held_out),
            "problems": sorted({p for p in eval_rows["problem"] if p.strip() in seen})}


def drop_long_examples(dataset, tokenizer, max_length: int):
    """``(kept, n_dropped)``: formatted examples whose prompt + completion fit in ``max_length``.

    TRL would truncate longer ones, cutting the final answer and the end-of-turn token off, which
    teaches the model to run on instead of concluding; long worked solutions (NuminaMath's QwQ
    traces) are dropped rather than trained on truncated.
    """
    lengths = [len(tokenizer(p + c)["input_ids"]) for p, c in zip(dataset["prompt"], dataset["completion"])]
    keep = [i for i, n in enumerate(lengths) if n <= max_length]
    dropped = len(lengths) - len(keep)
    if dropped:
        log.info("dropped %d of %d examples longer than %d tokens", dropped, len(lengths), max_length)
    return (dataset.select(keep) if dropped else dataset), dropped


def build_trainer(model, tokenizer, train_dataset, eval_dataset, sft_config, *,
                  metrics_path: str | Path):
    """An ``SFTTrainer`` on a prompt/completion dataset, with the metrics.jsonl callback."""
    from trl import SFTTrainer

    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    missing = {"prompt", "completion"} - set(train_dataset.column_names)
    if missing:
        raise MathkitError(f"training set lacks columns {sorted(missing)}: format it with "
                           "mathkit.data.formatting.format_dataset first")
    callback = MetricsJsonlCallback(metrics_path)
    keep = ["prompt", "completion"]
    trainer = SFTTrainer(
        model=model,
        args=sft_config,
        train_dataset=train_dataset.select_columns(keep),
        eval_dataset=eval_dataset.select_columns(keep) if eval_dataset is not None else None,
        processing_class=tokenizer,
        callbacks=[callback],
    )
    return trainer, callback


def train_sft(model, tokenizer, train_dataset, eval_dataset, sft_config, *,
              metrics_path: str | Path, resume: bool = True):
    """Fine-tune ``model`` (a PeftModel) and return ``(trainer, SftResult)``.

    With ``resume`` and a ``checkpoint-N`` in ``sft_config.output_dir``, training continues from
    it (optimizer, scheduler and RNG state included). With an eval set the best checkpoint by eval
    loss is loaded into ``trainer.model`` at the end.
    """
    resume_from = last_checkpoint(sft_config.output_dir) if resume else None
    if resume_from:
        log.info("resuming from %s", resume_from)
    else:  # a fresh run starts a fresh history; a resumed one appends to its own
        Path(metrics_path).unlink(missing_ok=True)
    trainer, callback = build_trainer(model, tokenizer, train_dataset, eval_dataset, sft_config,
                                      metrics_path=metrics_path)
    with track_peak_memory() as mem:
        out = trainer.train(resume_from_checkpoint=resume_from)
    tokens = int(trainer.state.num_input_tokens_seen or 0) - callback.tokens_at_start
    step_s = callback.step_seconds
    result = SftResult(
        metrics_path=Path(metrics_path),
        global_step=int(trainer.state.global_step),
        train_runtime_s=float(out.metrics.get("train_runtime", 0.0)),
        step_seconds=step_s,
        train_tokens=tokens,
        tokens_per_s=tokens / step_s if step_s > 0 else 0.0,
        train_loss=_finite(out.metrics.get("train_loss")),
        best_checkpoint=trainer.state.best_model_checkpoint,
        best_eval_loss=_finite(trainer.state.best_metric),
        resumed_from=resume_from,
        memory=mem.as_dict(),
    )
    return trainer, result


def _finite(x) -> float | None:
    return float(x) if x is not None and math.isfinite(float(x)) else None


# --------------------------------------------------------------------------- adapters


def load_adapter(base_model, adapter_dir: str | Path, *, trainable: bool = False) -> PeftModel:
    """Put a saved adapter onto a freshly loaded base model."""
    adapter_dir = Path(adapter_dir)
    if not (adapter_dir / "adapter_config.json").is_file():
        raise MathkitError(f"{adapter_dir}: no adapter_config.json; save the adapter there first")
    with _quiet_peft():
        return PeftModel.from_pretrained(base_model, str(adapter_dir), is_trainable=trainable)


def greedy_completions(model, tokenizer, prompts: list[str], *, max_new_tokens: int = 32) -> list[str]:
    """Greedy completions in fp32, all prompts in one batch (same padding every time).

    Like :func:`mathkit.evaluation.evaluator.evaluate_model`, the tokenizer adds no BOS to prompts that
    already start with one.
    """
    bos = getattr(tokenizer, "bos_token", None)
    has_bos = bool(bos) and all(p.startswith(bos) for p in prompts)
    return generate_batched(model, tokenizer, prompts, max_new_tokens=max_new_tokens,
                            batch_size=len(prompts), bf16=False, progress=False,
                            add_special_tokens=not has_bos).completions


def check_same_generations(reference: list[str], model, tokenizer, prompts: list[str], *,
                           max_new_tokens: int = 32) -> dict:
    """Does ``model`` generate exactly ``reference`` (what the trained model generated)?

    Used after saving: the adapter reloaded into a fresh base must generate what the trained
    model generated, or the saved artefact is not the model that was evaluated. The reference is
    taken before the trained model is freed, so two large models never sit in memory together.
    Returns ``{"identical", "pairs"}``.
    """
    again = greedy_completions(model, tokenizer, prompts, max_new_tokens=max_new_tokens)
    pairs = [{"prompt": p, "trained": x, "reloaded": y, "same": x == y}
             for p, x, y in zip(prompts, reference, again)]
    return {"identical": all(p["same"] for p in pairs), "pairs": pairs}


def merge_adapter(base_model, adapter_dir: str | Path):
    """Merge an adapter into a full-precision base and return the plain ``PreTrainedModel``.

    Merging into a 4-bit base requantizes the sum and changes generations (shared/PITFALLS.md),
    so a quantized base is refused: reload the base in bf16/fp32 first.
    """
    if is_quantized(base_model):
        raise MathkitError("refusing to merge into a 4-bit/8-bit base: reload the base model in "
                           "bf16 or fp32 (load_in_4bit=False) and merge into that")
    return load_adapter(base_model, adapter_dir).merge_and_unload()
