"""What patterns cost: equal-cost comparisons (match_cost), and a model's attention FLOPs per
generated token and cache bytes per sequence under a pattern (decode_flops, cache_bytes), which
`ppa-eval cost` prints and every run's metrics record.

Equal cost: choose one family's free parameter so that its attended pairs at length L
come as close as possible to a target (another pattern's pairs).

The free parameter is the knob a spelling declares (base.Knob): PPA's p (an exact fraction),
window's w, PowerAttention's window (in blocks). pairs(L) grows with each of them (for p up to
floor effects of a few pairs), so the search is a bisection: on whole numbers, and down the
Stern-Brocot tree for fractions, which visits the simplest ones first and so returns p = 2/5
rather than 0.40000057 when both cost the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from ppa_eval.patterns.base import BlockPattern, PatternError, keys_per_query, pairs
from ppa_eval.patterns.families import spellings
from ppa_eval.patterns.retention import PowerRetention
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


# --- what a pattern costs a model: attention FLOPs per generated token, cache bytes per sequence -----


VALUE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}  # a cached value, by dtype name


@dataclass(frozen=True)
class AttentionShape:
    """What attention costs depend on, per model: its layers of attention, query and KV heads, head
    size, and the bytes of one cached value (2 for bfloat16)."""
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    value_bytes: int = 2


def decode_flops(pattern: BlockPattern, shape: AttentionShape, length: int) -> int:
    """Attention FLOPs of one generated token whose context is `length` tokens, all layers: scores
    and the weighted sum of values, a multiply-add (2 FLOPs) per head size per attended key each,
    4·keys·d per query head, exact from the pattern (projections and MLPs are the same for every
    pattern and left out). Retention: its own count (retention.py)."""
    if isinstance(pattern, PowerRetention):
        return pattern.decode_flops(shape, length)
    keys = int(keys_per_query(pattern, length)[-1])
    return shape.layers * shape.heads * 4 * shape.head_dim * keys


def cache_bytes(pattern: BlockPattern, shape: AttentionShape, length: int) -> int:
    """Bytes a sequence of `length` tokens keeps for decoding, all layers: K and V of every token a
    later query may still attend (cached_tokens), or retention's state and tail (retention.py)."""
    if isinstance(pattern, PowerRetention):
        return pattern.cache_bytes(shape, length)
    return shape.layers * shape.kv_heads * 2 * shape.head_dim * shape.value_bytes * cached_tokens(pattern, length)


def cached_tokens(pattern: BlockPattern, length: int) -> int:
    """Tokens of a `length`-token sequence that some later query can still attend: all of them
    where the pattern's distances reach without bound (PPA with p > 0: j^(1/p) for every j;
    PowerAttention: every power of two); a window keeps only its blocks and the sinks."""
    blocks = (length - 1) // pattern.block + 1
    table = pattern.distance_table(2 * blocks + 1)
    if table[blocks:].any():
        return length
    reach = int(np.flatnonzero(table).max()) + 1 if table.any() else 0  # blocks back, the query's own included
    return min(length, (reach + pattern.sink) * pattern.block)


def run_cost(pattern: BlockPattern, shape: AttentionShape, samples: list[dict]) -> dict:
    """metrics.json's cost entries of a task: decode_flops and cache_bytes at the task's mean
    sequence length (prompt and completion tokens)."""
    length = max(1, round(sum(s["prompt_tokens"] + s["completion_tokens"] for s in samples) / len(samples)))
    return {"cost_length": length, "attention_flops_per_token": decode_flops(pattern, shape, length),
            "cache_bytes": cache_bytes(pattern, shape, length)}
