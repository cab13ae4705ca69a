"""Comparing normalised answers: in-process where cheap, with sympy otherwise.

symbolic.decide is called directly here (no sandbox) on pairs known to be quick.
"""

import pytest

from ppa_eval.grading.equivalence import Decision, decide_in_process
from ppa_eval.grading.symbolic import decide


@pytest.mark.parametrize(
    "gold, answer, decision",
    [
        ("\\frac{14}{3}", "\\frac{14}{3}", Decision(True, "exact")),
        ("\\frac{3}{2}", "1.5", Decision(True, "number")),
        ("1.25", "\\frac{5}{4}", Decision(True, "number")),
        ("\\frac{5}{13}", "0.3846", Decision(False, "mismatch")),  # rounded: not the fraction
        ("(6,31,-1)", "(6,31,-1.0)", Decision(True, "number")),
        ("3,5,7", "7,5,3", Decision(True, "exact")),
        ("\\{1\\pm\\sqrt{5},-2\\}", "-2,1+\\sqrt{5},1-\\sqrt{5}", Decision(True, "exact")),
        ("52_8", "42", Decision(False, "mismatch")),  # 42 is 52_8's value, not in base 8
        ("(C)", "C", Decision(True, "exact")),
    ],
)
def test_decided_in_process(gold, answer, decision):
    assert decide_in_process(gold, answer) == decision


@pytest.mark.parametrize(
    "gold, answer",
    [("2", "\\sqrt{4}"), ("3\\sqrt{13}", "\\sqrt{117}"), ("y=2x+3", "y=3+2x")],
)
def test_left_to_sympy(gold, answer):
    assert decide_in_process(gold, answer) is None


@pytest.mark.parametrize(
    "gold, answer, decision",
    [
        # Exact rationals are compared exactly: math-verify rounds these to equality.
        ("\\frac{1}{2^{99}}", "\\frac{1}{2^{98}}", Decision(False, "mismatch")),
        ("\\frac{1}{2^{99}}", "2^{-99}", Decision(True, "symbolic")),
        ("\\frac{1}{2004!}", "\\frac{1}{2006!}", Decision(False, "mismatch")),
        ("\\frac{1}{2004!}", "\\frac{2005\\cdot2006}{2006!}", Decision(True, "symbolic")),
        ("2^{100}", "1267650600228229401496703205377", Decision(False, "mismatch")),
        # Irrational constants: 50 digits, relative 1e-20.
        ("3\\sqrt{13}", "\\sqrt{117}", Decision(True, "symbolic")),
        ("\\frac{\\sqrt{3}}{3}", "\\frac{1}{\\sqrt{3}}", Decision(True, "symbolic")),
        ("\\pi", "3.14159265358979", Decision(False, "mismatch")),
        ("\\frac{\\sqrt{6}-\\sqrt{2}}{4}", "\\sin\\frac{\\pi}{12}", Decision(True, "symbolic")),
        ("3", "\\frac{\\ln 8}{\\ln 2}", Decision(True, "numeric")),
        ("\\sqrt{2}+\\sqrt{3}", "\\sqrt{5+2\\sqrt{6}}", Decision(True, "numeric")),
        ("\\frac{\\pi}{6}", "30", Decision(False, "mismatch")),
        ("-2+7i", "i(7+2i)", Decision(True, "numeric")),  # the parser's "call" of i read as i*(...)
        ("6-5i", "6+5i", Decision(False, "mismatch")),
        # Expressions in variables: identical on construction, or at random points.
        ("(a+5)(b+2)", "ab+2a+5b+10", Decision(True, "numeric")),
        ("(a+5)(b+2)", "(a+2)(b+5)", Decision(False, "mismatch")),
        ("\\cot x", "\\frac{\\cos x}{\\sin x}", Decision(True, "numeric")),
        ("3R^2", "3r^2", Decision(False, "mismatch")),  # different variables
        # Equations: the same up to a non-zero factor.
        ("5x-7y+11z+4=0", "5x-7y+11z=-4", Decision(True, "numeric")),
        ("5x-7y+11z+4=0", "5x-7y+11z=4", Decision(False, "mismatch")),
        ("y=-2x", "2x+y=0", Decision(True, "numeric")),
        ("5x-7y+11z+4=0", "0", Decision(False, "mismatch")),  # Minerva's split("=") says yes
        # Structure with sympy leaves.
        ("(-\\sqrt{3},\\sqrt{3})", "(-\\sqrt{3},\\sqrt{3}]", Decision(False, "mismatch")),
        ("\\{1\\pm\\sqrt{5},-2\\}", "1-\\sqrt{5},-2,1+\\sqrt{5}", Decision(True, "exact")),
        ("1\\pm\\sqrt{19}", "1+\\sqrt{19},1-\\sqrt{17}", Decision(False, "mismatch")),
        ("\\begin{pmatrix}1/5\\\\-18/5\\end{pmatrix}", "(\\frac{1}{5},-3.6)",
         Decision(True, "number")),
        ("2", "\\frac{1}{", Decision(False, "unparsable")),
    ],
)
def test_sympy_decision(gold, answer, decision):
    assert decide(gold, answer) == decision
