"""grade / grade_many / grade_file: one response against one gold answer, a verdict each.

MATH: extract the final answer, normalise both sides (Minerva), decide in-process when every
comparison is between identical strings or plain numbers, else send the pair to the sandboxed
sympy worker under the hard time limit. GSM8K: extract the final number and compare exactly,
in-process. For both, math-verify's verdict on the raw response is taken as a second opinion
(also in the sandbox, under the same limit) and every disagreement is logged.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import sys
import tempfile
import threading
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from queue import SimpleQueue

from ppa_eval.errors import PPAEvalError
from ppa_eval.grading.equivalence import Decision, decide_in_process
from ppa_eval.grading.extract import extract_math_answer
from ppa_eval.grading.gsm8k import decide_gsm8k, extract_gsm8k_answer, gold_number
from ppa_eval.grading.normalize import normalize_answer
from ppa_eval.grading.sandbox import Sandbox, SandboxError, SandboxLimit
from ppa_eval.jsonl import read_objects

logger = logging.getLogger("ppa_eval.grading")

# Task name -> grading rules. gsm8k_cot differs from gsm8k only in its prompt.
TASKS = {"math500": "math500", "gsm8k": "gsm8k", "gsm8k_cot": "gsm8k"}


class GradingError(PPAEvalError):
    """A user-facing problem with what was asked to be graded."""


@dataclass(frozen=True)
class Verdict:
    """How one response was graded.

    reason: "exact" (equal after normalisation), "number" (plain numbers, equal as exact
    fractions), "symbolic" (sympy: exact rationals or an identity), "numeric" (sympy: equal to
    a relative 1e-20 at 50 digits, at random points for expressions in variables), "mismatch",
    "no_answer", "unparsable" (sympy could not read an expression), "timeout" (past the time or
    memory limit), "error" (the sympy worker raised: a bug, logged).
    """

    correct: bool
    extracted: str | None
    reason: str
    math_verify: bool | None
    timed_out: bool


def grading_rules(task: str) -> str:
    """The rules a task is graded by ("math500" or "gsm8k"); GradingError for unknown tasks."""
    try:
        return TASKS[task]
    except KeyError:
        known = ", ".join(sorted(TASKS))
        raise GradingError(f"unknown task {task!r}: known tasks are {known}") from None


def _decide_math(sandbox: Sandbox, gold: str, extracted: str, timeout: float) -> Decision:
    gold, answer = normalize_answer(gold), normalize_answer(extracted)
    decision = decide_in_process(gold, answer)
    if decision is not None:
        return decision
    try:
        return Decision(*sandbox.run("decide", gold, answer, timeout=timeout))
    except SandboxLimit as limit:
        logger.warning("grading timed out (%s): gold %r, answer %r", limit, gold, answer[:200])
        return Decision(False, "timeout")
    except SandboxError as error:
        logger.error("grading failed (%s): gold %r, answer %r", error, gold, answer[:200])
        return Decision(False, "error")


def _math_verify(sandbox: Sandbox, rules: str, gold: str, response: str, timeout: float):
    try:
        return sandbox.run("math_verify", rules, gold, response, timeout=timeout)
    except (SandboxLimit, SandboxError) as failure:
        logger.info("math-verify gave no verdict (%s)", failure)
        return None


def _grade(sandbox: Sandbox, task: str, response: str, gold: str, timeout: float) -> Verdict:
    rules = grading_rules(task)
    extract = extract_gsm8k_answer if rules == "gsm8k" else extract_math_answer
    extracted = extract(response)
    if extracted is None:
        decision = Decision(False, "no_answer")
    elif rules == "gsm8k":
        decision = decide_gsm8k(gold, extracted)
    else:
        decision = _decide_math(sandbox, gold, extracted, timeout)
    reference = gold_number(gold) if rules == "gsm8k" else gold
    second_opinion = _math_verify(sandbox, rules, reference, response, timeout)
    if second_opinion is not None and second_opinion != decision.correct:
        logger.info(
            "math-verify disagrees: ours %s (%s), math-verify %s; gold %r, extracted %r",
            decision.correct, decision.reason, second_opinion, gold, extracted,
        )
    return Verdict(
        correct=decision.correct,
        extracted=extracted,
        reason=decision.reason,
        math_verify=second_opinion,
        timed_out=decision.reason == "timeout",
    )


_shared_sandbox = Sandbox()
_shared_lock = threading.Lock()
atexit.register(_shared_sandbox.close)


def grade(task: str, response: str, gold: str, timeout: float = 5.0) -> Verdict:
    """Grade one response against its gold answer (task "math500", "gsm8k" or "gsm8k_cot")."""
    with _shared_lock:
        return _grade(_shared_sandbox, task, response, gold, timeout)


def grade_many(
    task: str,
    items: Iterable[tuple[str, str]],
    timeout: float = 5.0,
    workers: int | None = None,
) -> list[Verdict]:
    """Grade (response, gold) pairs, in order, over `workers` sandbox processes (default: CPUs)."""
    grading_rules(task)
    items = list(items)
    workers = max(1, min(workers or os.cpu_count() or 1, len(items)))
    idle: SimpleQueue[Sandbox] = SimpleQueue()
    sandboxes = [Sandbox() for _ in range(workers)]
    for sandbox in sandboxes:
        idle.put(sandbox)

    def grade_item(item: tuple[str, str]) -> Verdict:
        sandbox = idle.get()
        try:
            return _grade(sandbox, task, item[0], item[1], timeout)
        finally:
            idle.put(sandbox)

    try:
        with ThreadPoolExecutor(workers) as pool:
            return list(pool.map(grade_item, items))
    finally:
        for sandbox in sandboxes:
            sandbox.close()


def _read_records(path: Path) -> list[dict]:
    records = []
    for number, record in read_objects(path, GradingError):
        missing = [key for key in ("gold", "response") if key not in record]
        if missing:
            raise GradingError(f"{path}, line {number}: missing field {' and '.join(missing)}")
        if not isinstance(record["response"], str):
            raise GradingError(f"{path}, line {number}: field response must be a string")
        if not isinstance(record["gold"], (str, int, float)) or isinstance(record["gold"], bool):
            raise GradingError(f"{path}, line {number}: field gold must be a string or a number")
        records.append(record)
    return records


def _write_atomically(path: Path, lines: list[str]) -> None:
    """Write to a temporary file beside `path`, then rename: readers never see half a file."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.writelines(lines)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def grade_file(
    task: str,
    in_path: Path,
    out_path: Path | None,
    timeout: float = 5.0,
    workers: int | None = None,
) -> dict:
    """Grade a JSONL file of {"gold", "response", ...} lines; write each line with its verdict.

    Output lines are the input objects plus correct, extracted, reason and math_verify, written
    to out_path (atomically) or to stdout when it is None. Returns the summary: n, correct,
    accuracy, no_answer, timeouts, disagreements (with math-verify).
    """
    grading_rules(task)
    in_path = Path(in_path)
    records = _read_records(in_path)
    verdicts = grade_many(
        task, [(r["response"], str(r["gold"])) for r in records], timeout=timeout, workers=workers
    )
    lines = [
        json.dumps(
            {
                **record,
                "correct": verdict.correct,
                "extracted": verdict.extracted,
                "reason": verdict.reason,
                "math_verify": verdict.math_verify,
            },
            ensure_ascii=False,
        )
        + "\n"
        for record, verdict in zip(records, verdicts)
    ]
    if out_path is None:
        sys.stdout.writelines(lines)
        sys.stdout.flush()
    else:
        _write_atomically(Path(out_path), lines)
    n = len(verdicts)
    correct = sum(v.correct for v in verdicts)
    return {
        "n": n,
        "correct": correct,
        "accuracy": correct / n if n else 0.0,
        "no_answer": sum(v.reason == "no_answer" for v in verdicts),
        "timeouts": sum(v.timed_out for v in verdicts),
        "disagreements": sum(
            v.math_verify is not None and v.math_verify != v.correct for v in verdicts
        ),
    }
