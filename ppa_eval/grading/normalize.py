"""Minerva normalisation of a final answer: one LaTeX spelling per answer, as a string.

Follows the rules of Lewkowycz et al. (2022), appendix D, as lm-eval's minerva_math
`normalize_final_answer` applies them: drop units, dollar signs and degree marks, unwrap
\\text and \\boxed, expand the shorthands \\frac43 and \\sqrt2, take the math between the first
pair of $, strip thousands separators. Two deliberate differences:

- Minerva keeps only what follows the last "=". That turns the plane "5x - 7y + 11z + 4 = 0"
  into "0", so equations are kept whole here and `structure` decides what an "=" means.
- Minerva deletes every space, which glues "\\cot x" into the unknown command "\\cotx"; here
  one space survives between two letters.

Everything is string work in linear time (no regex that backtracks over a long answer), so the
caller can run it in-process on untrusted responses.
"""

from __future__ import annotations

import re

from ppa_eval.grading.extract import brace_pairs

# Spellings of one command -> the one kept. \left and \right only size delimiters.
_COMMAND_SPELLINGS = {
    "dfrac": r"\frac", "tfrac": r"\frac",
    "left": "", "right": "", "bigl": "", "bigr": "", "Bigl": "", "Bigr": "", "displaystyle": "",
    "mbox": r"\text", "textbf": r"\text", "textrm": r"\text", "textit": r"\text",
    "mathrm": r"\text", "mathbf": r"\text",
    "lbrace": r"\{", "rbrace": r"\}",
    "leqslant": r"\le", "leq": r"\le", "geqslant": r"\ge", "geq": r"\ge",
    "lt": "<", "gt": ">", "neq": r"\ne",
    "ldots": "", "dots": "", "cdots": "",
}
# A whole command name: \leq, but not the \le of \left.
_COMMAND = re.compile(r"\\([A-Za-z]+)")
# Thousands separators that say so explicitly, then spacing commands, then decorations that
# carry no value: currency, percent (a percentage answer is graded as its number) and degrees.
_SEPARATORS = [",\\!", "{,}"]
_SPACING = re.compile(r"(?<!\\)\\[!,;: ]|\\q?quad(?![A-Za-z])|~")  # \\ is a matrix row break
_DECORATIONS = ["\\$", "\\%", "%", "^{\\circ}", "^\\circ", "\\circ", "\\degree", "°"]

# Unit words (Minerva's list and its kin), dropped when a number or expression remains.
_UNIT_WORDS = (
    "square units|square|units|unit|ways|integers|dollars|dollar|cents|cent|mph|miles|mile|"
    "inches|inch|feet|foot|ft|km|cm|mm|meters|meter|gm|grams|gram|kg|pounds|pound|hours|hour|"
    "minutes|minute|seconds|second|days|day|years|year|degrees|degree|points|digits|meals|"
    "edges|students|people|multiples|sq"
)
_UNIT = re.compile(rf"(?<![\\A-Za-z])(?:{_UNIT_WORDS})\b(?:\^\{{?[23]\}}?)?")
# "1 and 2" lists two answers (Minerva); "x<2 or x>3" is a union of two sets. The look-behind
# lets a run of spaces be tried once, not once per space.
_SEPARATOR_WORDS = [
    (re.compile(r"\\text\{\s*and\s*\}|(?<!\s)\s+and\s+"), ","),
    (re.compile(r"\\text\{\s*or\s*\}|(?<!\s)\s+or\s+"), r"\\lor "),
]
_THOUSANDS = re.compile(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?")


def _delete_all(text: str, substrings: list[str]) -> str:
    for substring in substrings:
        text = text.replace(substring, "")
    return text


def _command_spelling(text: str) -> str:
    return _COMMAND.sub(lambda m: _COMMAND_SPELLINGS.get(m.group(1), m.group(0)), text)


def _unwrap(text: str, command: str) -> str:
    """Replace every `command{X}` by X (braces matched, so nested groups survive)."""
    pairs = brace_pairs(text)
    out = []
    at = 0
    while (start := text.find(command + "{", at)) >= 0:
        close = pairs.get(start + len(command))
        if close is None:
            break
        out.append(text[at:start])
        out.append(text[start + len(command) + 1 : close])
        at = close + 1
    out.append(text[at:])
    return "".join(out)


def _text_groups(text: str) -> list[tuple[int, int]]:
    """(start, end) spans of every \\text{...} group, with a following ^2 or ^3 (a unit power)."""
    pairs = brace_pairs(text)
    spans = []
    at = 0
    while (start := text.find("\\text{", at)) >= 0:
        close = pairs.get(start + 5)
        if close is None:
            break
        power = re.match(r"\^\{?[23]\}?", text[close + 1 : close + 5])
        end = close + 1 + (power.end() if power else 0)
        spans.append((start, end))
        at = end
    return spans


def _drop_units(text: str) -> str:
    """Drop \\text{...} groups and unit words when math is left; else keep the words as the answer.

    "864 \\mbox{ inches}^2" -> "864", "5.4 \\text{ cents}" -> "5.4", "\\text{Evelyn}" -> "Evelyn".
    """
    kept = []
    at = 0
    for start, end in _text_groups(text):
        kept += [text[at:start], " "]
        at = end
    kept.append(text[at:])
    without_units = _UNIT.sub(" ", "".join(kept))
    if re.search(r"[0-9A-Za-z\\]", without_units):
        return without_units
    return _unwrap(text, "\\text")


def _first_math_span(text: str) -> str:
    """The math between the first pair of $ when the answer mixes prose and math (Minerva)."""
    first = text.find("$")
    second = text.find("$", first + 1) if first >= 0 else -1
    if second > first >= 0:
        text = text[first + 1 : second]
    return text.replace("$", "")


def _argument_span(text: str, at: int, pairs: dict[int, int]) -> tuple[int, int] | None:
    """(start, end) of one macro argument at text[at:]: a braced group, a command, a character."""
    while at < len(text) and text[at] == " ":
        at += 1
    if at >= len(text):
        return None
    if text[at] == "{":
        close = pairs.get(at)
        return None if close is None else (at, close + 1)
    if text[at] == "\\":
        name = re.match(r"\\[A-Za-z]+|\\.", text[at : at + 40])
        return at, at + name.end()
    return at, at + 1


_SHORTHAND = re.compile(r"\\(frac|sqrt)(?![A-Za-z])\s*(\[[^\]{}]*\])?")


def _expand_shorthand(text: str) -> str:
    r"""Give \frac and \sqrt braced arguments: \frac43 -> \frac{4}{3}, \sqrt2 -> \sqrt{2}."""
    pairs = brace_pairs(text)
    unbraced = []  # (start, end) of arguments to wrap in braces
    for match in _SHORTHAND.finditer(text):
        at = match.end()
        for _ in range(2 if match.group(1) == "frac" else 1):
            span = _argument_span(text, at, pairs)
            if span is None:
                break
            start, at = span
            if text[start] != "{":
                unbraced.append(span)
    out = []
    at = 0
    for start, end in unbraced:
        out += [text[at:start], "{", text[start:end], "}"]
        at = end
    out.append(text[at:])
    return "".join(out)


def _collapse_whitespace(text: str) -> str:
    """Delete whitespace, except one space between letters: "\\cot x", "an ellipse"."""
    text = re.sub(r"(?<=[A-Za-z])\s+(?=[A-Za-z])", "\x00", text)
    return re.sub(r"\s+", "", text).replace("\x00", " ")


def _drop_thousands_separators(text: str) -> str:
    """100,000 -> 100000, only when the whole answer is a grouped number: "1,-2" is a list."""
    return text.replace(",", "") if _THOUSANDS.fullmatch(text) else text


def normalize_answer(answer: str) -> str:
    """The Minerva normal form of one final answer (LaTeX without the surrounding $)."""
    text = answer.strip()
    text = _delete_all(text, _SEPARATORS)
    text = _SPACING.sub(" ", text)
    text = _command_spelling(text)
    text = _delete_all(text, _DECORATIONS)
    text = _first_math_span(text)
    text = _unwrap(_unwrap(text, "\\boxed"), "\\fbox")
    for words, separator in _SEPARATOR_WORDS:
        text = words.sub(separator, text)
    text = _drop_units(text)
    text = _unwrap(text, "\\text")
    text = _expand_shorthand(text)
    text = _collapse_whitespace(text)
    text = text.rstrip(".").lstrip(",").rstrip(",")
    return _drop_thousands_separators(text)
