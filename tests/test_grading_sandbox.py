"""The hard time limit: hostile responses come back with a verdict, in time, from any thread."""

import logging
import os
import random
import string
import time

import pytest

from ppa_eval.grading import MATH
from ppa_eval.grading.sandbox import Sandbox, SandboxLimit

TIMEOUT = 1.0
# grade() shares one TIMEOUT between its two sandboxed calls (ours, math-verify); a killed
# worker is restarted (about a second, more on a loaded machine) at the next call.
BUDGET = TIMEOUT + 10

_rng = random.Random(0)
GARBAGE = "".join(_rng.choice(string.printable) for _ in range(100_000))

# Passes every size check and makes sympy sum 100,000 ever larger powers: only the limit ends it.
SLOW = "\\sum_{k=1}^{100000} k^{k}"

HOSTILE = {
    "slow sum": "\\boxed{" + SLOW + "}",
    "power tower": "\\boxed{10^{10^{10^{10}}}}",
    "huge factorial": "\\boxed{(10^{6})!}",
    "100 KB of garbage": GARBAGE,
    "100 KB of garbage, boxed": "\\boxed{" + GARBAGE.replace("{", "").replace("}", "") + "}",
    "100,000 digits": "\\boxed{" + "9" * 100_000 + "}",
    "nested braces": "\\boxed{" + "{" * 50_000 + "1" + "}" * 50_000 + "}",
    "nested fractions": "\\boxed{" + "\\frac{1}{" * 5_000 + "2" + "}" * 5_000 + "}",
    "nested tuples": "\\boxed{" + "(" * 20_000 + "1,2" + ")" * 20_000 + "}",
    "unbalanced LaTeX": "\\boxed{\\frac{1}{2}" + "\\left(" * 2_000 + "\\right]}",
    "unclosed box": "The answer is \\boxed{",
    "many plus-minus": "\\boxed{1" + "\\pm 1" * 2_000 + "}",
}


@pytest.mark.parametrize("response", HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_response_gets_a_verdict_in_time(response):
    start = time.monotonic()
    verdict = MATH.grade(response, "5", timeout=TIMEOUT)
    assert time.monotonic() - start < BUDGET
    assert verdict.correct is False
    # wrong for a stated reason: refused, out of time, or not equal; never a crash ("error") or a pass
    assert verdict.reason in {"timeout", "too_long", "too_large", "unparsable", "mismatch", "no_answer"}, verdict


@pytest.mark.slow
def test_a_timeout_is_counted_logged_and_the_worker_replaced(caplog):
    with caplog.at_level(logging.WARNING, logger="ppa_eval.grading"):
        verdict = MATH.grade(HOSTILE["slow sum"], "5", timeout=TIMEOUT)
    assert (verdict.correct, verdict.reason, verdict.timed_out) == (False, "timeout", True)
    assert any("timed out" in record.getMessage() for record in caplog.records)
    # The next item is graded normally by a fresh worker.
    assert MATH.grade("\\boxed{\\sqrt{25}}", "5").reason == "symbolic"


@pytest.mark.slow
def test_sandbox_kills_its_worker_at_the_deadline():
    with Sandbox() as sandbox:
        assert sandbox.run("decide", "2", "\\sqrt{4}", timeout=30) == [True, "symbolic"]
        pid = sandbox._process.pid
        with pytest.raises(SandboxLimit):
            sandbox.run("decide", "5", SLOW, timeout=TIMEOUT)
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)  # gone, not left running in the background
        assert sandbox.run("decide", "2", "\\sqrt{4}", timeout=30) == [True, "symbolic"]


def test_towers_are_refused_before_sympy_builds_them():
    start = time.monotonic()
    with Sandbox() as sandbox:
        for tower in ["10^{10^{10^{10}}}", "(10^{6})!", "2^{2^{32}}"]:
            assert sandbox.run("decide", "5", tower, timeout=30) == [False, "too_large"]
    assert time.monotonic() - start < 30  # worker start included; no timeout


def test_the_worker_does_not_need_the_source_tree_on_its_path(monkeypatch):
    # An installed package needs no PYTHONPATH; here the checkout is on sys.path only.
    monkeypatch.delenv("PYTHONPATH", raising=False)
    with Sandbox() as sandbox:
        assert sandbox.run("decide", "2", "\\sqrt{4}", timeout=30) == [True, "symbolic"]


@pytest.mark.slow
def test_limit_holds_off_the_main_thread():
    # grade_many grades from worker threads, where SIGALRM-based timeouts cannot work.
    items = [
        (HOSTILE["slow sum"], "5"),
        ("\\boxed{\\frac{1}{\\sqrt{3}}}", "\\frac{\\sqrt{3}}{3}"),
    ]
    start = time.monotonic()
    tower, fraction = MATH.grade_many(items, timeout=TIMEOUT, workers=2)
    assert time.monotonic() - start < BUDGET
    assert (tower.reason, tower.timed_out) == ("timeout", True)
    assert (fraction.correct, fraction.reason) == (True, "symbolic")
