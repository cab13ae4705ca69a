"""The benchmark tasks: pinned data, the lm-eval task configs in tasks/, and the few-shot prompts.

The lm-eval YAML files in tasks/ are the single definition of each task. ppa-eval builds its
prompts by loading those files through lm-eval itself, so a prompt here is the prompt that
`lm_eval --include_path tasks --tasks ppa_<name>` sends, byte for byte, including GSM8K's
per-question random draw of exemplars (seeded with lm-eval's default few-shot seed).

Data comes from the vendored copies in tasks/data, checked against their pinned sha256, or, when
asked for, from the Hugging Face hub through `datasets`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

import yaml

from ppa_eval.jsonl import read_objects

KNOWN_TASKS = ("math500", "gsm8k", "gsm8k_cot")
DATA_SOURCES = ("vendored", "hub")

# tasks/ sits beside the package in the repository (an editable install reads it from there).
TASKS_DIR = Path(__file__).resolve().parent.parent / "tasks"
DATA_DIR = TASKS_DIR / "data"

# The data set each task reads; it is also the task name ppa_eval.grading.grade knows.
TASK_DATA_SET = {"math500": "math500", "gsm8k": "gsm8k", "gsm8k_cot": "gsm8k"}
DATA_FILES = {
    "math500": {"test": "math500/test.jsonl"},
    "gsm8k": {"test": "gsm8k/test.jsonl", "train": "gsm8k/train.jsonl"},
}
# As listed in tasks/data/README.md.
DATA_SHA256 = {
    "math500/test.jsonl": "35dc41080a3680858b27fa7e0533d2d547825316fc5dafe5d316f4ccc5a06132",
    "gsm8k/test.jsonl": "3730d312f6e3440559ace48831e51066acaca737f6eabec99bccb9e4b3c39d14",
    "gsm8k/train.jsonl": "17f347dc51477c50d4efb83959dbb7c56297aba886e5544ee2aaed3024813465",
}
HUB_DATASETS = {"math500": ("HuggingFaceH4/MATH-500", None), "gsm8k": ("openai/gsm8k", "main")}


class TaskError(ValueError):
    """An unknown task or data source, or data that fails its checks."""


@dataclass(frozen=True)
class Doc:
    doc_id: str          # stable id: MATH-500 unique_id; GSM8K "test-<index>"
    prompt: str          # the plain few-shot prompt, byte-identical to lm-eval's for this doc
    gold: str            # reference answer: MATH-500 `answer`; GSM8K number after ####


@dataclass(frozen=True)
class Task:
    name: str            # short name
    lm_eval_name: str    # ppa_math500 ...
    grader: str          # task name for ppa_eval.grading.grade ("math500" or "gsm8k")
    stop: tuple[str, ...]
    max_gen_toks: int
    config_sha256: str   # hash of the YAML + utils.py that define it
    data_sha256: dict[str, str]


def read_jsonl(path: Path, sha256: str) -> list[dict]:
    """The records of a JSONL file whose bytes must hash to `sha256`."""
    data = Path(path).read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != sha256:
        raise TaskError(
            f"{path}: sha256 is {digest}, expected {sha256}; restore the file as tasks/data/README.md describes"
        )
    return [record for _, record in read_objects(path, TaskError, "; restore the file", data=data)]


def load_splits(data_set: str, source: str = "vendored") -> dict[str, list[dict]]:
    """The splits of `data_set` ("math500" or "gsm8k") as lists of records, in file order."""
    if source == "vendored":
        return {
            split: read_jsonl(DATA_DIR / name, DATA_SHA256[name]) for split, name in DATA_FILES[data_set].items()
        }
    if source == "hub":
        import datasets

        path, config = HUB_DATASETS[data_set]
        try:
            return {split: list(datasets.load_dataset(path, config, split=split)) for split in DATA_FILES[data_set]}
        except Exception as error:  # network, offline mode, missing cache: all end the same way for the user
            reason = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise TaskError(
                f"cannot load {path} from the Hugging Face hub ({reason}); use the vendored copy (source 'vendored')"
            ) from None
    raise _unknown_source(source)


def _unknown_source(source: str) -> TaskError:
    return TaskError(f"unknown data source {source!r}; use one of {', '.join(DATA_SOURCES)}")


def gsm8k_gold(answer: str) -> str:
    """The final number of a GSM8K solution (the text after "####"), without thousands separators."""
    return answer.split("####")[-1].strip().replace(",", "")


class _YamlLoader(yaml.SafeLoader):
    """Reads a task YAML without importing the functions its `!function` tags name."""


_YamlLoader.add_constructor("!function", lambda loader, node: loader.construct_scalar(node))


def load_task(name: str) -> Task:
    if name not in KNOWN_TASKS:
        raise TaskError(f"unknown task {name!r}; known tasks: {', '.join(KNOWN_TASKS)}")
    lm_eval_name = f"ppa_{name}"
    config_files = [TASKS_DIR / f"{lm_eval_name}.yaml", TASKS_DIR / "utils.py"]
    config = yaml.load(config_files[0].read_text(), Loader=_YamlLoader)  # noqa: S506 (a safe loader)
    generation = config["generation_kwargs"]
    data_set = TASK_DATA_SET[name]
    return Task(
        name=name,
        lm_eval_name=config["task"],
        grader=data_set,
        stop=tuple(generation["until"]),
        max_gen_toks=int(generation["max_gen_toks"]),
        config_sha256=hashlib.sha256(b"".join(path.read_bytes() for path in config_files)).hexdigest(),
        data_sha256={file: DATA_SHA256[file] for file in DATA_FILES[data_set].values()},
    )


def load_docs(task: Task, limit: int | None = None, source: str = "vendored") -> list[Doc]:
    """The first `limit` test documents of `task` (all when None) with their few-shot prompts.

    GSM8K draws each question's exemplars from one random sequence over the test set, so the
    prompt of question i does not depend on `limit`, as with `lm_eval --limit`.
    """
    if source not in DATA_SOURCES:  # checked here too, before seconds of importing lm-eval
        raise _unknown_source(source)
    # lm-eval takes seconds to import: only commands that build prompts pay for it.
    from lm_eval.defaults import DEFAULT_OTHER_SEED
    from lm_eval.tasks import TaskManager

    manager = TaskManager(include_path=str(TASKS_DIR), include_defaults=False, metadata={"data_source": source})
    lm_task = manager.load(task.lm_eval_name)["tasks"][task.lm_eval_name]
    lm_task.set_fewshot_seed(DEFAULT_OTHER_SEED)  # what lm_eval's evaluator does before building requests
    num_fewshot = lm_task.config.num_fewshot
    docs = []
    for index, doc in islice(enumerate(lm_task.eval_docs), limit):
        if task.grader == "math500":
            doc_id, gold = doc["unique_id"], doc["answer"]
        else:
            doc_id, gold = f"test-{index}", gsm8k_gold(doc["answer"])
        docs.append(Doc(doc_id=doc_id, prompt=lm_task.fewshot_context(doc, num_fewshot=num_fewshot), gold=gold))
    return docs
