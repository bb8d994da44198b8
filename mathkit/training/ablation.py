"""A grid of runs: one model per (positional encoding, format, seed), one budget for all.

Each run builds its model from a recipe (:mod:`mathkit.training.ablation_models`: a fresh small
decoder, or a Pythia with its rotary embedding swapped and LoRA), trains it with
:func:`mathkit.training.train` on additions of 1..N-digit operands, evaluates it with
:func:`mathkit.evaluation.evaluator.evaluate_model` and the
:class:`~mathkit.evaluation.arithmetic_scoring.ArithmeticScorer` on one test set over the
2N x 2N square of operand lengths (the same expressions, in the same order and batches, for every
run), and becomes one row of ``runs.jsonl``: plain numbers, see :func:`summarize_run`.

The file is rewritten atomically after every run, so an interrupted grid loses at most the run in
progress (whose training resumes from its last checkpoint); a grid started again skips every run
whose row is there with the same settings (:func:`settings_fingerprint`). Checkpoints are deleted
once a run's row is written: the grid keeps numbers and loss curves, not dozens of models.
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from mathkit.jsonl import read_jsonl, write_jsonl
from mathkit.training.ablation_models import Recipe

log = logging.getLogger(__name__)

RUNS_FILE = "runs.jsonl"


@dataclass(frozen=True)
class Run:
    """One cell of the grid. ``arm``: a named training variant of the same model (e.g. a
    distillation loss), empty where the grid varies only encodings and formats."""

    positional_encoding: str
    format: str
    seed: int
    arm: str = ""

    @property
    def run_id(self) -> str:
        return f"{self.arm + '-' if self.arm else ''}{self.positional_encoding}-{self.format}-seed{self.seed}"


def grid(encodings: Sequence[str], formats: Sequence[str], seeds: Sequence[int]) -> list[Run]:
    """Every (encoding, format, seed), seeds outermost: a grid cut short still holds every
    encoding and format of its first seeds."""
    return [Run(pe, fmt, seed) for seed in seeds for fmt in formats for pe in encodings]


@dataclass
class AblationData:
    """The records of every run. Training and validation sets are drawn per seed from the train and
    val buckets with operands of 1..``max_digits`` digits, when a run needs them (one seed's sets
    are kept at a time: large grids would not fit in memory otherwise), and written in the run's
    format: every format of a seed trains on the same expressions. One test set per format (the
    same expressions in each) is drawn up front from the test bucket with operands of
    1..2 x ``max_digits`` digits."""

    max_digits: int
    n_train: int
    n_val: int
    test: dict[str, list[dict]]
    _splits: tuple[int, dict] | None = field(default=None, repr=False)

    def train_val(self, fmt: str, seed: int) -> tuple[list[dict], list[dict]]:
        """The training and validation records of ``seed`` in format ``fmt``."""
        from mathkit.data.arithmetic import format_records, generate_splits

        if self._splits is None or self._splits[0] != seed:
            self._splits = (seed, generate_splits(self.n_train, self.n_val, 0, min_digits=1,
                                                  max_digits=self.max_digits, ops=("+",), seed=seed))
        splits = self._splits[1]
        return format_records(splits["train"], fmt), format_records(splits["val"], fmt)


def build_data(*, formats: Sequence[str], max_digits: int, n_train: int, n_val: int, n_test: int,
               test_seed: int) -> AblationData:
    """The test set in every format (lengths uniform per operand, see
    :mod:`mathkit.data.arithmetic.sampling`) and what draws the training sets."""
    from mathkit.data.arithmetic import format_records, generate_examples

    test = generate_examples(n_test, min_digits=1, max_digits=2 * max_digits, ops=("+",), seed=test_seed,
                             split="test")
    return AblationData(max_digits, n_train, n_val, {fmt: format_records(test, fmt) for fmt in formats})


def resolved_options(encoding: str, pe_options: dict[str, dict]) -> dict:
    """The options a run of ``encoding`` trains with: its defaults under the given ones, so that a
    changed default makes earlier rows stale."""
    from mathkit.models.positional import positional_class

    return {**positional_class(encoding).default_options, **pe_options.get(encoding, {})}


def settings_fingerprint(settings: dict[str, Any]) -> str:
    """A short hash of the settings that define a run (JSON with sorted keys)."""
    text = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def operand_digits(record: dict) -> tuple[int, int]:
    """``(3, 2)`` for a scored record whose ``operand_lengths`` is ``"3x2"``."""
    a, _, b = record["operand_lengths"].partition("x")
    return int(a), int(b)


def length_groups(records: Iterable[dict], max_digits: int) -> dict[str, list[bool]]:
    """Outcomes in the training range (both operands <= N digits), beyond it (the longer one > N)
    and at twice it (the longer operand has 2N digits)."""
    groups: dict[str, list[bool]] = {"in_distribution": [], "beyond": [], "at_2n": []}
    for r in records:
        longest = max(operand_digits(r))
        groups["in_distribution" if longest <= max_digits else "beyond"].append(r["correct"])
        if longest == 2 * max_digits:
            groups["at_2n"].append(r["correct"])
    return groups


def thought_scores(scored: list[dict], test: list[dict]) -> dict[str, float] | None:
    """BLEU (0-100) and ROUGE-L (0-1) of the generated chains of thought against the reference
    steps; None when the format writes none."""
    from mathkit.data.arithmetic import parse_completion
    from mathkit.evaluation.metrics import bleu, rouge_l

    references = [parse_completion(r["completion"])[0] for r in test]
    if not any(references):
        return None
    generated = [parse_completion(r["completion"])[0] for r in scored]
    return {"bleu": bleu(generated, references), "rouge_l": rouge_l(generated, references)}


def validation_ce_series(metrics_path: str | Path) -> list[tuple[int, float]]:
    """``(step, loss)`` of every validation of a run, from its ``metrics.jsonl``: ``eval_ce_loss``
    where the training loss had more terms (distillation), else ``eval_loss``; empty when it
    never validated."""
    rows = read_jsonl(metrics_path) if Path(metrics_path).is_file() else []
    series = [(r.get("step"), r.get("eval_ce_loss", r.get("eval_loss"))) for r in rows if r.get("kind") == "eval"]
    return [(int(step), float(value)) for step, value in series if value is not None]


def validation_ce_loss(metrics_path: str | Path) -> float | None:
    """The last validation cross-entropy of a run (see :func:`validation_ce_series`), or None."""
    series = validation_ce_series(metrics_path)
    return series[-1][1] if series else None


def summarize_run(run: Run, evaluation, result, *, n_params: int, max_digits: int, test: list[dict],
                  fingerprint: str, n_trainable: int | None = None) -> dict:
    """One row of ``runs.jsonl``: what was run, its cost, losses and perplexity, and exact match
    in the training range, beyond it, at 2N, per length of the longer operand and per cell."""
    from mathkit.evaluation.metrics import accuracy_summary, perplexity_from_loss

    s = evaluation.summary
    groups = {k: accuracy_summary(v) for k, v in length_groups(evaluation.records, max_digits).items()}
    eval_loss = validation_ce_loss(result.metrics_path)  # the perplexity's: cross-entropy alone
    if eval_loss is None:
        eval_loss = result.final_eval_loss
    return {
        "run_id": run.run_id, "arm": run.arm, "positional_encoding": run.positional_encoding, "format": run.format,
        "seed": run.seed, "settings": fingerprint, "max_digits": max_digits,
        "n_params": n_params, "n_trainable": n_params if n_trainable is None else n_trainable,
        "train_steps": result.global_step, "train_seconds": result.train_runtime_s,
        "train_tokens_per_s": result.tokens_per_s, "eval_seconds": s["seconds"],
        "final_train_loss": result.final_train_loss, "final_eval_loss": eval_loss,
        "perplexity": perplexity_from_loss(eval_loss) if eval_loss is not None else None,
        **groups,
        "overall": s["exact_match"],
        "by_length": {str(k): v for k, v in s["by_digits"].items()},
        "by_cell": s["by_operand_lengths"],
        "token_accuracy": (s.get("token_accuracy") or {}).get("accuracy"),
        "thought_match": s["thought_match"],
        "thought_text": thought_scores(evaluation.records, test),
        "truncated": s["truncated"],
    }


def read_rows(path: str | Path, fingerprints: dict[str, str]) -> tuple[dict[str, dict], list[dict]]:
    """The rows of ``path``: ``(finished, others)``. Finished: runs of ``fingerprints`` (run id ->
    fingerprint) with the same settings. Others: runs of other grids, kept in the file as they
    are; a run of this grid with other settings is in neither (it is trained again)."""
    path = Path(path)
    if not path.is_file():
        return {}, []
    rows = {row["run_id"]: row for row in read_jsonl(path)}
    finished = {rid: row for rid, row in rows.items() if fingerprints.get(rid) == row.get("settings")}
    return finished, [row for rid, row in rows.items() if rid not in fingerprints]


def _one_thread() -> None:
    from mathkit.env import set_threads

    set_threads(1)


def train_and_evaluate(run: Run, *, data: AblationData, recipe: Recipe, tokenizer,
                       training: dict[str, Any],
                       folder: Path, resume: bool, eval_batch_size: int, max_new_tokens: int | None) -> dict:
    """One run from a fresh model to its row (without the settings fingerprint); its checkpoints
    are removed once the row exists."""
    from mathkit.evaluation.arithmetic_scoring import ArithmeticScorer
    from mathkit.evaluation.evaluator import evaluate_model
    from mathkit.training.trainer import remove_checkpoints, train

    model = recipe.build(run.positional_encoding, tokenizer, run.seed)
    run_dir = Path(folder) / run.run_id
    train_set, val_set = data.train_val(run.format, run.seed)
    trainer_class = recipe.trainer_class(run)
    result = train(model, tokenizer, train_set, val_set, output_dir=run_dir,
                   training={**training, "seed": run.seed}, resume=resume, trainer_class=trainer_class)
    test = data.test[run.format]
    evaluation = evaluate_model(model, tokenizer, test, scorer=ArithmeticScorer(), batch_size=eval_batch_size,
                                max_new_tokens=max_new_tokens or None, progress=False,
                                records_path=run_dir / "records.jsonl")
    row = summarize_run(run, evaluation, result, n_params=sum(p.numel() for p in model.parameters()),
                        n_trainable=sum(p.numel() for p in model.parameters() if p.requires_grad),
                        max_digits=data.max_digits, test=test, fingerprint="")
    remove_checkpoints(run_dir)
    return row


def run_ablation(runs: Sequence[Run], *, data: AblationData, recipe: Recipe, tokenizer,
                 training: dict[str, Any], folder: str | Path, settings: dict[str, Any], resume: bool = True,
                 eval_batch_size: int = 256, max_new_tokens: int | None = None,
                 progress: bool = True, workers: int = 1) -> list[dict]:
    """Train and evaluate every run not already finished; the rows of all ``runs``, in order.

    ``training``: the ``SFTConfig`` block of every run (each gets its own ``seed``). ``folder``
    holds ``runs.jsonl`` and one sub-folder per run (``metrics.jsonl``, ``records.jsonl`` of the
    test set, checkpoints while it trains). ``settings`` (plus the run's encoding options) is
    what must match for a finished row to be reused; ``resume=False`` runs everything again.
    ``workers`` > 1 trains that many runs at once, each in its own process on one thread.
    """
    folder = Path(folder)
    fingerprints = {run.run_id: settings_fingerprint(
        {**settings, "pe_options": resolved_options(run.positional_encoding, recipe.pe_options),
         **recipe.arm_settings(run)}) for run in runs}
    done, others = read_rows(folder / RUNS_FILE, fingerprints) if resume else ({}, [])
    todo = [run for run in runs if run.run_id not in done]
    log.info("%d runs: %d finished earlier, %d to run", len(runs), len(done), len(todo))
    bar = tqdm(total=len(runs), initial=len(runs) - len(todo), desc="runs", unit="run", disable=not progress)
    job = dict(data=data, recipe=recipe, tokenizer=tokenizer, training=training, folder=folder, resume=resume,
               eval_batch_size=eval_batch_size, max_new_tokens=max_new_tokens)

    def finished(run: Run, row: dict) -> None:
        done[run.run_id] = {**row, "settings": fingerprints[run.run_id]}
        write_jsonl(others + [done[r.run_id] for r in runs if r.run_id in done], folder / RUNS_FILE)
        log.info("%s: exact match %.3f in distribution, %.3f at 2N", run.run_id,
                 row["in_distribution"]["accuracy"], row["at_2n"]["accuracy"])
        bar.update(1)

    if workers <= 1 or len(todo) <= 1:
        for run in todo:
            bar.set_postfix_str(run.run_id)
            finished(run, train_and_evaluate(run, **job))
    else:
        # One process per core, each on one thread: small models leave a second OpenMP thread idle
        # most of the time, while two runs side by side use both cores. Every run seeds itself, so
        # its numbers do not depend on the process it ran in.
        context = multiprocessing.get_context("spawn")  # no fork of a process holding torch threads
        with ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_one_thread) as pool:
            pending = {pool.submit(train_and_evaluate, run, **job): run for run in todo}
            for future in as_completed(pending):
                finished(pending[future], future.result())
    bar.close()
    return [done[run.run_id] for run in runs]
