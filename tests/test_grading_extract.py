"""Finding the final answer in a MATH response: Minerva footers and boxes, as models write them."""

import pytest

from ppa_eval.grading.extract import brace_pairs, extract_math_answer, last_boxed


@pytest.mark.parametrize(
    "response, answer",
    [
        # The Minerva exemplar footers (lm-eval minerva_math list_fewshot_samples).
        ("so the domain is $\\boxed{[2,5)}$.\nFinal Answer: The final answer is $[2,5)$. "
         "I hope it is correct.", "[2,5)"),
        ("Final Answer: The final answer is $24$. I hope it is correct.", "24"),
        ("Final Answer: The final answer is $-\\frac{2}{3}$. I hope it is correct.",
         "-\\frac{2}{3}"),
        # Without the last sentence, the way models often end.
        ("Dividing, we get $3/4$.\nThe final answer is $3/4$.", "3/4"),
        ("Final Answer: The final answer is $\\frac{3}{56}$.", "\\frac{3}{56}"),
        ("The final answer is 12.", "12"),
        ("The final answer is 12. I hope it is correct.", "12"),
        ("Final Answer: The final answer is $$\\frac{1}{2}$$. I hope it is correct.",
         "\\frac{1}{2}"),
        # An escaped dollar inside the math does not end it.
        ("Final Answer: The final answer is $\\$32,\\!348$. I hope it is correct.",
         "\\$32,\\!348"),
        # The footer's answer cleaned of its wrapper, a box inside it unwrapped.
        ("Final Answer: The final answer is $\\boxed{6}$. I hope it is correct.", "6"),
        ("The final answer is \\(\\boxed{5}\\).", "5"),
        ("The final answer is \\[5\\]", "5"),
        ("The final answer is \\(5\\). I hope it is correct.", "5"),
        ("**Final answer:** The final answer is **5**.", "5"),
        ("The final answer is: $\\frac{1}{2}$", "\\frac{1}{2}"),
        # A footer in words, then a box: the box (the phrase was no answer).
        ("So the final answer is an integer, and we find $\\boxed{7}$.", "7"),
        # A footer in words, after the boxes of the working: the footer.
        ("We get $\\boxed{3}$ first.\nThe final answer is 12.", "12"),
        ("The final answer is 12 apples.", "12"),
        ("The final answer is Answer \\[ \n 9 \n \\]", "9"),
        # 200 KB of spaces after the phrase: linear, and no answer there.
        ("The final answer is" + " " * 200_000 + "X", "X"),
        # The first footer counts: what follows is a problem the model invented.
        ("Final Answer: The final answer is $5$. I hope it is correct.\n\nProblem:\nFind $3+4$."
         "\n\nSolution:\nFinal Answer: The final answer is $7$. I hope it is correct.", "5"),
        # The footer wins over a box in the working.
        ("So $x=\\boxed{2}$ is one root.\nFinal Answer: The final answer is $2,3$. "
         "I hope it is correct.", "2,3"),
        # MATH reference style: the last box.
        ("Therefore, $\\boxed{3}$ is a candidate, and the answer is $\\boxed{27}$.", "27"),
        ("$$40\\cdot 50=\\fbox{2000}$$", "2000"),
        ("$2+\\frac{5}{3}+1=\\boxed{\\frac{14}{3}}$", "\\frac{14}{3}"),
        ("The set is $\\boxed{\\{1\\pm\\sqrt{5},-2\\}}$.", "\\{1\\pm\\sqrt{5},-2\\}"),
        ("there are $\\boxed 9$ divisors", "9"),
        ("$\\boxed{ \\begin{pmatrix} -1 & 0 \\\\ 0 & -1 \\end{pmatrix} }$",
         "\\begin{pmatrix} -1 & 0 \\\\ 0 & -1 \\end{pmatrix}"),
    ],
)
def test_extracts_the_final_answer(response, answer):
    assert extract_math_answer(response).answer == answer


def test_several_boxes_are_kept():
    found = extract_math_answer("so $\\boxed{(2,2)}$ and $\\boxed{(6,2)}$.")
    assert (found.answer, found.method, found.boxes) == ("(6,2)", "box", ("(2,2)", "(6,2)"))


@pytest.mark.parametrize(
    "response, answer",
    [
        ("Therefore, the probability that Alice wins is 2/3. <|im_start|>user", "2/3"),
        ("So the ordered pair is $(7, 6)$.", "(7, 6)"),
        ("Final Answer: The largest $n$ is 34.", "34"),
        ("The sum is $12$ and the product $35$.\nDone", "35"),
        ("The final answer is $5", "5"),  # unclosed math in the footer: not read as a footer
    ],
)
def test_fallback_last_math_or_number_ending_a_sentence(response, answer):
    found = extract_math_answer(response)
    assert (found.answer, found.method) == (answer, "fallback")


@pytest.mark.parametrize(
    "response",
    [
        "I am not sure how to solve this; maybe $3^3 = 27$ helps.",  # a hedge: no sentence end
        "Therefore the answer is $\\boxed{27",  # truncated generation: no final answer
        "So far $\\boxed{3}$ works, so the answer is \\boxed{\\frac{1}{",
        "The answer is $\\boxed{}$.",
        "",
    ],
)
def test_no_final_answer(response):
    assert extract_math_answer(response) is None


def test_last_boxed_skips_escaped_braces():
    assert last_boxed("\\boxed{\\{1,2\\}} and later \\boxed{\\}}") == "\\}"


def test_brace_pairs_matches_nesting_and_ignores_escapes():
    text = "a{b{c}\\{d\\}e}{"  # the last brace never closes
    assert brace_pairs(text) == {3: 5, 1: 12}
