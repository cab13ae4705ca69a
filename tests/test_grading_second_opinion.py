"""math-verify as a second opinion: its known errors are decided right by us, and logged.

math-verify 0.9.0 rounds numbers to 6 significant digits before comparing, so it calls
1/2^99 and 1/2^98 equal, and 1/2004! and 1/2006!; and it matches a set against a tuple
("{1,2}" against "(2,1)"). Our grader compares exact rationals exactly and keeps sets and
tuples apart.
"""

import logging

import pytest

from ppa_eval.grading import GSM8K, MATH

KNOWN_ERRORS = [
    ("\\frac{1}{2^{99}}", "So the probability is $\\boxed{\\frac{1}{2^{98}}}$."),
    ("\\frac{1}{2004!}", "Final Answer: The final answer is $\\frac{1}{2006!}$."),
    ("\\{1,2\\}", "The pair is $\\boxed{(2,1)}$."),
    ("(8,-2)", "The point is $\\boxed{\\{8,-2\\}}$."),
]


@pytest.mark.parametrize("gold, response", KNOWN_ERRORS)
def test_our_verdict_is_right_and_the_disagreement_logged(gold, response, caplog):
    with caplog.at_level(logging.INFO, logger="ppa_eval.grading"):
        verdict = MATH.grade(response, gold)
    assert (verdict.correct, verdict.reason) == (False, "mismatch")
    assert verdict.math_verify is True
    assert any("math-verify disagrees" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    "gold, response, correct",
    [
        # A set and a bare list of the same numbers agree: MATH's "separated by commas".
        ("\\{1,2\\}", "The solutions are $\\boxed{2,1}$.", True),
        ("\\frac{1}{2^{99}}", "$\\boxed{2^{-99}}$", True),
        ("3\\sqrt{13}", "$\\boxed{\\sqrt{117}}$", True),
        ("\\frac{14}{3}", "$\\boxed{\\frac{14}{5}}$", False),
    ],
)
def test_agreement_is_not_logged(gold, response, correct, caplog):
    with caplog.at_level(logging.INFO, logger="ppa_eval.grading"):
        verdict = MATH.grade(response, gold)
    assert verdict.correct is correct
    assert verdict.math_verify is correct
    assert not any("math-verify disagrees" in r.getMessage() for r in caplog.records)


def test_gsm8k_second_opinion():
    verdict = GSM8K.grade("So she makes 9 * 2 = $18 a day.", "18")
    assert (verdict.correct, verdict.math_verify) == (True, True)
