"""GSM8K: the final number of a response, compared exactly."""

import pytest

from ppa_eval.grading.equivalence import Decision
from ppa_eval.grading import GradingError
from ppa_eval.grading.gsm8k import canonical_number, decide_gsm8k, extract_gsm8k_answer, gold_answer


@pytest.mark.parametrize(
    "response, number",
    [
        # The GSM8K reference format, calculator annotations included.
        ("She makes 9 * 2 = $<<9*2=18>>18 every day at the farmer's market.\n#### 18", "18"),
        ("#### 1,450,000", "1450000"),
        ("####18", "18"),
        ("#### $29.00.", "29.00"),  # lm-eval's strict and flexible regexes both miss this
        ("#### -3", "-3"),
        ("#### \u22125", "-5"),  # the Unicode minus: not 5
        # The first "####": later ones belong to questions the model invented.
        ("#### 6\n\nQuestion: How many?\nAnswer: 2+1=3\n#### 3", "6"),
        # "####" with no number on its line: fall back to the last number.
        ("#### \nSo the total is 12 apples.", "12"),
        # Boxed, bold, currency, trailing period.
        ("So together they have $\\boxed{260}$ sheep, 100 more than 160.", "260"),
        ("The total is $\\boxed{160 \\text{ minutes}}$", "160"),
        ("The total number of downloads is **366**.", "366"),
        ("**Answer: $694**", "694"),
        ("His profit is 200,000-130,000=$70,000.", "70000"),
        ("The original price was 19.50/0.75 = $26.00.", "26.00"),
        ("So it takes 13 years.", "13"),
        ("The difference is -48 - (-38) = -10 degrees.", "-10"),
        ("from 3-4 hours", "4"),  # a range, not minus four
        ("Enrolment went up 60%.", "60"),
        ("It is .5 of the cake", ".5"),
    ],
)
def test_extracts_the_final_number(response, number):
    assert extract_gsm8k_answer(response) == number


def test_no_number():
    assert extract_gsm8k_answer("I cannot determine the answer.") is None


@pytest.mark.parametrize(
    "gold, extracted, decision",
    [
        ("18", "18", Decision(True, "exact")),
        ("18", "18.00", Decision(True, "number")),
        ("1450000", "1450000", Decision(True, "exact")),
        ("70000", "70000.0", Decision(True, "number")),
        ("18", "18.5", Decision(False, "mismatch")),
        ("-3", "3", Decision(False, "mismatch")),
        ("5", "-5", Decision(False, "mismatch")),
        ("0.5", ".5", Decision(True, "number")),
        ("0", "-0.0", Decision(True, "number")),
        # A million digits: compared as strings, never converted to an integer.
        ("1" + "0" * 1_000_000, "1" + "0" * 1_000_000 + ".0", Decision(True, "number")),
        ("1" + "0" * 1_000_000, "1" + "0" * 999_999, Decision(False, "mismatch")),
    ],
)
def test_exact_comparison(gold, extracted, decision):
    assert decide_gsm8k(gold, extracted) == decision


@pytest.mark.parametrize(
    "gold, number",
    [
        # Real GSM8K reference solutions (test split, first and a negative one's form).
        ("Janet sells 16 - 3 - 4 = <<16-3-4=9>>9 duck eggs a day.\nShe makes 9 * 2 = $<<9*2=18>>18 "
         "every day at the farmer\u2019s market.\n#### 18", "18"),
        ("#### 2,125", "2125"),
        # Bare golds as other data sets write them.
        (" 2,125 ", "2125"),
        ("$18", "18"),
        ("18 dollars", "18"),
        ("\u22125", "-5"),
        ("-5", "-5"),
        # The last "####" holds the answer: the solution may quote the marker before it.
        ("write #### 3 at the end\n#### 7", "7"),
    ],
)
def test_gold_answer(gold, number):
    assert gold_answer(gold) == number


def test_gold_without_a_number_is_an_error():
    with pytest.raises(GradingError, match="holds no number"):
        gold_answer("#### eighteen")


def test_canonical_number():
    assert [canonical_number(n) for n in ["-0018.500", "29.00", "-0", ".5"]] == [
        "-18.5", "29", "0", "0.5"
    ]
