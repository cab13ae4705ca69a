"""Are two answer trees the same answer? The structure is compared here; leaves go to a judge.

Two judges share this walk. `PlainJudge` runs in-process: identical strings and plain numbers
(exact fractions), and it gives up (`NeedsSympy`) on anything else. `symbolic.SympyJudge`
decides every leaf and runs only in the sandboxed worker. So an answer is graded in-process
exactly when every leaf comparison it needs is cheap.

Rules beyond "same shape, equal parts" (see `structure` for how answers are read):

- Equations. Both sides equations: the same equation, i.e. lhs - rhs equal up to a non-zero
  factor ("y = -2x" is "2x + y = 0"). Gold "x = 5" or "y = 2x + 3" (the left side names the
  unknown) against a bare expression: the right side is compared, so "5" is right. A gold
  equation of any other form ("5x - 7y + 11z + 4 = 0") needs an equation. A response "x = 5"
  against a gold that is no equation: its last side is compared (Minerva's rule).
- Lists and sets are compared as sets: an answer stated twice is still one answer.
- An ordered pair or tuple in parentheses may be written without them, in the same order
  (but not as a set in braces); a column vector may be written as such a tuple.
- A numeral in a base is compared by its digits; written without its subscript it is read in
  the gold's base ("52" for "52_8"), written with another base it is wrong.
"""

from __future__ import annotations

from typing import NamedTuple, Protocol

from ppa_eval.grading.numbers import plain_number
from ppa_eval.grading.structure import (
    Answer,
    BaseNumeral,
    Choice,
    Equation,
    Expr,
    Matrix,
    Ordered,
    SetUnion,
    Text,
    Unordered,
    parse_answer,
)


class Decision(NamedTuple):
    correct: bool
    reason: str  # how it was decided: see ppa_eval.grading.Verdict


# When several leaves agree by different means, the answer is as certain as its weakest leaf.
_STRENGTH = {"exact": 0, "number": 1, "symbolic": 2, "numeric": 3}
MISMATCH = Decision(False, "mismatch")


class NeedsSympy(Exception):
    """Raised by the in-process judge for a leaf pair only sympy can decide."""


class Judge(Protocol):
    def expressions(self, gold: str, response: str) -> Decision: ...

    def equations(self, gold: tuple[str, str], response: tuple[str, str]) -> Decision: ...


class PlainJudge:
    """Identical strings and plain numbers; anything else raises NeedsSympy."""

    def expressions(self, gold: str, response: str) -> Decision:
        if gold == response:
            return Decision(True, "exact")
        gold_value, response_value = plain_number(gold), plain_number(response)
        if gold_value is None or response_value is None:
            raise NeedsSympy
        return Decision(True, "number") if gold_value == response_value else MISMATCH

    def equations(self, gold: tuple[str, str], response: tuple[str, str]) -> Decision:
        if gold == response:
            return Decision(True, "exact")
        raise NeedsSympy


def _all(decisions) -> Decision:
    """Every part equal -> equal, as certain as the least certain part; else the first failure."""
    reason = "exact"
    for decision in decisions:
        if not decision.correct:
            return decision
        reason = max(reason, decision.reason, key=_STRENGTH.__getitem__)
    return Decision(True, reason)


def _in_order(gold: tuple[Answer, ...], response: tuple[Answer, ...], judge: Judge) -> Decision:
    if len(gold) != len(response):
        return MISMATCH
    # A generator: stop at the first unequal pair.
    return _all(compare(g, r, judge) for g, r in zip(gold, response))


def _any_order(gold: tuple[Answer, ...], response: tuple[Answer, ...], judge: Judge) -> Decision:
    """Set equality: every gold item equals some response item and every response item some
    gold item ("1, 2, 2" states the set {1, 2}). Identical items are matched through a dict
    first, so long lists of the same items cost linear time; the rest pair by pair."""
    if len(gold) == 1 and len(response) == 1:
        return compare(gold[0], response[0], judge)
    decisions = []
    for needles, haystack, ordered in ((gold, response, True), (response, gold, False)):
        present = set(haystack)
        for needle in needles:
            if needle in present:
                continue
            for item in haystack:
                decision = compare(needle, item, judge) if ordered else compare(item, needle, judge)
                if decision.correct:
                    decisions.append(decision)
                    break
            else:
                return MISMATCH
    return _all(decisions)


def _column(matrix: Matrix) -> tuple[Answer, ...] | None:
    if all(len(row) == 1 for row in matrix.rows):
        return tuple(row[0] for row in matrix.rows)
    return None


def _equation(gold: Equation, response: Answer, judge: Judge) -> Decision:
    if isinstance(response, Equation):
        return judge.equations((gold.sides[0], gold.sides[-1]),
                               (response.sides[0], response.sides[-1]))
    if gold.assigns_variable:
        return compare(parse_answer(gold.sides[-1]), response, judge)
    return MISMATCH


def _digits_of(answer: Answer) -> str | None:
    if isinstance(answer, Expr) and answer.latex.isdigit():
        return answer.latex.lstrip("0") or "0"
    return None


def compare(gold: Answer, response: Answer, judge: Judge) -> Decision:
    """Whether `response` states the same answer as `gold` (see the module doc for the rules)."""
    if isinstance(gold, Equation):
        return _equation(gold, response, judge)
    if isinstance(response, Equation):
        return compare(gold, parse_answer(response.sides[-1]), judge)
    if isinstance(gold, Unordered):
        if isinstance(response, Unordered):
            return _any_order(gold.items, response.items, judge)
        return compare(gold.items[0], response, judge) if len(gold.items) == 1 else MISMATCH
    if isinstance(gold, Ordered):
        if isinstance(response, Ordered):
            if (gold.opening, gold.closing) != (response.opening, response.closing):
                return MISMATCH
            return _in_order(gold.items, response.items, judge)
        bare_list = isinstance(response, Unordered) and response.bare
        if bare_list and gold.opening + gold.closing == "()":
            return _in_order(gold.items, response.items, judge)
        return MISMATCH
    if isinstance(gold, Matrix):
        if isinstance(response, Matrix):
            if [len(row) for row in gold.rows] != [len(row) for row in response.rows]:
                return MISMATCH
            return _in_order(sum(gold.rows, ()), sum(response.rows, ()), judge)
        column = _column(gold)
        if column is not None and isinstance(response, Ordered) and response.opening == "(":
            return _in_order(column, response.items, judge)
        return MISMATCH
    if isinstance(gold, SetUnion):
        if isinstance(response, SetUnion):
            return _any_order(gold.parts, response.parts, judge)
        return MISMATCH
    if isinstance(gold, BaseNumeral):
        if isinstance(response, BaseNumeral):
            same = (response.digits, response.base) == (gold.digits, gold.base)
        else:
            same = _digits_of(response) == gold.digits
        return Decision(True, "exact") if same else MISMATCH
    if isinstance(gold, Choice):
        same = isinstance(response, Choice) and response.letter == gold.letter
        return Decision(True, "exact") if same else MISMATCH
    if isinstance(gold, Text):
        same = isinstance(response, Text) and response.words == gold.words
        return Decision(True, "exact") if same else MISMATCH
    # gold is an expression
    if isinstance(response, Unordered) and len(response.items) == 1:
        return compare(gold, response.items[0], judge)
    if isinstance(response, Expr):
        return judge.expressions(gold.latex, response.latex)
    return MISMATCH


def decide_in_process(gold: str, response: str) -> Decision | None:
    """The decision for two normalised answers if no leaf needs sympy, else None."""
    if gold == response:
        return Decision(True, "exact")
    try:
        return compare(parse_answer(gold), parse_answer(response), PlainJudge())
    except NeedsSympy:
        return None
