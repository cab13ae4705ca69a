"""Every reference solution, graded as a model response against its own answer, is right."""

import json
from pathlib import Path

import pytest

from ppa_eval.grading import GSM8K, MATH, gold_answer

DATA = Path(__file__).resolve().parents[1] / "tasks" / "data"


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.slow
def test_math500_reference_solutions():
    rows = _rows(DATA / "math500" / "test.jsonl")
    verdicts = MATH.grade_many([(r["solution"], r["answer"]) for r in rows], timeout=10)
    wrong = [(r["unique_id"], r["answer"], v) for r, v in zip(rows, verdicts) if not v.correct]
    assert len(rows) == 500
    assert wrong == []


@pytest.mark.slow
def test_gsm8k_reference_answers():
    rows = _rows(DATA / "gsm8k" / "test.jsonl")
    items = [(r["answer"], gold_answer(r["answer"])) for r in rows]
    verdicts = GSM8K.grade_many(items, timeout=10)
    wrong = [(r["answer"][-40:], v) for r, v in zip(rows, verdicts) if not v.correct]
    assert len(rows) == 1319
    assert wrong == []
