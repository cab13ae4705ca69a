"""Long-context retrieval tasks: passkey, multi-key needle in a haystack, variable tracking.

Each problem is a haystack of filler text with one or more facts inserted at a chosen depth, and a
question at the end. The tasks follow RULER (NVIDIA/RULER, Hsieh et al. 2024, "RULER: What's the
Real Context Size of Your Long-Context Language Models?"), read at commit c3f5e3b:

- passkey: RULER's `niah_single_1` shape (scripts/data/synthetic/niah.py with `type_haystack:
  noise`): the repeated filler "The grass is green. The sky is blue. ..." with one 5-digit key,
  worded as the Landmark Attention passkey test (Mohtashami and Jaggi 2023): "The pass key is
  12345. Remember it. 12345 is the pass key." The answer starts with "The pass key is".
- niah_multikey: RULER's `niah_multikey_1` (scripts/synthetic.yaml): 4 needles "One of the special
  magic numbers for <key> is: <7-digit number>." with adjective-noun keys in varied text; one key
  is asked for, the other three needles are distractors. RULER's varied text is Paul Graham's
  essays (a download); here it is a seeded sentence generator, so nothing is downloaded. The
  wording follows RULER's `niah` template and answer prefix (scripts/data/synthetic/constants.py).
- variable_tracking: RULER's `vt` (scripts/data/synthetic/variable_tracking.py, 1 chain of 4
  hops): `VAR ABCDE = 12345`, `VAR FGHIJ = VAR ABCDE`, ... on their own lines in the repeated
  filler, asked for every variable that holds the value; as in RULER one worked example (a short
  problem with its answer) comes first.

Each question is followed by an answer prefix (RULER's `answer_prefix`) that starts the model's
turn: with the passkey answer prefix at the end of the user message SmolLM2-135M-Instruct found
0 of 16 keys at 2k tokens (it rambled "The pass key is a magical item ..."); after the chat
template's generation prompt it found 4 of 4 at 1k.

All three are graded as RULER grades them, by ppa_eval.grading.StringMatch: every gold value must
appear in the response.

A builder (`passkey`, `niah_multikey`, `variable_tracking`, or one of a task registered from
outside, see docs/adding-a-task.md) turns a random generator and a depth into a `Problem`; the task
registry (ppa_eval.tasks) names each builder's task, and `make_docs` sizes its problems.

Lengths are measured in the evaluated model's own tokenizer. `context_length` is the whole budget,
as RULER's max_seq_length: the prompt is filled by binary search on the number of filler sentences
up to context_length minus room for the chat template and the answer, so prompt, template and
answer fit in `context_length` tokens. Each problem is drawn from its own random generator seeded
by (task name, seed, length, index), so a set depends only on those, the tokenizer and per_length.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable, Sequence

from ppa_eval.errors import PPAEvalError

DEFAULT_CONTEXT_LENGTHS = (1024, 2048, 4096, 8192)
# Tokens the chat template adds around the prompt (SmolLM2's ChatML with its default system
# prompt and an empty think block takes 36).
CHAT_TEMPLATE_MARGIN = 40

NUM_NIAH_KEYS = 4      # RULER niah_multikey_1: num_needle_k 4, num_needle_q 1
NUM_VT_HOPS = 4        # RULER vt: num_chains 1, num_hops 4, so 5 variables
VT_EXAMPLE_FILLER = 20  # filler sentences in variable tracking's worked example

# RULER's noise haystack, one sentence a unit so the fit is tight to a few tokens.
NOISE = ("The grass is green.", "The sky is blue.", "The sun is yellow.", "Here we go.", "There and back again.")

# Words for the varied text of niah_multikey and for its adjective-noun keys (RULER draws keys
# from wonderwords' adjective and noun lists).
ADJECTIVES = (
    "quiet", "amber", "crooked", "gentle", "hollow", "bright", "dusty", "narrow", "silver", "ancient",
    "humble", "restless", "golden", "rusty", "pale", "sturdy", "tiny", "velvet", "windy", "patient",
    "curious", "faded", "frozen", "lively", "modest", "polished", "scarlet", "shallow", "sleepy", "wooden",
)
NOUNS = (
    "river", "lantern", "garden", "harbor", "meadow", "violin", "market", "castle", "orchard", "library",
    "engine", "bridge", "forest", "island", "kettle", "mirror", "compass", "canyon", "village", "tower",
    "window", "ladder", "wagon", "basket", "candle", "feather", "pebble", "saddle", "anchor", "blanket",
)
PEOPLE = (
    "the farmer", "the old sailor", "a young painter", "the baker", "our neighbor", "the teacher",
    "a traveler", "the carpenter", "the librarian", "a fisherman", "my grandmother", "the mayor",
)
ACTIONS = (
    "carried", "painted", "repaired", "found", "sold", "watched", "cleaned", "described",
    "borrowed", "measured", "admired", "moved",
)
PASTIMES = ("waited", "rested", "sang softly", "walked slowly", "laughed", "listened", "worked quietly", "wandered")
PLACES = (
    "near the river", "behind the market", "at the edge of the forest", "in the small village",
    "under the bridge", "beside the harbor", "on the hill", "across the meadow",
)
TIMES = (
    "in the morning", "after the storm", "before dinner", "during the winter", "every spring",
    "late at night", "on a cloudy afternoon", "at dawn",
)
SENTENCES = (
    "{Person} {action} the {adj} {noun} {time}.",
    "The {adj} {noun} stood {place} for many years.",
    "{Person} {pastime} {place} {time}.",
    "Nobody remembered why the {noun} was so {adj}.",
    "{Time}, {person} {action} a {adj} {noun} {place}.",
    "The {noun} and the {noun2} were both {adj}.",
    "People said that the {noun} {place} looked {adj} {time}.",
    "It was a {adj} day, and the {noun} seemed {adj2}.",
)


class LongContextError(PPAEvalError):
    """Context lengths that cannot be generated for the model."""


@dataclass(frozen=True)
class Problem:
    """One problem before its haystack is sized: `prompt(n)` is the user message with n filler units."""
    head: str                                 # text before the haystack
    question: str                             # text after it
    answer_prefix: str                        # the start of the answer, which the model continues
    filler: Callable[[int], list[str]]        # the first n filler units
    inserts: tuple[tuple[float, str], ...]    # (depth, line) in haystack order
    separator: str                            # between filler units
    gold: list[str]

    def text(self, n: int) -> str:
        """What a plain (no chat template) run sends: the prompt, then the answer prefix."""
        return self.prompt(n) + " " + self.answer_prefix

    def prompt(self, n: int) -> str:
        # An insert at depth d goes before filler unit round(d * n), on a line of its own: set
        # inline in the filler the embedded model missed 9 of 16 pass keys at 2k tokens, on their
        # own lines it found 4 of 4 of those it had missed.
        units = self.filler(n)
        pieces, done = [], 0
        for depth, line in self.inserts:
            place = round(depth * n)
            pieces += [self.separator.join(units[done:place]), line]
            done = place
        pieces.append(self.separator.join(units[done:]))
        return self.head + "\n".join(piece for piece in pieces if piece) + self.question


# A task's problem maker: (its own random generator, the depth of the asked fact) -> the problem.
Builder = Callable[[random.Random, float], Problem]


def _noise(n: int) -> list[str]:
    return [NOISE[i % len(NOISE)] for i in range(n)]


def _varied_text(rng: random.Random) -> Callable[[int], list[str]]:
    """Seeded generator of plain sentences (no digits, no hyphens, so no sentence looks like a needle)."""
    sentences: list[str] = []

    def first(n: int) -> list[str]:
        while len(sentences) < n:
            person, time = rng.choice(PEOPLE), rng.choice(TIMES)
            noun, noun2 = rng.sample(NOUNS, 2)
            adj, adj2 = rng.sample(ADJECTIVES, 2)
            sentences.append(rng.choice(SENTENCES).format(
                Person=person[0].upper() + person[1:], person=person, action=rng.choice(ACTIONS),
                pastime=rng.choice(PASTIMES), place=rng.choice(PLACES), Time=time[0].upper() + time[1:],
                time=time, noun=noun, noun2=noun2, adj=adj, adj2=adj2,
            ))
        return sentences[:n]

    return first


def _number(rng: random.Random, digits: int) -> str:
    return str(rng.randrange(10 ** (digits - 1), 10 ** digits))


def passkey(rng: random.Random, depth: float) -> Problem:
    key = _number(rng, 5)
    return Problem(
        head="There is an important piece of information hidden inside a lot of irrelevant text. "
             "Find it and memorize it. I will quiz you about the important information there.\n\n",
        question="\n\nWhat is the pass key?",
        answer_prefix="The pass key is",
        filler=_noise,
        inserts=((depth, f"The pass key is {key}. Remember it. {key} is the pass key."),),
        separator=" ",
        gold=[key],
    )


def niah_multikey(rng: random.Random, depth: float) -> Problem:
    keys = [f"{adj}-{noun}" for adj, noun in zip(rng.sample(ADJECTIVES, NUM_NIAH_KEYS), rng.sample(NOUNS, NUM_NIAH_KEYS))]
    values: list[str] = []
    while len(values) < NUM_NIAH_KEYS:
        value = _number(rng, 7)
        if value not in values:
            values.append(value)
    # The first key is the one asked for, at `depth`; the distractors at random depths.
    depths = [depth] + [rng.random() for _ in range(NUM_NIAH_KEYS - 1)]
    needles = sorted(
        (d, f"One of the special magic numbers for {key} is: {value}.") for d, key, value in zip(depths, keys, values)
    )
    return Problem(
        head="Some special magic numbers are hidden within the following text. Make sure to memorize them. "
             "I will quiz you about one of them afterwards.\n\n",
        question=f"\n\nWhat is the special magic number for {keys[0]} mentioned in the provided text?",
        answer_prefix=f"The special magic number for {keys[0]} mentioned in the provided text is",
        filler=_varied_text(rng),
        inserts=tuple(needles),
        separator=" ",
        gold=[values[0]],
    )


def _variable_chain(rng: random.Random, depth: float) -> tuple[list[str], str, tuple[tuple[float, str], ...]]:
    """(variable names in chain order, value, assignment lines at their depths): the value's line at
    `depth`, each later hop at a random depth after the one before (RULER inserts in chain order)."""
    names: list[str] = []
    while len(names) < NUM_VT_HOPS + 1:
        name = "".join(rng.choices("ABCDEFGHIJKLMNOPQRSTUVWXYZ", k=5))
        if name not in names:
            names.append(name)
    value = _number(rng, 5)
    depths = [depth] + sorted(depth + (1 - depth) * rng.random() for _ in range(NUM_VT_HOPS))
    lines = [f"VAR {names[0]} = {value}"] + [f"VAR {names[i + 1]} = VAR {names[i]}" for i in range(NUM_VT_HOPS)]
    return names, value, tuple(zip(depths, lines))


def _vt_wording(names_count: int, value: str) -> tuple[str, str, str]:
    """(head, question, answer prefix) in RULER's variable tracking wording."""
    return ("Memorize and track the chain of variable assignments hidden in the following text.\n\n",
            f"\n\nQuestion: Find all variables that are assigned the value {value} in the text above.",
            f"Answer: According to the chain of variable assignments in the text above, {names_count} variables "
            f"are assigned the value {value}, they are:")


def variable_tracking(rng: random.Random, depth: float) -> Problem:
    example_names, example_value, example_lines = _variable_chain(rng, rng.random() / 2)
    example = Problem(*_vt_wording(len(example_names), example_value), _noise, example_lines, "\n", example_names)
    names, value, lines = _variable_chain(rng, depth)
    head, question, answer_prefix = _vt_wording(len(names), value)
    worked = example.text(VT_EXAMPLE_FILLER) + " " + " ".join(example_names) + "\n\n"
    return Problem(worked + head, question, answer_prefix, _noise, lines, "\n", names)


def _count(tokenizer, text: str) -> int:
    return len(tokenizer.encode(text, add_special_tokens=False))


def _fit(problem: Problem, tokenizer, budget: int) -> tuple[int, int]:
    """(units, tokens): the most filler units whose plain text has at most `budget` tokens:
    doubling to an upper bound, then binary search (token counts grow with the unit count)."""
    low, high = 0, 16
    while _count(tokenizer, problem.text(high)) <= budget:
        low, high = high, high * 2
    while high - low > 1:  # prompt(low) fits, prompt(high) does not
        middle = (low + high) // 2
        if _count(tokenizer, problem.text(middle)) <= budget:
            low = middle
        else:
            high = middle
    return low, _count(tokenizer, problem.text(low))


def depths(per_length: int) -> list[float]:
    """`per_length` depths spread evenly from 0 (start of the haystack) to 1 (its end); one problem sits in the middle."""
    if per_length == 1:
        return [0.5]
    return [i / (per_length - 1) for i in range(per_length)]


def _check_lengths(context_lengths: Sequence[int], per_length: int, max_context: int | None) -> None:
    if per_length < 1:
        raise LongContextError(f"per_length is {per_length}; ask for at least 1 problem per context length")
    if not context_lengths:
        raise LongContextError("no context lengths given; pass at least one, e.g. --context-lengths 2048")
    if len(set(context_lengths)) != len(context_lengths):
        raise LongContextError(f"context lengths {list(context_lengths)} repeat a length; give each length once")
    for length in context_lengths:
        if isinstance(length, bool) or not isinstance(length, int) or length <= 0:
            raise LongContextError(f"context length {length!r} is not a positive whole number of tokens")
        if max_context is not None and length > max_context:
            raise LongContextError(
                f"context length {length} exceeds the model's maximum of {max_context} tokens; "
                f"use context lengths up to {max_context}"
            )


def _problem(task: str, build: Builder, seed: int | str, length: int, index: int, depth: float) -> Problem:
    """Problem `index` of `task` at `length` tokens, from its own generator. Its gold values are
    drawn before anything depends on `depth` or on the tokenizer."""
    return build(random.Random(f"{task}/{seed}/{length}/{index}"), depth)


def answers(task: str, build: Builder, length: int, index: int, seed: int | str = 0) -> list[str]:
    """The gold values of problem `index` of `task` (made by `build`) at `length` tokens, at any
    depth and for any tokenizer and per_length: what a training set must avoid to stay disjoint
    from an evaluation set."""
    return _problem(task, build, seed, length, index, 0.0).gold


def make_docs(task: str, build: Builder, tokenizer, context_lengths: Sequence[int], per_length: int,
              seed: int | str, max_context: int | None, answer_tokens: int) -> list[dict]:
    """`per_length` problems of `task`, made by `build`, at each context length, depths spread
    evenly over each length. The task's name seeds each problem's generator and starts its doc_id;
    `answer_tokens` is the room left for the answer (the task's max_gen_toks).

    Each doc: doc_id ("passkey-2048-07"); prompt (the user message: instruction, haystack and
    question, no chat template); answer_prefix (the start of the answer, e.g. "The pass key is",
    which the model continues: after the chat template's generation prompt, as RULER and lm-eval's
    `gen_prefix` place it, or after prompt + " " in a plain run); gold (every value the answer must
    hold); context_length (the target: prompt, answer prefix, chat template and answer fit in it);
    depth (of the asked fact among the filler sentences, 0 to 1; for variable tracking, of the
    chain's first assignment); prompt_tokens (of prompt + " " + answer_prefix, in `tokenizer`).
    `max_context` is the model's context window; a longer context length is an error."""
    _check_lengths(context_lengths, per_length, max_context)
    budget_room = CHAT_TEMPLATE_MARGIN + answer_tokens
    docs = []
    for length in context_lengths:
        for index, depth in enumerate(depths(per_length)):
            problem = _problem(task, build, seed, length, index, depth)
            shortest = _count(tokenizer, problem.text(0)) + budget_room
            if shortest > length:
                raise LongContextError(
                    f"context length {length} is too short for {task}: its question alone needs {shortest} tokens "
                    f"with the chat template and answer; use context lengths of at least {shortest}"
                )
            units, tokens = _fit(problem, tokenizer, length - budget_room)
            docs.append({
                "doc_id": f"{task}-{length}-{index:02d}", "prompt": problem.prompt(units),
                "answer_prefix": problem.answer_prefix, "gold": problem.gold,
                "context_length": length, "depth": depth, "prompt_tokens": tokens,
            })
    return docs
