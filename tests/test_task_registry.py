"""The task registry is the one place that names tasks: no other module of ppa_eval holds a task
name as a string, grading does not import the registry, and every entry's behaviour is consistent
with its YAML."""

import ast
from pathlib import Path

import pytest
from lm_eval.tasks._yaml_loader import load_yaml

import ppa_eval
from ppa_eval.grading import AnswerGrader
from ppa_eval.tasks import TASKS, TaskError, TaskSpec, gradable_tasks, register_task

PACKAGE = Path(ppa_eval.__file__).parent


def string_constants(path: Path) -> list[tuple[int, str]]:
    return [(node.lineno, node.value) for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.Constant) and isinstance(node.value, str)]


def test_no_module_but_the_registry_names_a_task():
    names = {name for task in TASKS.values() for name in (task.name, task.lm_eval_name)}
    assert {"math500", "ppa_gsm8k", "passkey", "ppa_variable_tracking"} <= names  # the shipped tasks are there
    # The exceptions: the registry, and the task configs (tasks/ in the repository, installed as
    # ppa_eval/task_configs), whose utils.py holds the hooks the YAMLs name.
    found = [f"{path.relative_to(PACKAGE)}:{line}: {value!r}"
             for path in sorted(PACKAGE.rglob("*.py"))
             if path != PACKAGE / "tasks.py" and "task_configs" not in path.relative_to(PACKAGE).parts
             for line, value in string_constants(path) if value in names]
    assert found == []


def test_the_check_finds_a_task_name(tmp_path):
    # the scan above is not vacuous: a module that names a task is caught, prose is not
    module = tmp_path / "m.py"
    module.write_text('"""Grades gsm8k answers."""\nTASK = "gsm8k"\n')
    assert (2, "gsm8k") in string_constants(module) and (1, "gsm8k") not in string_constants(module)


def test_grading_does_not_import_the_registry():
    # the dependency runs tasks -> grading only: no import of the registry, at the top or inside a function
    imported = set()
    for path in (PACKAGE / "grading").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                imported |= {f"{node.module}.{alias.name}" for alias in node.names}
    assert "ppa_eval.grading.grader.Verdict" in imported  # the walk sees the package's imports
    assert not [name for name in imported if name.startswith("ppa_eval.tasks")]


def relative_functions(value, directory: Path):
    """lm-eval's unresolved `!function` names carry the YAML's directory; ours are as written."""
    if isinstance(value, dict):
        return {key: relative_functions(item, directory) for key, item in value.items()}
    return value.removeprefix(f"{directory}/") if isinstance(value, str) else value


@pytest.mark.parametrize("name", list(TASKS))
def test_each_entry_reads_its_yaml_as_lm_eval_does(name):
    task = TASKS[name]
    lm_eval_config = relative_functions(load_yaml(task.yaml_path, resolve_func=False), task.yaml_path.parent)
    assert task.config == lm_eval_config and task.lm_eval_name == f"ppa_{name}"
    if task.scored:  # a corpus: lm-eval scores it as rolling log-likelihood, there is nothing to generate
        assert lm_eval_config["output_type"] == "loglikelihood_rolling" and task.grader is None
        return
    assert task.stop == tuple(lm_eval_config["generation_kwargs"]["until"])
    # the generated tasks have no stock lm-eval twin
    assert task.generated == (task.lm_eval_metrics is None)


def test_grade_takes_the_tasks_whose_grader_grades_files():
    assert gradable_tasks() == ["math500", "gsm8k", "gsm8k_cot"]
    assert all(isinstance(TASKS[name].grader, AnswerGrader) for name in gradable_tasks())


def test_registration_refuses_a_taken_name_and_a_missing_yaml(tmp_path):
    shipped = TASKS["passkey"]
    with pytest.raises(TaskError, match="'passkey' is already registered"):
        register_task(shipped)
    with pytest.raises(TaskError, match="does not exist"):
        register_task(TaskSpec("toy", "toy", shipped.docs, shipped.grader, yaml=tmp_path / "absent.yaml"))
    (tmp_path / "bad.yaml").write_text("task: ppa_toy\n")  # no generation_kwargs
    with pytest.raises(TaskError, match="generation_kwargs"):
        register_task(TaskSpec("toy", "toy", shipped.docs, shipped.grader, yaml=tmp_path / "bad.yaml"))
    assert "toy" not in TASKS
