"""Tables and sentences of notebook 05's language-model experiment: a teacher and its layer-subset
students (cross-entropy only vs distilled), compared on the same problems and held-out solutions.

Each model is a mapping ``{"parameters", "evals": {group: EvalResult}, "perplexity": perplexity()'s
dict}``. Accuracies are paired per problem (:func:`mathkit.reporting.comparison.group_row`);
perplexities per held-out solution (each solution's mean token loss under both students, an exact
sign test on which is lower).
"""

from __future__ import annotations

from collections.abc import Mapping

from mathkit.evaluation.metrics import mcnemar_exact
from mathkit.reporting.conclusion import accuracy_text

BYTES_FP32 = 4


def generation_speed(evals: Mapping[str, object]) -> float:
    """New tokens per second of generation over all of a model's groups (the same batches for every model)."""
    tokens = sum(e.summary["new_tokens"] for e in evals.values())
    seconds = sum(e.summary["generation_seconds"] for e in evals.values())
    return tokens / seconds if seconds else 0.0


def model_rows(models: Mapping[str, Mapping], teacher: str) -> list[dict]:
    """One row per model: parameters, fp32 size, held-out perplexity, accuracy per group, and
    generation speed, each also relative to the teacher."""
    t = models[teacher]
    t_speed = generation_speed(t["evals"])
    rows = []
    for name, m in models.items():
        speed = generation_speed(m["evals"])
        rows.append({"model": name, "parameters": m["parameters"],
                     "size MiB (fp32)": round(m["parameters"] * BYTES_FP32 / 2 ** 20, 1),
                     "size vs teacher": round(m["parameters"] / t["parameters"], 3),
                     "held-out perplexity": round(m["perplexity"]["perplexity"], 3),
                     **{g: accuracy_text(e.summary) for g, e in m["evals"].items()},
                     "generation tokens/s": round(speed, 1),
                     "speed vs teacher": round(speed / t_speed, 2) if t_speed else None})
    return rows


def paired_losses(a: Mapping, b: Mapping) -> dict:
    """Per held-out solution, which of two models gives it the lower mean token loss: counts and
    the exact two-sided sign test (ties left out)."""
    pairs = [(x, y) for x, y in zip(a["per_text_loss"], b["per_text_loss"]) if x is not None and y is not None]
    a_lower = sum(x < y for x, y in pairs)
    b_lower = sum(y < x for x, y in pairs)
    return {"n": len(pairs), "a_lower": a_lower, "b_lower": b_lower, "p": mcnemar_exact(a_lower, b_lower)}


def perplexity_sentence(kd_name: str, kd: Mapping, ce_name: str, ce: Mapping) -> str:
    """Whether the distilled student beats its cross-entropy twin on held-out perplexity (the target)."""
    pair = paired_losses(kd["perplexity"], ce["perplexity"])
    kd_ppl, ce_ppl = kd["perplexity"]["perplexity"], ce["perplexity"]["perplexity"]
    verdict = "beats" if kd_ppl < ce_ppl else "does not beat"
    strength = ("a difference the sign test supports" if pair["p"] < 0.05
                else "a difference the sign test cannot tell from chance")
    return (f"On held-out solutions, **{kd_name}** {verdict} **{ce_name}**: perplexity {kd_ppl:.3f} vs "
            f"{ce_ppl:.3f}; lower loss on {pair['a_lower']} of {pair['n']} solutions vs {pair['b_lower']} "
            f"(exact sign test p = {pair['p']:.3g}), {strength}.")


def accuracy_sentence(models: Mapping[str, Mapping], names: list[str]) -> str:
    """Each model's accuracy per group, in one sentence."""
    parts = []
    for name in names:
        groups = ", ".join(f"{g} {accuracy_text(e.summary)}" for g, e in models[name]["evals"].items())
        parts.append(f"{name}: {groups}")
    return "Accuracy (greedy, the same prompts and batches): " + "; ".join(parts) + "."


def cost_sentence(models: Mapping[str, Mapping], teacher: str, students: list[str]) -> str:
    """What the students save against the teacher: parameters and generation speed."""
    t = models[teacher]
    t_speed = generation_speed(t["evals"])
    parts = [f"{name} has {models[name]['parameters'] / t['parameters']:.0%} of the teacher's parameters and "
             f"generates at {generation_speed(models[name]['evals']) / t_speed:.2f}x its speed"
             for name in students] if t_speed else []
    return "; ".join(parts) + "." if parts else ""
