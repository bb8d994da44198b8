"""Distillation arms against the student trained from scratch, in sentences and a headline.

Every arm trains the same student shape from the same seeded initialisation on the same data, so
seed ``s`` of an arm and seed ``s`` of the from-scratch arm form a pair: the per-seed differences
say more than two overlapping ranges. Numbers come from
:func:`mathkit.reporting.ablation_summary.aggregate` with ``by="arm"``.
"""

from __future__ import annotations

from collections.abc import Mapping

from mathkit.reporting.ablation_summary import GROUPS, ranges_overlap, spread_text
from mathkit.reporting.conclusion import percent

GROUP_WORDS = {"in_distribution": "in distribution", "beyond": "beyond the trained lengths", "at_2n": "at 2N"}


def seed_differences(arm: dict, baseline: dict, group: str = "in_distribution") -> list[float]:
    """Per shared seed, the arm's exact match minus the baseline's (same seed: same initialisation)."""
    base = dict(zip(baseline["seeds"], baseline[group]["per_seed"]))
    return [value - base[seed] for seed, value in zip(arm["seeds"], arm[group]["per_seed"]) if seed in base]


def versus_sentence(name: str, arm: dict, base_name: str, baseline: dict, group: str = "in_distribution") -> str:
    """``kd_forward`` against ``scratch`` on one group: both spreads, the paired seed differences,
    and whether the seed ranges are apart."""
    diffs = seed_differences(arm, baseline, group)
    wins = sum(d > 0 for d in diffs)
    apart = not ranges_overlap(arm[group], baseline[group])
    verdict = ("beats" if arm[group]["mean"] > baseline[group]["mean"] else "does not beat")
    strength = ("with seed ranges apart" if apart else "but the seed ranges overlap") if verdict == "beats" else ""
    paired = (f"; per seed it is ahead in {wins} of {len(diffs)} (differences "
              f"{', '.join(f'{100 * d:+.1f}' for d in diffs)} points)") if diffs else ""
    return (f"**{name}** {verdict} **{base_name}** {GROUP_WORDS[group]}{' ' + strength if strength else ''}: "
            f"{spread_text(arm[group])} against {spread_text(baseline[group])}{paired}.")


def best_single_teacher_arm(agg: Mapping[str, dict], arms: Mapping[str, dict]) -> str | None:
    """The arm with one teacher and the highest mean in distribution, or None."""
    single = [a for a in agg if len(arms[a].get("teachers", [])) == 1]
    return max(single, key=lambda a: agg[a]["in_distribution"]["mean"]) if single else None


def distillation_headline(agg: Mapping[str, dict], arms: Mapping[str, dict], baseline: str | None) -> dict:
    """results.json's headline: per arm the mean exact match over seeds per group (with min, max,
    std, n per seed), the best arm, and each distilled arm's paired seed differences to the
    from-scratch arm."""
    def value(numbers: dict) -> dict:
        return {"value": numbers["mean"], "n": numbers["n"], "min": numbers["min"], "max": numbers["max"],
                "std": numbers["std"], "n_seeds": numbers["n_seeds"]}

    out = {g: {a: value(n[g]) for a, n in agg.items()} for g in GROUPS}
    out["best_arm"] = max(agg, key=lambda a: (agg[a]["in_distribution"]["mean"], agg[a]["beyond"]["mean"]))
    if baseline in agg:
        out["baseline_arm"] = baseline
        out["vs_baseline_in_distribution"] = {a: seed_differences(agg[a], agg[baseline]) for a in agg
                                              if a != baseline and arms[a].get("teachers")}
    return out


def kd_weight_text(distillation: dict) -> str:
    """How much the KD term weighs against the labels' cross-entropy: ``kd_weight x T^2`` (the
    KL is scaled by the temperature's square) against ``ce_weight``."""
    if distillation.get("kd", "none") == "none":
        return "no KD term"
    weight = distillation["kd_weight"] * distillation["temperature"] ** 2
    return f"KD {weight:g} (T={distillation['temperature']:g}) : labels {distillation['ce_weight']:g}"


def fit_sentence(agg: Mapping[str, dict], arms: Mapping[str, dict], baseline: str) -> str | None:
    """Why distilled arms fall behind, where the numbers say it: their validation perplexity on the
    labels against the baseline's, with the weight their loss gave the KD term."""
    base = agg[baseline].get("perplexity")
    distilled = [a for a in agg if arms[a].get("teachers") and agg[a].get("perplexity")]
    if not base or not distilled:
        return None
    behind = [a for a in distilled
              if agg[a]["in_distribution"]["mean"] < agg[baseline]["in_distribution"]["mean"]]
    worse = [a for a in behind if agg[a]["perplexity"]["mean"] > base["mean"]]
    if not worse:
        return None
    parts = "; ".join(f"{a} {agg[a]['perplexity']['mean']:.3f} ({kd_weight_text(arms[a].get('distillation') or {})})"
                      for a in worse)
    return (f"The arms behind also fit the labels worse: validation perplexity {parts}, against "
            f"{base['mean']:.3f} for {baseline}. At equal steps their loss spends part of each update on "
            f"matching the teachers' softened distributions rather than the labels.")


def distillation_sentences(agg: Mapping[str, dict], arms: Mapping[str, dict], baseline: str | None,
                           teacher_numbers: Mapping[str, dict]) -> list[str]:
    """The conclusion: teachers, every distilled arm against the baseline, multi-teacher against
    the best single-teacher arm, and whether the target (a distilled student beating the
    from-scratch one at equal steps) is met."""
    lines = [f"Teacher **{t}**: {percent(n['in_distribution']['accuracy'])}% in distribution "
             f"(n={n['in_distribution']['n']}), {percent(n['beyond']['accuracy'])}% beyond (n={n['beyond']['n']})."
             for t, n in teacher_numbers.items()]
    distilled = [a for a in agg if arms[a].get("teachers")]
    if baseline in agg:
        lines += [versus_sentence(a, agg[a], baseline, agg[baseline]) for a in distilled]
    best_single = best_single_teacher_arm(agg, arms)
    for a in distilled:
        if len(arms[a]["teachers"]) > 1 and best_single:
            lines.append("Several teachers: " + versus_sentence(a, agg[a], best_single, agg[best_single]))
    if baseline in agg and distilled:
        winners = [a for a in distilled if agg[a]["in_distribution"]["mean"] > agg[baseline]["in_distribution"]["mean"]
                   and not ranges_overlap(agg[a]["in_distribution"], agg[baseline]["in_distribution"])]
        lines.append(f"Target (a distilled student beats the from-scratch one at equal steps, seed ranges apart): "
                     f"{'met by ' + ', '.join(winners) if winners else 'not met in this run'}.")
        fit = fit_sentence(agg, arms, baseline) if not winners else None
        if fit:
            lines.append(fit)
    return lines
