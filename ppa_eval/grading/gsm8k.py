"""GSM8K: the number a response ends on, compared exactly with the reference number.

The answer is the first number after "####" on its line (the GSM8K format; a later "####"
belongs to a question the model went on to invent), else the number in the last \\boxed{},
else the last number in the response. "$1,000.00", "**18**." and "\\boxed{18}" all give 18.
The Unicode minus (U+2212) is a minus sign. Numbers are compared as canonical decimal strings
("29.00" is "29", "-0" is "0"), so that a number of a million digits costs linear time and never
becomes an integer.

`gold_answer` is the one reader of GSM8K gold answers, for loading the data set and grading.
"""

from __future__ import annotations

import re

from ppa_eval.grading.equivalence import MISMATCH, Decision
from ppa_eval.grading.errors import GradingError
from ppa_eval.grading.extract import last_boxed

# A number not glued to a word or to another number's digits: "x2" and "3-4" hold no "-4".
_NUMBER = re.compile(r"(?<![\w.])-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|(?<![\w.])-?\.\d+")
_MINUS = "\u2212"


def _clean(number: str) -> str:
    return number.replace(",", "")


def _numbers(text: str) -> list[str]:
    return [_clean(m.group(0)) for m in _NUMBER.finditer(text)]


def extract_gsm8k_answer(response: str) -> str | None:
    """The final number of a GSM8K response, without commas; None if it has none."""
    response = response.replace(_MINUS, "-")
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


def gold_answer(solution_text: str) -> str:
    """The final answer of a GSM8K reference solution ("... #### 18"), or of a bare gold ("18",
    "$18", "18 dollars", "−5", "1,450,000"), as a number without commas ("18", "-5", "1450000").

    It is the first number after the last "####" (a reference solution has one), else the first
    number; GradingError if there is none.
    """
    text = solution_text.replace(_MINUS, "-")
    marker = text.rfind("####")
    match = _NUMBER.search(text, marker + 4 if marker >= 0 else 0)
    if match is None:
        raise GradingError(f"GSM8K gold answer {solution_text[-80:]!r} holds no number")
    return _clean(match.group(0))


def canonical_number(number: str) -> str:
    """ "-0018.500" -> "-18.5", "29.00" -> "29", "-0" -> "0": equal numbers, equal strings."""
    negative = number.startswith("-")
    whole, _, fraction = number.lstrip("-").partition(".")
    whole, fraction = whole.lstrip("0") or "0", fraction.rstrip("0")
    text = whole + ("." + fraction if fraction else "")
    return "-" + text if negative and text != "0" else text


def decide_gsm8k(gold: str, extracted: str) -> Decision:
    """Exact numeric equality of the extracted number and the gold number (from `gold_answer`)."""
    if extracted == gold:
        return Decision(True, "exact")
    same = canonical_number(extracted) == canonical_number(gold)
    return Decision(True, "number") if same else MISMATCH
