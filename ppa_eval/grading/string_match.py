"""String match, as RULER grades its retrieval tasks: every gold value must appear in the response.

RULER's `string_match_all` (scripts/eval/synthetic/constants.py) at full score, except that a value
counts only as a whole token ("123456" does not contain the key "12345"). What a token is depends
on the values asked for, a parameter of the grader: whole numbers (pass keys, magic numbers), or
names (variable tracking: words in capitals, or a gold name in any case, compared upper-cased).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from ppa_eval.grading.errors import GradingError
from ppa_eval.grading.grader import Verdict

VALUE_KINDS = ("numbers", "names")


@dataclass(frozen=True)
class StringMatch:
    values: str = "numbers"  # what the gold values are: one of VALUE_KINDS

    def __post_init__(self):
        if self.values not in VALUE_KINDS:
            raise GradingError(f"StringMatch values {self.values!r}; use one of {', '.join(VALUE_KINDS)}")

    def candidates(self, response: str, gold: list[str]) -> list[str]:
        """The answer-shaped tokens of `response`, in order, once each: whole numbers, or words in
        capitals (or a gold name in any case), upper-cased."""
        if self.values == "names":
            names = {name.upper() for name in gold}
            words = re.findall(r"(?<![A-Za-z0-9])[A-Za-z]{2,}(?![A-Za-z0-9])", response)
            found = [word.upper() for word in words if word.isupper() or word.upper() in names]
        else:
            found = re.findall(r"(?<!\d)\d+(?!\d)", response)
        return list(dict.fromkeys(found))

    def grade(self, response: str, gold: list[str]) -> Verdict:
        """Correct when every gold value is a whole token of the response. `extracted` lists the
        answer-shaped tokens found, comma-separated, or None; `reason` says what was missing and found."""
        found = self.candidates(response, gold)
        missing = [value for value in gold if value.upper() not in found]
        found_text = ", ".join(found) if found else None
        reason = f"found {found_text}" if not missing else f"missing {', '.join(missing)}; found {found_text or 'nothing'}"
        return Verdict(correct=not missing, extracted=found_text, reason=reason, math_verify=None, timed_out=False,
                       extracted_by="exact_match")

    def grade_many(self, items: Iterable[tuple[str, list[str]]]) -> list[Verdict]:
        """Verdicts for (response, gold values) pairs, in order."""
        return [self.grade(response, gold) for response, gold in items]
