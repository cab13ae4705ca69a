"""The answer graders MATH and GSM8K: one response against one gold answer, a verdict each.

    MATH.grade(response, gold) -> Verdict
    GSM8K.grade_many([(response, gold), ...]) -> [Verdict, ...]
    MATH.grade_file(Path("in.jsonl"), Path("out.jsonl")) -> summary dict

MATH: extract the final answer (extract), normalise both sides (Minerva), decide in-process when
every comparison is between identical strings or plain numbers, else send the pair to the
sandboxed sympy worker. GSM8K: extract the final number and compare exactly, in-process. For
both, math-verify's verdict on the raw response is taken as a second opinion (in the sandbox)
and every disagreement is logged.

Time: one budget per response (`timeout`, 5 s by default) shared by every step: in-process
steps are linear in the input (or bounded: answers over MAX_ANSWER_CHARS are refused, over
MAX_IN_PROCESS_CHARS go to the sandbox), our sympy decision gets what remains of the budget
and math-verify what remains after it (nothing, after a timeout). A hostile response costs
about the budget plus the restart of the killed worker.

No run lost: grade_many never raises for a bad item (it gets an "error" verdict with the
reason), only for a worker that cannot start at all. grade_file checks its
output path before grading, writes each line as soon as it and the lines before it are graded,
always as valid UTF-8 (a lone surrogate is written as its JSON escape), and turns lines it
cannot read into error lines.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from queue import SimpleQueue

from ppa_eval.grading.equivalence import Decision, decide_in_process
from ppa_eval.grading.errors import GradingError
from ppa_eval.grading.extract import extract_math_answer
from ppa_eval.grading.gsm8k import decide_gsm8k, extract_gsm8k_answer, gold_answer
from ppa_eval.grading.normalize import normalize_answer
from ppa_eval.grading.sandbox import Sandbox, SandboxError, SandboxLimit, WorkerStartError
from ppa_eval.grading.structure import Unordered, list_items, parse_answer

logger = logging.getLogger("ppa_eval.grading")

# No MATH answer is this long; a response whose answer is, is wrong without sympy's opinion.
MAX_ANSWER_CHARS = 10_000
# Structure reading and comparison are decided in-process only below this size, where their
# worst case (pairing the items of two lists) is milliseconds; larger pairs go to the sandbox.
MAX_IN_PROCESS_CHARS = 2_000
# math-verify is not asked with less than this left of the budget (it could not finish), about
# responses longer than this (no model writes a MATH solution of 100 KB; math-verify would spend
# the budget reading it), nor about answers ours refused as too long, too large or out of time
# (it would build the tower and be killed, and the worker restart costs seconds).
MIN_SECOND_OPINION_S = 0.05
MAX_SECOND_OPINION_CHARS = 100_000
_NO_SECOND_OPINION = {"too_long", "too_large", "timeout"}


@dataclass(frozen=True)
class Verdict:
    """How one response was graded.

    reason: "exact" (equal after normalisation), "number" (plain numbers, equal as exact
    fractions), "symbolic" (sympy: exact rationals or an identity), "numeric" (sympy: equal to
    a relative 1e-20 at 50 digits, where values are irrational), "mismatch", "no_answer",
    "too_long" (an answer over MAX_ANSWER_CHARS), "too_large" (a number of more than 10,000
    digits, refused before sympy builds it), "unparsable" (sympy could not read an expression), "timeout" (past the time or memory limit), "error" (the item could not be
    graded: `error` says why, e.g. an empty gold answer or a response that is no string).
    extracted_by: how the answer was found: "footer", "box", "boxes" (several boxes read as
    one list), "fallback" (the last math span or number: see extract), "number" (GSM8K's final
    number: see gsm8k), "exact_match" (string_match), or None.
    """

    correct: bool
    extracted: str | None
    reason: str
    math_verify: bool | None
    timed_out: bool
    extracted_by: str | None = None
    error: str | None = None


def _is_list(normal_form: str) -> bool:
    return len(list_items(normal_form)) > 1


def _normal_forms(gold: str, answer: str) -> tuple[str, str]:
    """Both normal forms; a side keeps "3,100" a list (no thousands separator) when the other
    side is a list."""
    gold_form, answer_form = normalize_answer(gold), normalize_answer(answer)
    if _is_list(gold_form):
        answer_form = normalize_answer(answer, join_thousands=False)
    if _is_list(answer_form):
        gold_form = normalize_answer(gold, join_thousands=False)
    return gold_form, answer_form


def _decide(sandbox: Sandbox, gold: str, answer: str, deadline: float) -> Decision:
    if len(answer) > MAX_ANSWER_CHARS:
        return Decision(False, "too_long")
    if len(gold) + len(answer) <= MAX_IN_PROCESS_CHARS:
        decision = decide_in_process(gold, answer)
        if decision is not None:
            return decision
    try:
        return Decision(*sandbox.run("decide", gold, answer, timeout=deadline - time.monotonic()))
    except SandboxLimit as limit:
        logger.warning("grading timed out (%s): gold %r, answer %r", limit, gold, answer[:200])
        return Decision(False, "timeout")
    except SandboxError as error:
        logger.error("grading failed (%s): gold %r, answer %r", error, gold, answer[:200])
        return Decision(False, "error")


def _grade_math(sandbox: Sandbox, response: str, gold: str, deadline: float):
    """(decision, extracted, extracted_by) for one MATH response."""
    if not normalize_answer(gold):
        raise GradingError(f"the gold answer {gold!r} is empty once normalised; fix the data")
    extraction = extract_math_answer(response)
    if extraction is None:
        return Decision(False, "no_answer"), None, None
    if len(extraction.answer) > MAX_ANSWER_CHARS:  # before normalising megabytes
        return Decision(False, "too_long"), extraction.answer[:200], extraction.method
    gold_form, answer_form = _normal_forms(gold, extraction.answer)
    if not answer_form:
        return Decision(False, "no_answer"), extraction.answer, extraction.method
    decision = _decide(sandbox, gold_form, answer_form, deadline)
    gold_tree = parse_answer(gold_form)
    parts = len(gold_tree.items) if isinstance(gold_tree, Unordered) else 1
    if decision.correct or decision.reason == "timeout" or len(extraction.boxes) < parts or parts < 2:
        return decision, extraction.answer, extraction.method
    # An answer given in several boxes: the last as many distinct boxes as the gold has parts.
    boxed = ", ".join(list(dict.fromkeys(extraction.boxes))[-parts:])
    gold_form, answer_form = _normal_forms(gold, boxed)
    several = _decide(sandbox, gold_form, answer_form, deadline)
    return (several, boxed, "boxes") if several.correct else (decision, extraction.answer, extraction.method)


def _math_verify(sandbox: Sandbox, gold: str, response: str, deadline: float):
    remaining = deadline - time.monotonic()
    if remaining < MIN_SECOND_OPINION_S:
        return None
    try:
        return sandbox.run("math_verify", gold, response, timeout=remaining)
    except (SandboxLimit, SandboxError) as failure:
        logger.info("math-verify gave no verdict (%s)", failure)
        return None


def _check_item(response, gold) -> None:
    if not isinstance(response, str):
        raise GradingError(f"the response must be a string, not {type(response).__name__}")
    if not isinstance(gold, (str, int, float)) or isinstance(gold, bool):
        raise GradingError(f"the gold answer must be a string or a number, not {type(gold).__name__}")



_shared_sandbox = Sandbox()
_shared_lock = threading.Lock()
atexit.register(_shared_sandbox.close)


class AnswerGrader:
    """Rules that find a response's final answer and compare it with the gold answer, in a sandbox
    with a hard time limit, with math-verify's second opinion: `MATH` and `GSM8K`. Stateless: the
    sandboxes belong to each call (one shared by `grade`, one per worker for the others)."""

    def _decide(self, sandbox: Sandbox, response: str, gold: str, deadline: float):
        """(decision, extracted, extracted_by, the gold answer as math-verify reads it)."""
        raise NotImplementedError

    def _grade(self, sandbox: Sandbox, response: str, gold: str, timeout: float) -> Verdict:
        """One verdict; never raises for a bad item (only WorkerStartError: a broken install)."""
        deadline = time.monotonic() + timeout
        try:
            _check_item(response, gold)
            gold = str(gold)
            decision, extracted, extracted_by, reference = self._decide(sandbox, response, gold, deadline)
        except WorkerStartError:
            raise
        except Exception as error:  # GradingError: bad data; anything else: a bug, logged
            if not isinstance(error, GradingError):
                logger.exception("grading raised on gold %r", str(gold)[:200])
            message = f"{type(error).__name__}: {error}" if not isinstance(error, GradingError) else str(error)
            return Verdict(False, None, "error", None, False, error=message)
        asked = len(response) <= MAX_SECOND_OPINION_CHARS and decision.reason not in _NO_SECOND_OPINION
        second_opinion = _math_verify(sandbox, reference, response, deadline) if asked else None
        if second_opinion is not None and second_opinion != decision.correct:
            logger.info(
                "math-verify disagrees: ours %s (%s), math-verify %s; gold %r, extracted %r",
                decision.correct, decision.reason, second_opinion, gold[:200], (extracted or "")[:200],
            )
        return Verdict(
            correct=decision.correct,
            extracted=extracted,
            reason=decision.reason,
            math_verify=second_opinion,
            timed_out=decision.reason == "timeout",
            extracted_by=extracted_by,
        )

    def grade(self, response: str, gold: str, timeout: float = 5.0) -> Verdict:
        """Grade one response against its gold answer."""
        with _shared_lock:
            return self._grade(_shared_sandbox, response, gold, timeout)

    def iter_grades(self, items: Iterable[tuple[str, str]], timeout: float = 5.0,
                    workers: int | None = None) -> Iterator[Verdict]:
        """Verdicts for (response, gold) pairs, in order, each as soon as it and those before it are
        graded, over `workers` sandbox processes (default: CPUs)."""
        items = list(items)
        workers = max(1, min(workers or os.cpu_count() or 1, len(items)))
        idle: SimpleQueue[Sandbox] = SimpleQueue()
        sandboxes = [Sandbox() for _ in range(workers)]
        for sandbox in sandboxes:
            idle.put(sandbox)

        def grade_item(item: tuple[str, str]) -> Verdict:
            sandbox = idle.get()
            try:
                return self._grade(sandbox, item[0], item[1], timeout)
            finally:
                idle.put(sandbox)

        try:
            with ThreadPoolExecutor(workers) as pool:
                yield from pool.map(grade_item, items)
        finally:
            for sandbox in sandboxes:
                sandbox.close()

    def grade_many(self, items: Iterable[tuple[str, str]], timeout: float = 5.0,
                   workers: int | None = None) -> list[Verdict]:
        """Grade (response, gold) pairs, in order; a bad pair gets an "error" verdict, never raises."""
        return list(self.iter_grades(items, timeout=timeout, workers=workers))

    def grade_file(self, in_path: Path, out_path: Path | None, timeout: float = 5.0,
                   workers: int | None = None) -> dict:
        """Grade a JSONL file of {"gold", "response", ...} lines; write each line with its verdict.

        Output lines are the input objects plus correct, extracted, extracted_by, reason and
        math_verify (and error, for a line that could not be graded; an unreadable line is written
        as {"line": n, ...} with its error), to out_path or to stdout when it is None. Returns the
        summary: n, correct, accuracy, no_answer, fallback, errors, timeouts, disagreements (with
        math-verify). A file without a line is a GradingError: it has no accuracy.
        """
        lines = _read_lines(Path(in_path))
        if not lines:  # an accuracy of nothing would read as 0%
            raise GradingError(f"{in_path} holds no line to grade; give a JSONL file with gold and response on each line")
        with _open_output(out_path) as out:
            gradable = [(r["response"], r["gold"]) for _, r, why in lines if why is None]
            verdicts = self.iter_grades(gradable, timeout=timeout, workers=workers)
            counts = dict.fromkeys(
                ["n", "correct", "no_answer", "fallback", "errors", "timeouts", "disagreements"], 0
            )
            for number, record, why in lines:
                if why is None:
                    verdict = next(verdicts)
                else:
                    verdict = Verdict(False, None, "error", None, False, error=f"line {number}: {why}")
                line = {"line": number} if record is None else dict(record)
                line.update(correct=verdict.correct, extracted=verdict.extracted,
                            extracted_by=verdict.extracted_by, reason=verdict.reason,
                            math_verify=verdict.math_verify)
                if verdict.error is not None:
                    line["error"] = verdict.error
                out.write(_encode(line))
                out.flush()
                counts["n"] += 1
                counts["correct"] += verdict.correct
                counts["no_answer"] += verdict.reason == "no_answer"
                counts["fallback"] += verdict.extracted_by == "fallback"
                counts["errors"] += verdict.reason == "error"
                counts["timeouts"] += verdict.timed_out
                counts["disagreements"] += (verdict.math_verify is not None
                                            and verdict.math_verify != verdict.correct)
        n = counts["n"]
        return {"n": n, "correct": counts["correct"], "accuracy": counts["correct"] / n,
                **{k: v for k, v in counts.items() if k not in ("n", "correct")}}


class MathGrader(AnswerGrader):
    """MATH rules: the final answer (footer, box, else the last math span), Minerva-normalised,
    compared in-process or by sympy; math-verify reads the gold as LaTeX."""

    def _decide(self, sandbox, response, gold, deadline):
        decision, extracted, extracted_by = _grade_math(sandbox, response, gold, deadline)
        return decision, extracted, extracted_by, f"${gold}$"

    def __repr__(self) -> str:
        return "MATH"


class GSM8KGrader(AnswerGrader):
    """GSM8K rules: the final number, compared exactly with the number of the gold (a bare number
    or a reference solution ending "#### N")."""

    def _decide(self, sandbox, response, gold, deadline):
        reference = gold_answer(gold)
        extracted = extract_gsm8k_answer(response)
        decision = Decision(False, "no_answer") if extracted is None else decide_gsm8k(reference, extracted)
        return decision, extracted, "number", reference

    def __repr__(self) -> str:
        return "GSM8K"


MATH = MathGrader()
GSM8K = GSM8KGrader()


def _read_lines(path: Path) -> list[tuple[int, dict | None, str | None]]:
    """(line number, record, None) for each readable line, (line number, None, why) otherwise.

    Lines are split at b"\\n" only, as ppa_eval.jsonl does (U+2028 may sit inside strings)."""
    try:
        data = Path(path).read_bytes()
    except OSError as error:
        raise GradingError(f"cannot read {path}: {error.strerror}") from None
    lines = []
    for number, line in enumerate(data.split(b"\n"), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            lines.append((number, None, f"not valid JSON ({getattr(error, 'msg', error)})"))
            continue
        if not isinstance(record, dict):
            lines.append((number, None, "not a JSON object"))
            continue
        missing = [key for key in ("gold", "response") if key not in record]
        if missing:
            lines.append((number, record, f"missing field {' and '.join(missing)}"))
            continue
        lines.append((number, record, None))
    return lines


def _open_output(out_path: Path):
    """The output stream, checked and opened before any grading: a binary file or stdout."""
    if out_path is None:
        sys.stdout.flush()
        return contextlib.nullcontext(sys.stdout.buffer)  # not closed afterwards
    out_path = Path(out_path)
    if out_path.exists() and not out_path.is_file():
        raise GradingError(f"{out_path} exists and is not a regular file; give a file path for the output")
    try:
        return out_path.open("wb")
    except OSError as error:
        raise GradingError(f"cannot write {out_path}: {error.strerror}") from None


def _encode(record: dict) -> bytes:
    """One JSON line as UTF-8. A lone surrogate (valid in JSON input, "\\udc80") cannot be
    encoded; it is written as its JSON escape, which reads back as the same string."""
    return (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8", "backslashreplace")
