"""Answer grading for MATH-500 and GSM8K: extract, normalise, compare, with a hard time limit.

    grade("math500", response, gold) -> Verdict
    grade_many("gsm8k", [(response, gold), ...]) -> [Verdict, ...]
    grade_file("math500", Path("in.jsonl"), Path("out.jsonl")) -> summary dict
    gold_answer("... #### 18") -> "18"  (the one GSM8K gold reader)

The steps live in separate modules: extract (the final answer of a MATH response), normalize
(Minerva normalisation), structure (lists, tuples, intervals, ... as a tree), numbers (plain
numbers as fractions), equivalence (comparing trees), symbolic (sympy leaf comparison),
gsm8k, second_opinion (math-verify), sandbox (the hard-limit worker process), errors, grader.
"""

from ppa_eval.grading.errors import GradingError
from ppa_eval.grading.grader import (
    Verdict,
    grade,
    grade_file,
    grade_many,
    gradable_tasks,
    grading_rules,
    iter_grades,
)
from ppa_eval.grading.gsm8k import gold_answer

__all__ = [
    "GradingError", "Verdict", "gold_answer", "grade", "grade_file", "grade_many", "gradable_tasks",
    "grading_rules", "iter_grades",
]
