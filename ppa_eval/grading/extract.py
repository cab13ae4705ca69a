"""Find the final answer of a MATH solution, in a documented order.

1. The Minerva footer, "Final Answer: The final answer is $X$. I hope it is correct.": the first
   footer whose answer is written as math, cleaned of its wrapper: $X$, $$X$$, \\(X\\),
   \\[X\\], **X** or \\boxed{X} (a box inside the wrapper is unwrapped too). A footer counts at
   its first occurrence: text after it belongs to problems the model went on to invent.
2. The boxes: the last \\boxed{} or \\fbox{} (the MATH convention), with every box kept so that
   an answer given in several boxes ("\\boxed{(2,2)} and \\boxed{(6,2)}") can be compared with
   a multi-part gold. If the last box never closes (a truncated generation) there is no answer
   rather than an earlier, intermediate one.
3. A footer in plain words ("The final answer is 12."), up to "I hope it is correct" or the
   end of its line (its first math span if it has one; its last number if it is a sentence
   with words and no LaTeX, "12 apples" or "not 10 but 1,000.99"), unless a box comes after it (then "the final answer is an integer, so
   ... \\boxed{7}" is read as 7 by step 2).
4. Fallback, counted apart in the metrics: the last math span ($...$, \\(...\\), \\[...\\]) or
   bare number in the response, whichever comes last.

Everything here is a linear scan: responses can be megabytes of garbage. In particular no
regex here backtracks over a run of whitespace more than once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_FOOTER = re.compile(r"final answer is(?=[\s:*$\\])", re.IGNORECASE)
_BOX = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])")
_HOPE = "i hope it is correct"
# Math delimiters: opening -> closing. $$ before $ so that "$$x$$" is not read as "$" "$x$" "$".
_MATH_DELIMITERS = {"$$": "$$", "$": "$", "\\(": "\\)", "\\[": "\\]"}
MATH_OPENING = re.compile(r"\$\$|(?<!\\)\$|\\\(|\\\[")
# Only the first few footers are read: a response repeating the phrase is not worth more.
MAX_FOOTERS = 10
_NUMBER = re.compile(r"(?<![\w.,])-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:/\d+)?")
# A word of prose (not a LaTeX command, not a variable, not a choice letter).
_WORD = re.compile(r"(?<![\\A-Za-z])[A-Za-z]{3,}")


@dataclass(frozen=True)
class Extraction:
    """The answer found in a response and how: "footer", "box" or "fallback".

    boxes: the content of every closed box, in order, when the response has more than one.
    """

    answer: str
    method: str
    boxes: tuple[str, ...] = ()


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


def _box_at(text: str, start: int, pairs: dict[int, int]) -> str | None:
    """Content of the box whose command starts at text[start]: braced, or the single token of
    `\\boxed 5`; None if it is unclosed or empty."""
    at = _BOX.match(text, start).end()
    while at < len(text) and text[at] == " ":
        at += 1
    if at < len(text) and text[at] == "{":
        close = pairs.get(at)
        return None if close is None else text[at + 1 : close].strip() or None
    token = re.match(r"[^\s$.,]+", text[at : at + 1000])
    return token.group(0) if token else None


def boxes(text: str) -> list[str | None]:
    """The content of every box in `text`, in order (None for an unclosed or empty one)."""
    starts = [m.start() for m in _BOX.finditer(text)]
    if not starts:
        return []
    pairs = brace_pairs(text)
    return [_box_at(text, start, pairs) for start in starts]


def last_boxed(text: str) -> str | None:
    """Content of the last \\boxed{...} or \\fbox{...}; None if there is none or it is unclosed."""
    found = boxes(text)
    return found[-1] if found else None


def delimited(text: str, at: int, dead: set[str] | None = None) -> tuple[str, int] | None:
    """(content, end) of the math span opening at text[at], if one does and it closes.

    `dead` collects the closing delimiters found nowhere after some point, so that a scan over
    many openings (the fallback) stays linear.
    """
    for opening, closing in _MATH_DELIMITERS.items():
        if text.startswith(opening, at):
            if dead is not None and closing in dead:
                return None
            start = at + len(opening)
            end = text.find(closing, start)
            while closing == "$" and end > 0 and text[end - 1] == "\\":  # \$ is a dollar sign
                end = text.find(closing, end + 1)
            if end < 0:
                if dead is not None:
                    dead.add(closing)
                return None
            return text[start:end].strip(), end + len(closing)
    return None


def _unwrap_box(answer: str) -> str | None:
    """A footer's math holding a box is the box's content: "$\\boxed{5}$" -> "5"."""
    return last_boxed(answer) if _BOX.search(answer) else answer or None


def _clean_plain(text: str) -> str:
    return text.strip().rstrip(".").strip()


def _math_footer(text: str, at: int, pairs: dict[int, int]) -> str | None:
    """The answer of the footer whose "is" ends at text[at], if it is written as math."""
    limit = at + 100  # the answer follows the phrase at once, or it is no math footer
    while at < min(limit, len(text)) and text[at] in " \t:":
        at += 1
    if text.startswith("**", at) and not text.startswith("***", at):
        close = text.find("**", at + 2)
        return None if close < 0 else _unwrap_box(_clean_plain(text[at + 2 : close]))
    if _BOX.match(text, at):
        return _box_at(text, at, pairs)
    span = delimited(text, at)
    return None if span is None else _unwrap_box(span[0])


def _plain_footer(text: str, at: int) -> str | None:
    """A footer in words: its line up to "I hope it is correct", without the full stop; if the
    line opens a math span, that span ("Answer \\[ 9 \\]", which may close on a later line)."""
    line_end = text.find("\n", at)
    line = text[at : line_end if line_end >= 0 else len(text)]
    hope = line.lower().find(_HOPE)
    line = line if hope < 0 else line[:hope]
    opening = MATH_OPENING.search(line)
    span = None if opening is None else delimited(text, at + opening.start())
    if opening is not None:  # an unclosed span is a truncated answer: none
        return span[0] if span is not None and span[0] else None
    answer = _clean_plain(line).lstrip(":").strip()
    if "\\" not in answer and _WORD.search(answer):  # a sentence: "not 10 but 1,000.99 m"
        numbers = _NUMBER.findall(answer)
        if numbers:
            return numbers[-1]
    return answer or None


def _ends_sentence(text: str, end: int) -> bool:
    """Whether text[end:] goes on with a full stop, a line break or nothing ("27$ looks
    promising" does not: a hedge, not an answer)."""
    rest = text[end : end + 100].lstrip(" \t")
    return not rest or rest[0] in ".!\n"


def _fallback(response: str) -> str | None:
    """The last math span or bare number that ends a sentence, whichever comes last."""
    skip_until, math = 0, None  # math: (end, content) of the last span that ends a sentence
    dead: set[str] = set()
    for match in MATH_OPENING.finditer(response):
        if match.start() < skip_until:
            continue  # inside, or the closing delimiter of, the span found before
        span = delimited(response, match.start(), dead)
        if span is not None:
            skip_until = span[1]
            if span[0] and _ends_sentence(response, span[1]):
                math = (span[1], span[0])
    number = None
    for candidate in _NUMBER.finditer(response):
        if _ends_sentence(response, candidate.end()):
            number = candidate
    if number is not None and (math is None or number.start() >= math[0]):
        return number.group(0)
    return None if math is None else math[1]


def extract_math_answer(response: str) -> Extraction | None:
    """The final answer written in a MATH response (rules in the module doc); None if none."""
    pairs = brace_pairs(response) if _BOX.search(response) else {}
    plain_footer = None
    for count, footer in enumerate(_FOOTER.finditer(response)):
        if count == MAX_FOOTERS:
            break
        answer = _math_footer(response, footer.end(), pairs)
        if answer is not None:
            return Extraction(answer, "footer")
        if plain_footer is None:
            plain_footer = (footer.end(), _plain_footer(response, footer.end()))
    starts = [m.start() for m in _BOX.finditer(response)]
    box_after_footer = starts and (plain_footer is None or starts[-1] >= plain_footer[0])
    if box_after_footer:
        found = [_box_at(response, start, pairs) for start in starts]
        if found[-1] is None:
            return None
        closed = tuple(b for b in found if b is not None)
        return Extraction(found[-1], "box", closed if len(closed) > 1 else ())
    if plain_footer is not None and plain_footer[1] is not None:
        return Extraction(plain_footer[1], "footer")
    answer = _fallback(response)
    return None if answer is None else Extraction(answer, "fallback")
