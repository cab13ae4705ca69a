"""A task defined outside the package (its YAML and data in a directory of its own, a string-match
grader) is registered through the public API, then `evaluate`, `table` and `report` run on it on
the embedded model, and what they write is checked against the samples graded by hand here."""

import csv
import io
import json
import re

import pytest

from ppa_eval.cli import main
from ppa_eval.grading import StringMatch
from ppa_eval.tasks import TASKS, LmEvalDocs, TaskSpec, register_task

SUMS = [(2, 3), (10, 7), (4, 4), (21, 30), (6, 1)]
YAML = """\
task: toy_sums
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: generate_until
doc_to_text: "What is {{{{a}}}} + {{{{b}}}}? Reply with the number only."
doc_to_target: "{{{{answer}}}}"
generation_kwargs:
  until: ["\\n"]
  do_sample: false
  max_gen_toks: 6
metric_list:
  - metric: exact_match
"""


@pytest.fixture
def toy_task(tmp_path):
    """The task `sums`: its JSONL and YAML in tmp_path, registered for this test only."""
    directory = tmp_path / "toy_task"
    directory.mkdir()
    data = directory / "sums.jsonl"
    data.write_text("".join(json.dumps({"id": f"sum-{i}", "a": a, "b": b, "answer": str(a + b)}) + "\n"
                            for i, (a, b) in enumerate(SUMS)))
    (directory / "sums.yaml").write_text(YAML.format(data=data))
    task = register_task(TaskSpec(
        "sums", "toy sums", grader=StringMatch("numbers"), yaml=directory / "sums.yaml",
        docs=LmEvalDocs(doc_id=lambda index, record: record["id"], gold=lambda record: [record["answer"]])))
    yield task
    del TASKS[task.name]


@pytest.mark.slow
def test_a_registered_task_runs_through_evaluate_table_and_report(toy_task, tmp_path, capsys):
    out = tmp_path / "runs"
    assert main(["evaluate", "--tasks", "sums", "--power", "1", "--limit", "4", "--out", str(out)]) == 0
    (task_dir,) = out.glob("*/sums")
    samples = [json.loads(line) for line in (task_dir / "samples.jsonl").read_text().splitlines()]
    assert [s["doc_id"] for s in sorted(samples, key=lambda s: s["doc_id"])] == ["sum-0", "sum-1", "sum-2", "sum-3"]
    for sample in samples:
        a, b = SUMS[int(sample["doc_id"].removeprefix("sum-"))]
        assert sample["prompt"].count(f"What is {a} + {b}? Reply with the number only.") == 1
        assert sample["gold"] == [str(a + b)] and sample["completion_tokens"] <= 6
        # graded by hand: right when the sum is one of the response's whole numbers
        assert sample["correct"] == (str(a + b) in re.findall(r"\d+", sample["response"]))
    accuracy = sum(s["correct"] for s in samples) / len(samples)
    metrics = json.loads((task_dir / "metrics.json").read_text())
    assert (metrics["task"], metrics["n"], metrics["accuracy"]) == ("sums", 4, accuracy)
    manifest = json.loads((task_dir.parent / "manifest.json").read_text())
    assert manifest["tasks"]["sums"]["lm_eval_name"] == "toy_sums"

    capsys.readouterr()
    assert main(["table", str(out), "--format", "csv"]) == 0
    (row,) = csv.DictReader(io.StringIO(capsys.readouterr().out))
    assert (row["sums n"], row["sums %"]) == ("4", f"{100 * accuracy:.1f}")

    assert main(["report", str(out)]) == 0
    assert "| sums %" in (out / "table.md").read_text()
