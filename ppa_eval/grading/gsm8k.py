"""GSM8K: the number a response ends on, compared exactly with the reference number.

The answer is the first number after "####" on its line (the GSM8K format; a later "####"
belongs to a question the model went on to invent), else the number in the last \\boxed{},
else the last number in the response. "$1,000.00", "**18**." and "\\boxed{18}" all give 18;
values are exact fractions, so "29.00" equals 29.
"""

from __future__ import annotations

import re
from fractions import Fraction

from ppa_eval.grading.equivalence import MISMATCH, Decision
from ppa_eval.grading.extract import last_boxed
from ppa_eval.grading.numbers import MAX_DIGITS

# A number not glued to a word or to another number's digits: "x2" and "3-4" hold no "-4".
_NUMBER = re.compile(r"(?<![\w.])-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|(?<![\w.])-?\.\d+")


def _clean(number: str) -> str:
    return number.replace(",", "")


def _numbers(text: str) -> list[str]:
    return [_clean(m.group(0)) for m in _NUMBER.finditer(text)]


def extract_gsm8k_answer(response: str) -> str | None:
    """The final number of a GSM8K response, without commas; None if it has none."""
    marker = response.find("####")
    if marker >= 0:
        line_end = response.find("\n", marker)
        first = _NUMBER.search(response, marker + 4, line_end if line_end >= 0 else len(response))
        if first:
            return _clean(first.group(0))
    boxed = last_boxed(response)
    if boxed is not None and (inside := _numbers(boxed)):
        return inside[-1]
    numbers = _numbers(response)
    return numbers[-1] if numbers else None


def _value(number: str) -> Fraction | None:
    if len(number) > MAX_DIGITS:
        return None
    return Fraction(number)


def gold_number(gold: str) -> str:
    """The reference number: the field as given, or the number after "####" in a full answer."""
    extracted = extract_gsm8k_answer(gold) if "####" in gold else _clean(gold.strip())
    return extracted if extracted is not None else gold.strip()


def decide_gsm8k(gold: str, extracted: str) -> Decision:
    """Exact numeric equality of the extracted number and the gold number."""
    gold = gold_number(gold)
    if extracted == gold:
        return Decision(True, "exact")
    try:
        gold_value, value = _value(gold), _value(extracted)
    except ValueError:  # a gold that is no number: only the identical string matches
        return MISMATCH
    return Decision(True, "number") if value is not None and value == gold_value else MISMATCH
