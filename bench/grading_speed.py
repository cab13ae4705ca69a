"""How fast the answer grader is, on the reference solutions and on the labelled cases.

Rows: the 500 MATH-500 reference solutions graded against their answers (target: under a
minute on 2 cores), the 1,319 GSM8K reference answers, and the hand-labelled cases of
tests/data/grading_cases.jsonl (which send many more pairs to sympy). Each row is timed with
grade_many over 1 and 2 worker processes, math-verify's second opinion included, worker start
included. "needs sympy" counts the pairs that cannot be decided in-process.

    python bench/grading_speed.py [--out results/bench]

Prints the table and writes grading_speed.json to --out.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

from ppa_eval.grading import gold_answer
from ppa_eval.grading.equivalence import decide_in_process
from ppa_eval.grading.extract import extract_math_answer
from ppa_eval.grading.normalize import normalize_answer
from ppa_eval.tasks import load_task

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tasks" / "data"


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def workloads() -> dict[str, tuple[str, list[tuple[str, str]]]]:
    """name -> (task, [(response, gold), ...])."""
    math = _jsonl(DATA / "math500" / "test.jsonl")
    gsm8k = _jsonl(DATA / "gsm8k" / "test.jsonl")
    cases = _jsonl(ROOT / "tests" / "data" / "grading_cases.jsonl")
    return {
        "MATH-500 reference solutions": ("math500", [(r["solution"], r["answer"]) for r in math]),
        "GSM8K reference answers": (
            "gsm8k", [(r["answer"], gold_answer(r["answer"])) for r in gsm8k]
        ),
        "labelled MATH cases": (
            "math500", [(c["response"], c["gold"]) for c in cases if c["task"] == "math500"]
        ),
    }


def needs_sympy(task: str, items: list[tuple[str, str]]) -> int:
    """How many (response, gold) pairs the in-process comparison cannot decide."""
    if task != "math500":
        return 0
    count = 0
    for response, gold in items:
        found = extract_math_answer(response)
        if found is not None:
            count += decide_in_process(normalize_answer(gold), normalize_answer(found.answer)) is None
    return count


def measure(task: str, items: list[tuple[str, str]], workers: int) -> dict:
    start = time.perf_counter()
    verdicts = load_task(task).grader.grade_many(items, workers=workers)
    seconds = time.perf_counter() - start
    return {
        "workers": workers,
        "n": len(items),
        "seconds": round(seconds, 2),
        "per_second": round(len(items) / seconds, 1),
        "correct": sum(v.correct for v in verdicts),
        "timeouts": sum(v.timed_out for v in verdicts),
        "math_verify_disagrees": sum(
            v.math_verify is not None and v.math_verify != v.correct for v in verdicts
        ),
        "math_verify_none": sum(v.math_verify is None for v in verdicts),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "bench")
    args = parser.parse_args()
    rows = []
    for name, (task, items) in workloads().items():
        sympy_pairs = needs_sympy(task, items)
        for workers in (1, 2):
            row = {"workload": name, "needs_sympy": sympy_pairs, **measure(task, items, workers)}
            rows.append(row)
            print(json.dumps(row), flush=True)
    columns = list(rows[0])
    print("\n| " + " | ".join(columns) + " |\n|" + "---|" * len(columns))
    for row in rows:
        print("| " + " | ".join(str(row[c]) for c in columns) + " |")
    args.out.mkdir(parents=True, exist_ok=True)
    machine = {"cpus": os.cpu_count(), "python": platform.python_version(),
               "load_average": os.getloadavg()}
    (args.out / "grading_speed.json").write_text(
        json.dumps({"machine": machine, "rows": rows}, indent=2) + "\n"
    )


if __name__ == "__main__":
    main()
