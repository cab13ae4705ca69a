"""A file of 100 hostile lines is graded in under 2 minutes on 2 cores, every line a verdict.

The lines: power towers and huge factorials, 2 MB responses (spaces after the footer phrase,
a \\pm list, garbage, digits, unclosed math), deep nesting of braces, fractions and tuples,
lone surrogates, huge exponents in GSM8K golds, two 4,000-item lists, and sympy work that only
the time limit ends. The default 5 s budget is used, as a user would.
"""

import json
import random
import string
import time

import pytest

from ppa_eval.tasks import load_task

MB = 1 << 20


def _hostile_lines() -> list[str]:
    rng = random.Random(12)
    garbage = "".join(rng.choice(string.printable) for _ in range(2 * MB))
    big_list = ", ".join(str(i) for i in range(4000))
    math = [
        ("5", "The final answer is " + " " * (2 * MB) + "X"),
        ("5", "\\boxed{1" + "\\pm 1, 1" * (MB // 8) + "}"),
        ("5", garbage),
        ("5", "\\boxed{" + garbage.replace("{", "").replace("}", "") + "}"),
        ("5", "\\boxed{" + "9" * (2 * MB) + "}"),
        ("5", "$" * (2 * MB)),
        ("5", "\\(" * MB),
        ("5", "Final Answer: The final answer is " * 100_000),
        ("5", "\\boxed{" + "{" * 500_000 + "1" + "}" * 500_000 + "}"),
        ("5", "\\boxed{" + "\\frac{1}{" * 100_000 + "2" + "}" * 100_000 + "}"),
        ("5", "\\boxed{" + "(" * 200_000 + "1,2" + ")" * 200_000 + "}"),
        ("5", "\\boxed{" + "\\frac{1}{" * 300 + "2" + "}" * 300 + "}"),
        ("5", "\\boxed{10^{10^{10^{10}}}}"),
        ("5", "\\boxed{(10^{6})!}"),
        ("5", "\\boxed{2^{2^{32}}}"),
        ("5", "\\boxed{\\sum_{k=1}^{100000} k^{k}}"),
        ("5", "\\boxed{x^{x^{x^{x^{x^{x}}}}}}"),
        ("\udc80", "\\boxed{\udc80}"),
        ("5", "\ud800 \\boxed{5} \udfff"),
        (big_list, "\\boxed{" + ", ".join(str(i) + ".0" for i in range(4000)) + "}"),
        ("5", "\\boxed{1," * 50_000),
    ]
    gsm8k = [
        ("1e30000000", "#### 1e30000000"),
        ("1" + "0" * (2 * MB), "#### " + "1" + "0" * (2 * MB)),
        ("5", "#### " + "9" * (2 * MB)),
        ("5", "1," * MB),
        ("\udc80 5", "#### 5 \udc80"),
    ]
    tasks = [("math500", g, r) for g, r in math] + [("gsm8k", g, r) for g, r in gsm8k]
    lines = []
    for i in range(100):
        task, gold, response = tasks[i % len(tasks)]
        lines.append((task, json.dumps({"id": i, "gold": gold, "response": response})))
    return lines


@pytest.mark.slow
def test_hundred_hostile_lines_in_under_two_minutes(tmp_path):
    lines = _hostile_lines()
    summaries = []
    start = time.monotonic()
    for task in ("math500", "gsm8k"):
        path = tmp_path / f"{task}.jsonl"
        path.write_text("".join(line + "\n" for t, line in lines if t == task))
        out = tmp_path / f"{task}.out.jsonl"
        summaries.append(load_task(task).grader.grade_file(path, out, workers=2))
        graded = [json.loads(line) for line in out.read_bytes().decode("utf-8").splitlines()]
        assert [g["id"] for g in graded] == [json.loads(l)["id"] for t, l in lines if t == task]
        assert all(g["correct"] is False or g["reason"] in ("exact", "number") for g in graded)
    seconds = time.monotonic() - start
    print(f"\n100 hostile lines: {seconds:.1f} s; {summaries}")
    assert sum(s["n"] for s in summaries) == 100
    assert seconds < 120
