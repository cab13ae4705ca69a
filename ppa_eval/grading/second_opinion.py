"""math-verify's verdict on the same response, as a second opinion. Runs only in the sandbox.

math-verify reads the whole response with its own extraction, so a disagreement can come from
either step. Its signal-based timeouts are switched off (parsing_timeout=None,
timeout_seconds=None): they fail outside the main thread, and the sandbox enforces the limit.
"""

from __future__ import annotations

from math_verify import parse, verify


def math_verify_verdict(gold: str, response: str) -> bool | None:
    """math-verify's verdict; None when it cannot read the gold answer (given as math-verify reads
    it: a MATH answer in $...$, a GSM8K number bare)."""
    gold_parsed = parse(gold, parsing_timeout=None)
    if not gold_parsed:
        return None
    answer = parse(response, parsing_timeout=None)
    return bool(verify(gold_parsed, answer, timeout_seconds=None))
