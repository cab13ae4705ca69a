"""Statistics for accuracies and per-token rates measured on a fixed set of problems or documents."""

from __future__ import annotations

import math
from fractions import Fraction
from statistics import NormalDist

Z95 = NormalDist().inv_cdf(0.975)


def accuracy_ci(correct: int, n: int) -> tuple[float, float]:
    """Wilson score 95% interval for `correct` successes out of `n`.

    Wilson rather than the normal approximation because accuracies near 0 or 1 on a few hundred
    problems are common here, and the normal interval leaves [0, 1] or collapses to a point there.
    """
    if n <= 0 or not 0 <= correct <= n:
        raise ValueError(f"need 0 <= correct <= n and n > 0, got correct={correct}, n={n}")
    p = correct / n
    z2 = Z95 * Z95
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = Z95 / (1 + z2 / n) * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value from the discordant counts b and c.

    Under the null each discordant problem is equally likely to favour either run, so
    min(b, c) is Binomial(b + c, 1/2); the two-sided p doubles its lower tail (capped at 1).
    """
    n = b + c
    tail = Fraction(sum(math.comb(n, k) for k in range(min(b, c) + 1)), 2**n)
    return float(min(Fraction(1), 2 * tail))


def bootstrap_ratio_ci(numerators: list[float], denominators: list[float], resamples: int = 2000,
                       seed: int = 0) -> tuple[float, float]:
    """Percentile 95% interval of sum(numerators) / sum(denominators) when whole units (documents)
    are resampled with replacement: the right interval for a per-token rate whose tokens come in
    documents, where tokens of one document are not independent draws."""
    import numpy as np

    numerators, denominators = np.asarray(numerators, dtype=float), np.asarray(denominators, dtype=float)
    if len(numerators) != len(denominators) or len(numerators) == 0 or denominators.sum() <= 0:
        raise ValueError("need one numerator and one positive-sum denominator per unit, and at least one unit")
    picks = np.random.default_rng(seed).integers(0, len(numerators), size=(resamples, len(numerators)))
    ratios = numerators[picks].sum(axis=1) / denominators[picks].sum(axis=1)
    low, high = np.percentile(ratios, [2.5, 97.5])
    return float(low), float(high)
