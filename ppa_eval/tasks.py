"""The task registry: every task ppa-eval runs is one `TaskSpec` in `TASKS`, and nothing else
names tasks. A task is its lm-eval config (tasks/ppa_<name>.yaml, shipped in the wheel as
`ppa_eval.task_configs`) plus this entry: its data, how a document gives its id and gold answer,
its grader, its table label and the lm-eval metrics reported beside ours. Adding a task is one
entry here plus its YAML.

The YAML files are the single definition of each prompt: ppa-eval builds its prompts by loading
them through lm-eval itself, so a prompt here is the prompt that
`lm_eval --include_path tasks --tasks ppa_<name>` sends, byte for byte, including GSM8K's
per-question random draw of exemplars (seeded with lm-eval's default few-shot seed). Default
generation settings (stop sequences, max_gen_toks) come from the YAML too.

Data comes from the vendored copies in tasks/data, checked against their pinned sha256, or, when
asked for, from the Hugging Face hub through `datasets`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from importlib.resources import files
from itertools import islice
from pathlib import Path

import yaml

from ppa_eval.errors import PPAEvalError
from ppa_eval.jsonl import read_objects

DATA_SOURCES = ("vendored", "hub")

# The task configs inside the installed package (tasks/ in the repository).
TASKS_DIR = Path(str(files("ppa_eval.task_configs")))
DATA_DIR = TASKS_DIR / "data"


@dataclass(frozen=True)
class DataSet:
    """A vendored data set: split -> file under tasks/data with its pinned sha256 (tasks/data/README.md)."""

    name: str
    files: dict[str, tuple[str, str]]
    hub: tuple[str, str | None]  # (path, config) of the same data on the Hugging Face hub


DATA_SETS = {d.name: d for d in (
    DataSet("math500", {"test": ("math500/test.jsonl",
                                 "35dc41080a3680858b27fa7e0533d2d547825316fc5dafe5d316f4ccc5a06132")},
            hub=("HuggingFaceH4/MATH-500", None)),
    DataSet("gsm8k", {"test": ("gsm8k/test.jsonl", "3730d312f6e3440559ace48831e51066acaca737f6eabec99bccb9e4b3c39d14"),
                      "train": ("gsm8k/train.jsonl", "17f347dc51477c50d4efb83959dbb7c56297aba886e5544ee2aaed3024813465")},
            hub=("openai/gsm8k", "main")),
)}


class TaskError(PPAEvalError):
    """An unknown task or data source, or data that fails its checks."""


@dataclass(frozen=True)
class Doc:
    doc_id: str          # stable id: MATH-500 unique_id; GSM8K "test-<index>"
    prompt: str          # the plain few-shot prompt, byte-identical to lm-eval's for this doc
    gold: str            # reference answer: MATH-500 `answer`; GSM8K number after ####


class _YamlLoader(yaml.SafeLoader):
    """Reads a task YAML without importing the functions its `!function` tags name."""


_YamlLoader.add_constructor("!function", lambda loader, node: loader.construct_scalar(node))


def _read_yaml(path: Path) -> dict:
    return yaml.load(path.read_text(), Loader=_YamlLoader)  # noqa: S506 (a safe loader)


@dataclass(frozen=True)
class TaskSpec:
    name: str                               # what users type: --tasks math500
    label: str                              # its heading in tables
    grader: str                             # the rules ppa_eval.grading.grade applies ("math500", "gsm8k")
    data_set: str                           # key of DATA_SETS
    doc_id: Callable[[int, dict], str]      # (index in the test split, record) -> stable id
    gold: Callable[[dict], str]             # record -> the reference answer our grader compares with
    lm_eval_metrics: tuple[str, ...] = ()   # lm-eval's own metrics, computed beside ours
    paper_column: str | None = None         # its column in the paper's Table 1, if it has one

    @property
    def lm_eval_name(self) -> str:
        return f"ppa_{self.name}"

    @cached_property
    def yaml_files(self) -> list[Path]:
        """The task's YAML and the files it includes (lm-eval's `include:`), most general first."""
        chain, path = [], TASKS_DIR / f"{self.lm_eval_name}.yaml"
        while path is not None:
            chain.insert(0, path)
            included = _read_yaml(path).get("include")
            path = TASKS_DIR / included if included else None
        return chain

    @cached_property
    def config(self) -> dict:
        """The task's configuration as lm-eval merges it: each file overrides what it includes."""
        config = {}
        for path in self.yaml_files:
            config.update(_read_yaml(path))
        return config

    @property
    def stop(self) -> tuple[str, ...]:
        return tuple(self.config["generation_kwargs"]["until"])

    @property
    def max_gen_toks(self) -> int:
        return int(self.config["generation_kwargs"]["max_gen_toks"])

    @cached_property
    def config_sha256(self) -> str:
        """Hash of everything that defines the prompt: the YAML chain and the hooks module."""
        defining = [*self.yaml_files, TASKS_DIR / "utils.py"]
        return hashlib.sha256(b"".join(path.read_bytes() for path in defining)).hexdigest()

    @property
    def data_sha256(self) -> dict[str, str]:
        return {file: sha256 for file, sha256 in DATA_SETS[self.data_set].files.values()}


def _gsm8k_id(index: int, record: dict) -> str:
    return f"test-{index}"


def _gsm8k_gold(record: dict) -> str:
    from ppa_eval.grading.gsm8k import gold_number  # the one GSM8K gold parser; the grader is imported lazily

    return gold_number(record["answer"])


TASKS: dict[str, TaskSpec] = {t.name: t for t in (
    TaskSpec("math500", "MATH500", grader="math500", data_set="math500",
             doc_id=lambda index, record: record["unique_id"], gold=lambda record: record["answer"],
             paper_column="math500"),
    TaskSpec("gsm8k", "GSM8K", grader="gsm8k", data_set="gsm8k", doc_id=_gsm8k_id,
             gold=_gsm8k_gold, paper_column="gsm8k"),
    TaskSpec("gsm8k_cot", "GSM8K (CoT)", grader="gsm8k", data_set="gsm8k", doc_id=_gsm8k_id,
             gold=_gsm8k_gold),
)}


def load_task(name: str) -> TaskSpec:
    """The registry entry of `name`; TaskError naming the known tasks otherwise."""
    try:
        return TASKS[name]
    except KeyError:
        raise TaskError(f"unknown task {name!r}; known tasks: {', '.join(TASKS)}") from None


def parse_tasks(text: str) -> list[TaskSpec]:
    """The tasks of a comma-separated --tasks value, each checked against the registry."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise TaskError("--tasks names no task; known tasks: " + ", ".join(TASKS))
    return [load_task(name) for name in names]


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
    """The splits of a data set ("math500" or "gsm8k") as lists of records, in file order."""
    spec = DATA_SETS[data_set]
    if source == "vendored":
        return {split: read_jsonl(DATA_DIR / file, sha256) for split, (file, sha256) in spec.files.items()}
    if source == "hub":
        import datasets

        path, config = spec.hub
        try:
            return {split: list(datasets.load_dataset(path, config, split=split)) for split in spec.files}
        except Exception as error:  # network, offline mode, missing cache: all end the same way for the user
            reason = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise TaskError(
                f"cannot load {path} from the Hugging Face hub ({reason}); use the vendored copy (source 'vendored')"
            ) from error
    raise _unknown_source(source)


def _unknown_source(source: str) -> TaskError:
    return TaskError(f"unknown data source {source!r}; use one of {', '.join(DATA_SOURCES)}")


def load_docs(task: TaskSpec, limit: int | None = None, source: str = "vendored") -> list[Doc]:
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
    return [Doc(doc_id=task.doc_id(index, record), prompt=lm_task.fewshot_context(record, num_fewshot=num_fewshot),
                gold=task.gold(record))
            for index, record in islice(enumerate(lm_task.eval_docs), limit)]
