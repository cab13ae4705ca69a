"""A peer test: Math-Verify's own test suite, converted to MATH-style gold answers and responses.

Source: huggingface/Math-Verify at commit 5d148cf (MIT License, Copyright (c) 2024 The
HuggingFace Team), files tests/test_all.py, test_boxed.py, test_numina_cases.py,
test_open_thoughts.py, test_strict.py and test_yujianll.py: every parametrized
(gold, pred, expected) case, read from the files' syntax trees (no code of theirs is run or
copied), stored as tests/data/math_verify_suite.jsonl with the case's file, test and index.

The suite tests math-verify's parse-then-verify on two free texts; ppa-eval grades a response
against a MATH gold answer, so each case is converted (`convert`):

- gold: the contents of its \\boxed{} groups (distinct ones, joined by ", ") when it has any
  (some golds are whole solutions), else the answer of its "final answer is $X$" footer, else
  the text without its $ delimiters;
- response: the pred as written when it already holds a box or a "final answer is" phrase,
  or when it is long (a model's whole output: our fallback reads it); a short pred (an answer
  stated in a few words) is put in a Minerva footer, "Final Answer: The final answer is <pred>.
  I hope it is correct.", the form the prompt asks for;
- both: backslashes doubled by a raw string (r"\\\\frac" in 8 cases) are undone.

Cases whose label we judge wrong, or that test a math-verify option or parser artifact with no
counterpart here, carry an `excluded` note saying why; docs/grading.md lists them.
"""

import json
import re
from pathlib import Path

import pytest

from ppa_eval.grading import MATH

CASES_PATH = Path(__file__).parent / "data" / "math_verify_suite.jsonl"
CASES = [json.loads(line) for line in CASES_PATH.read_text().splitlines()]
SHORT_PRED = 200  # characters: longer preds are whole model outputs
TARGET = 0.95


def _boxes(text: str) -> list[str]:
    """Contents of every \\boxed{...} (braces matched), in order."""
    found = []
    for match in re.finditer(r"\\boxed\{", text):
        depth, at = 1, match.end()
        while at < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[at], 0)
            at += 1
        if depth == 0:
            found.append(text[match.end() : at - 1].strip())
    return found


def _undouble(text: str) -> str:
    r"""Raw strings written with doubled backslashes (r"\\frac", a slip in a few cases) read as
    the LaTeX they mean; a matrix row break (\\) followed by a command is left alone."""
    return text if "\\begin" in text else re.sub(r"(?<!\\)\\\\(?=[A-Za-z])", r"\\", text)


def convert(case: dict) -> tuple[str, str]:
    """(gold, response) for ppa-eval from one suite case (rules in the module doc)."""
    suite_gold, pred = _undouble(case["suite_gold"]), _undouble(case["suite_pred"])
    boxes = list(dict.fromkeys(_boxes(suite_gold)))
    footer = re.search(r"final answer is \$([^$]+)\$", suite_gold)
    if boxes:
        gold = ", ".join(boxes)
    elif footer:
        gold = footer.group(1).strip()
    else:
        gold = re.sub(r"(?<!\\)\$", "", suite_gold).strip()
    has_answer = re.search(r"\\boxed|\\fbox|final answer", pred, re.IGNORECASE)
    if has_answer or len(pred) > SHORT_PRED:
        return gold, pred
    return gold, f"Final Answer: The final answer is {pred.strip()}. I hope it is correct."


def test_conversion_examples():
    case = {"suite_gold": "$28\\%$", "suite_pred": "28 percent"}
    assert convert(case) == (
        "28\\%", "Final Answer: The final answer is 28 percent. I hope it is correct."
    )
    solution = {"suite_gold": "so $\\boxed{\\{-1\\} \\cup [0,7)}.$", "suite_pred": "$\\boxed{1}$"}
    assert convert(solution) == ("\\{-1\\} \\cup [0,7)", "$\\boxed{1}$")


def test_every_case_is_cited_and_every_exclusion_explained():
    assert len(CASES) == 269
    assert all(c["source"].startswith("huggingface/Math-Verify@5d148cf tests/") for c in CASES)
    assert all(len(c["excluded"]) > 20 for c in CASES if "excluded" in c)


@pytest.mark.slow
def test_agreement_with_the_suite_labels():
    pairs = [convert(c)[::-1] for c in CASES]
    verdicts = MATH.grade_many(pairs, timeout=10)
    counted = [(c, v) for c, v in zip(CASES, verdicts) if "excluded" not in c]
    disagreements = [
        (c["source"], convert(c)[0], v.extracted, v.reason)
        for c, v in counted if v.correct != c["expected"]
    ]
    agreement = 1 - len(disagreements) / len(counted)
    print(f"\nagreement {len(counted) - len(disagreements)}/{len(counted)} = {agreement:.3f}; "
          f"excluded {len(CASES) - len(counted)}")
    for disagreement in disagreements:
        print(disagreement)
    assert agreement >= TARGET
