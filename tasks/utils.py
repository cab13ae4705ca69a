"""Hooks named by the ppa_* task YAML files: data loading and grading, both from ppa_eval, each
task's behaviour (its documents, its grader, its gold answers) from its ppa_eval.tasks entry.

lm-eval passes a task's metadata to `custom_dataset`; `--metadata '{"data_source": "hub"}'`
reads the data sets from the Hugging Face hub instead of the vendored copies.
"""

import random
import re
from importlib.resources import files

import datasets
import yaml

from ppa_eval.long_context import DEFAULT_CONTEXT_LENGTHS, LongContextError
from ppa_eval.tasks import DEFAULT_PER_LENGTH, TASKS, load_splits


def _dataset_dict(data_set: str, data_source: str) -> datasets.DatasetDict:
    splits = load_splits(data_set, data_source)
    return datasets.DatasetDict({split: datasets.Dataset.from_list(records) for split, records in splits.items()})


def math500(data_source: str = "vendored", **_metadata) -> datasets.DatasetDict:
    return _dataset_dict("math500", data_source)


def gsm8k(data_source: str = "vendored", **_metadata) -> datasets.DatasetDict:
    return _dataset_dict("gsm8k", data_source)


def web_bible(**_metadata) -> datasets.DatasetDict:
    return _dataset_dict("web_bible", "vendored")


def process_perplexity(doc: dict, results: list[float]) -> dict[str, tuple[float, int]]:
    """lm-eval's rolling-perplexity metrics of one document, counted as its wikitext task counts them."""
    (loglikelihood,) = results
    words, size = len(re.split(r"\s+", doc["text"])), len(doc["text"].encode("utf-8"))
    return {"word_perplexity": (loglikelihood, words), "byte_perplexity": (loglikelihood, size),
            "bits_per_byte": (loglikelihood, size)}


def gsm8k_cot_exemplars() -> list[dict]:
    """The 8 chain-of-thought exemplars of lm-eval's own gsm8k_cot task, read from its YAML."""
    config = yaml.safe_load((files("lm_eval.tasks") / "gsm8k" / "gsm8k-cot.yaml").read_text())
    return config["fewshot_config"]["samples"]


def _process(task: str, doc: dict, results: list[str]) -> dict[str, float]:
    spec = TASKS[task]
    return {"acc": float(spec.grader.grade(results[0], spec.docs.gold(doc)).correct)}


def process_math500(doc: dict, results: list[str]) -> dict[str, float]:
    return _process("math500", doc, results)


def process_gsm8k(doc: dict, results: list[str]) -> dict[str, float]:
    return _process("gsm8k", doc, results)


def long_context(long_context_task: str, pretrained: str | None = None, tokenizer: str | None = None,
                 context_lengths=DEFAULT_CONTEXT_LENGTHS, per_length: int = DEFAULT_PER_LENGTH, seed: int = 0,
                 **_metadata) -> datasets.DatasetDict:
    """The generated problems of a long-context task (its ppa_eval.tasks entry) as a test split.

    lm-eval hands `custom_dataset` the model args merged with `--metadata`, so the problems are
    sized in the evaluated model's tokenizer (`pretrained`, or `tokenizer` where it is given) and
    `--metadata '{"context_lengths": [2048], "per_length": 16, "seed": 0}'` chooses the set.
    Lengths beyond the model's max_position_embeddings are refused."""
    from ppa_eval.engines.model_files import load_tokenizer, max_context

    name = tokenizer or pretrained
    if not name:
        raise LongContextError(
            "long-context tasks size their prompts in the model's tokenizer; pass --model_args pretrained=<path>"
        )
    docs = TASKS[long_context_task].generate(load_tokenizer(name), list(context_lengths), per_length, seed,
                                             max_context(name))
    rows = [dict(doc, task=long_context_task) for doc in docs]
    return datasets.DatasetDict({"test": datasets.Dataset.from_list(rows)})


def process_long_context(doc: dict, results: list[str]) -> dict[str, float]:
    return {"acc": float(TASKS[doc["task"]].grader.grade(results[0], doc["gold"]).correct)}


def passkey_choices(doc: dict) -> list[str]:
    """The true pass key first, then three other 5-digit numbers drawn from the problem's doc_id."""
    (key,) = doc["gold"]
    rng, choices = random.Random(doc["doc_id"]), [key]
    while len(choices) < 4:
        other = str(rng.randint(10000, 99999))
        if other not in choices:
            choices.append(other)
    return choices

