"""Hooks named by the ppa_* task YAML files: data loading and grading, both from ppa_eval.

lm-eval passes a task's metadata to `custom_dataset`; `--metadata '{"data_source": "hub"}'`
reads the data sets from the Hugging Face hub instead of the vendored copies.
"""

from importlib.resources import files

import datasets
import yaml

from ppa_eval.grading import grade
from ppa_eval.tasks import TASKS, load_splits


def _dataset_dict(data_set: str, data_source: str) -> datasets.DatasetDict:
    splits = load_splits(data_set, data_source)
    return datasets.DatasetDict({split: datasets.Dataset.from_list(records) for split, records in splits.items()})


def math500(data_source: str = "vendored", **_metadata) -> datasets.DatasetDict:
    return _dataset_dict("math500", data_source)


def gsm8k(data_source: str = "vendored", **_metadata) -> datasets.DatasetDict:
    return _dataset_dict("gsm8k", data_source)


def gsm8k_cot_exemplars() -> list[dict]:
    """The 8 chain-of-thought exemplars of lm-eval's own gsm8k_cot task, read from its YAML."""
    config = yaml.safe_load((files("lm_eval.tasks") / "gsm8k" / "gsm8k-cot.yaml").read_text())
    return config["fewshot_config"]["samples"]


def _process(task: str, doc: dict, results: list[str]) -> dict[str, float]:
    spec = TASKS[task]
    return {"acc": float(grade(spec.grader, results[0], spec.gold(doc)).correct)}


def process_math500(doc: dict, results: list[str]) -> dict[str, float]:
    return _process("math500", doc, results)


def process_gsm8k(doc: dict, results: list[str]) -> dict[str, float]:
    return _process("gsm8k", doc, results)
