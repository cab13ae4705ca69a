"""Minerva normalisation of real MATH-500 gold answers and of answers as models write them."""

import pytest

from ppa_eval.grading.normalize import normalize_answer


@pytest.mark.parametrize(
    "answer, normal_form",
    [
        # MATH-500 gold answers.
        ("\\left( 3, \\frac{\\pi}{2} \\right)", "(3,\\frac{\\pi}{2})"),
        ("\\text{Evelyn}", "Evelyn"),
        ("90^\\circ", "90"),
        ("11\\sqrt2", "11\\sqrt{2}"),
        ("\\frac43", "\\frac{4}{3}"),
        ("\\frac 59", "\\frac{5}{9}"),
        ("\\frac9{19}", "\\frac{9}{19}"),
        ("\\frac{270}7\\text{ degrees}", "\\frac{270}{7}"),
        ("\\dfrac{17}{50}", "\\frac{17}{50}"),
        ("10,\\!080", "10080"),
        ("11,\\! 111,\\! 111,\\! 100", "11111111100"),
        ("58,500", "58500"),
        ("\\$32,\\!348", "32348"),
        ("\\$18.90", "18.90"),
        ("864 \\mbox{ inches}^2", "864"),
        ("15\\mbox{ cm}^2", "15"),
        ("5.4 \\text{ cents}", "5.4"),
        ("\\text{(C)}", "(C)"),
        ("1,-2", "1,-2"),  # a list, not the number 1-2 or -12
        ("3, 5, 7", "3,5,7"),
        ("x \\in [-2,7]", "x\\in[-2,7]"),
        ("5x - 7y + 11z + 4 = 0", "5x-7y+11z+4=0"),  # kept whole, unlike Minerva's split("=")
        ("\\cot x", "\\cot x"),  # Minerva's "\cotx" would be unreadable
        ("1\\frac{4}{5}", "1\\frac{4}{5}"),  # a mixed number is read in `structure`
        ("\\begin{pmatrix} -1 & 0 \\\\ 0 & -1 \\end{pmatrix}",
         "\\begin{pmatrix}-1&0\\\\0&-1\\end{pmatrix}"),
        ("\\{1\\pm\\sqrt{5},-2\\}", "\\{1\\pm\\sqrt{5},-2\\}"),
        # Answers as models write them.
        ("\\frac{\\sqrt3}{3}", "\\frac{\\sqrt{3}}{3}"),
        ("\\sqrt[3]2", "\\sqrt[3]{2}"),
        ("\\tfrac12", "\\frac{1}{2}"),
        ("\\boxed{7}", "7"),
        ("$5$ cm", "5"),
        ("15 cm^2", "15"),
        ("864 square inches", "864"),
        ("30°", "30"),
        ("10\\%", "10"),
        ("10\\,080", "10080"),
        ("10{,}080", "10080"),
        ("\\text{an ellipse}", "an ellipse"),
        ("-2 \\text{ and } 1", "-2,1"),
        ("x<2 \\text{ or } x>3", "x<2\\lor x>3"),
        ("\\left[ 0, 1 \\right)", "[0,1)"),
        ("x \\geq 5", "x\\ge5"),
        ("\\lbrace 1, 2 \\rbrace", "\\{1,2\\}"),
        ("18.", "18"),
        ("1,234.5", "1234.5"),
    ],
)
def test_normal_form(answer, normal_form):
    assert normalize_answer(answer) == normal_form


def test_matrix_row_breaks_survive_spacing_removal():
    # "\\ " is a row break followed by a space, not the spacing command "\ ".
    assert normalize_answer("\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}") == (
        "\\begin{pmatrix}1\\\\2\\end{pmatrix}"
    )
