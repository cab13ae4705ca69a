"""The task configs and data: pinned data files, ppa_* tasks loaded by lm-eval, and prompts
byte-identical to those of lm-eval's own minerva_math500, gsm8k and gsm8k_cot tasks."""

import hashlib
import os
import re
import subprocess
import sys
from importlib.resources import files
from pathlib import Path

import pytest
from lm_eval.defaults import DEFAULT_OTHER_SEED
from lm_eval.tasks import TaskManager
from lm_eval.tasks._yaml_loader import load_yaml
from lm_eval.tasks.minerva_math.utils import list_fewshot_samples

from ppa_eval.grading import GSM8K, MATH
from ppa_eval.tasks import (
    DATA_DIR,
    DATA_SETS,
    TASKS,
    TASKS_DIR,
    TaskError,
    load_docs,
    load_task,
    read_jsonl,
)

COMPARED_DOCS = 100
PROMPT_TASKS = ("math500", "gsm8k", "gsm8k_cot")  # the tasks built from vendored data and few-shot exemplars
LM_EVAL_TASKS_DIR = Path(str(files("lm_eval.tasks")))


def readme_table() -> dict[str, tuple[int, str]]:
    """file -> (lines, sha256), as tasks/data/README.md lists them."""
    rows = re.findall(r"^\| `([^`]+)` \| (\d+) \| `([0-9a-f]{64})` \|$", (DATA_DIR / "README.md").read_text(), re.M)
    return {name: (int(lines), sha) for name, lines, sha in rows}


@pytest.fixture(scope="module")
def docs():
    return {name: load_docs(load_task(name), limit=COMPARED_DOCS) for name in PROMPT_TASKS}


def lm_eval_prompts(task) -> list[str]:
    """The contexts lm_eval sends for the first COMPARED_DOCS documents of a loaded lm-eval task."""
    task.set_fewshot_seed(DEFAULT_OTHER_SEED)
    task.build_all_requests(limit=COMPARED_DOCS)
    return [instance.args[0] for instance in task.instances]


def lm_eval_own_task(name: str, directory: str, data_files: dict[str, str], cache_dir: Path):
    """lm-eval's own task `name` with its data read from the vendored files instead of the hub."""
    manager = TaskManager(include_path=str(LM_EVAL_TASKS_DIR / directory), include_defaults=False)
    config = load_yaml(manager.task_index[name].yaml_path)
    config.update(
        dataset_path="json",
        dataset_name=None,
        dataset_kwargs={
            "data_files": {split: str(DATA_DIR / file) for split, file in data_files.items()},
            "cache_dir": str(cache_dir),
        },
    )
    return manager.load(config)["tasks"][name]


# ---------------------------------------------------------------------------------------- data


def test_pinned_hashes_and_line_counts_match_the_data_readme():
    table = readme_table()
    pinned = {file: sha for task in TASKS.values() for file, sha in task.data_sha256.items()}
    assert pinned == {name: sha for name, (_, sha) in table.items()}
    for data_set in DATA_SETS.values():
        for split, (file, _) in data_set.files.items():
            assert len(data_set.read(split)) == table[file][0]


def test_sha256_mismatch_names_the_file(tmp_path):
    data = (DATA_DIR / "math500" / "test.jsonl").read_bytes()
    copy = tmp_path / "test.jsonl"
    copy.write_bytes(data.replace(b"rectangular", b"Rectangular", 1))
    pinned = readme_table()["math500/test.jsonl"][1]
    with pytest.raises(TaskError) as error:
        read_jsonl(copy, pinned)
    message = str(error.value)
    assert "\n" not in message
    assert str(copy) in message and "sha256" in message and pinned in message


def test_malformed_line_names_file_and_line(tmp_path):
    lines = (DATA_DIR / "gsm8k" / "test.jsonl").read_bytes().splitlines(keepends=True)[:5]
    lines[2] = lines[2][:40] + b"\n"  # cut a record in half
    copy = tmp_path / "broken.jsonl"
    copy.write_bytes(b"".join(lines))
    with pytest.raises(TaskError, match=rf"^{re.escape(str(copy))}, line 3: not valid JSON"):
        read_jsonl(copy, hashlib.sha256(copy.read_bytes()).hexdigest())

    copy.write_bytes(b'{"question": "q", "answer": "#### 1"}\n[1, 2]\n')
    with pytest.raises(TaskError, match=r"line 2: not a JSON object"):
        read_jsonl(copy, hashlib.sha256(copy.read_bytes()).hexdigest())


@pytest.mark.slow
def test_hub_source_fails_clearly_when_offline(tmp_path):
    # The hub is out of reach here; offline mode must give one clear line, not a traceback.
    script = (
        "from ppa_eval.tasks import TaskError, load_docs, load_task\n"
        "try:\n"
        "    load_docs(load_task('gsm8k'), limit=1, source='hub')\n"
        "except TaskError as error:\n"
        "    print('TaskError:', error)\n"
    )
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path))
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120,
                            cwd=tmp_path)  # not the repository root, whose source tree would shadow the installed package
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1].startswith(
        "TaskError: cannot load openai/gsm8k from the Hugging Face hub (Couldn't reach 'openai/gsm8k' on the Hub"
    )
    assert "use the vendored copy" in result.stdout


def test_unknown_names_are_refused_with_the_known_ones():
    with pytest.raises(TaskError, match="unknown task 'math'; known tasks: math500, gsm8k, gsm8k_cot"):
        load_task("math")
    with pytest.raises(TaskError, match="unknown data source 'web'; use one of vendored, hub"):
        load_docs(load_task("gsm8k"), source="web")


# --------------------------------------------------------------------------------------- tasks


def test_task_settings_come_from_the_yaml():
    math500, gsm8k, cot = (load_task(name) for name in PROMPT_TASKS)
    assert (math500.lm_eval_name, math500.grader, math500.stop, math500.max_gen_toks, math500.num_fewshot) == (
        "ppa_math500", MATH, ("Problem:",), 1024, 4)
    assert (gsm8k.lm_eval_name, gsm8k.grader, gsm8k.stop, gsm8k.num_fewshot) == (
        "ppa_gsm8k", GSM8K, ("Question:", "</s>", "<|im_end|>"), 5)
    assert (cot.lm_eval_name, cot.grader, cot.stop, cot.num_fewshot) == (
        "ppa_gsm8k_cot", GSM8K, ("Q:", "</s>", "<|im_end|>"), 8)
    hashes = {task.config_sha256 for task in (math500, gsm8k, cot)}
    assert len(hashes) == 3 and all(re.fullmatch("[0-9a-f]{64}", h) for h in hashes)


@pytest.mark.slow
def test_docs_carry_ids_and_gold_answers(docs):
    records = read_jsonl(DATA_DIR / "math500/test.jsonl", readme_table()["math500/test.jsonl"][1])
    assert [(d.doc_id, d.gold) for d in docs["math500"]] == [
        (r["unique_id"], r["answer"]) for r in records[:COMPARED_DOCS]]
    assert docs["math500"][0].gold == r"\left( 3, \frac{\pi}{2} \right)"
    assert [d.doc_id for d in docs["gsm8k"]] == [f"test-{i}" for i in range(COMPARED_DOCS)]
    assert docs["gsm8k"][0].gold == docs["gsm8k_cot"][0].gold == "18"  # Janet's ducks
    assert TASKS["gsm8k"].docs.gold({"answer": "... so 2,125 in all.\n#### 2,125"}) == "2125"


def test_lm_eval_loads_ppa_math500_from_the_include_path(docs):
    # What `lm_eval --include_path tasks --tasks ppa_math500` does to build its requests.
    task = TaskManager(include_path=str(TASKS_DIR), include_defaults=False).load("ppa_math500")["tasks"]["ppa_math500"]
    first = lm_eval_prompts(task)[0]
    exemplars = list_fewshot_samples()
    expected = "".join(f"Problem:\n{e['problem']}\n\nSolution: {e['solution']}\n\n" for e in exemplars)
    expected += "Problem:\n" + task.eval_docs[0]["problem"] + "\n\nSolution:"
    assert first == expected == docs["math500"][0].prompt
    assert task.instances[0].args[1]["until"] == ["Problem:"]
    assert task.instances[0].args[1]["max_gen_toks"] == 1024
    assert task.instances[0].args[1]["do_sample"] is False


@pytest.mark.slow
@pytest.mark.parametrize(
    "name, own_task, directory, data_files",
    [
        ("math500", "minerva_math500", "minerva_math", {"test": "math500/test.jsonl"}),
        ("gsm8k", "gsm8k", "gsm8k", {"test": "gsm8k/test.jsonl", "train": "gsm8k/train.jsonl"}),
        ("gsm8k_cot", "gsm8k_cot", "gsm8k", {"test": "gsm8k/test.jsonl"}),
    ],
    ids=PROMPT_TASKS,
)
def test_prompts_are_byte_identical_to_lm_evals_own_tasks(docs, tmp_path, name, own_task, directory, data_files):
    reference = lm_eval_prompts(lm_eval_own_task(own_task, directory, data_files, tmp_path))
    assert len(reference) == COMPARED_DOCS
    assert [d.prompt for d in docs[name]] == reference


def test_gsm8k_exemplars_are_drawn_per_question(docs):
    # lm-eval's gsm8k draws 5 train exemplars per question from one seeded sequence.
    first, second = (d.prompt for d in docs["gsm8k"][:2])
    assert first.count("Question:") == second.count("Question:") == 6
    assert first.split("Question:")[1] != second.split("Question:")[1]
    # the chain-of-thought variant uses the same 8 exemplars for every question
    cot_first, cot_second = (d.prompt for d in docs["gsm8k_cot"][:2])
    assert cot_first.count("\n\nQ: ") == 8 and cot_first.split("\n\nQ: ")[:8] == cot_second.split("\n\nQ: ")[:8]


@pytest.mark.parametrize(
    "name, right, wrong",
    [
        ("math500",
         r"The point is at distance 3 on the positive $y$-axis. Final Answer: The final answer is "
         r"$\left( 3, \frac{\pi}{2} \right)$. I hope it is correct.",
         r"Final Answer: The final answer is $(3, \pi)$. I hope it is correct."),
        ("gsm8k", "She sells 16 - 3 - 4 = 9 eggs for 9 * 2 = $18.\n#### 18", "She makes 9 * 2 = 17.\n#### 17"),
        ("gsm8k_cot", "She sells 16 - 3 - 4 = 9 eggs for 9 * 2 = 18 dollars. The answer is 18.", "The answer is 16."),
    ],
    ids=PROMPT_TASKS,
)
def test_lm_eval_scores_with_the_ppa_grader(name, right, wrong):
    lm_name = f"ppa_{name}"
    task = TaskManager(include_path=str(TASKS_DIR), include_defaults=False).load(lm_name)["tasks"][lm_name]
    doc = task.eval_docs[0]
    assert task.process_results(doc, [right]) == {"acc": 1.0}
    assert task.process_results(doc, [wrong]) == {"acc": 0.0}
