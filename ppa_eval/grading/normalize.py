"""Minerva normalisation of a final answer: one LaTeX spelling per answer, as a string.

Follows the rules of Lewkowycz et al. (2022), appendix D, as lm-eval's minerva_math
`normalize_final_answer` applies them: drop units, dollar signs and degree marks, unwrap
\\text and \\boxed, expand the shorthands \\frac43 and \\sqrt2, take the math between the first
pair of $, strip thousands separators. Two deliberate differences:

- Minerva keeps only what follows the last "=". That turns the plane "5x - 7y + 11z + 4 = 0"
  into "0", so equations are kept whole here and `structure` decides what an "=" means.
- Minerva deletes every space, which glues "\\cot x" into the unknown command "\\cotx"; here
  one space survives between two letters, and between two digits: text dropped between numbers
  ("3\\text{ cm by }5") must not join them into one ("35"). Digits grouped by spaces in
  threes ("1 000") are one number.
- Thousands separators are dropped only from a number written without a space after its
  commas ("3, 100" is a list), and `normalize_answer(..., join_thousands=False)` keeps them so
  that the grader can keep "3,100" a list when the other side is a list.

Also read: the Unicode minus, ASCII relations (>=, <=, !=), \\cfrac, \\textnormal, "percent",
"pct" and "percentage", {,} with spaces, \\approx ("x \\approx 11" is "x = 11"; in
"x = 1/3 \\approx 0.33" the approximation is dropped), array environments as matrices,
"or" between answers (a list) or between inequalities (a union).

Everything is string work in linear time (no regex that backtracks over a long answer), so the
caller can run it in-process on untrusted responses.
"""

from __future__ import annotations

import re

from ppa_eval.grading.extract import MATH_OPENING, brace_pairs, delimited

# Spellings of one command -> the one kept. \left and \right only size delimiters.
_COMMAND_SPELLINGS = {
    "dfrac": r"\frac", "tfrac": r"\frac", "cfrac": r"\frac",
    "left": "", "right": "", "bigl": "", "bigr": "", "Bigl": "", "Bigr": "", "displaystyle": "",
    "mbox": r"\text", "textbf": r"\text", "textrm": r"\text", "textit": r"\text",
    "mathrm": r"\text", "mathbf": r"\text", "textnormal": r"\text", "textsf": r"\text",
    "lbrace": r"\{", "rbrace": r"\}",
    "leqslant": r"\le", "leq": r"\le", "geqslant": r"\ge", "geq": r"\ge",
    "lt": "<", "gt": ">", "neq": r"\ne",
    "ldots": "", "dots": "", "cdots": "",
}
# A whole command name: \leq, but not the \le of \left.
_COMMAND = re.compile(r"\\([A-Za-z]+)")
# Thousands separators that say so explicitly, then spacing commands, then decorations that
# carry no value: currency, percent (a percentage answer is graded as its number) and degrees.
_SEPARATORS = re.compile(r",\\!|\{\s*,\s*\}")
# Unicode and ASCII spellings of signs and relations.
_SIGNS = [("\u2212", "-"), (">=", "\\ge "), ("<=", "\\le "), ("!=", "\\ne ")]
_ARRAY = [(re.compile(r"\\begin\{array\}\{[^{}]*\}"), r"\\begin{pmatrix}"),
          (re.compile(r"\\end\{array\}"), r"\\end{pmatrix}")]
_APPROX = re.compile(r"\\approx(?![A-Za-z])")
_SPACING = re.compile(r"(?<!\\)\\[!,;: ]|\\q?quad(?![A-Za-z])|~")  # \\ is a matrix row break
_DECORATIONS = ["\\$", "\\%", "%", "^{\\circ}", "^\\circ", "\\circ", "\\degree", "°"]

# Unit words (Minerva's list and its kin), dropped when a number or expression remains.
_UNIT_WORDS = (
    "percentage|percent|pct|square units|square|units|unit|ways|integers|dollars|dollar|cents|cent|mph|miles|mile|"
    "inches|inch|feet|foot|ft|km|cm|mm|meters|meter|gm|grams|gram|kg|pounds|pound|hours|hour|"
    "minutes|minute|seconds|second|days|day|years|year|degrees|degree|points|digits|meals|"
    "edges|students|people|multiples|sq"
)
_UNIT = re.compile(rf"(?<![\\A-Za-z])(?:{_UNIT_WORDS})\b(?:\^\{{?[23]\}}?)?")
# "1 and 2" lists two answers (Minerva); so does "1 or 2", but "x<2 or x>3" is a union of two
# sets. The look-behinds let a run of spaces be tried once, not once per space.
_AND = re.compile(r"\\text\{\s*and\s*\}|(?<!\s)\s+and\s+")
_OR = re.compile(r"\\text\{\s*or\s*\}|(?<!\s)\s+or\s+|(?<=[)\]])or(?=[(\[])")
_RELATION = re.compile(r"<|>|\\[lg]e(?![A-Za-z])")
_THOUSANDS = re.compile(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?")
_SPACED_THOUSANDS = re.compile(r"-?\d{1,3}(?: \d{3})+(?:\.\d+)?")


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
    """The math of the first $...$ (or $$, \\(, \\[) span when the answer mixes prose and math
    (Minerva), without stray $ signs."""
    opening = MATH_OPENING.search(text)
    span = None if opening is None else delimited(text, opening.start())
    if span is not None:
        text = span[0]
    return re.sub(r"(?<!\\)\$", "", text)


def _approximation(text: str) -> str:
    """ "x \\approx 11" -> "x = 11"; "x = \\frac{1}{3} \\approx 0.33" -> "x = \\frac{1}{3}"."""
    parts = _APPROX.split(text)
    if len(parts) == 1:
        return text
    left = parts[0].strip()
    if re.fullmatch(r"[A-Za-z](?:_\{?\w+\}?)?", left):
        return f"{left}={parts[-1]}"
    return parts[0]


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
    """Delete whitespace, except one space between letters ("\\cot x", "an ellipse") and
    between digits ("3 5" stays two numbers, never 35), unless the whole answer is a number
    grouped in threes by spaces ("1 000")."""
    text = text.strip()
    if _SPACED_THOUSANDS.fullmatch(text):
        return text.replace(" ", "")
    text = re.sub(r"(?<=[A-Za-z])\s+(?=[A-Za-z])|(?<=\d)\s+(?=\d)", "\x00", text)
    return re.sub(r"\s+", "", text).replace("\x00", " ")


def is_grouped_number(text: str) -> bool:
    """A normalised answer such as "100,000": digits grouped in threes by commas."""
    return _THOUSANDS.fullmatch(text) is not None


def normalize_answer(answer: str, join_thousands: bool = True) -> str:
    """The Minerva normal form of one final answer (LaTeX without the surrounding $).

    join_thousands=False keeps the commas of "100,000" (see the module doc).
    """
    text = answer.strip()
    for sign, spelling in _SIGNS:
        text = text.replace(sign, spelling)
    text = _SEPARATORS.sub("", text)
    text = _SPACING.sub(" ", text)
    text = _command_spelling(text)
    for pattern, spelling in _ARRAY:
        text = pattern.sub(spelling, text)
    text = _delete_all(text, _DECORATIONS)
    text = _first_math_span(text)
    text = _unwrap(_unwrap(text, "\\boxed"), "\\fbox")
    text = _AND.sub(",", text)
    text = _OR.sub("\\\\lor " if _RELATION.search(text) else ",", text)
    text = _approximation(text)
    spaced_list = re.search(r",\s", text) is not None
    text = _drop_units(text)
    text = _unwrap(text, "\\text")
    text = _expand_shorthand(text)
    text = _collapse_whitespace(text)
    text = text.rstrip(".").strip(",")
    if join_thousands and not spaced_list and is_grouped_number(text):
        return text.replace(",", "")
    return text
