"""The sympy judge of two leaf expressions (and of two equations). Runs only in the sandbox.

Each leaf is parsed with sympy's LaTeX parser after two rewrites it lacks: decimals become exact
fractions ("0.15" is 15/100, so a decimal equals a fraction only when it is exactly that
fraction), and \\pi, i and e become the constants (the parser leaves them as symbols).

Constants: two rationals are compared exactly, so 1/2004! and 1/2006! differ; other constants
are evaluated to 50 significant digits and must agree to a relative 1e-20, which no two
answers that a rounding could confuse do (2^-98 and 2^-99 differ by a factor of 2).
Expressions with variables: equal if their difference simplifies to zero on construction,
else if they agree at five fixed random rational points: exactly where both values there are
rational (so x + 10^-25 is not x), else to the same relative 1e-20 (the one place a tolerance
applies to expressions in variables: \\cot x and \\cos x / \\sin x have irrational values).
Equations: lhs - rhs of the response must be a non-zero constant multiple of the gold's.

Nothing here guards time or memory: `sandbox` runs it in a process it can kill.
"""

from __future__ import annotations

import math
import random
import re
from functools import lru_cache

import sympy
from sympy.core.function import AppliedUndef
from sympy.parsing.latex import parse_latex

from ppa_eval.grading.equivalence import MISMATCH, Decision, NeedsSympy, PlainJudge, compare
from ppa_eval.grading.structure import parse_answer

DIGITS = 50
TOLERANCE = sympy.Float("1e-20", DIGITS)
POINTS = 5
MIN_VALID_POINTS = 3

_DECIMAL = re.compile(r"(?<![\d.])(\d*)\.(\d+)")
_OPERATOR_NAME = re.compile(r"\\operatorname\{([A-Za-z]+)\}")
# The parser leaves these as symbols; in MATH answers they are always the constants.
_CONSTANTS = {sympy.Symbol("pi"): sympy.pi, sympy.Symbol("i"): sympy.I, sympy.Symbol("e"): sympy.E}


# Larger numbers are no answer: sympy would take minutes or all memory to build them.
MAX_LOG10 = 10_000
_SEPARATE_DIGITS = re.compile(r"\d\s+\d")


# The parser imports sympy.physics on first use, which fails inside sympy.evaluate(False).
parse_latex("0")


class Unparsable(ValueError):
    pass


class TooLarge(Unparsable):
    """A number beyond MAX_LOG10 digits: no answer, and no work for anyone to try."""


def _decimal_as_fraction(match: re.Match) -> str:
    whole, decimals = match.groups()
    return f"(\\frac{{{int(whole + decimals)}}}{{{10 ** len(decimals)}}})"


def _log10_bound(expr: sympy.Basic) -> float:
    """An upper bound on log10 of the magnitude of `expr` (its numbers only; symbols count as
    small), computed without evaluating anything: a power tower is seen before it is built."""
    if expr.is_Rational:
        return 0.302 * max(abs(expr.p), abs(expr.q), 1).bit_length()
    parts = [_log10_bound(arg) for arg in expr.args]
    if isinstance(expr, (sympy.Pow, sympy.factorial)) and parts[-1] > 6:
        return math.inf  # an exponent or factorial argument beyond a million
    if isinstance(expr, sympy.Pow):
        exponent = abs(expr.exp) if expr.exp.is_Rational else 10 ** parts[1]
        return parts[0] * float(exponent) + 1
    if isinstance(expr, sympy.factorial):
        n = abs(expr.args[0]) if expr.args[0].is_Integer else 10 ** parts[0]
        return float(n) * (parts[0] + 1) + 1
    if isinstance(expr, sympy.Mul):
        return sum(parts)
    return max(parts, default=0.0) + 1


@lru_cache(maxsize=4096)
def to_sympy(latex: str) -> sympy.Basic:
    """The sympy value of one normalised leaf; raises Unparsable.

    Numbers beyond MAX_LOG10 digits are refused before sympy evaluates them: the sandbox would
    time out on them anyway, at the cost of the whole time limit and a worker restart.
    """
    if _SEPARATE_DIGITS.search(latex):  # the parser reads "3 5" as 35
        raise Unparsable(f"{latex!r}: two numbers side by side")
    prepared = _DECIMAL.sub(_decimal_as_fraction, latex)
    prepared = _OPERATOR_NAME.sub(r"\\\1", prepared)
    try:
        with sympy.evaluate(False):
            expr = parse_latex(prepared)
    except Exception as error:  # the parser raises many types; all mean "not LaTeX math"
        raise Unparsable(f"{latex!r}: {error}") from None
    if not isinstance(expr, sympy.Expr):  # a relation such as x <= 3, or a set
        raise Unparsable(f"{latex!r} is not an expression")
    if _log10_bound(expr) > MAX_LOG10:
        raise TooLarge(f"{latex!r}: a number of more than {MAX_LOG10} digits")
    # The parser reads "i(7+2i)" as a function i called on 7+2i; in an answer it is a product.
    expr = expr.replace(
        lambda e: isinstance(e, AppliedUndef) and len(e.args) == 1,
        lambda e: sympy.Symbol(e.func.__name__) * e.args[0],
    )
    return expr.xreplace(_CONSTANTS).doit()


def _points(symbols: list[sympy.Symbol]) -> list[dict]:
    """Fixed pseudo-random rational points, away from 0, 1 and small integers."""
    rng = random.Random(20260101)
    return [
        {s: sympy.Rational(rng.randint(101, 997), rng.randint(101, 397)) for s in symbols}
        for _ in range(POINTS)
    ]


def _number(expr: sympy.Expr) -> sympy.Expr | None:
    """expr evaluated to DIGITS digits, or None where it is undefined or not a number."""
    value = sympy.N(expr, DIGITS)
    if not value.is_number or value.has(sympy.nan, sympy.zoo, sympy.oo, -sympy.oo):
        return None
    return value


def _close(a: sympy.Expr, b: sympy.Expr) -> bool:
    scale = max(abs(a), abs(b))
    return scale == 0 or bool(abs(a - b) <= TOLERANCE * scale)


def _values(expr: sympy.Expr, points: list[dict]) -> list[sympy.Expr | None]:
    """expr at each point: an exact rational where it is one (a rational function at rational
    points), else DIGITS digits."""
    values = []
    for point in points:
        value = expr.subs(point)
        values.append(value if value.is_Rational else _number(value))
    return values


def _same(a: sympy.Expr, b: sympy.Expr) -> bool:
    """Exactly equal when both are rationals; else within the relative TOLERANCE."""
    if a.is_Rational and b.is_Rational:
        return a == b
    return _close(a, b)


def _equal_constants(gold: sympy.Expr, response: sympy.Expr) -> Decision:
    if gold.is_Rational and response.is_Rational:
        return Decision(True, "symbolic") if gold == response else MISMATCH
    if gold.has(sympy.oo, sympy.zoo) or response.has(sympy.oo, sympy.zoo):
        return Decision(True, "symbolic") if gold == response else MISMATCH
    gold_value, response_value = _number(gold), _number(response)
    if gold_value is None or response_value is None:
        return MISMATCH
    return Decision(True, "numeric") if _close(gold_value, response_value) else MISMATCH


def _equal_functions(gold: sympy.Expr, response: sympy.Expr) -> Decision:
    points = _points(sorted(gold.free_symbols | response.free_symbols, key=str))
    pairs = [
        (g, r)
        for g, r in zip(_values(gold, points), _values(response, points))
        if g is not None and r is not None
    ]
    if len(pairs) < MIN_VALID_POINTS:
        return Decision(True, "symbolic") if sympy.simplify(gold - response) == 0 else MISMATCH
    return Decision(True, "numeric") if all(_same(g, r) for g, r in pairs) else MISMATCH


class SympyJudge(PlainJudge):
    """Decides every leaf: cheap cases as PlainJudge does, the rest with sympy."""

    def expressions(self, gold: str, response: str) -> Decision:
        try:
            return super().expressions(gold, response)
        except NeedsSympy:
            pass
        try:
            gold_expr, response_expr = to_sympy(gold), to_sympy(response)
        except TooLarge:
            return Decision(False, "too_large")
        except Unparsable:
            return Decision(False, "unparsable")
        if gold_expr == response_expr or gold_expr - response_expr == 0:
            return Decision(True, "symbolic")
        if gold_expr.free_symbols or response_expr.free_symbols:
            return _equal_functions(gold_expr, response_expr)
        return _equal_constants(gold_expr, response_expr)

    def equations(self, gold: tuple[str, str], response: tuple[str, str]) -> Decision:
        if gold == response:
            return Decision(True, "exact")
        try:
            gold_zero = to_sympy(gold[0]) - to_sympy(gold[1])
            response_zero = to_sympy(response[0]) - to_sympy(response[1])
        except Unparsable:
            return Decision(False, "unparsable")
        if gold_zero == 0 or response_zero == 0:
            return MISMATCH
        points = _points(sorted(gold_zero.free_symbols | response_zero.free_symbols, key=str))
        ratios = [v for v in _values(response_zero / gold_zero, points) if v is not None]
        if len(ratios) < MIN_VALID_POINTS or ratios[0] == 0:
            return MISMATCH
        same = all(_same(ratio, ratios[0]) for ratio in ratios)
        return Decision(True, "numeric") if same else MISMATCH


def decide(gold: str, response: str) -> Decision:
    """The decision for two normalised answers, every leaf judged (the sandbox's entry point)."""
    return compare(parse_answer(gold), parse_answer(response), SympyJudge())
