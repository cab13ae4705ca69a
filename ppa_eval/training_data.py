"""What `ppa-eval finetune` trains on: the same token sequences, in the same batches, for every pattern.

The paper fine-tunes each p in its evaluation's own format. Scaled down to the embedded model:
- the long-context retrieval tasks (passkey, niah_multikey, variable_tracking of
  ppa_eval.long_context), generated from training seeds at the training lengths, rendered through
  the very chat template, thinking switch and answer prefix the evaluation uses
  (ppa_eval.prompts.render_prompt), with the gold value(s) and the end of turn as the target;
- plain language, GSM8K train questions answered by their worked solutions, so the model keeps
  answering in words.

Held out: a training problem is dropped when one of its gold values is a gold value of the same
task in an evaluation set at the evaluation seed (the first HELD_OUT_PER_LENGTH problems at every
evaluation and training length). Gold values are drawn before depth and tokenizer matter
(long_context.answers), so no training problem shares an answer with any evaluation problem, at
any depth, length or --limit up to that bound.

The loss covers the target only (the assistant's turn, as in supervised fine-tuning): the prompt
of a retrieval problem is filler the model need not learn to write.
"""

from __future__ import annotations

import hashlib
import random
import re
from dataclasses import dataclass

from ppa_eval.settings import Settings
from ppa_eval.long_context import DEFAULT_CONTEXT_LENGTHS, answers
from ppa_eval.prompts import render_prompt
from ppa_eval.tasks import PLAIN_TRAINING_DATA, RETRIEVAL_TRAINING_TASKS, TASKS, TaskSpec

EVAL_SEED = Settings.seed  # the seed `evaluate` generates long-context problems from by default
HELD_OUT_PER_LENGTH = 1000  # evaluation problems per task and length whose answers training avoids
TRAIN_SEED_PREFIX = "train"  # training problems come from seeds "train-<seed>", never an evaluation seed
_CALCULATOR = re.compile(r"<<[^>]*>>")  # GSM8K's calculator annotations: "48/2 = <<48/2=24>>24"


@dataclass(frozen=True)
class DataRecipe:
    lengths: tuple[int, ...] = (1024, 2048, 4096)  # context lengths of the retrieval problems
    per_length: int = 64    # retrieval problems per task and length (before held-out ones are dropped)
    plain: int = 1000       # GSM8K train solutions
    seed: int = 0


@dataclass(frozen=True)
class Example:
    ids: tuple[int, ...]
    target_start: int  # ids[target_start:] is the target: the answer and the end of turn


def retrieval_docs(task: TaskSpec, tokenizer, recipe: DataRecipe) -> list[dict]:
    """The training problems of one long-context task: long_context docs from a training seed,
    less those that share a gold value with an evaluation problem."""
    held_out = {value
                for length in {*DEFAULT_CONTEXT_LENGTHS, *recipe.lengths}
                for index in range(HELD_OUT_PER_LENGTH)
                for value in answers(task.name, task.docs.build, length, index, EVAL_SEED)}
    docs = task.generate(tokenizer, recipe.lengths, recipe.per_length, seed=f"{TRAIN_SEED_PREFIX}-{recipe.seed}")
    return [doc for doc in docs if held_out.isdisjoint(doc["gold"])]


def _example(tokenizer, prompt: str, target: str, gen_prefix: str = "") -> Example:
    # The prompt is tokenized alone, as the evaluation tokenizes it before generating.
    prompt_ids = tokenizer.encode(render_prompt(prompt, tokenizer, gen_prefix=gen_prefix), add_special_tokens=False)
    target_ids = tokenizer.encode(target, add_special_tokens=False) + [tokenizer.eos_token_id]
    return Example(tuple(prompt_ids + target_ids), len(prompt_ids))


def build_examples(tokenizer, recipe: DataRecipe) -> list[Example]:
    """The whole training set, in a fixed order."""
    examples = [_example(tokenizer, doc["prompt"], " " + " ".join(doc["gold"]) + ".", doc["answer_prefix"])
                for name in RETRIEVAL_TRAINING_TASKS for doc in retrieval_docs(TASKS[name], tokenizer, recipe)]
    for record in PLAIN_TRAINING_DATA.read("train")[: recipe.plain]:
        examples.append(_example(tokenizer, record["question"], _CALCULATOR.sub("", record["answer"])))
    return examples


def data_sha256(examples: list[Example]) -> str:
    """sha256 of the training set: every token and every target boundary, in order."""
    digest = hashlib.sha256()
    for example in examples:
        digest.update(f"{example.target_start}:{','.join(map(str, example.ids))}\n".encode())
    return digest.hexdigest()


def plan_batches(examples: list[Example], batch_tokens: int, seed: int) -> list[list[int]]:
    """Batches of example indexes, similar lengths together, each padded to at most `batch_tokens`
    (an example longer than that is a batch of its own), in a seeded random order."""
    order = sorted(range(len(examples)), key=lambda i: (len(examples[i].ids), i))
    batches: list[list[int]] = []
    for index in order:
        if batches and (len(batches[-1]) + 1) * len(examples[index].ids) <= batch_tokens:
            batches[-1].append(index)
        else:
            batches.append([index])
    random.Random(seed).shuffle(batches)
    return batches
