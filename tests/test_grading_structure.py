"""Reading normalised answers into trees, and plain numbers into exact fractions."""

from fractions import Fraction

import pytest

from ppa_eval.grading.numbers import plain_number
from ppa_eval.grading.structure import (
    MAX_NESTING,
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


@pytest.mark.parametrize(
    "text, value",
    [
        ("27", Fraction(27)),
        ("-50", Fraction(-50)),
        (".0000672", Fraction(672, 10**7)),
        ("18.90", Fraction(189, 10)),
        ("\\frac{3}{56}", Fraction(3, 56)),
        ("-\\frac{35}{9}", Fraction(-35, 9)),
        ("\\frac{-35}{9}", Fraction(-35, 9)),
        ("-3/8", Fraction(-3, 8)),
        ("1\\frac{4}{5}", Fraction(9, 5)),  # a mixed number, not 1 * 4/5
        ("137\\frac{1}{2}", Fraction(275, 2)),
        ("0.\\overline{3}", Fraction(1, 3)),
        ("0.1\\overline{6}", Fraction(1, 6)),
        ("2\\frac{5}{3}", None),  # not a proper fraction: not a mixed number
        ("\\frac{1}{0}", None),
        ("\\sqrt{4}", None),
        ("1e5", None),
        (".", None),
        ("9" * 5000, None),  # longer than Python converts: left to sympy
    ],
)
def test_plain_number(text, value):
    assert plain_number(text) == value


E = Expr


@pytest.mark.parametrize(
    "text, tree",
    [
        ("1,-2", Unordered((E("1"), E("-2")))),
        ("\\{1\\pm\\sqrt{5},-2\\}",
         Unordered((E("1+\\sqrt{5}"), E("1-\\sqrt{5}"), E("-2")), bare=False)),
        ("1\\pm\\sqrt{19}", Unordered((E("1+\\sqrt{19}"), E("1-\\sqrt{19}")))),
        ("(6,31,-1)", Ordered("(", ")", (E("6"), E("31"), E("-1")))),
        ("(3,4]", Ordered("(", "]", (E("3"), E("4")))),
        ("(-\\infty,0]", Ordered("(", "]", (E("-\\infty"), E("0")))),
        ("(a+5)(b+2)", E("(a+5)(b+2)")),  # brackets that do not enclose the whole answer
        ("(0,9)\\cup(9,36)", SetUnion((Ordered("(", ")", (E("0"), E("9"))),
                                       Ordered("(", ")", (E("9"), E("36")))))),
        ("x\\in[-2,7]", Ordered("[", "]", (E("-2"), E("7")))),
        ("-2\\le x\\le7", Ordered("[", "]", (E("-2"), E("7")))),
        ("x>5", Ordered("(", ")", (E("5"), E("\\infty")))),
        ("5\\ge y", Ordered("(", "]", (E("-\\infty"), E("5")))),
        ("3<\\lambda\\le4", Ordered("(", "]", (E("3"), E("4")))),
        ("x<2\\lor x>3", SetUnion((Ordered("(", ")", (E("-\\infty"), E("2"))),
                                   Ordered("(", ")", (E("3"), E("\\infty")))))),
        ("\\begin{pmatrix}-1&0\\\\0&-1\\end{pmatrix}",
         Matrix(((E("-1"), E("0")), (E("0"), E("-1"))))),
        ("52_8", BaseNumeral("52", 8)),
        ("4210_{5}", BaseNumeral("4210", 5)),
        ("x_1", E("x_1")),  # a subscripted variable: "x" is no digit in base 1
        ("(C)", Choice("C")),
        ("C", Choice("C")),
        ("Evelyn", Text("evelyn")),
        ("an ellipse", Text("ellipse")),
        ("1\\frac{4}{5}", E("\\frac{9}{5}")),
        ("-1\\frac{4}{5}", E("-\\frac{9}{5}")),
        ("2\\frac{\\pi}{3}", E("2\\frac{\\pi}{3}")),  # a product, not a mixed number
        ("y=2x+3", Equation(("y", "2x+3"))),
        ("n=1,-2", Unordered((Equation(("n", "1")), E("-2")))),
    ],
)
def test_parse_answer(text, tree):
    assert parse_answer(text) == tree


def test_equation_knows_an_assignment_from_an_equation():
    assert parse_answer("y=2x+3").assigns_variable
    assert parse_answer("\\theta=\\frac{\\pi}{2}").assigns_variable
    assert not parse_answer("5x-7y+11z+4=0").assigns_variable


def _depth(tree) -> int:
    if isinstance(tree, (Ordered, Unordered)):
        return 1 + max(_depth(item) for item in tree.items)
    return 0


def test_deep_nesting_stops_at_a_leaf():
    text = "(" * 30 + "1" + ",2)" * 30  # (((1,2),2),2)... thirty levels deep
    tree = parse_answer(text)
    assert _depth(tree) == MAX_NESTING + 1
