"""The grader against 400+ hand-labelled (gold, response, correct?) cases.

tests/data/grading_cases.jsonl: real MATH-500 and GSM8K gold answers, each with responses
written by hand in the ways models write them, right and wrong, one `format` per case
(fractions, intervals, base subscripts, ...). Labels are the hand judgement, not the grader's
output; the conventions behind the debatable ones are in ppa_eval/grading/equivalence.py.
"""

import json
from collections import defaultdict
from pathlib import Path

import pytest

from ppa_eval.tasks import load_task

CASES_PATH = Path(__file__).parent / "data" / "grading_cases.jsonl"
CASES = [json.loads(line) for line in CASES_PATH.read_text().splitlines()]


def test_every_format_has_right_and_wrong_cases():
    labels = defaultdict(set)
    for case in CASES:
        labels[case["format"]].add(case["correct"])
    assert len(CASES) >= 300
    assert {f for f, seen in labels.items() if seen != {True, False}} == set()


@pytest.mark.slow
@pytest.mark.parametrize("task", ["math500", "gsm8k"])
def test_grader_agrees_with_every_label(task):
    cases = [c for c in CASES if c["task"] == task]
    verdicts = load_task(task).grader.grade_many([(c["response"], c["gold"]) for c in cases], timeout=10)
    disagreements = [
        (c["format"], c["gold"], c["response"][-60:], v)
        for c, v in zip(cases, verdicts)
        if v.correct != c["correct"]
    ]
    assert disagreements == []
    assert not any(v.timed_out for v in verdicts)
