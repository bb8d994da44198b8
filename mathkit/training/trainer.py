"""The one training function: TRL's ``SFTTrainer`` on prompt/completion data, resumable.

TRL does the work: tokenizing prompt and completion (EOS appended where missing), the loss on the
completion only, the optimizer, schedule, clipping, mixed precision, evaluation, checkpoint
rotation and exact resumption (optimizer, scheduler, RNG and data position). What is mathkit's:

* the settings: a ``training`` dict of ``SFTConfig`` fields over mathkit's defaults, adapted to the
  machine (:mod:`mathkit.training.config`, :mod:`mathkit.training.policy`);
* one resume rule: a run started on a folder that holds ``checkpoint-N`` continues from the last
  one and ends exactly where an uninterrupted run would; a *finished* run is trained again from
  scratch, so a re-run reports real curves and times;
* ``metrics.jsonl`` written as training goes, and a :class:`~mathkit.training.result.TrainResult`.

It serves every kind of model mathkit trains: our small decoder with its character tokenizer, a
peft ``PeftModel`` (LoRA, or QLoRA on a 4-bit base prepared by :mod:`mathkit.training.lora`), and
a trainer subclass with its own loss term (``trainer_class=``, e.g. distillation).
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from mathkit.errors import DataError
from mathkit.memory import track_peak_memory
from mathkit.training.callbacks import METRICS_FILE, MetricsCallback, SideConfigCallback
from mathkit.training.config import build_sft_config
from mathkit.training.distributed import is_main_process, main_process_first, name_deepspeed_accelerator
from mathkit.training.result import TrainResult, finite, last_logged

log = logging.getLogger(__name__)

COLUMNS = ("prompt", "completion")
CHECKPOINT = re.compile(r"checkpoint-\d+")


def as_prompt_completion(data, what: str):
    """A ``datasets.Dataset`` with exactly the string columns ``prompt`` and ``completion``.

    Accepts a Dataset or a list of records (extra fields such as ``n_digits`` are dropped).
    """
    from datasets import Dataset

    if data is None:
        return None
    if isinstance(data, list):
        if not data:
            raise DataError(f"the {what} set is empty: nothing to train on")
        data = Dataset.from_list([{k: r.get(k) for k in COLUMNS if k in r} for r in data])
    missing = [c for c in COLUMNS if c not in data.column_names]
    if missing:
        raise DataError(f"the {what} set lacks column(s) {missing}; it has {data.column_names}. Format "
                        "it as prompt/completion records first (mathkit.data.formatting.format_dataset)")
    if len(data) == 0:
        raise DataError(f"the {what} set is empty: nothing to train on")
    return data.select_columns(list(COLUMNS))


def finished(checkpoint: str | Path) -> bool:
    """True when ``checkpoint`` is the end of its run (its state reached ``max_steps``)."""
    state_path = Path(checkpoint) / "trainer_state.json"
    if not state_path.is_file():
        return False
    state = json.loads(state_path.read_text())
    return bool(state.get("max_steps")) and state.get("global_step", 0) >= state["max_steps"]


def checkpoints(output_dir: Path) -> list[Path]:
    """The ``checkpoint-N`` folders in ``output_dir``, by step."""
    found = [p for p in Path(output_dir).glob("checkpoint-*") if p.is_dir() and CHECKPOINT.fullmatch(p.name)]
    return sorted(found, key=lambda p: int(p.name.rpartition("-")[2]))


def remove_checkpoints(output_dir: str | Path) -> int:
    """Delete the ``checkpoint-N`` folders (optimizer state: only needed to resume) in
    ``output_dir``, nothing else; the number deleted."""
    found = checkpoints(Path(output_dir))
    for folder in found:
        shutil.rmtree(folder)
    return len(found)


def checkpoint_to_resume(output_dir: Path, resume: bool) -> Path | None:
    """The checkpoint a run continues from, or None; stale checkpoints of a finished (or, with
    ``resume`` off, any) earlier run are deleted so that two runs never mix in one folder."""
    found = checkpoints(output_dir)
    if not found:
        return None
    if resume and not finished(found[-1]):
        log.info("resuming from %s", found[-1])
        return found[-1]
    why = "holds a finished run" if resume else "holds an earlier run and resume is off"
    log.warning("%s %s (%s); training starts over", output_dir, why, found[-1].name)
    if is_main_process():  # under accelerate launch the others would race it (see train)
        remove_checkpoints(output_dir)
    return None


def _not_mtime_notice(record: logging.LogRecord) -> bool:
    # Checkpoints saved within a second of each other make transformers say so; they are
    # ordered by step number anyway.
    return not record.getMessage().startswith("mtime may not be reliable")


@contextmanager
def quiet_progress_bars() -> Iterator[None]:
    """No progress bars from dataset preparation and checkpoint writing (report noise), and no
    checkpoint-ordering notice; the training loop's own bar follows ``disable_tqdm``."""
    import datasets
    from transformers.utils import logging as hf_logging

    datasets_on, hf_on = datasets.is_progress_bar_enabled(), hf_logging.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    hf_logging.disable_progress_bar()
    notices = logging.getLogger("transformers.trainer_utils")
    notices.addFilter(_not_mtime_notice)
    try:
        yield
    finally:
        notices.removeFilter(_not_mtime_notice)
        if datasets_on:
            datasets.enable_progress_bars()
        if hf_on:
            hf_logging.enable_progress_bar()


def train(model, tokenizer, train_dataset, eval_dataset=None, *, output_dir: str | Path,
          training: dict[str, Any], metrics_path: str | Path | None = None, resume: bool = True,
          trainer_class=None, callbacks=()) -> TrainResult:
    """Train ``model`` in place on prompt/completion data; loss on the completion only.

    ``training``: ``SFTConfig`` field names and values (see :mod:`mathkit.training.config`).
    Checkpoints go to ``output_dir/checkpoint-N``; metrics to ``metrics_path`` (default
    ``output_dir/metrics.jsonl``). With ``resume`` a run continues from the last unfinished
    checkpoint there. ``trainer_class``: an ``SFTTrainer`` subclass (an extra loss term);
    ``callbacks``: more ``TrainerCallback``s. With ``load_best_model_at_end`` the best checkpoint's
    weights are in ``model`` afterwards. The model is left in eval mode, without the
    mixed-precision wrapper, so it computes exactly like its saved weights.
    """
    from transformers import PrinterCallback
    from trl import SFTTrainer

    out = Path(output_dir)
    train_data, eval_data = as_prompt_completion(train_dataset, "training"), as_prompt_completion(eval_dataset, "evaluation")
    config = build_sft_config(training, output_dir=out, has_eval=eval_data is not None)
    out.mkdir(parents=True, exist_ok=True)
    with main_process_first():  # the main process cleans up first; the others then decide alike
        resume_from = checkpoint_to_resume(out, resume)
    metrics_path = Path(metrics_path) if metrics_path else out / METRICS_FILE
    if resume_from is None and is_main_process():  # a fresh run starts a fresh history
        metrics_path.unlink(missing_ok=True)
    metrics = MetricsCallback(metrics_path)
    name_deepspeed_accelerator()  # before the Trainer imports DeepSpeed (where installed)
    with quiet_progress_bars():
        trainer = (trainer_class or SFTTrainer)(
            model=model, args=config, train_dataset=train_data, eval_dataset=eval_data,
            processing_class=tokenizer, callbacks=[metrics, SideConfigCallback(), *callbacks])
        trainer.remove_callback(PrinterCallback)  # logs go to metrics.jsonl, not to the report
        with track_peak_memory() as memory:
            output = trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    # With bf16/fp16, accelerate wraps forward in autocast for good; unwrap it so that the model
    # in memory computes exactly like the same weights reloaded from disk.
    trainer.accelerator.unwrap_model(trainer.model, keep_fp32_wrapper=False)
    model.eval()
    return _result(trainer, output, metrics, out, resume_from, memory.as_dict())


def _result(trainer, output, metrics: MetricsCallback, out: Path, resume_from, memory: dict) -> TrainResult:
    state = trainer.state
    tokens = int(state.num_input_tokens_seen or 0) - metrics.tokens_at_start
    saved = checkpoints(out)
    return TrainResult(
        output_dir=out,
        metrics_path=metrics.path,
        global_step=int(state.global_step),
        train_runtime_s=float(output.metrics.get("train_runtime", 0.0)),
        step_seconds=metrics.step_seconds,
        train_tokens=tokens,
        tokens_per_s=tokens / metrics.step_seconds if metrics.step_seconds > 0 else 0.0,
        final_train_loss=last_logged(state.log_history, "loss"),
        final_eval_loss=last_logged(state.log_history, "eval_loss"),
        best_eval_loss=finite(state.best_metric),
        best_checkpoint=Path(state.best_model_checkpoint) if state.best_model_checkpoint else None,
        last_checkpoint=saved[-1] if saved else None,
        resumed_from=resume_from,
        memory=memory,
    )
