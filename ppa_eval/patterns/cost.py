"""Equal-cost comparisons: choose one family's free parameter so that its attended pairs at length L
come as close as possible to a target (another pattern's pairs).

Free parameters: PPA's p (an exact fraction), window's w, PowerAttention's window (in blocks).
pairs(L) grows with each of them (for p up to floor effects of a few pairs), so the search is a
bisection: on integers for w and window, and down the Stern-Brocot tree for p, which visits the
simplest fractions first and so returns p = 2/5 rather than 0.40000057 when both cost the same.
"""

from __future__ import annotations

from fractions import Fraction

from ppa_eval.patterns.base import BlockPattern, PatternError, pairs
from ppa_eval.patterns.spec import build, split_spec

FREE_PARAMETER = {"ppa": "p", "window": "w", "powerattention": "window"}
MAX_DENOMINATOR = 1000  # p to three significant digits: finer steps change pairs by less than rounding noise


def match_cost(text: str, target: int, length: int) -> BlockPattern:
    """The pattern `text` names, its free parameter (left out of `text`) chosen so that its pairs at
    `length` are nearest `target` (ties: the simpler value)."""
    family, params = split_spec(text)
    if family not in FREE_PARAMETER:
        raise PatternError(f"{family} has no parameter to match a cost with; use ppa, window or powerattention")
    free = FREE_PARAMETER[family]
    if free in params:
        raise PatternError(f"--match-cost chooses {family}'s {free}; drop {free}={params[free]} from {text!r}")

    def with_value(value) -> BlockPattern:
        return build(family, params | {free: value})

    def cost(value) -> int:
        return pairs(with_value(value), length)

    if free == "p":
        return with_value(_nearest_fraction(cost, target))
    if free == "w":
        return with_value(_nearest_integer(cost, target, 0, length))
    blocks = (length - 1) // with_value(1).block + 1  # a wider window attends nothing new
    return with_value(_nearest_integer(cost, target, 1, blocks))


def _nearest_integer(cost, target: int, lo: int, hi: int) -> int:
    """The v in [lo, hi] whose non-decreasing cost(v) is nearest target (ties: the smaller v)."""
    first, last = lo, hi
    while lo < hi:  # the smallest v with cost(v) >= target, or hi
        mid = (lo + hi) // 2
        if cost(mid) >= target:
            hi = mid
        else:
            lo = mid + 1
    candidates = [v for v in (lo - 1, lo) if first <= v <= last]
    return min(candidates, key=lambda v: (abs(cost(v) - target), v))


def _nearest_fraction(cost, target: int) -> Fraction:
    """The p in [0, 1] with denominator <= MAX_DENOMINATOR nearest in cost, searched down the
    Stern-Brocot tree between 0/1 and 1/1 (ties: the smaller denominator, visited first)."""
    lo, hi = Fraction(0), Fraction(1)
    best, best_gap = min(((p, abs(cost(p) - target)) for p in (lo, hi)), key=lambda pg: pg[1])
    while best_gap:
        mid = Fraction(lo.numerator + hi.numerator, lo.denominator + hi.denominator)
        if mid.denominator > MAX_DENOMINATOR:
            break
        spent = cost(mid)
        if abs(spent - target) < best_gap:
            best, best_gap = mid, abs(spent - target)
        lo, hi = (mid, hi) if spent < target else (lo, mid)
    return best
