"""PPA, power-based partial attention, and its special cases (sliding window, full), computed exactly.

Query at position i, key at position k <= i, relative position j = i - k + 1 (j = 1 is the
query itself). Under power-based partial attention (Huang 2026) key k is attended iff

    j <= w   or   floor(j^p) - floor((j-1)^p) == 1,           0 <= p <= 1, w >= 0

or k < sink (sink tokens, optional). p = 0 is a sliding window of w tokens, p = 1 is full causal
attention. Apart from the sinks the attended set of j is the same for every query, so a pattern
is one table of distances, computed once per length and then looked up: nothing here evaluates a
float `pow` inside a mask function.

Why the power part is the set {ceil(n^(1/p)) : n >= 1}: floor(x^p) steps from n-1 to n exactly
at the first integer j with j^p >= n, i.e. j = ceil(n^(1/p)), and for p <= 1 it never steps by
more than one. So instead of flooring L powers we compute L^p roots, each in float64 and, where
float64 cannot decide, exactly in integers (p is a Fraction, so n^(1/p) = n^(b/a) compares
exactly as n^b against j^a).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from typing import ClassVar

import numpy as np

from ppa_eval.patterns.base import FLEX, SDPA, TRITON, BlockPattern, Knob, PatternError, Spelling, parse_count, sink_part

DEFAULT_WINDOW = 64  # tokens; every PPA variant in the paper was fine-tuned with w = 64

_DECIMAL = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
_FRACTION = re.compile(r"^[+-]?\d+\s*/\s*\d+$")


def parse_power(value: str | int | float | Fraction) -> Fraction:
    """The exact exponent a user typed: '0.75' is 3/4, '1/3' is 1/3, '0.3333' is 3333/10000.

    Floats are taken through their shortest decimal repr (0.1 -> 1/10), never their binary value.
    """
    if isinstance(value, Fraction):
        power = value
    elif isinstance(value, bool):
        raise PatternError(f"power must be a number, got {value!r}")
    elif isinstance(value, int):
        power = Fraction(value)
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise PatternError(f"power must be a finite number in [0, 1], got {value!r}")
        power = Fraction(repr(value))
    else:
        text = str(value).strip()
        if _FRACTION.match(text):
            num, den = (int(part) for part in text.split("/"))
            if den == 0:
                raise PatternError(f"power {text!r} divides by zero; write e.g. 3/4 or 0.75")
            power = Fraction(num, den)
        elif _DECIMAL.match(text):
            power = Fraction(text)
        else:
            raise PatternError(
                f"power {text!r} is not a number; write a decimal (0.75) or a fraction (1/3)"
            )
    if not 0 <= power <= 1:
        raise PatternError(f"power must be in [0, 1] (0 = sliding window, 1 = full attention), got {power}")
    return power


def parse_window(value: str | int) -> int:
    """A window of w >= 0 tokens (w = 0 leaves only the power part)."""
    return parse_count(value, "window", "tokens")


def format_power(power: Fraction) -> str:
    """'3/4' style for file names and configs; round-trips through parse_power."""
    return str(power)


def _ceil_root_power(n: int, num: int, den: int) -> int:
    """ceil(n^(den/num)) for integers n >= 1, 0 < num <= den, exactly."""
    guess = math.ceil(n ** (den / num))
    # ceil(x) == c  <=>  (c-1)^num < n^den <= c^num ; walk the float guess to the exact value.
    target = n**den
    c = max(guess, 1)
    while (c - 1) ** num >= target:
        c -= 1
    while c**num < target:
        c += 1
    return c


@lru_cache(maxsize=64)
def power_positions(power: Fraction, length: int) -> np.ndarray:
    """Sorted j in 1..length with floor(j^p) - floor((j-1)^p) == 1 (0**0 counts as 1)."""
    if length < 1:
        return np.zeros(0, dtype=np.int64)
    if power == 0:  # floor(j^0) is 1 for every j >= 1 and 0^0 = 1: it never steps
        return np.zeros(0, dtype=np.int64)
    if power == 1:
        return np.arange(1, length + 1, dtype=np.int64)
    num, den = power.numerator, power.denominator
    # n runs to floor(length^p) (+1 for float slack; values past length are dropped below).
    n = np.arange(1, int(length ** float(power)) + 2, dtype=np.float64)
    with np.errstate(over="ignore"):  # at small p the last root overflows; it is past length anyway
        roots = np.exp(np.log(n) * (den / num))
    roots = roots[roots < length + 1]
    positions = np.ceil(roots)
    # float64 decides ceil(x) unless x is within rounding distance of an integer (perfect
    # powers such as 8^(3/1) at p = 1/3 land exactly there); redo those in integers.
    near = np.abs(roots - np.rint(roots)) <= 1e-9 * np.maximum(roots, 1.0)
    for idx in np.flatnonzero(near):
        positions[idx] = _ceil_root_power(int(idx) + 1, num, den)
    positions = positions.astype(np.int64)
    return positions[positions <= length]


@dataclass(frozen=True)
class PowerPattern(BlockPattern):
    """PPA: a sliding window of `window` tokens united with the power positions of `power`, plus
    `sink` sink tokens (keys 0 .. sink-1, seen by every query).

    Its specs:
        ppa:p=3/4,w=64[,sink=S]   w defaults to 64, the paper's window; sink to 0
        window:w=W[,sink=S]       sliding window of W tokens = PPA with p = 0
        full                      full causal attention = PPA with p = 1, w = 0
    The canonical form prints sink only when nonzero, a PPA with p = 0 as window, and p = 1 with
    w = 0 and no sink as full.
    """

    power: Fraction
    window: int
    sink: int = 0
    block: ClassVar[int] = 1
    spellings = (
        Spelling("ppa", {"p": None, "w": DEFAULT_WINDOW, "sink": 0}, "ppa:p=3/4,w=64",
                 lambda p, w, sink: PowerPattern(p, w, sink), Knob("p")),
        Spelling("window", {"w": DEFAULT_WINDOW, "sink": 0}, "window:w=64",
                 lambda w, sink: PowerPattern(Fraction(0), w, sink), Knob("w", minimum=0)),
        Spelling("full", {}, "full", lambda: PowerPattern(Fraction(1), 0)),
    )
    kernels = frozenset({SDPA, FLEX, TRITON})

    def __post_init__(self):
        object.__setattr__(self, "power", parse_power(self.power))
        object.__setattr__(self, "window", parse_window(self.window))
        object.__setattr__(self, "sink", parse_count(self.sink, "sink", "tokens"))

    @property
    def is_full(self) -> bool:
        return self.power == 1

    def distance_table(self, length: int) -> np.ndarray:
        """Boolean table over distances d = q - kv = j - 1 in 0..length-1: True where attended
        (window or power positions; the sinks are not a distance)."""
        table = np.zeros(length, dtype=bool)
        table[: self.window] = True
        table[power_positions(self.power, length) - 1] = True
        return table

    def mask_parts(self, length: int, device=None) -> dict:
        import torch

        parts = {}
        if self.window:
            window = self.window

            def in_window(b, h, q_idx, kv_idx):
                return q_idx - kv_idx < window

            parts["window"] = in_window
        if self.power:
            # An exact table of power positions (no float pow in the mask), clamped because flex
            # evaluates mask functions on padding indices beyond the sequence.
            table = np.zeros(length, dtype=bool)
            table[power_positions(self.power, length) - 1] = True
            table = torch.as_tensor(table, device=device)
            last = length - 1

            def power_position(b, h, q_idx, kv_idx):
                return table[(q_idx - kv_idx).clamp(0, last)]

            parts["power"] = power_position
        return parts | sink_part(self.sink)

    def spec(self) -> str:
        sink = f",sink={self.sink}" if self.sink else ""
        if self.power == 0:
            return f"window:w={self.window}{sink}"
        if self.power == 1 and self.window == 0 and not self.sink:
            return "full"
        return f"ppa:p={format_power(self.power)},w={self.window}{sink}"

    def run_name(self) -> str:
        """Sink-free PPA keeps the name runs have always had, `p3-4_w64` (results/ holds such runs)."""
        if self.sink:
            return super().run_name()
        return f"p{format_power(self.power).replace('/', '-')}_w{self.window}"

    def sort_key(self) -> tuple:
        return (self.power, self.window, self.sink)

    def fields(self) -> dict:
        """p and w, which the paper's tables and S-curves are keyed on."""
        return {"power": format_power(self.power), "window": self.window}

    def __str__(self) -> str:
        return f"p={format_power(self.power)} w={self.window}" + (f" sink={self.sink}" if self.sink else "")


def sliding_window(window: int, sink: int = 0) -> PowerPattern:
    return PowerPattern(Fraction(0), window, sink)


def full_causal() -> PowerPattern:
    return PowerPattern(Fraction(1), 0)
