"""``python -m mathkit train``: a notebook's training stage on its own, in one or many processes.

It builds data, tokenizer and model with the library calls the notebook makes, from the same
validated parameters (a profile, ``--params`` files, ``--set`` overrides), trains with
:func:`mathkit.training.train`, and saves the model. No evaluation and no report: for those, run
the notebook (``python -m mathkit run``).

The same command runs unchanged under ``accelerate launch`` (or ``torchrun``)::

    accelerate launch --config_file params/accelerate/ddp_cpu.yaml -m mathkit train \\
        --notebook 01_arithmetic_cot --profile smoke --output runs/ddp

Every process builds the same data and model (seeded alike); the Trainer shards the batches
across processes and averages the gradients (DDP, or FSDP / DeepSpeed from the accelerate
config). ``per_device_train_batch_size`` is per process, so N processes take N times the
examples per step. The main process alone writes the shared files. In ``--output``:

* ``model/`` (notebook 01: weights, tokenizer, ``arithmetic_format.json``) or ``adapter/``
  (notebook 02: the LoRA adapter and tokenizer), loadable with :func:`mathkit.models.load`;
* ``metrics.jsonl`` (the training log), ``checkpoints/`` (unless ``checkpoint_dir`` says otherwise);
* ``train_summary.json``: the number of processes, the training result and the parameters;
* with ``--trace-examples``: ``examples/rank-N.jsonl``, the training examples each process
  consumed at each step (:class:`mathkit.training.distributed.ExampleTraceCallback`).
"""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from mathkit.cli import notebook_registry as registry
from mathkit.cli.run import params_files, parse_overrides
from mathkit.env import repo_root, resolve_output_dir, seed_everything, set_threads
from mathkit.errors import ParamsError
from mathkit.params import load_params

log = logging.getLogger(__name__)

SUMMARY_FILE = "train_summary.json"
TRACE_FOLDER = "examples"


@dataclass
class TrainingRun:
    """What a notebook trains: model, tokenizer, data, and how the trained model is saved."""

    model: Any
    tokenizer: Any
    train: Any
    validation: Any
    save: Callable[..., Path]             # (output folder, state_dict=None) -> the folder the model went to
    after_save: Callable[[Path], None] = lambda checkpoints: None


def arithmetic_run(params) -> TrainingRun:
    """Notebook 01's data, character tokenizer and decoder (its Data, Tokenizer and Model stages)."""
    from mathkit.data.arithmetic import generate_splits
    from mathkit.models import build_decoder, save
    from mathkit.models.char_tokenizer import build_char_tokenizer

    splits = generate_splits(params.n_train, params.n_val, params.n_test, min_digits=params.min_digits,
                             max_digits=params.max_digits, ops=params.ops, cot=params.cot, seed=params.seed)
    tokenizer = build_char_tokenizer(model_max_length=params.max_length)
    model = build_decoder(params.model_size, tokenizer, positional_encoding=params.positional_encoding,
                          max_position_embeddings=params.max_length)
    data_format = {"ops": params.ops, "min_digits": params.min_digits, "max_digits": params.max_digits,
                   "cot": params.cot}

    def save_model(out: Path, state_dict: dict | None = None) -> Path:
        return save(model, tokenizer, out / "model", extra_configs={"arithmetic_format": data_format},
                    state_dict=state_dict)

    return TrainingRun(model, tokenizer, splits["train"], splits["val"], save_model)


def lora_run(params) -> TrainingRun:
    """Notebook 02's training pool, base model and LoRA adapter (its Data, Model and LoRA stages)."""
    from mathkit.data.training_pool import draw_training_pool, format_training_sets
    from mathkit.models import load, save
    from mathkit.training import lora
    from mathkit.training.distributed import main_process_first, process_state
    from mathkit.training.trainer import remove_checkpoints

    pool = draw_training_pool(params.train_sources, n_train=params.n_train, n_val=params.n_val, seed=params.seed)
    device = None if params.device_map else str(process_state().device)
    with main_process_first():  # an offline alias is converted into a shared cache once
        model, tokenizer = load(params.base_model, dtype=params.model_dtype, load_in_4bit=params.load_in_4bit,
                                device_map=params.device_map, offload_folder=params.offload_folder, device=device)
    train, validation, dropped = format_training_sets(
        pool, tokenizer, style=params.prompt_style, system_prompt=params.system_prompt,
        max_length=params.training.get("max_length"), drop_long=params.drop_long_examples)
    if any(dropped.values()):
        log.info("dropped %d training and %d validation examples over max_length", dropped["train"],
                 dropped["validation"])
    config = lora.build_lora_config(r=params.lora_r, alpha=params.lora_alpha, dropout=params.lora_dropout,
                                    target_modules=params.lora_target_modules,
                                    tied_embeddings=lora.has_tied_embeddings(model))
    model = lora.attach_lora(model, config)

    def after_save(checkpoints: Path) -> None:
        if not params.keep_checkpoints:  # optimizer states are only needed to resume
            remove_checkpoints(checkpoints)

    return TrainingRun(model, tokenizer, train, validation,
                       lambda out, state_dict=None: save(model, tokenizer, out / "adapter", state_dict=state_dict),
                       after_save)


# The notebooks this command can train, and how each builds its run.
RUNS: dict[str, Callable[[Any], TrainingRun]] = {
    "01_arithmetic_cot": arithmetic_run,
    "02_lora_sft": lora_run,
}


def load_run_params(notebook: str, profile: str | None, extra: list[str], overrides: dict[str, Any],
                    root: Path):
    """``(spec, params)``: the notebook and its validated parameters (profile, files, overrides)."""
    spec = registry.resolve(notebook, root / "notebooks")
    if spec.name not in RUNS:
        raise ParamsError(f"train runs the training of {', '.join(RUNS)}; {spec.name} has its own "
                          f"training loop in the notebook: run it with `python -m mathkit run {spec.name}`")
    files = params_files(root, spec.name, profile, extra)
    return spec, load_params(spec.load_schema(), *files, overrides=overrides)


def train_notebook(notebook: str, *, profile: str | None = None, params_paths: list[str] = (),
                   overrides: dict[str, Any] | None = None, output: str | Path | None = None,
                   trace_examples: bool = False) -> dict[str, Any]:
    """Train ``notebook``'s model as ``python -m mathkit train`` does (see the module doc);
    returns the summary written to ``train_summary.json``."""
    from mathkit.training import train
    from mathkit.training.distributed import (ExampleTraceCallback, full_state_dict, is_main_process,
                                              process_state, wait_for_everyone)
    from mathkit.training.trainer import checkpoint_to_resume

    root = repo_root()
    if root is None:
        raise ParamsError("run from inside a mathkit checkout (no pyproject.toml + mathkit/ found)")
    overrides = dict(overrides or {})
    out = resolve_output_dir(output or f"runs/{registry.resolve(notebook, root / 'notebooks').name}")
    spec, params = load_run_params(notebook, profile, list(params_paths), {**overrides, "output_dir": str(out)},
                                   root)
    state = process_state()
    seed_everything(params.seed)
    threads = set_threads(params.threads)
    log.info("%s: process %d of %d (%s), %d thread(s), outputs in %s", spec.name, state.process_index,
             state.num_processes, state.distributed_type.value, threads, out)
    run = RUNS[spec.name](params)
    callbacks = [ExampleTraceCallback(out / TRACE_FOLDER)] if trace_examples else []
    checkpoints = params.checkpoint_folder(out)
    # Checkpoints of an earlier, finished run are deleted here by the main process alone, before
    # train() looks in every process: several processes deleting one folder race each other.
    if is_main_process():
        checkpoint_to_resume(checkpoints, params.resume)
    wait_for_everyone()
    result = train(run.model, run.tokenizer, run.train, run.validation, output_dir=checkpoints,
                   training=params.training_settings(), metrics_path=out / "metrics.jsonl",
                   resume=params.resume, callbacks=callbacks)
    summary = {"notebook": spec.name, "processes": state.num_processes,
               "distributed_type": state.distributed_type.value, "n_train": len(run.train),
               "n_validation": len(run.validation), "training": result.as_dict(),
               "params": params.model_dump(mode="json")}
    weights = full_state_dict(run.model)  # FSDP, ZeRO-3: every process takes part in the gather
    if is_main_process():
        model_dir = run.save(out, state_dict=weights)
        run.after_save(checkpoints)
        summary["model_dir"] = result.portable(model_dir)
        (out / SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n")
        log.info("%s: %d steps on %d process(es), final train loss %s; model in %s", spec.name,
                 result.global_step, state.num_processes, result.final_train_loss, model_dir)
    wait_for_everyone()
    return summary


def cmd_train(args: argparse.Namespace) -> int:
    overrides = parse_overrides(args.set or [])
    if args.max_steps is not None:
        overrides["training.max_steps"] = args.max_steps
    summary = train_notebook(args.notebook, profile=args.profile, params_paths=args.params or [],
                             overrides=overrides, output=args.output, trace_examples=args.trace_examples)
    if summary.get("model_dir"):  # the main process
        print(f"{summary['notebook']}: trained on {summary['processes']} process(es); model in {summary['model_dir']}")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "train", help="a notebook's training alone (runs under accelerate launch / torchrun)",
        description="Train the model of notebook 01 or 02 with the notebook's data, model and parameters, "
                    "and save it; no evaluation. Runs unchanged under `accelerate launch -m mathkit train ...` "
                    "(configs in params/accelerate/).")
    p.add_argument("--notebook", required=True, help=f"which notebook's training: {', '.join(RUNS)} (or a prefix)")
    p.add_argument("--profile", default=None,
                   help="params/<notebook>/<profile>.yaml, e.g. smoke, cpu, kaggle (default: cpu)")
    p.add_argument("--params", action="append", metavar="FILE",
                   help="extra parameter file; repeatable, later files win")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override one parameter (YAML value), e.g. training.learning_rate=1.0e-3; repeatable")
    p.add_argument("--output", default=None, metavar="DIR",
                   help="where model, metrics and checkpoints go (default: runs/<notebook>)")
    p.add_argument("--max-steps", type=int, default=None, metavar="N",
                   help="optimizer steps (sets training.max_steps)")
    p.add_argument("--trace-examples", action="store_true",
                   help="record which training examples each process consumed (examples/rank-N.jsonl)")
    p.set_defaults(func=cmd_train)
