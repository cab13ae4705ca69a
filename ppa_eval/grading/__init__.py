"""Answer grading for MATH-500 and GSM8K: extract, normalise, compare, with a hard time limit.

    grade("math500", response, gold) -> Verdict
    grade_many("gsm8k", [(response, gold), ...]) -> [Verdict, ...]
    grade_file("math500", Path("in.jsonl"), Path("out.jsonl")) -> summary dict

The steps live in separate modules: extract (the final answer of a MATH response), normalize
(Minerva normalisation), structure (lists, tuples, intervals, ... as a tree), numbers (plain
numbers as fractions), equivalence (comparing trees), symbolic (sympy leaf comparison),
gsm8k, second_opinion (math-verify), sandbox (the hard-limit worker process), grader.
"""

from ppa_eval.grading.grader import (
    TASKS,
    GradingError,
    Verdict,
    grade,
    grade_file,
    grade_many,
    grading_rules,
)

__all__ = ["TASKS", "GradingError", "Verdict", "grade", "grade_file", "grade_many", "grading_rules"]
