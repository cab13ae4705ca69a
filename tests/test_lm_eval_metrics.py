"""lm-eval's metrics as ppa-eval computes them, against what stock lm-eval 0.4.13 said about the same
responses (tests/data/lm_eval_stock_*.jsonl, recorded by tests/record_lm_eval_stock.py; see
tests/data/lm_eval_stock.md), against stock lm-eval's own task objects scoring further responses
(the recorded model gets every GSM8K answer wrong, so correct ones are needed too), and against
hand-checked cases; and the lm-eval preset against the stock task configs it summarises."""

import inspect
import json
import threading
from importlib.resources import files
from pathlib import Path

import pytest

from record_lm_eval_stock import vendored_task_yaml

from ppa_eval.tasks import DATA_DIR, TASKS
from ppa_eval.lm_eval_metrics import LmEvalMetricError, minerva_doc
from ppa_eval.lm_eval_preset import LM_EVAL_PRESET, preset_options

# The lm-eval metrics of our tasks, as their registry entries name them.
GSM8K_METRICS, COT_METRICS, MATH_METRICS = (TASKS[name].lm_eval_metrics for name in ("gsm8k", "gsm8k_cot", "math500"))

RECORDS = Path(__file__).parent / "data"
# The answer line Minerva's exemplars end with; lm-eval's exact_match reads only this line.
FINAL = "\nFinal Answer: The final answer is ${}$. I hope it is correct."


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def math500_docs() -> list[dict]:
    return read_jsonl(DATA_DIR / "math500" / "test.jsonl")


@pytest.fixture(scope="module")
def gsm8k_doc() -> dict:
    """GSM8K test question 0 (Janet's ducks), gold answer 18."""
    return read_jsonl(DATA_DIR / "gsm8k" / "test.jsonl")[0]


# Recorded stock runs


def test_gsm8k_filters_and_verdicts_equal_stock_lm_eval():
    records = read_jsonl(RECORDS / "lm_eval_stock_gsm8k.jsonl")
    assert len(records) == 20
    for record in records:
        stock = {name: (f["filtered"], f["exact_match"]) for name, f in record["filters"].items()}
        assert GSM8K_METRICS.filters(record["response"], record["doc"]) == stock, record["doc_id"]
        assert GSM8K_METRICS.scores(record["response"], record["doc"]) == {
            "lm_eval_strict_match": stock["strict-match"][1], "lm_eval_flexible_extract": stock["flexible-extract"][1]}


def test_math500_verdicts_equal_stock_lm_eval(math500_docs):
    records = read_jsonl(RECORDS / "lm_eval_stock_minerva_math500.jsonl")
    assert records
    for record in records:
        doc = math500_docs[record["doc_id"]]  # the vendored record; lm-eval logged its processed form
        assert minerva_doc(doc)["answer"] == record["doc"]["answer"]
        stock = record["filters"]["none"]
        assert MATH_METRICS.scores(record["response"], doc) == {
            "lm_eval_exact_match": stock["exact_match"], "lm_eval_math_verify": stock["math_verify"]}


def test_minerva_doc_is_what_process_docs_makes(math500_docs):
    import datasets
    from lm_eval.tasks.minerva_math.utils import process_docs

    processed = process_docs(datasets.Dataset.from_list(math500_docs))
    expected = processed.select_columns(["problem", "solution", "answer"])
    assert [minerva_doc(doc) for doc in math500_docs] == list(expected)


# Stock lm-eval's task objects as the reference


@pytest.fixture(scope="module")
def stock_tasks(tmp_path_factory):
    """lm-eval's own gsm8k and minerva_math500 tasks, reading the vendored data."""
    from lm_eval.tasks import TaskManager

    tasks = {}
    for name in ("gsm8k", "minerva_math500"):
        include = tmp_path_factory.mktemp(name)
        (include / f"{name}.yaml").write_text(vendored_task_yaml(name))
        tasks[name] = TaskManager(include_path=str(include), include_defaults=False).load(name)["tasks"][name]
    return tasks


def stock_scores(task, doc_id: int, response: str) -> dict[str, tuple[str, dict]]:
    """Per filter: what the stock task's filters extract from `response` and its process_results."""
    from lm_eval.api.instance import Instance

    doc = task.eval_docs[doc_id]
    instance = Instance("generate_until", doc, arguments=("", {}), idx=0, resps=[response])
    task._instances = [instance]
    task.apply_filters()
    filtered = instance.filtered_resps
    return {name: (answer, task.process_results(doc, [answer])) for name, answer in filtered.items()}


def test_gsm8k_equals_the_stock_task_on_right_and_wrong_responses(stock_tasks):
    records = read_jsonl(RECORDS / "lm_eval_stock_gsm8k.jsonl")
    correct = 0
    for record in records:
        solution = record["doc"]["answer"]
        responses = [
            record["response"],
            " " + solution,                                   # "... #### 18": both filters right
            " " + solution.rpartition("\n####")[0],         # no "####": strict-match finds nothing
            " " + solution.replace("#### ", "#### $"),       # "#### $18": strict-match's pattern has no "$"
            records[(record["doc_id"] + 1) % len(records)]["response"],
        ]
        for response in responses:
            stock = stock_scores(stock_tasks["gsm8k"], record["doc_id"], response)
            expected = {name: (filtered, scores["exact_match"]) for name, (filtered, scores) in stock.items()}
            assert GSM8K_METRICS.filters(response, record["doc"]) == expected, (record["doc_id"], response)
            correct += sum(score for _, score in expected.values())
    assert correct >= 2 * len(records)  # the reference solutions


@pytest.mark.slow
def test_math500_equals_the_stock_task_on_right_and_wrong_responses(stock_tasks, math500_docs):
    verdicts = set()
    for doc_id, doc in enumerate(math500_docs[:12]):
        boxed = doc["solution"]
        for response in (" " + boxed, " " + boxed + FINAL.format(doc["answer"]), FINAL.format("0")):
            ((_, stock),) = stock_scores(stock_tasks["minerva_math500"], doc_id, response).values()
            expected = {"lm_eval_exact_match": float(stock["exact_match"]),
                        "lm_eval_math_verify": float(stock["math_verify"])}
            assert MATH_METRICS.scores(response, doc) == expected, (doc_id, response)
            verdicts.add(tuple(expected.values()))
    assert {(1.0, 1.0), (0.0, 1.0), (0.0, 0.0)} <= verdicts


# Hand-checked cases

@pytest.mark.parametrize("doc_index, response, exact_match, math_verify", [
    # gold \frac{14}{3}: the Minerva answer line, as the exemplars teach
    (2, " We get $2+\\frac{5}{3}+1=\\boxed{\\frac{14}{3}}$." + FINAL.format("\\frac{14}{3}"), 1.0, 1.0),
    # an equal value in another form: sympy decides exact_match
    (2, " So the answer is $\\frac{28}{6}$." + FINAL.format("\\frac{28}{6}"), 1.0, 1.0),
    # no "Final Answer:" line: exact_match reads only that line, math-verify the whole response
    (2, " We get $2+\\frac{5}{3}+1=\\boxed{\\frac{14}{3}}$.", 0.0, 1.0),
    # gold \left( 3, \frac{\pi}{2} \right): identical after normalisation
    (0, " So $\\left( 3, \\frac{\\pi}{2} \\right)$." + FINAL.format("\\left( 3, \\frac{\\pi}{2} \\right)"), 1.0, 1.0),
    # the same point without \left \right: sympy cannot parse a tuple, so exact_match says no
    (0, " So $(3,\\frac{\\pi}{2})$." + FINAL.format("(3,\\frac{\\pi}{2})"), 0.0, 1.0),
    # gold 9
    (3, " There are 10 divisors." + FINAL.format("10"), 0.0, 0.0),
    # gold 90^\circ: normalisation drops the degree sign on both sides
    (7, " The angle is $90^\\circ$." + FINAL.format("90^\\circ"), 1.0, 1.0),
    # gold 3\sqrt{13}: sympy simplifies the difference to 0
    (8, " $\\sqrt{117}$." + FINAL.format("\\sqrt{117}"), 1.0, 1.0),
])
def test_math500_hand_checked(math500_docs, doc_index, response, exact_match, math_verify):
    assert MATH_METRICS.scores(response, math500_docs[doc_index]) == {
        "lm_eval_exact_match": exact_match, "lm_eval_math_verify": math_verify}


@pytest.mark.parametrize("response, strict, flexible", [
    (" She makes 9 * 2 = $18.\n#### 18", ("18", 1.0), ("18", 1.0)),
    # no "#### ": strict-match finds nothing; flexible takes the last number, "$" is ignored
    (" 9 * 2 = $18 every day.", ("[invalid]", 0.0), ("$18", 1.0)),
    (" #### $18", ("[invalid]", 0.0), ("$18", 1.0)),
    # exact_match compares strings: 18.00 is not 18 (ppa-eval's grader says it is)
    (" #### 18.00", ("18.00", 0.0), ("18.00", 0.0)),
    (" #### 1,8", ("1,8", 1.0), ("1,8", 1.0)),  # commas are ignored wherever they are
    (" The answer is 18. Next, 3 eggs", ("[invalid]", 0.0), ("3", 0.0)),
])
def test_gsm8k_hand_checked(gsm8k_doc, response, strict, flexible):
    assert GSM8K_METRICS.filters(response, gsm8k_doc) == {"strict-match": strict, "flexible-extract": flexible}


def test_gsm8k_cot_uses_its_own_strict_pattern(gsm8k_doc):
    filters = COT_METRICS.filters(" 16 - 3 - 4 = 9 eggs, 9 * 2 = 18. The answer is 18.", gsm8k_doc)
    assert filters == {"strict-match": ("18", 1.0), "flexible-extract": ("18.", 1.0)}
    assert GSM8K_METRICS.filters(" The answer is 18.", gsm8k_doc)["strict-match"] == ("[invalid]", 0.0)


def test_metric_names_are_what_scores_returns(gsm8k_doc, math500_docs):
    assert tuple(GSM8K_METRICS.scores(" #### 18", gsm8k_doc)) == GSM8K_METRICS.names
    assert tuple(COT_METRICS.scores(" The answer is 18.", gsm8k_doc)) == COT_METRICS.names
    assert tuple(MATH_METRICS.scores(" 3", math500_docs[3])) == MATH_METRICS.names


# Refusals


def test_math500_refuses_to_score_off_the_main_thread(math500_docs):
    errors = []

    def score():
        try:
            MATH_METRICS.scores(FINAL.format("\\frac{28}{6}"), math500_docs[2])
        except LmEvalMetricError as error:
            errors.append(str(error))

    thread = threading.Thread(target=score)
    thread.start()
    thread.join()
    assert len(errors) == 1 and "score MATH-500 from the main thread" in errors[0]


def test_bad_input_is_refused(gsm8k_doc):
    with pytest.raises(LmEvalMetricError, match="a GSM8K record needs the field 'answer'"):
        GSM8K_METRICS.scores(" #### 18", {"question": gsm8k_doc["question"]})
    with pytest.raises(LmEvalMetricError, match="a MATH-500 record needs the field 'solution'"):
        MATH_METRICS.scores(" 3", {"problem": "?", "answer": "3"})
    with pytest.raises(LmEvalMetricError, match=r"solution must end its answer in \\boxed"):
        MATH_METRICS.scores(" 3", {"problem": "?", "solution": "It is 3."})


# The preset


def test_preset_is_what_stock_lm_eval_uses():
    from lm_eval import evaluator
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks._yaml_loader import load_yaml

    stock = {task: load_yaml(files("lm_eval.tasks") / path, resolve_func=False) for task, path in
             [("gsm8k", "gsm8k/gsm8k.yaml"), ("math500", "minerva_math/minerva_math500.yaml")]}
    defaults = inspect.signature(evaluator.simple_evaluate).parameters
    assert LM_EVAL_PRESET["chat_template"].value == "none" and defaults["apply_chat_template"].default is False
    assert LM_EVAL_PRESET["max_new_tokens"].value == HFLM.max_gen_toks.fget(None)
    assert not any("max_gen_toks" in config["generation_kwargs"] for config in stock.values())
    assert LM_EVAL_PRESET["fewshot_seed"].value == defaults["fewshot_random_seed"].default
    for task, config in stock.items():
        assert LM_EVAL_PRESET["num_fewshot"].value[task] == config["num_fewshot"]
        assert LM_EVAL_PRESET["stop"].value[task] == tuple(config["generation_kwargs"]["until"])
        assert config["generation_kwargs"]["do_sample"] is False and LM_EVAL_PRESET["greedy"].value
    assert preset_options() == {"tasks": "math500,gsm8k", "chat_template": "none", "thinking": "none",
                                "max_new_tokens": 256}
