"""Confidence intervals for rates across groups: Wilson for one rate, Newcombe for the gap between
groups, simultaneous Wilson bounds for their ratio, and a seeded bootstrap for everything else.

Why these: a group's rate is a binomial proportion, and Wilson's score interval keeps its coverage
for small groups and for rates near 0 or 1, where the textbook (Wald) interval collapses to a
point and raises exactly the false alarms a fairness monitor must not raise. The gap between two
groups is a difference of independent proportions; Newcombe's hybrid score interval (his method
10, 1998) combines the two Wilson intervals and keeps close to nominal coverage at every sample
size, while staying closed-form — no resampling on the data path.

Across ``k > 2`` groups the fairness gap is the range ``max - min`` of the rates, and the groups
at its ends were *selected* because they are extreme. :func:`range_interval` therefore takes the
Newcombe interval of every pair at the Bonferroni level ``1 - alpha / (k (k - 1) / 2)``: when all
pairwise intervals hold (probability at least ``1 - alpha``), the range is at least the largest
pairwise lower bound and at most the largest pairwise upper bound. For two groups it is Newcombe's
interval exactly.

>>> lo, hi = wilson(np.array([8]), np.array([10]), 0.95)
>>> round(float(lo[0]), 4), round(float(hi[0]), 4)
(0.4902, 0.9433)
>>> lo, hi = newcombe(56, 70, 48, 80, 0.95)      # Newcombe's (1998) worked example
>>> round(lo, 4), round(hi, 4)
(0.0524, 0.3339)
>>> range_interval(np.array([56, 48]), np.array([70, 80]), 0.95) == (lo, hi)
True
"""

from __future__ import annotations

import numpy as np


def z_value(confidence: float) -> float:
    """The two-sided standard normal quantile of ``confidence`` (1.96 for 0.95)."""
    from scipy.special import ndtri

    return float(ndtri(0.5 + confidence / 2))


def wilson(successes: np.ndarray, n: np.ndarray, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval of ``successes / n``, elementwise; ``n == 0`` gives ``[0, 1]``."""
    x = np.asarray(successes, dtype=np.float64)
    n = np.asarray(n, dtype=np.float64)
    z = z_value(confidence)
    safe = np.where(n > 0, n, 1.0)
    p = x / safe
    denom = 1 + z * z / safe
    centre = (p + z * z / (2 * safe)) / denom
    half = z / denom * np.sqrt(p * (1 - p) / safe + z * z / (4 * safe * safe))
    lo = np.where(n > 0, np.clip(centre - half, 0.0, 1.0), 0.0)
    hi = np.where(n > 0, np.clip(centre + half, 0.0, 1.0), 1.0)
    # At p = 0 or 1 the bound equals the estimate; remove rounding noise there.
    lo = np.where((n > 0) & (x == 0), 0.0, lo)
    hi = np.where((n > 0) & (x == n), 1.0, hi)
    return lo, hi


def newcombe(x1: float, n1: float, x2: float, n2: float, confidence: float) -> tuple[float, float]:
    """Newcombe's hybrid score interval of ``x1/n1 - x2/n2`` (independent proportions)."""
    lo, hi = _newcombe(np.array([x1]), np.array([n1]), np.array([x2]), np.array([n2]), confidence)
    return float(lo[0]), float(hi[0])


def _newcombe(
    x1: np.ndarray, n1: np.ndarray, x2: np.ndarray, n2: np.ndarray, confidence: float
) -> tuple[np.ndarray, np.ndarray]:
    p1, p2 = x1 / n1, x2 / n2
    l1, u1 = wilson(x1, n1, confidence)
    l2, u2 = wilson(x2, n2, confidence)
    d = p1 - p2
    lo = d - np.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)
    hi = d + np.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)
    return np.clip(lo, -1.0, 1.0), np.clip(hi, -1.0, 1.0)


def range_interval(successes: np.ndarray, n: np.ndarray, confidence: float) -> tuple[float, float]:
    """An interval for ``max(rate) - min(rate)``: pairwise Newcombe, Bonferroni over the pairs.

    Every ``n`` must be positive; fewer than two groups give the uninformative ``(0, 1)``.
    """
    k = len(n)
    if k < 2:
        return 0.0, 1.0
    i, j = np.triu_indices(k, 1)
    level = 1 - (1 - confidence) / len(i)
    x, m = np.asarray(successes, float), np.asarray(n, float)
    lo, hi = _newcombe(x[i], m[i], x[j], m[j], level)
    # The interval of p_j - p_i is the mirror image of that of p_i - p_j.
    lower = float(np.max(np.maximum(lo, -hi)))
    upper = float(np.max(np.maximum(hi, -lo)))
    return max(0.0, lower), max(0.0, upper)


def ratio_interval(successes: np.ndarray, n: np.ndarray, confidence: float) -> tuple[float, float]:
    """An interval for ``min(rate) / max(rate)``: Wilson bounds that hold for all ``k`` groups at
    once (Bonferroni), so ``min L / max U <= ratio <= min U / max L``. Conservative but valid."""
    k = len(n)
    if k < 2:
        return 0.0, 1.0
    lo, hi = wilson(successes, n, 1 - (1 - confidence) / k)
    lower = float(lo.min() / hi.max()) if hi.max() > 0 else 0.0
    upper = float(min(1.0, hi.min() / lo.max())) if lo.max() > 0 else 1.0
    return lower, upper


def ratio(rates: np.ndarray) -> float:
    """``min / max`` of the rates; 1.0 when all are 0 (no group is favoured; Fairlearn: NaN)."""
    top = float(np.max(rates))
    return float(np.min(rates)) / top if top > 0 else 1.0


def percentile(replicates: np.ndarray, confidence: float) -> tuple[float, float]:
    """The percentile bootstrap interval of 1-d ``replicates`` (NaNs ignored)."""
    alpha = 1 - confidence
    finite = replicates[np.isfinite(replicates)]
    if len(finite) == 0:
        return 0.0, 1.0
    lo, hi = np.quantile(finite, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)
