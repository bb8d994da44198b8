"""Metrics with their uncertainty: every accuracy is reported with n and a 95% interval."""

from __future__ import annotations

import math


def wilson_interval(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """95% Wilson score interval for a binomial proportion.

    Used instead of the normal approximation because it stays inside [0, 1] and is honest near
    0% and 100%, which is exactly where small models (2/100) and arithmetic models (99.9%) sit.
    """
    if n <= 0:
        return (0.0, 0.0)
    if not 0 <= successes <= n:
        raise ValueError(f"successes={successes} must lie between 0 and n={n}")
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def accuracy_summary(correct: list[bool] | list[int]) -> dict:
    """``{"accuracy", "n", "correct", "ci95": [lo, hi]}`` for a list of per-example outcomes."""
    n = len(correct)
    k = int(sum(bool(c) for c in correct))
    lo, hi = wilson_interval(k, n)
    return {"accuracy": k / n if n else 0.0, "n": n, "correct": k, "ci95": [lo, hi]}
