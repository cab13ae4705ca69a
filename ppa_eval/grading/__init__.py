"""Answer grading: the graders a task's registry entry names (ppa_eval.tasks).

    MATH.grade(response, gold) -> Verdict            (MATH-500's rules)
    GSM8K.grade_many([(response, gold), ...]) -> [Verdict, ...]
    MATH.grade_file(Path("in.jsonl"), Path("out.jsonl")) -> summary dict
    StringMatch("numbers").grade(response, ["12345"]) -> Verdict   (long-context retrieval)
    gold_answer("... #### 18") -> "18"  (the one GSM8K gold reader)

Every grader has grade(response, gold) and grade_many(pairs); the answer graders (AnswerGrader:
MATH, GSM8K) also grade files. The steps live in separate modules: extract (the final answer of a
MATH response), normalize (Minerva normalisation), structure (lists, tuples, intervals, ... as a
tree), numbers (plain numbers as fractions), equivalence (comparing trees), symbolic (sympy leaf
comparison), gsm8k, second_opinion (math-verify), sandbox (the hard-limit worker process),
string_match, errors, grader.
"""

from ppa_eval.grading.errors import GradingError
from ppa_eval.grading.grader import GSM8K, MATH, AnswerGrader, Verdict
from ppa_eval.grading.gsm8k import gold_answer
from ppa_eval.grading.string_match import StringMatch

__all__ = ["GSM8K", "MATH", "AnswerGrader", "GradingError", "StringMatch", "Verdict", "gold_answer"]
