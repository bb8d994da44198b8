"""Train a causal LM on prompt/completion records with transformers' ``Trainer``.

Trainer does the loop, AdamW, warmup + cosine schedule, clipping, mixed precision, evaluation,
checkpoint rotation and exact resumption (optimizer, scheduler, RNG and data position). What is
ours: the records are tokenized once up front and padded per batch by a tiny collator (the model
is so small that per-step Python overhead matters); the loss covers only the completion; metrics
go to ``metrics.jsonl`` as they are logged; a run restarted on the same ``output_dir`` resumes from
its latest checkpoint.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import Trainer, TrainerCallback, TrainingArguments
from transformers.trainer_utils import get_last_checkpoint

from mathkit.env import cpu_supports_bf16
from mathkit.errors import DataError, ParamsError

log = logging.getLogger(__name__)

IGNORE_INDEX = -100
METRICS_FILE = "metrics.jsonl"
REPORTERS = ("none", "wandb", "tensorboard", "trackio")


@dataclass
class TrainSettings:
    """Knobs of one training run; ``max_steps`` wins over ``num_epochs`` when set.

    ``bf16`` asks for reduced precision: bf16 autocast on a CPU with native bf16 (fp32 with a
    warning otherwise), bf16 on a GPU that has it, fp16 on older GPUs (T4, P100).
    ``cpu_threads`` sets torch's intra-op threads for the run on CPU (None: leave as is). On a
    CPU shared with other jobs, 1 thread can be several times faster than 2 for this tiny model,
    because threads that wait for each other get descheduled.
    """

    batch_size: int = 64
    eval_batch_size: int = 128
    learning_rate: float = 1e-3
    weight_decay: float = 0.01
    max_steps: int | None = None
    num_epochs: float = 1.0
    warmup_steps: int = 100
    max_grad_norm: float = 1.0
    eval_steps: int = 500
    save_steps: int = 500
    logging_steps: int = 50
    seed: int = 0
    bf16: bool = False
    report_to: str = "none"
    save_total_limit: int = 3
    dataloader_num_workers: int = 0
    max_length: int | None = None
    resume: bool = True
    progress: bool = True
    cpu_threads: int | None = None

    def __post_init__(self):
        positive = ("batch_size", "eval_batch_size", "eval_steps", "save_steps", "logging_steps",
                    "save_total_limit")
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ParamsError(f"TrainSettings.{name} must be a positive integer, got {value!r}")
        if self.max_steps is not None and (not isinstance(self.max_steps, int) or self.max_steps < 1):
            raise ParamsError(f"TrainSettings.max_steps must be None or a positive integer, got {self.max_steps!r}")
        if self.max_steps is None and not self.num_epochs > 0:
            raise ParamsError(f"TrainSettings.num_epochs must be > 0 when max_steps is None, got {self.num_epochs}")
        if not self.learning_rate > 0:
            raise ParamsError(f"TrainSettings.learning_rate must be > 0, got {self.learning_rate}")
        for name in ("weight_decay", "warmup_steps", "max_grad_norm", "dataloader_num_workers"):
            if getattr(self, name) < 0:
                raise ParamsError(f"TrainSettings.{name} must be >= 0, got {getattr(self, name)}")
        if self.cpu_threads is not None and (not isinstance(self.cpu_threads, int) or self.cpu_threads < 1):
            raise ParamsError(f"TrainSettings.cpu_threads must be None or a positive integer, got {self.cpu_threads!r}")
        if self.max_length is not None and self.max_length < 2:
            raise ParamsError(f"TrainSettings.max_length must be None or >= 2, got {self.max_length}")
        if self.report_to not in REPORTERS:
            raise ParamsError(f"TrainSettings.report_to={self.report_to!r}; use one of {', '.join(REPORTERS)}")


@dataclass
class TrainOutcome:
    train_seconds: float
    global_step: int
    final_train_loss: float | None      # mean loss of the last logging window
    final_eval_loss: float | None       # eval loss at the last evaluation (None without eval data)
    metrics_path: Path
    last_checkpoint: Path | None
    best_checkpoint: Path | None        # lowest eval loss among saved checkpoints
    resumed_from: Path | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items()}


# ---------------------------------------------------------------------------------------------
# Data: tokenize once, pad per batch
# ---------------------------------------------------------------------------------------------

class TokenizedCompletions(torch.utils.data.Dataset):
    """Token ids of prompt + completion, with the prompt length to mask from the loss."""

    def __init__(self, input_ids: list[list[int]], prompt_lengths: list[int]):
        self.input_ids = input_ids
        self.prompt_lengths = prompt_lengths

    def __len__(self) -> int:
        return len(self.input_ids)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"input_ids": self.input_ids[i], "prompt_length": self.prompt_lengths[i]}


def tokenize_records(records: list[dict], tokenizer, *, max_length: int | None = None) -> TokenizedCompletions:
    """Tokenize ``{"prompt", "completion"}`` records as generation will see them.

    The prompt is tokenized with the tokenizer's special tokens (as ``generate_batched`` does), the
    completion without, and EOS is appended when the completion does not already end with it,
    so the model learns to stop. Longer than ``max_length`` is cut from the right.
    """
    if not records:
        raise DataError("no records to train on: the record list is empty")
    missing = [i for i, r in enumerate(records) if "prompt" not in r or "completion" not in r]
    if missing:
        raise DataError(f"records need 'prompt' and 'completion' keys; record {missing[0]} has "
                        f"{sorted(records[missing[0]])} ({len(missing)} records lack them)")
    prompts = tokenizer([r["prompt"] for r in records], add_special_tokens=True)["input_ids"]
    completions = tokenizer([r["completion"] for r in records], add_special_tokens=False)["input_ids"]
    eos = tokenizer.eos_token_id
    ids, prompt_lengths, cut = [], [], 0
    for p, c in zip(prompts, completions):
        if eos is not None and (not c or c[-1] != eos):
            c = c + [eos]
        seq = p + c
        if max_length is not None and len(seq) > max_length:
            seq, cut = seq[:max_length], cut + 1
        ids.append(seq)
        prompt_lengths.append(min(len(p), len(seq)))
    if cut:
        log.warning("%d of %d records were longer than max_length=%d tokens and were cut",
                    cut, len(records), max_length)
    return TokenizedCompletions(ids, prompt_lengths)


@dataclass
class CompletionCollator:
    """Right-pad a batch to its longest sequence; labels are -100 on the prompt and on padding."""

    pad_token_id: int

    def __call__(self, features: list[dict]) -> dict[str, torch.Tensor]:
        longest = max(len(f["input_ids"]) for f in features)
        batch = len(features)
        input_ids = torch.full((batch, longest), self.pad_token_id, dtype=torch.long)
        labels = torch.full((batch, longest), IGNORE_INDEX, dtype=torch.long)
        attention_mask = torch.zeros((batch, longest), dtype=torch.long)
        for row, f in enumerate(features):
            ids = torch.tensor(f["input_ids"], dtype=torch.long)
            n, p = len(ids), f["prompt_length"]
            input_ids[row, :n] = ids
            attention_mask[row, :n] = 1
            labels[row, p:n] = ids[p:]
        return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


# ---------------------------------------------------------------------------------------------
# Callbacks
# ---------------------------------------------------------------------------------------------

class JsonlMetricsCallback(TrainerCallback):
    """Append every log (train loss, lr, grad norm, eval loss, summary) to a JSONL file as it comes.

    Rows carry ``kind`` ("train", "eval" or "summary"), ``step`` and ``epoch``. On resume, rows
    logged after the checkpoint's step are dropped so the file never holds a step twice.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def on_train_begin(self, args, state, control, **kwargs):
        if state.is_world_process_zero and self.path.is_file():
            kept = [line for line in self.path.read_text().splitlines()
                    if line.strip() and json.loads(line).get("step", 0) <= state.global_step]
            self.path.write_text("".join(line + "\n" for line in kept))

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        kind = ("eval" if any(k.startswith("eval_") for k in logs)
                else "summary" if "train_runtime" in logs else "train")
        row = {"kind": kind, "step": state.global_step, "epoch": state.epoch, **logs}
        with self.path.open("a") as fh:
            fh.write(json.dumps(row, default=float) + "\n")


class SideConfigCallback(TrainerCallback):
    """Write the model's side configs (``pe_config.json``) into every checkpoint, so a
    checkpoint folder loads with :func:`mathkit.models.load_model` like a saved model."""

    def on_save(self, args, state, control, model=None, **kwargs):
        from mathkit.models.io import side_configs, write_side_configs

        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if state.is_world_process_zero and model is not None and folder.is_dir():
            write_side_configs(folder, side_configs(model))


# ---------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------

def precision_flags(bf16: bool) -> dict[str, bool]:
    """TrainingArguments flags for the asked precision on this machine (see TrainSettings)."""
    if not bf16:
        return {}
    if torch.cuda.is_available():
        return {"bf16": True} if torch.cuda.is_bf16_supported() else {"fp16": True}
    if cpu_supports_bf16():
        return {"bf16": True}
    log.warning("bf16 was asked for but this CPU has no native bf16 (avx512_bf16/amx); training in fp32")
    return {}


def training_arguments(settings: TrainSettings, output_dir: str | Path, *, has_eval: bool) -> TrainingArguments:
    """The TrainingArguments for ``settings``; everything not named here stays Trainer's default."""
    on_gpu = torch.cuda.is_available()
    return TrainingArguments(
        output_dir=str(output_dir),
        per_device_train_batch_size=settings.batch_size,
        per_device_eval_batch_size=settings.eval_batch_size,
        learning_rate=settings.learning_rate,
        weight_decay=settings.weight_decay,
        max_steps=settings.max_steps if settings.max_steps is not None else -1,
        num_train_epochs=settings.num_epochs,
        warmup_steps=settings.warmup_steps,
        lr_scheduler_type="cosine",
        max_grad_norm=settings.max_grad_norm,
        logging_strategy="steps",
        logging_steps=settings.logging_steps,
        eval_strategy="steps" if has_eval else "no",
        eval_steps=settings.eval_steps,
        save_strategy="steps",
        save_steps=settings.save_steps,
        save_total_limit=settings.save_total_limit,
        metric_for_best_model="eval_loss" if has_eval else None,
        greater_is_better=False if has_eval else None,
        prediction_loss_only=True,
        seed=settings.seed,
        report_to=settings.report_to,
        disable_tqdm=not settings.progress,
        dataloader_num_workers=settings.dataloader_num_workers,
        dataloader_pin_memory=on_gpu,
        remove_unused_columns=False,
        use_cpu=not on_gpu,
        **precision_flags(settings.bf16),
    )


def _last(history: list[dict], key: str) -> float | None:
    for row in reversed(history):
        if key in row:
            return float(row[key])
    return None


def _finished(checkpoint: str | Path) -> bool:
    """True when ``checkpoint`` is the end of its run (Trainer's state reached max_steps)."""
    state_path = Path(checkpoint) / "trainer_state.json"
    if not state_path.is_file():
        return False
    state = json.loads(state_path.read_text())
    return bool(state.get("max_steps")) and state.get("global_step", 0) >= state["max_steps"]


def train_causal_lm(model, tokenizer, train_records: list[dict], eval_records: list[dict] | None, *,
                    output_dir: str | Path, settings: TrainSettings | None = None) -> TrainOutcome:
    """Train ``model`` in place on prompt/completion records; loss on the completion only.

    Checkpoints go to ``output_dir/checkpoint-<step>`` every ``save_steps`` (the last
    ``save_total_limit`` kept, plus the best by eval loss) and at the end; metrics to
    ``output_dir/metrics.jsonl``. When ``output_dir`` already holds a checkpoint and
    ``settings.resume`` is on, training continues from the latest one and ends exactly where an
    uninterrupted run would. The model is left with the final weights, in eval mode, and without
    the mixed-precision wrapper (autocast is the caller's choice again after training).
    """
    settings = settings or TrainSettings()
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    if tokenizer.pad_token_id is None:
        raise ParamsError("the tokenizer has no pad token; set tokenizer.pad_token before training")
    train_data = tokenize_records(train_records, tokenizer, max_length=settings.max_length)
    eval_data = tokenize_records(eval_records, tokenizer, max_length=settings.max_length) if eval_records else None

    resume_from = get_last_checkpoint(str(out)) if out.is_dir() else None
    if resume_from and _finished(resume_from):
        # Resuming exists to finish an interrupted run. A finished one is trained again from
        # scratch, so that a re-run reports real training time and curves, not zero steps.
        log.warning("%s holds a finished run (%s); training starts over", out, Path(resume_from).name)
        for old in out.glob("checkpoint-*"):
            shutil.rmtree(old)
        resume_from = None
    if resume_from and not settings.resume:
        log.warning("%s already holds %s; resume is off, so training starts over and may overwrite it",
                    out, Path(resume_from).name)
        resume_from = None
    if resume_from:
        log.info("resuming from %s", resume_from)

    metrics_path = out / METRICS_FILE
    if not resume_from and metrics_path.exists():
        metrics_path.unlink()
    trainer = Trainer(
        model=model,
        args=training_arguments(settings, out, has_eval=eval_data is not None),
        data_collator=CompletionCollator(tokenizer.pad_token_id),
        train_dataset=train_data,
        eval_dataset=eval_data,
        processing_class=tokenizer,
        callbacks=[JsonlMetricsCallback(metrics_path), SideConfigCallback()],
    )
    threads = torch.get_num_threads()
    if settings.cpu_threads and not torch.cuda.is_available():
        torch.set_num_threads(settings.cpu_threads)
    start = time.perf_counter()
    try:
        trainer.train(resume_from_checkpoint=resume_from)
    finally:
        torch.set_num_threads(threads)
    seconds = time.perf_counter() - start
    # With bf16/fp16, accelerate wraps model.forward in autocast for good; unwrap it so that the
    # model in memory computes exactly like the same weights reloaded from disk.
    trainer.accelerator.unwrap_model(model, keep_fp32_wrapper=False)
    model.eval()

    history = trainer.state.log_history
    last = get_last_checkpoint(str(out))
    best = trainer.state.best_model_checkpoint
    return TrainOutcome(
        train_seconds=seconds,
        global_step=trainer.state.global_step,
        final_train_loss=_last(history, "loss"),
        final_eval_loss=_last(history, "eval_loss"),
        metrics_path=metrics_path,
        last_checkpoint=Path(last) if last else None,
        best_checkpoint=Path(best) if best else None,
        resumed_from=Path(resume_from) if resume_from else None,
    )
