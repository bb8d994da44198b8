"""Evaluate a language model on a math dataset: one batched greedy pass, every answer checked.

:func:`evaluate_model` is the single evaluator that notebooks and ``python -m mathkit evaluate``
share: prompts from the data module's formatting (or a ``prompt_fn``), batched greedy generation
(:func:`mathkit.evaluation.generation.generate_batched`: length-sorted, left-padded, KV cache), lenient and
strict answer extraction (:mod:`mathkit.evaluation.answers`), and a summary where every accuracy carries its
n and Wilson interval. Per-example records go to a JSONL file so that later notebooks (and
:func:`compare_records`) can look at exactly which problems changed.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from mathkit.evaluation.answers import score_completion
from mathkit.errors import DataError
from mathkit.evaluation.generation import generate_batched
from mathkit.evaluation.metrics import accuracy_summary, grouped_accuracy, mcnemar_exact

log = logging.getLogger(__name__)

RECORD_KEYS = ("id", "source", "category", "template", "problem", "gold", "completion",
               "extracted", "extracted_strict", "correct", "correct_strict", "new_tokens",
               "finished")


@dataclass
class EvalResult:
    """``summary``: JSON-ready numbers; ``records``: one dict per example (see RECORD_KEYS)."""

    summary: dict
    records: list[dict] = field(repr=False)

    @property
    def accuracy(self) -> float:
        return self.summary["accuracy"]

    def failures(self, n: int | None = None) -> list[dict]:
        """Wrong answers (lenient), in dataset order: the first ``n`` or all."""
        bad = [r for r in self.records if not r["correct"]]
        return bad if n is None else bad[:n]

    def table(self, n: int = 10) -> list[dict]:
        """A few rows for display: id, gold, extracted, correct, start of the completion."""
        return [{"id": r["id"], "gold": r["gold"], "extracted": r["extracted"],
                 "correct": r["correct"], "completion": r["completion"][:200]}
                for r in self.records[:n]]


def _rows(dataset) -> list[dict]:
    if hasattr(dataset, "to_list"):
        rows = dataset.to_list()
    elif isinstance(dataset, Iterable):
        rows = [dict(r) for r in dataset]
    else:
        raise DataError(f"cannot evaluate on a {type(dataset).__name__}: pass a datasets.Dataset "
                        "or a list of dicts with 'problem' and 'answer'")
    if not rows:
        raise DataError("the dataset is empty: nothing to evaluate")
    missing = {"problem", "answer"} - set(rows[0])
    if missing:
        raise DataError(f"the dataset lacks column(s) {sorted(missing)}; it needs 'problem' and "
                        f"'answer' (has {sorted(rows[0])})")
    return rows


def _default_prompt_fn(tokenizer, style: str, system_prompt: str | None) -> Callable[[dict], str]:
    from mathkit.data.formatting import build_prompt

    kwargs = {"style": style}
    if system_prompt is not None:
        kwargs["system_prompt"] = system_prompt
    return lambda row: build_prompt(tokenizer, row["problem"], **kwargs)


def _prompt_has_bos(tokenizer, prompts: list[str]) -> bool:
    """True when the prompts already start with BOS (chat templates write it themselves), so
    the tokenizer must not add a second one."""
    bos = getattr(tokenizer, "bos_token", None)
    return bool(bos) and all(p.startswith(bos) for p in prompts)


def write_records(records: list[dict], path: str | Path) -> Path:
    """Write records as JSONL atomically (temp file + rename): never a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            for rec in records:
                f.write(json.dumps(rec, ensure_ascii=False, default=str) + "\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_records(path: str | Path) -> list[dict]:
    """Records written by :func:`write_records` (or ``evaluate_model(records_path=...)``)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no records file; run an evaluation with records_path first")
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def summarize_records(records: list[dict]) -> dict:
    """Accuracy (lenient and strict, with n and ci95), unparsable counts and breakdowns per
    category and per source. Generation speed is added by :func:`evaluate_model`."""
    lenient = accuracy_summary([r["correct"] for r in records])
    strict = accuracy_summary([r["correct_strict"] for r in records])
    return {
        "n": lenient["n"],
        "accuracy": lenient["accuracy"],
        "correct": lenient["correct"],
        "ci95": lenient["ci95"],
        "lenient": lenient,
        "strict": strict,
        "unparsable": sum(r["extracted"] is None for r in records),
        "unparsable_strict": sum(r["extracted_strict"] is None for r in records),
        "truncated": sum(not r.get("finished", True) for r in records),
        "by_category": grouped_accuracy([r["correct"] for r in records],
                                        [r.get("category") for r in records]),
        "by_source": grouped_accuracy([r["correct"] for r in records],
                                      [r.get("source") for r in records]),
    }


def evaluate_model(
    model,
    tokenizer,
    dataset,
    *,
    prompt_fn: Callable[[dict], str] | None = None,
    style: str = "gsm8k",
    system_prompt: str | None = None,
    batch_size: int = 32,
    max_new_tokens: int = 256,
    bf16: bool = False,
    records_path: str | Path | None = None,
    progress: bool = True,
    calculator: bool = False,
) -> EvalResult:
    """Greedy-generate an answer for every row of ``dataset`` and check it against ``answer``.

    ``dataset``: a ``datasets.Dataset`` (or list of dicts) with ``problem`` and ``answer``;
    ``id``, ``source``, ``category`` and ``template`` are carried into the records when present.
    ``prompt_fn(row) -> str`` defaults to ``build_prompt(tokenizer, row["problem"], style=style)``.
    ``bf16`` runs generation under bf16 autocast (check accuracy against fp32 before relying on
    it). The summary's headline ``accuracy`` is the lenient one; ``strict`` counts only answers
    in the asked format. ``truncated`` counts completions that hit ``max_new_tokens``.
    ``calculator`` writes the result of each ``expression =`` the model generates
    (:mod:`mathkit.evaluation.calculator`); the summary counts how often.
    """
    t_start = time.perf_counter()
    rows = _rows(dataset)
    prompt_source = getattr(prompt_fn, "__name__", "custom") if prompt_fn else "build_prompt"
    prompt_fn = prompt_fn or _default_prompt_fn(tokenizer, style, system_prompt)
    prompts = [prompt_fn(row) for row in rows]
    gen = generate_batched(model, tokenizer, prompts, max_new_tokens=max_new_tokens,
                           batch_size=batch_size, bf16=bf16,
                           add_special_tokens=not _prompt_has_bos(tokenizer, prompts),
                           progress=progress, desc="evaluate", calculator=calculator)
    records = []
    for i, (row, completion) in enumerate(zip(rows, gen.completions)):
        gold = str(row["answer"])
        records.append({
            "id": row.get("id", i),
            "source": row.get("source"),
            "category": row.get("category"),
            "template": row.get("template"),
            "problem": row["problem"],
            "gold": gold,
            "completion": completion,
            **score_completion(completion, gold),
            "new_tokens": gen.new_tokens[i],
            "finished": gen.finished[i] if gen.finished else None,
        })
    summary = summarize_records(records)
    summary.update({
        "new_tokens": sum(gen.new_tokens),
        "tokens_per_second": gen.tokens_per_second,
        "generation_seconds": gen.seconds,
        "calculator_uses": gen.calculator_uses,
        "seconds": time.perf_counter() - t_start,
        "settings": {"prompt_fn": prompt_source, "style": style, "system_prompt": system_prompt,
                     "batch_size": batch_size, "max_new_tokens": max_new_tokens, "bf16": bf16,
                     "calculator": calculator},
    })
    if records_path is not None:
        write_records(records, records_path)
        summary["records_path"] = str(records_path)
    lo, hi = summary["ci95"]
    log.info("accuracy %.3f [%.3f, %.3f] (n=%d, strict %.3f, unparsable %d) at %.1f tokens/s",
             summary["accuracy"], lo, hi, summary["n"], summary["strict"]["accuracy"],
             summary["unparsable"], summary["tokens_per_second"])
    return EvalResult(summary=summary, records=records)


def _as_records(x) -> list[dict]:
    if isinstance(x, EvalResult):
        return x.records
    if isinstance(x, (str, Path)):
        return read_records(x)
    return list(x)


def compare_records(before, after, *, key: str = "id") -> dict:
    """Which examples fine-tuning fixed and which it broke, paired by ``key``.

    ``before``/``after``: EvalResults, record lists or JSONL paths. Returns counts
    (``n``, ``n_fixed``, ``n_broken``, ``both_correct``, ``both_wrong``), accuracies before and
    after on the shared examples, the exact McNemar p-value of the change, and the ``fixed`` and
    ``broken`` examples themselves (problem, gold, both answers and completions).
    """
    a = {r[key]: r for r in _as_records(before)}
    b = {r[key]: r for r in _as_records(after)}
    shared = [k for k in a if k in b]
    if not shared:
        raise DataError(f"the two evaluations share no example {key!r}: were they run on the "
                        "same dataset?")

    def pair(k):
        return {key: k, "problem": b[k].get("problem"), "gold": b[k].get("gold"),
                "extracted_before": a[k].get("extracted"), "extracted_after": b[k].get("extracted"),
                "completion_before": a[k].get("completion"),
                "completion_after": b[k].get("completion")}

    fixed = [pair(k) for k in shared if not a[k]["correct"] and b[k]["correct"]]
    broken = [pair(k) for k in shared if a[k]["correct"] and not b[k]["correct"]]
    acc_before = accuracy_summary([a[k]["correct"] for k in shared])
    acc_after = accuracy_summary([b[k]["correct"] for k in shared])
    return {
        "n": len(shared),
        "n_fixed": len(fixed),
        "n_broken": len(broken),
        "both_correct": sum(a[k]["correct"] and b[k]["correct"] for k in shared),
        "both_wrong": sum(not a[k]["correct"] and not b[k]["correct"] for k in shared),
        "accuracy_before": acc_before,
        "accuracy_after": acc_after,
        "delta": acc_after["accuracy"] - acc_before["accuracy"],
        "mcnemar_p": mcnemar_exact(len(fixed), len(broken)),
        "only_before": [k for k in a if k not in b],
        "only_after": [k for k in b if k not in a],
        "fixed": fixed,
        "broken": broken,
    }
