"""Formats and false positives found by trying the grader on a peer suite and hostile inputs
(issue 12), each as a real answer with its hand judgement.

Golds are MATH-500 answers or of their kind; the responses are written the way models write.
"""

import pytest

from ppa_eval.grading import MATH as MATH_GRADER
from ppa_eval.tasks import load_task

MATH = [
    # Footer wrappers.
    ("5", "Final Answer: The final answer is \\(\\boxed{5}\\). I hope it is correct.", True),
    ("5", "The final answer is \\[5\\]", True),
    ("5", "The final answer is **5**.", True),
    ("7", "Hence the final answer is an integer, namely $\\boxed{7}$.", True),
    # Several boxes against a multi-part gold; the last box alone is still the answer otherwise.
    ("(2, 2), (6, 2)", "The pairs are $\\boxed{(2,2)}$ and $\\boxed{(6,2)}$.", True),
    ("1,-2", "The integers are \\boxed{-2} and \\boxed{1}.", True),
    ("27", "First $\\boxed{3}$, then the answer is $\\boxed{27}$.", True),
    ("(2, 2), (6, 2)", "The pairs are $\\boxed{(2,2)}$ and $\\boxed{(6,3)}$.", False),
    # Notations.
    ("\\frac{1}{2}", "$$\\frac{1}{2}$$", True),
    ("\\frac{1}{3}", "$\\boxed{\\cfrac{1}{3}}$", True),
    ("125", "The distance is $\\boxed{125\\textnormal{ miles}}$.", True),
    ("28\\%", "The final answer is 28 percent.", True),
    ("28\\%", "$\\boxed{28 pct}$", True),
    ("28\\%", "$\\boxed{28 \\text{ percentage}}$", True),
    ("x \\ge 5", "$\\boxed{x >= 5}$", True),
    ("x \\le 2", "$\\boxed{x <= 2}$", True),
    ("x \\ne 3", "$\\boxed{x != 3}$", True),
    ("\\{1,3\\}", "$\\boxed{{1,3}}$", True),
    ("14{,}916", "$\\boxed{14{, }916}$", True),
    ("11", "$\\boxed{x \\approx 11}$", True),
    ("\\frac{1}{3}", "$\\boxed{x = \\frac{1}{3} \\approx 0.33}$", True),
    ("\\begin{pmatrix} 1 & 2 \\\\ 3 & 4 \\end{pmatrix}",
     "$\\left[\\begin{array}{cc} 1 & 2 \\\\ 3 & 4 \\end{array}\\right]$", True),
    ("(p,q)=(3,2)", "$\\boxed{(3, 2)}$", True),
    ("f(x)=1", "$\\boxed{1}$", True),
    ("-12;-11;-10", "$\\boxed{\\{-12, -11, -10\\}}$", True),
    ("12:00", "$\\boxed{1:00}$", False),  # sympy would read both as a division by zero
    ("-5", "$\\boxed{\u22125}$", True),
    ("5", "$\\boxed{\u22125}$", False),
    # False positives of the old grader.
    ("3100", "$\\boxed{3, 100}$", False),
    ("32349", "$\\boxed{32, 349}$", False),
    ("32349", "$\\boxed{32,\\! 349}$", True),
    ("3, 100", "$\\boxed{3,100}$", True),  # a list on one side: no thousands separator
    ("35", "$\\boxed{3\\text{ cm by }5\\text{ cm}}$", False),
    ("12", "$\\boxed{1\\text{ (not }2\\text{)}}$", False),
    ("x", "$\\boxed{x+10^{-25}}$", False),
    ("\\cot x", "$\\boxed{\\frac{\\cos x}{\\sin x}}$", True),
]

GSM8K = [
    ("$18", "She makes $18 a day.\n#### 18", True),
    ("18 dollars", "#### 18", True),
    ("5", "#### \u22125", False),
    ("\u22125", "The temperature fell to \u22125 degrees.\n#### \u22125", True),
]


@pytest.mark.slow
@pytest.mark.parametrize("task, cases", [("math500", MATH), ("gsm8k", GSM8K)])
def test_formats_and_false_positives(task, cases):
    verdicts = load_task(task).grader.grade_many([(response, gold) for gold, response, _ in cases], timeout=10)
    wrong = [(gold, response, v.extracted, v.reason)
             for (gold, response, correct), v in zip(cases, verdicts) if v.correct != correct]
    assert wrong == []


def test_empty_gold_is_an_error_not_a_match():
    (verdict,) = MATH_GRADER.grade_many([("$\\boxed{\\$}$", "")])
    assert (verdict.correct, verdict.reason) == (False, "error")
    assert "empty" in verdict.error
