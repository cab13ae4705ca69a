"""A normalised answer as a tree: lists, sets, tuples, intervals, matrices, equations, leaves.

MATH answers are more than one expression: "3, 5, 7" (all solutions, any order),
"(6,31,-1)" (an ordered triple), "(0,9) \\cup (9,36)", a pmatrix, "y = 2x + 3". sympy's
LaTeX parser reads none of these, so the structure is read here, in plain Python, and only
the leaves (single expressions) go to sympy. Conventions, from how MATH writes its answers:

- A bare comma (or semicolon) list, a \\{set\\} and a braced {list} are unordered (MATH asks
  "enter all solutions, separated by commas"); "a \\pm b" is the two-element list "a+b, a-b".
- Brackets with a comma inside are ordered: a point, a tuple or an interval, which share one
  notation ("(2,4)" is both) and are compared item by item, brackets included.
- "x \\in [-2,7]" is the interval; "-2 \\le x \\le 7" and "x > 5" are read as intervals too.
- "7:32" is a ratio: its parts in order (so "12:00" is not "1:00", which sympy would read as
  two divisions by zero).
- "52_8" is a numeral in base 8: digits and base, never the integer 52.
- "(C)" and "C" are the multiple-choice letter C; a word of three or more letters such as
  "Evelyn" or "east" is text, compared as words (sympy would read "east" as e*a*s*t).

The reader is linear in the length of the answer: it is run in-process on raw responses.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Union

from ppa_eval.grading.numbers import plain_number


@dataclass(frozen=True)
class Expr:
    """One expression, in normalised LaTeX: "\\frac{14}{3}", "x^3+3x-6", "-\\infty"."""

    latex: str


@dataclass(frozen=True)
class Text:
    """A word answer, lower-case without spaces: "evelyn", "ellipse"."""

    words: str


@dataclass(frozen=True)
class Choice:
    """A multiple-choice letter: "(C)" and "C" are both Choice("C")."""

    letter: str


@dataclass(frozen=True)
class BaseNumeral:
    """A numeral written in a base: "52_8" is BaseNumeral("52", 8)."""

    digits: str
    base: int


@dataclass(frozen=True)
class Ordered:
    """A point, tuple or interval: its brackets and items in order."""

    opening: str
    closing: str
    items: tuple[Answer, ...]


@dataclass(frozen=True)
class Unordered:
    """A comma list or a set: items in any order. `bare`: written without \\{ \\}."""

    items: tuple[Answer, ...]
    bare: bool = True


@dataclass(frozen=True)
class SetUnion:
    """Intervals joined by \\cup (or "or" between inequalities), in any order."""

    parts: tuple[Answer, ...]


@dataclass(frozen=True)
class Matrix:
    rows: tuple[tuple[Answer, ...], ...]


@dataclass(frozen=True)
class Equation:
    """The sides of "a = b" (or of a chain "a = b = c"), as LaTeX strings."""

    sides: tuple[str, ...]

    @property
    def assigns_variable(self) -> bool:
        """True when the left side only names the unknown: "x = 5", "y = 2x + 3", "f(x) = 1",
        "(p,q) = (3,2)", "|AB| = 1", "V_1:V_2 = 11:21"; false for "5x - 7y + 11z + 4 = 0"."""
        return names_unknown(self.sides[0])


Answer = Union[Expr, Text, Choice, BaseNumeral, Ordered, Unordered, SetUnion, Matrix, Equation]

# A letter, Latin or Greek (\pi and \infty are numbers), maybe with a subscript or primes.
_VARIABLE = re.compile(r"(?:[A-Za-z]|\\(?!(?:pi|infty)(?![a-z]))[a-z]+)(?:_\{?\w+\}?)?'*")
_MEMBERSHIP = re.compile(_VARIABLE.pattern + r"\s*\\in(?![A-Za-z])")
_COMMA = re.compile("[,;]")
_COLON = re.compile(":")
# A name: letters (Latin or Greek commands), subscripts, primes, and brackets, bars, fractions
# or colons between names, but no number and no arithmetic: "f(x)", "(p,q)", "\\frac{NO}{BO}".
_SUBSCRIPT = re.compile(r"_(?:\{[^{}]*\}|\w)")
_NAME = re.compile(r"(?:[A-Za-z'(),|:{} ]|\\(?!(?:pi|infty)(?![a-z]))[a-z]+)+")
_EQUALS = re.compile("=")
_UNION = re.compile(r"\\cup(?![A-Za-z])|\\lor(?![A-Za-z])")
_RELATION = re.compile(r"\\le(?![A-Za-z])|\\ge(?![A-Za-z])|<|>")
_FLIPPED = {"<": ">", ">": "<", "\\le": "\\ge", "\\ge": "\\le"}
_PLUS_MINUS = re.compile(r"\\(?:pm|mp)(?![A-Za-z])")
_MATRIX = re.compile(r"\\begin\{([pbvB]?matrix)\}(.*)\\end\{\1\}", re.DOTALL)
_BASE_NUMERAL = re.compile(r"([0-9A-Za-z]+)_\{?(\d{1,2})\}?")
_CHOICE = re.compile(r"\(?([A-E])\)?")
_WORDS = re.compile(r"[A-Za-z][A-Za-z ]*[A-Za-z]")
_ARTICLE = re.compile(r"^(?:an?|the) ", re.IGNORECASE)
_MIXED_NUMBER = re.compile(r"-?\d+\\frac\{\d+\}\{\d+\}")
# Each \pm doubles the list; answers never carry more than a couple.
MAX_PLUS_MINUS = 4
# Answers nest two or three levels ("(1,2), (3,4)"); deeper is garbage, read as one leaf.
MAX_NESTING = 8


def names_unknown(text: str) -> bool:
    """Whether `text`, the left side of an equation, only names what the answer is about."""
    if _VARIABLE.fullmatch(text):
        return True
    bare = _SUBSCRIPT.sub("", text)
    return bool(_NAME.fullmatch(bare) and re.search("[A-Za-z]", bare))


def _nesting_depths(text: str) -> list[int]:
    """Bracket depth before each character; ( [ { \\{ open, ) ] } \\} close, mixed freely so
    that the half-open interval "(3,4]" closes."""
    depths = []
    depth = 0
    i = 0
    while i < len(text):
        char = text[i]
        if char == "\\" and i + 1 < len(text):  # a command: only \{ and \} are brackets
            if text[i + 1] == "{":
                depths += [depth, depth + 1]
                depth += 1
            elif text[i + 1] == "}":
                depths += [depth, depth - 1]
                depth -= 1
            else:
                depths += [depth, depth]
            i += 2
            continue
        depths.append(depth)
        if char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        i += 1
    return depths


def split_top_level(text: str, separator: re.Pattern) -> list[str]:
    """Split at the separators that are outside every bracket."""
    depths = _nesting_depths(text)
    pieces = []
    start = 0
    for match in separator.finditer(text):
        if match.start() >= start and depths[match.start()] == 0:
            pieces.append(text[start : match.start()])
            start = match.end()
    pieces.append(text[start:])
    return pieces


def list_items(text: str) -> list[str]:
    """The items of a normalised answer read as a bare list: "1,-2" -> ["1", "-2"]."""
    return split_top_level(text, _COMMA)


def _enclosed(text: str, opening: str, closing: str) -> str | None:
    """The inside of text when one bracket pair encloses all of it, else None."""
    if not (text.startswith(opening) and text.endswith(closing)):
        return None
    if len(text) < len(opening) + len(closing):
        return None
    depths = _nesting_depths(text)
    # The opening bracket raises the depth to 1; it must not fall back to 0 before the end.
    inner_end = len(text) - len(closing)
    if any(d == 0 for d in depths[len(opening) : inner_end]):
        return None
    return text[len(opening) : inner_end]


def _bracketed_items(text: str) -> list[str] | None:
    """The items of "(a,b)", "[a,b)", ...: brackets around two or more; else None."""
    if len(text) < 2 or text[0] not in "([" or text[-1] not in ")]":
        return None
    inside = _enclosed(text, text[0], text[-1])
    items = [] if inside is None else split_top_level(inside, _COMMA)
    return items if len(items) > 1 else None


def _expand_plus_minus(latex: str) -> list[str]:
    """ "1\\pm\\sqrt{19}" -> ["1+\\sqrt{19}", "1-\\sqrt{19}"]."""
    expansions = [latex]
    for _ in range(MAX_PLUS_MINUS):
        if not _PLUS_MINUS.search(expansions[0]):
            break
        expansions = [
            _PLUS_MINUS.sub(sign, text, count=1) for text in expansions for sign in ("+", "-")
        ]
    return expansions


def _interval_from_inequality(text: str) -> Ordered | None:
    """ "-2\\le x\\le 7" -> [-2,7]; "x>5" -> (5,\\infty); None for anything else."""
    pieces = [p.strip() for p in split_top_level(text, _RELATION)]
    relations = [m.group(0) for m in _RELATION.finditer(text)]
    # Relations inside brackets make the counts differ: not a simple chain.
    if len(relations) != len(pieces) - 1 or len(pieces) not in (2, 3) or not all(pieces):
        return None
    less = {"<": False, "\\le": True}  # relation -> endpoint included
    greater = {">": False, "\\ge": True}
    if len(pieces) == 3:
        low, var, high = pieces
        if not names_unknown(var):
            return None
        if all(r in less for r in relations):
            closed = [less[r] for r in relations]
        elif all(r in greater for r in relations):
            low, high = high, low
            closed = [greater[r] for r in reversed(relations)]
        else:
            return None
        return _interval(low, high, *closed)
    (left, right), relation = pieces, relations[0]
    if left.startswith("-") and _VARIABLE.fullmatch(left[1:]):  # -x > -1 is x < 1
        left, right, relation = left[1:], f"-({right})", _FLIPPED[relation]
    if _VARIABLE.fullmatch(left):
        bound, var_is_less = right, relation in less
    elif _VARIABLE.fullmatch(right):
        bound, var_is_less = left, relation in greater
    else:
        return None
    closed = less.get(relation, greater.get(relation))
    if var_is_less:
        return _interval("-\\infty", bound, False, closed)
    return _interval(bound, "\\infty", closed, False)


def _interval(low: str, high: str, low_closed: bool, high_closed: bool) -> Ordered:
    return Ordered("[" if low_closed else "(", "]" if high_closed else ")",
                   (parse_answer(low), parse_answer(high)))


def _leaf(text: str) -> Answer:
    """A single item: a numeral in a base, a choice letter, words, or an expression."""
    if match := _BASE_NUMERAL.fullmatch(text):
        digits, base = match.group(1).upper(), int(match.group(2))
        if 2 <= base <= 36 and all(int(d, 36) < base for d in digits):
            return BaseNumeral(digits.lstrip("0") or "0", base)
    if match := _CHOICE.fullmatch(text):
        return Choice(match.group(1))
    if _WORDS.fullmatch(text) and sum(c.isalpha() for c in text) >= 3:
        return Text(_ARTICLE.sub("", text).replace(" ", "").lower())
    # sympy reads 1\frac{4}{5} as a product; as a mixed number it is 9/5.
    if _MIXED_NUMBER.fullmatch(text) and (value := plain_number(text)) is not None:
        sign = "-" if value < 0 else ""
        return Expr(f"{sign}\\frac{{{abs(value.numerator)}}}{{{value.denominator}}}")
    return Expr(text)


def _items(text: str, nesting: int) -> tuple[Answer, ...]:
    """Comma-separated items, each \\pm item counting as its two values."""
    return tuple(parse_answer(expansion, nesting + 1)
                 for piece in split_top_level(text, _COMMA)
                 for expansion in _expand_plus_minus(piece))


def parse_answer(text: str, nesting: int = 0) -> Answer:
    """The structure of one normalised answer (see the module doc for the conventions)."""
    text = text.strip()
    if nesting > MAX_NESTING:
        return Expr(text)
    if membership := _MEMBERSHIP.match(text):
        text = text[membership.end() :]
    if len(split_top_level(text, _COMMA)) > 1:
        return Unordered(_items(text, nesting))
    sides = split_top_level(text, _EQUALS)
    if len(sides) > 1:
        return Equation(tuple(s.strip() for s in sides))
    parts = split_top_level(text, _UNION)
    if len(parts) > 1:
        return SetUnion(tuple(parse_answer(p, nesting + 1) for p in parts))
    if _RELATION.search(text) and (interval := _interval_from_inequality(text)):
        return interval
    parts = split_top_level(text, _COLON)
    if len(parts) > 1:
        return Ordered("", ":", tuple(parse_answer(p, nesting + 1) for p in parts))
    for opening, closing in ("()", "[]"):  # a matrix in brackets: "\\left[\\begin{array}...\\right]"
        inside = _enclosed(text, opening, closing)
        if inside is not None and _MATRIX.fullmatch(inside.strip()):
            text = inside.strip()
    if match := _MATRIX.fullmatch(text):
        rows = [r for r in match.group(2).split("\\\\") if r.strip()]
        return Matrix(tuple(tuple(parse_answer(c, nesting + 1) for c in r.split("&"))
                            for r in rows))
    if (inside := _enclosed(text, "\\{", "\\}")) is not None:
        return Unordered(_items(inside, nesting), bare=False)
    inside = _enclosed(text, "{", "}")
    if inside is not None and len(split_top_level(inside, _COMMA)) > 1:
        return Unordered(_items(inside, nesting), bare=False)
    if (items := _bracketed_items(text)) is not None:
        return Ordered(text[0], text[-1], tuple(parse_answer(i, nesting + 1) for i in items))
    expansions = _expand_plus_minus(text)
    if len(expansions) > 1:
        return Unordered(tuple(_leaf(e) for e in expansions))
    return _leaf(text)
