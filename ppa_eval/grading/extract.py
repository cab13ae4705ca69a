"""Find the final answer of a MATH solution: the Minerva footer first, else the last box.

Minerva's few-shot exemplars end with "Final Answer: The final answer is $X$. I hope it is
correct." A model often drops the last sentence, or writes \\boxed{X} as the MATH reference
solutions do, so all three are accepted, in that order. The footer is taken at its first
occurrence: text after it belongs to problems the model went on to invent. The box is taken
at its last occurrence, the MATH convention; if that box never closes (a truncated
generation) there is no answer rather than an earlier, intermediate one.

Everything here is a linear scan: responses can be 100 KB of garbage.
"""

from __future__ import annotations

import re

_FOOTER = re.compile(r"final answer is\s*:?\s*", re.IGNORECASE)
_BOX = re.compile(r"\\(?:boxed|fbox)\b\s*")


def brace_pairs(text: str) -> dict[int, int]:
    """Index of each "{" -> index of its "}", in one pass; escaped braces (\\{) are text.

    Unclosed braces are left out. One pass for all pairs keeps deeply nested input linear.
    """
    pairs = {}
    open_at = []
    i = 0
    while i < len(text):
        char = text[i]
        if char == "\\":
            i += 2  # \{ and \} are literal braces, and \\ must not escape the next one
            continue
        if char == "{":
            open_at.append(i)
        elif char == "}" and open_at:
            pairs[open_at.pop()] = i
        i += 1
    return pairs


def boxed_content(text: str, start: int) -> str | None:
    """Content of the \\boxed at text[start:], in braces or as the single token `\\boxed 5`;
    None if it is unclosed or empty."""
    match = _BOX.match(text, start)
    if match is None:
        return None
    at = match.end()
    if at < len(text) and text[at] == "{":
        close = brace_pairs(text).get(at)
        return None if close is None else text[at + 1 : close].strip() or None
    token = re.match(r"[^\s$.,]+", text[at:])
    return token.group(0) if token else None


def last_boxed(text: str) -> str | None:
    """Content of the last \\boxed{...} or \\fbox{...}; None if there is none or it is unclosed."""
    starts = [m.start() for m in _BOX.finditer(text)]
    return boxed_content(text, starts[-1]) if starts else None


def _footer_answer(tail: str) -> str | None:
    """The answer that opens `tail`, the text right after "The final answer is"."""
    if tail.startswith("$"):
        delimiter = "$$" if tail.startswith("$$") else "$"
        close = re.compile(r"(?<!\\)" + re.escape(delimiter)).search(tail, len(delimiter))
        if close is None:
            return None
        return tail[len(delimiter) : close.start()].strip() or None
    if _BOX.match(tail):
        return boxed_content(tail, 0)
    # Plain text: up to "I hope it is correct" or the end of the line, minus the full stop.
    line = tail.split("\n", 1)[0]
    line = re.split(r"\.?\s*I hope it is correct", line, maxsplit=1)[0]
    answer = line.strip().rstrip(".").strip()
    return answer or None


def extract_math_answer(response: str) -> str | None:
    """The final answer written in a MATH response, as LaTeX; None if it gives none."""
    footer = _FOOTER.search(response)
    if footer is not None:
        answer = _footer_answer(response[footer.end() :])
        if answer is not None:
            return answer
    return last_boxed(response)
