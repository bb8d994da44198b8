"""Evaluate a language model on a dataset: one batched greedy pass, every completion scored.

:func:`evaluate_model` is the single evaluator that notebooks and ``python -m mathkit evaluate``
share, for every task: rows in, prompts (the scorer's, or a ``prompt_fn``), batched greedy
generation (:func:`mathkit.evaluation.generation.generate_batched`: length-sorted, left-padded, KV
cache, optionally with the calculator), one scored record per row in dataset order, and a summary
where every accuracy carries its n and Wilson interval. What differs between tasks is a
:class:`mathkit.evaluation.scoring.Scorer`: math answers
(:class:`~mathkit.evaluation.answer_scoring.MathAnswerScorer`, the default) or arithmetic
(:class:`~mathkit.evaluation.arithmetic_scoring.ArithmeticScorer`). Math answers stop after the
final answer by default (:mod:`mathkit.evaluation.stopping`; the summary counts
``stopped_early``), and a prompt style may bring stop strings of its own (the harness's
``lm_eval_gsm8k`` stops at ``Question:``). Records go to a JSONL file
(:mod:`mathkit.jsonl`) so that later notebooks can see exactly which problems changed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mathkit.errors import DataError
from mathkit.evaluation.answer_scoring import MathAnswerScorer
from mathkit.evaluation.generation import generate_batched
from mathkit.evaluation.scoring import Scorer
from mathkit.evaluation.stopping import StopRule
from mathkit.jsonl import write_jsonl

log = logging.getLogger(__name__)


@dataclass
class EvalResult:
    """``summary``: JSON-ready numbers; ``records``: one dict per example, in dataset order."""

    summary: dict
    records: list[dict] = field(repr=False)
    display_columns: tuple[str, ...] = ()

    @property
    def accuracy(self) -> float:
        return self.summary["accuracy"]

    def failures(self, n: int | None = None) -> list[dict]:
        """Records scored wrong (ungraded ones are not failures), in dataset order: the first
        ``n`` or all."""
        bad = [r for r in self.records if r["correct"] is False]
        return bad if n is None else bad[:n]

    def table(self, n: int = 10, *, max_chars: int = 200) -> list[dict]:
        """The first ``n`` records for display: the scorer's columns, completions clipped."""
        columns = self.display_columns or tuple(self.records[0]) if self.records else ()
        return [{c: (r.get(c)[:max_chars] if c == "completion" and r.get(c) else r.get(c))
                 for c in columns} for r in self.records[:n]]


def _rows(dataset, required: tuple[str, ...]) -> list[dict]:
    if hasattr(dataset, "to_list"):
        rows = dataset.to_list()
    elif isinstance(dataset, Iterable):
        rows = [dict(r) for r in dataset]
    else:
        raise DataError(f"cannot evaluate on a {type(dataset).__name__}: pass a datasets.Dataset "
                        f"or a list of dicts with {list(required)}")
    if not rows:
        raise DataError("the dataset is empty: nothing to evaluate")
    missing = set(required) - set(rows[0])
    if missing:
        raise DataError(f"the dataset lacks column(s) {sorted(missing)}; this scorer needs "
                        f"{list(required)} (the rows have {sorted(rows[0])})")
    return rows


def prompt_has_bos(tokenizer, prompts: list[str]) -> bool:
    """True when the prompts already start with BOS (chat templates write it themselves), so
    the tokenizer must not add a second one."""
    bos = getattr(tokenizer, "bos_token", None)
    return bool(bos) and all(p.startswith(bos) for p in prompts)


def _generation_stats(gen, seconds: float) -> dict:
    return {"new_tokens": sum(gen.new_tokens), "tokens_per_second": gen.tokens_per_second,
            "generation_seconds": gen.seconds, "calculator_uses": gen.calculator_uses,
            "stopped_early": sum(gen.stopped_early), "decoder": gen.decoder,
            "slot_use": round(gen.slot_use, 4), "seconds": seconds}


def stop_rule(scorer: Scorer, style: str, stop_strings: Sequence[str] | None,
              stop_at_answer: bool | None) -> StopRule:
    """The evaluation's stop rule: ``stop_strings`` (None: the style's, e.g. the harness's
    ``Question:``) and the answer end (None: the scorer's ``stops_at_answer``: on for math answers,
    whose extractor reads the first marked answer; arithmetic answers end at their own end marker)."""
    from mathkit.data.formatting import STYLE_STOP_STRINGS

    if stop_strings is None:
        stop_strings = STYLE_STOP_STRINGS.get(style, ())
    if stop_at_answer is None:
        stop_at_answer = scorer.stops_at_answer
    return StopRule(stop_strings=tuple(stop_strings), answer_end=stop_at_answer)


def evaluate_model(
    model,
    tokenizer,
    dataset,
    *,
    scorer: Scorer | None = None,
    prompt_fn: Callable[[dict], str] | None = None,
    style: str = "gsm8k",
    system_prompt: str | None = None,
    batch_size: int = 32,
    max_new_tokens: int | None = None,
    bf16: bool = False,
    records_path: str | Path | None = None,
    progress: bool = True,
    calculator: bool = False,
    stop_strings: Sequence[str] | None = None,
    stop_at_answer: bool | None = None,
    decoder: str = "auto",
) -> EvalResult:
    """Greedy-generate a completion for every row of ``dataset`` and score it with ``scorer``.

    ``dataset``: a ``datasets.Dataset`` or a list of dicts with the scorer's columns (math
    answers: ``problem`` and ``answer``). ``prompt_fn(row) -> str`` replaces the scorer's prompt
    (math answers: ``build_prompt(tokenizer, row["problem"], style=style)``). ``max_new_tokens``
    defaults to the scorer's budget (256; arithmetic: the longest reference + 8). ``bf16`` runs
    generation under bf16 autocast: greedy completions then depend on the batch (see the
    generation benchmark), so compare models at the same batch size and precision.
    ``calculator`` writes the result of each ``expression =`` the model generates
    (:mod:`mathkit.evaluation.calculator`); the summary counts how often. ``stop_strings``
    and ``stop_at_answer`` end completions early (:func:`stop_rule`); ``decoder`` is
    generation's (``auto``: finished rows leave the batch). Records are written to
    ``records_path`` (JSONL) when given.
    """
    t_start = time.perf_counter()
    scorer = scorer or MathAnswerScorer()
    rows = _rows(dataset, scorer.required_columns)
    prompt_source = getattr(prompt_fn, "__name__", "custom") if prompt_fn else scorer.name
    prompt_fn = prompt_fn or scorer.prompt_fn(tokenizer, style=style, system_prompt=system_prompt)
    prompts = [prompt_fn(row) for row in rows]
    max_new_tokens = max_new_tokens or scorer.default_max_new_tokens(tokenizer, rows)
    add_special = (scorer.add_special_tokens if scorer.add_special_tokens is not None
                   else not prompt_has_bos(tokenizer, prompts))
    rule = stop_rule(scorer, style, stop_strings, stop_at_answer)
    gen = generate_batched(model, tokenizer, prompts, max_new_tokens=max_new_tokens,
                           batch_size=batch_size, bf16=bf16, add_special_tokens=add_special,
                           skip_special_tokens=scorer.skip_special_tokens, progress=progress,
                           desc="evaluate", calculator=calculator, stop=rule, decoder=decoder)
    records = [{"id": row.get("id", i), **scorer.score(row, completion, gen.finished[i]),
                "new_tokens": gen.new_tokens[i], "finished": gen.finished[i],
                "stopped_early": gen.stopped_early[i]}
               for i, (row, completion) in enumerate(zip(rows, gen.completions))]
    summary = {**scorer.summarize(records),
               **scorer.model_metrics(model, tokenizer, rows, batch_size=batch_size, progress=progress),
               **_generation_stats(gen, time.perf_counter() - t_start)}
    summary["settings"] = {"scorer": scorer.name, "prompt_fn": prompt_source, "style": style,
                           "system_prompt": system_prompt, "batch_size": batch_size,
                           "max_new_tokens": max_new_tokens, "bf16": bf16, "calculator": calculator,
                           "stop_strings": list(rule.stop_strings), "stop_at_answer": rule.answer_end,
                           "decoder": gen.decoder}
    if records_path is not None:
        write_jsonl(records, records_path)
        summary["records_path"] = str(records_path)
    lo, hi = summary["ci95"]
    log.info("%s accuracy %.3f [%.3f, %.3f] (n=%d, truncated %d) at %.1f tokens/s", scorer.name,
             summary["accuracy"], lo, hi, summary["n"], summary.get("truncated", 0),
             summary["tokens_per_second"])
    return EvalResult(summary=summary, records=records, display_columns=scorer.display_columns)
