"""Plain numbers as exact fractions, so that most answers are compared without sympy.

A plain number is an integer, a decimal (".35", "18.90"), a repeating decimal
("0.\\overline{3}"), a fraction of integers ("\\frac{3}{56}", "-3/8") or a mixed number
("1\\frac{4}{5}" is 9/5, not 4/5), with an optional sign. Anything else is left to sympy.
"""

from __future__ import annotations

import re
from fractions import Fraction

# Python refuses to convert longer digit strings to int (sys.get_int_max_str_digits).
MAX_DIGITS = 4000

_DECIMAL = re.compile(r"(\d*)\.?(\d*)")
_REPEATING = re.compile(r"(\d*)\.(\d*)\\overline\{(\d+)\}")
_FRACTION = re.compile(r"\\frac\{(-?[\d.]+)\}\{(-?[\d.]+)\}|(\d+)/(\d+)")
_MIXED = re.compile(r"(\d+)\\frac\{(\d+)\}\{(\d+)\}")


def _unsigned_decimal(text: str) -> Fraction | None:
    match = _DECIMAL.fullmatch(text)
    if match is None or not (match.group(1) or match.group(2)):
        return None
    whole, decimals = match.groups()
    return Fraction(int(whole or "0")) + Fraction(int(decimals or "0"), 10 ** len(decimals))


def _repeating_decimal(text: str) -> Fraction | None:
    """0.1\\overline{6} = 1/10 + 6/90."""
    match = _REPEATING.fullmatch(text)
    if match is None:
        return None
    whole, fixed, period = match.groups()
    scale = 10 ** len(fixed)
    value = Fraction(int(whole or "0")) + Fraction(int(fixed or "0"), scale)
    return value + Fraction(int(period), (10 ** len(period) - 1) * scale)


def _signed_decimal(text: str) -> Fraction | None:
    negative = text.startswith("-")
    value = _unsigned_decimal(text[1:] if negative else text)
    return None if value is None else (-value if negative else value)


def _unsigned_value(text: str) -> Fraction | None:
    if (value := _unsigned_decimal(text)) is not None:
        return value
    if (value := _repeating_decimal(text)) is not None:
        return value
    if match := _MIXED.fullmatch(text):
        whole, numerator, denominator = (int(g) for g in match.groups())
        # Only a proper fraction after an integer reads as a mixed number.
        if 0 < numerator < denominator:
            return whole + Fraction(numerator, denominator)
        return None
    if match := _FRACTION.fullmatch(text):
        numerator, denominator = (g for g in match.groups() if g is not None)
        top, bottom = _signed_decimal(numerator), _signed_decimal(denominator)
        if top is None or not bottom:
            return None
        return top / bottom
    return None


def plain_number(text: str) -> Fraction | None:
    """The exact value of `text` if it is a plain number (see the module doc), else None."""
    if len(text) > MAX_DIGITS or not text:
        return None
    sign = 1
    while text[:1] in ("-", "+"):
        sign = -sign if text[0] == "-" else sign
        text = text[1:]
    value = _unsigned_value(text)
    return None if value is None else sign * value
