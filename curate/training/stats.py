"""Seed statistics for ablations: a mean with its t-distribution confidence interval, and
paired differences (same seed, arm minus control).

With a handful of seeds the normal approximation is too narrow; Student's t with n - 1 degrees
of freedom is the honest interval. One seed has no interval (``low``/``high`` are None).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any


def t_quantile(p: float, df: int) -> float:
    from scipy.stats import t

    return float(t.ppf(p, df))


def mean_ci(values: Sequence[float], level: float = 0.95) -> dict[str, Any]:
    """Mean, sample standard deviation and the two-sided ``level`` interval of the mean."""
    n = len(values)
    if n == 0:
        return {"n": 0, "mean": None, "sd": None, "low": None, "high": None, "half_width": None}
    mean = sum(values) / n
    if n == 1:
        return {"n": 1, "mean": mean, "sd": None, "low": None, "high": None, "half_width": None}
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = t_quantile(0.5 + level / 2, n - 1) * sd / math.sqrt(n)
    return {"n": n, "mean": mean, "sd": sd, "low": mean - half, "high": mean + half, "half_width": half}


def paired_difference(arm: dict[int, float], control: dict[int, float], level: float = 0.95) -> dict[str, Any]:
    """``arm - control`` over the seeds both have, with its interval; ``seeds`` lists them."""
    seeds = sorted(set(arm) & set(control))
    summary = mean_ci([arm[s] - control[s] for s in seeds], level)
    summary["seeds"] = seeds
    return summary
