"""Record what stock lm-eval says about a few real responses, for tests/test_lm_eval_metrics.py.

    python tests/record_lm_eval_stock.py [--model DIR] [--gsm8k-limit 20] [--math500-limit 5]

Runs the stock `lm_eval` command line on lm-eval's own `gsm8k` and `minerva_math500` tasks,
unchanged except where their data comes from: each is a two-line YAML that `include:`s the
installed lm-eval's own task file and points `dataset_path: json` at the vendored copy in
tasks/data (the same records as the hub sets, read offline). Its `--log_samples` output is then
reduced to one line per document in tests/data/lm_eval_stock_<task>.jsonl: the response, what
each of lm-eval's filters extracted and lm-eval's verdict per metric. tests/data/lm_eval_stock.md
says which command, versions and date produced the files in the repository.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from importlib.metadata import version
from importlib.resources import files
from pathlib import Path

from ppa_eval.tasks import DATA_DIR

DATA = DATA_DIR
OUT = Path(__file__).resolve().parent / "data"

# Stock task -> (its lm-eval YAML, vendored split files, file name of the record).
STOCK_TASKS = {
    "gsm8k": ("gsm8k/gsm8k.yaml", {"train": "gsm8k/train.jsonl", "test": "gsm8k/test.jsonl"}, "gsm8k"),
    "minerva_math500": ("minerva_math/minerva_math500.yaml", {"test": "math500/test.jsonl"}, "minerva_math500"),
}


def vendored_task_yaml(task: str) -> str:
    """The stock task, its own config included, with only the data source replaced."""
    stock_yaml, splits, _ = STOCK_TASKS[task]
    data_files = "\n".join(f"    {split}: {DATA / name}" for split, name in splits.items())
    return (f"include: {files('lm_eval.tasks') / stock_yaml}\n"
            f"task: {task}\n"
            "dataset_path: json\n"
            "dataset_name: null\n"
            f"dataset_kwargs:\n  data_files:\n{data_files}\n")


def run_stock(task: str, model: str, limit: int, workdir: Path) -> list[dict]:
    """lm-eval's logged samples of `task` (one line per document and filter)."""
    include = workdir / task
    include.mkdir()
    (include / f"{task}.yaml").write_text(vendored_task_yaml(task))
    command = ["lm_eval", "--model", "hf", "--model_args", f"pretrained={model},dtype=float32",
               "--tasks", task, "--include_path", str(include), "--device", "cpu", "--batch_size", "1",
               "--limit", str(limit), "--log_samples", "--output_path", str(workdir / "out")]
    print(" ".join(command), file=sys.stderr)
    env = {**os.environ, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1"}
    subprocess.run(command, check=True, env=env)
    (samples,) = (workdir / "out").rglob(f"samples_{task}_*.jsonl")
    return [json.loads(line) for line in samples.read_text().splitlines()]


def reduce_samples(samples: list[dict]) -> list[dict]:
    """One record per document: response, and per filter what it extracted and the metrics."""
    by_doc: dict[int, dict] = {}
    for sample in samples:
        (response,) = sample["resps"][0]
        prompt = sample["arguments"]["gen_args_0"]["arg_0"]
        record = by_doc.setdefault(sample["doc_id"], {
            "doc_id": sample["doc_id"],
            "doc": {key: sample["doc"][key] for key in ("question", "problem", "answer", "solution")
                    if key in sample["doc"]},
            "prompt_sha256": hashlib.sha256(prompt.encode()).hexdigest(),
            "response": response,
            "filters": {},
        })
        assert record["response"] == response, "filters of one document saw different responses"
        metrics = {name: sample[name] for name in ("exact_match", "math_verify") if name in sample}
        record["filters"][sample["filter"]] = {"filtered": sample["filtered_resps"][0], **metrics}
    return [by_doc[doc_id] for doc_id in sorted(by_doc)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="/work/models/SmolLM2-135M-Instruct")
    parser.add_argument("--gsm8k-limit", type=int, default=20)
    parser.add_argument("--math500-limit", type=int, default=5)
    args = parser.parse_args()
    limits = {"gsm8k": args.gsm8k_limit, "minerva_math500": args.math500_limit}
    with tempfile.TemporaryDirectory() as workdir:
        for task, limit in limits.items():
            records = reduce_samples(run_stock(task, args.model, limit, Path(workdir)))
            out = OUT / f"lm_eval_stock_{STOCK_TASKS[task][2]}.jsonl"
            out.write_text("".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records))
            print(f"{out}: {len(records)} documents", file=sys.stderr)
    print(f"lm-eval {version('lm_eval')}, transformers {version('transformers')}, torch {version('torch')}",
          file=sys.stderr)


if __name__ == "__main__":
    main()
