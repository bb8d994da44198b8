"""The rows of an ablation grid (:mod:`mathkit.training.ablation`) as numbers per encoding and format.

A seed is one trained model, so the spread that matters is between seeds: every accuracy here is
the mean over seeds with the lowest and highest seed, the standard deviation and the number of
examples each seed was tested on (the same test set for all). Pooling the seeds' examples into one
Wilson interval would treat seeds as one model and understate the uncertainty.
:func:`headline` and :func:`conclusion_sentences` turn these numbers into results.json's headline
and the report's conclusion.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping
from pathlib import Path

from mathkit.errors import DataError
from mathkit.reporting.conclusion import percent

GROUPS = ("in_distribution", "beyond", "at_2n")
LEARNED = 0.99  # mean exact match in the training range from which an encoding "learned the task"


def spread(values: Iterable[float]) -> dict:
    """``{"mean", "min", "max", "std", "n_seeds"}`` over seeds (``std`` with ddof 1; 0 for one seed)."""
    values = [float(v) for v in values]
    if not values:
        raise DataError("no values to summarize: the grid has no finished runs here")
    return {"mean": statistics.fmean(values), "min": min(values), "max": max(values),
            "std": statistics.stdev(values) if len(values) > 1 else 0.0, "n_seeds": len(values)}


def _accuracy_spread(summaries: list[dict]) -> dict:
    ns = sorted({s["n"] for s in summaries})
    return {**spread(s["accuracy"] for s in summaries), "n": ns[0] if len(ns) == 1 else ns,
            "per_seed": [s["accuracy"] for s in summaries]}


def _optional_spread(values: list) -> dict | None:
    present = [v for v in values if v is not None]
    return spread(present) if present else None


def aggregate(rows: Iterable[dict], by: str = "positional_encoding") -> dict[str, dict[str, dict]]:
    """``{format: {encoding: numbers}}``, formats and encodings in the rows' order (``by="arm"``:
    ``{format: {arm: numbers}}``, for grids of training variants).

    Numbers: exact match ``in_distribution`` / ``beyond`` / ``at_2n`` and ``by_length`` (the longer
    operand's digits) as :func:`spread` + ``n`` + ``per_seed``; ``by_cell`` (``"3x2"``) mean
    accuracies; ``n_params``; ``train_seconds``, ``perplexity``, ``token_accuracy``, ``bleu``,
    ``rouge_l`` and ``thought_match`` as spreads (None where the format has no thought).
    """
    runs: dict[str, dict[str, list[dict]]] = {}
    for row in rows:
        runs.setdefault(row["format"], {}).setdefault(row[by], []).append(row)
    out: dict[str, dict[str, dict]] = {}
    for fmt, by_pe in runs.items():
        for pe, seeds in by_pe.items():
            lengths = sorted({int(k) for r in seeds for k in r["by_length"]})
            cells = sorted({c for r in seeds for c in r["by_cell"]}, key=lambda c: tuple(map(int, c.split("x"))))
            thought = [r.get("thought_text") or {} for r in seeds]
            out.setdefault(fmt, {})[pe] = {
                "seeds": [r["seed"] for r in seeds],
                "max_digits": seeds[0]["max_digits"],
                **{g: _accuracy_spread([r[g] for r in seeds]) for g in GROUPS},
                "by_length": {n: _accuracy_spread([r["by_length"][str(n)] for r in seeds if str(n) in r["by_length"]])
                              for n in lengths},
                "by_cell": {c: statistics.fmean(r["by_cell"][c]["accuracy"] for r in seeds if c in r["by_cell"])
                            for c in cells},
                "n_params": seeds[0]["n_params"],
                "n_trainable": seeds[0].get("n_trainable", seeds[0]["n_params"]),
                "train_seconds": spread(r["train_seconds"] for r in seeds),
                "perplexity": _optional_spread([r["perplexity"] for r in seeds]),
                "token_accuracy": _optional_spread([r["token_accuracy"] for r in seeds]),
                "bleu": _optional_spread([t.get("bleu") for t in thought]),
                "rouge_l": _optional_spread([t.get("rouge_l") for t in thought]),
                "thought_match": _optional_spread([(r["thought_match"] or {}).get("accuracy") for r in seeds]),
            }
    return out


def learning_curves(folder: str | Path, rows: Iterable[dict], by: str = "arm") -> dict[str, dict[int, dict]]:
    """``{variant: {step: spread}}`` of the validation cross-entropy over the seeds of each variant
    (``by``: the row key naming it), read back from each run's ``metrics.jsonl`` in ``folder``:
    ``eval_ce_loss`` where the training loss had more terms (distillation), else ``eval_loss``."""
    from mathkit.training.ablation import validation_ce_series

    per_step: dict[str, dict[int, list[float]]] = {}
    for row in rows:
        for step, value in validation_ce_series(Path(folder) / row["run_id"] / "metrics.jsonl"):
            per_step.setdefault(row[by], {}).setdefault(step, []).append(value)
    return {name: {step: spread(values) for step, values in sorted(steps.items())}
            for name, steps in per_step.items()}


def _rank_key(numbers: dict) -> tuple[float, float, float]:
    return (numbers["at_2n"]["mean"], numbers["beyond"]["mean"], numbers["in_distribution"]["mean"])


def ranking(by_pe: Mapping[str, dict]) -> list[str]:
    """Encodings best first: by mean exact match at 2N, then beyond N, then in distribution."""
    return sorted(by_pe, key=lambda pe: _rank_key(by_pe[pe]), reverse=True)


def best_run(agg: Mapping[str, Mapping[str, dict]]) -> tuple[str, str]:
    """``(format, encoding)`` ranked first over the whole grid (see :func:`ranking`)."""
    pairs = [(fmt, pe) for fmt, by_pe in agg.items() for pe in by_pe]
    return max(pairs, key=lambda p: _rank_key(agg[p[0]][p[1]]))


def _headline_value(numbers: dict) -> dict:
    return {"value": numbers["mean"], "n": numbers["n"], "min": numbers["min"], "max": numbers["max"],
            "std": numbers["std"], "n_seeds": numbers["n_seeds"]}


def headline(agg: Mapping[str, Mapping[str, dict]]) -> dict:
    """results.json's headline: the best (format, encoding), and per format and encoding the mean
    exact match over seeds in distribution and at 2N (with min, max, std and n per seed)."""
    fmt, pe = best_run(agg)
    return {
        "best_positional_encoding": pe,
        "best_format": fmt,
        "exact_match_in_distribution": {f: {p: _headline_value(n["in_distribution"]) for p, n in by_pe.items()}
                                        for f, by_pe in agg.items()},
        "exact_match_at_2n": {f: {p: _headline_value(n["at_2n"]) for p, n in by_pe.items()}
                              for f, by_pe in agg.items()},
    }


def spread_text(numbers: dict) -> str:
    """``41.20% (seeds 38.00-45.10%, n=300 each)`` or ``41.20% (n=300)`` for one seed."""
    n = numbers.get("n")
    if numbers["n_seeds"] == 1:
        return f"{percent(numbers['mean'])}%" + (f" (n={n})" if n is not None else "")
    each = f", n={n} each" if n is not None else ""
    return (f"{percent(numbers['mean'])}% (mean of {numbers['n_seeds']} seeds, "
            f"{percent(numbers['min'])}-{percent(numbers['max'])}%{each})")


def ranges_overlap(a: dict, b: dict) -> bool:
    """Whether the seeds' ranges (lowest to highest) of two spreads share any value."""
    return a["min"] <= b["max"] and b["min"] <= a["max"]


def longest_learned_length(numbers: dict, threshold: float = 0.5) -> int | None:
    """The longest operand length up to which every length's mean exact match is >= ``threshold``."""
    longest = None
    for n, s in sorted(numbers["by_length"].items()):
        if s["mean"] < threshold:
            break
        longest = n
    return longest


def format_sentence(fmt: str, by_pe: Mapping[str, dict]) -> str:
    """Best and worst encoding of one format at 2N, and whether the seeds separate the best from
    the runner-up."""
    order = ranking(by_pe)
    best, worst = order[0], order[-1]
    n2 = 2 * by_pe[best]["max_digits"]
    text = (f"In the {fmt} format, exact match at {n2}-digit operands (twice the training length) is "
            f"highest for {best}: {spread_text(by_pe[best]['at_2n'])}")
    if len(order) == 1:
        return text + "."
    text += f"; lowest for {worst}: {spread_text(by_pe[worst]['at_2n'])}"
    second = order[1]
    a, b = by_pe[best]["at_2n"], by_pe[second]["at_2n"]
    if a["mean"] == b["mean"]:
        return text + f". {best} and {second} tie there."
    if a["n_seeds"] > 1 and ranges_overlap(a, b):
        return text + f". The seeds of {best} and of the runner-up {second} overlap, so these seeds do not separate them."
    return text + f". The runner-up is {second} ({spread_text(b)})."


def learned_sentence(agg: Mapping[str, Mapping[str, dict]]) -> str:
    """How many (format, encoding) pairs learn the training range, and the weakest one."""
    pairs = [(fmt, pe, n["in_distribution"]) for fmt, by_pe in agg.items() for pe, n in by_pe.items()]
    learned = sum(s["mean"] >= LEARNED for _, _, s in pairs)
    fmt, pe, weakest = min(pairs, key=lambda p: p[2]["mean"])
    digits = next(iter(next(iter(agg.values())).values()))["max_digits"]
    return (f"In the training range (operands of 1-{digits} digits), {learned} of {len(pairs)} "
            f"format/encoding pairs reach a mean exact match of {percent(LEARNED)}% or more; the lowest is "
            f"{pe} in the {fmt} format, {spread_text(weakest)}.")


def generalization_sentence(agg: Mapping[str, Mapping[str, dict]]) -> str:
    """How far the best pair extrapolates: the longest operand length it still gets half right."""
    fmt, pe = best_run(agg)
    numbers = agg[fmt][pe]
    digits = numbers["max_digits"]
    longest = longest_learned_length(numbers)
    beyond = spread_text(numbers["beyond"])
    if longest is None or longest <= digits:
        reach = "it falls below 50% at the first length beyond training"
    elif longest >= 2 * digits:
        reach = f"it stays at 50% or more up to {2 * digits} digits, the longest tested"
    else:
        reach = f"it stays at 50% or more up to {longest}-digit operands and falls below after"
    return (f"The best pair, {pe} in the {fmt} format, gets {beyond} of the test additions longer than "
            f"{digits} digits; {reach}.")


def cost_sentence(agg: Mapping[str, Mapping[str, dict]]) -> str:
    """Parameters and training time across the grid (the budget in steps is the same for all)."""
    pairs = [(fmt, pe, n) for fmt, by_pe in agg.items() for pe, n in by_pe.items()]
    params = {pe: n["n_params"] for _, pe, n in pairs}
    low, high = min(params, key=params.get), max(params, key=params.get)
    seconds = [n["train_seconds"]["mean"] for _, _, n in pairs]
    size = (f"every model has {params[low]:,} parameters" if params[low] == params[high] else
            f"models have {params[low]:,} ({low}) to {params[high]:,} ({high}) parameters")
    # always "from .. to ..": the sentence keeps its words whatever the timings (nbval compares it)
    took = f"{duration_text(min(seconds))} to {duration_text(max(seconds))}"
    return f"At the same number of steps, {size}; a run trained for {took} (mean over seeds)."


def duration_text(seconds: float) -> str:
    """``42 s`` under a minute, ``3.5 min`` above."""
    return f"{seconds:.0f} s" if seconds < 60 else f"{seconds / 60:.1f} min"


def conclusion_sentences(agg: Mapping[str, Mapping[str, dict]]) -> list[str]:
    """The report's conclusion, written from :func:`aggregate`'s numbers."""
    if not agg:
        raise DataError("no finished runs: nothing to conclude")
    return ([learned_sentence(agg)] + [format_sentence(fmt, by_pe) for fmt, by_pe in agg.items()]
            + [generalization_sentence(agg), cost_sentence(agg)])
