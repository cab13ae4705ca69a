"""Equal-cost comparisons: choose one family's free parameter so that its attended pairs at length L
come as close as possible to a target (another pattern's pairs).

The free parameter is the knob a spelling declares (base.Knob): PPA's p (an exact fraction),
window's w, PowerAttention's window (in blocks). pairs(L) grows with each of them (for p up to
floor effects of a few pairs), so the search is a bisection: on whole numbers, and down the
Stern-Brocot tree for fractions, which visits the simplest ones first and so returns p = 2/5
rather than 0.40000057 when both cost the same.
"""

from __future__ import annotations

from fractions import Fraction

from ppa_eval.patterns.base import BlockPattern, PatternError, pairs
from ppa_eval.patterns.families import spellings
from ppa_eval.patterns.spec import build, split_spec

MAX_DENOMINATOR = 1000  # p to three significant digits: finer steps change pairs by less than rounding noise


def match_cost(text: str, target: int, length: int) -> BlockPattern:
    """The pattern `text` names, its free parameter (left out of `text`) chosen so that its pairs at
    `length` are nearest `target` (ties: the simpler value)."""
    spelling, params = split_spec(text)
    knob = spelling.knob
    if knob is None:
        tunable = ", ".join(name for name, other in spellings().items() if other.knob)
        raise PatternError(f"{spelling.name} has no parameter to match a cost with; use {tunable}")
    if knob.key in params:
        raise PatternError(f"--match-cost chooses {spelling.name}'s {knob.key}; drop {knob.key}={params[knob.key]} "
                           f"from {text!r}")

    def with_value(value) -> BlockPattern:
        return build(spelling, params | {knob.key: value})

    def cost(value) -> int:
        return pairs(with_value(value), length)

    if knob.minimum is None:
        return with_value(_nearest_fraction(cost, target))
    blocks = (length - 1) // with_value(knob.minimum).block + 1  # a wider window attends nothing new
    return with_value(_nearest_integer(cost, target, knob.minimum, blocks))


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
