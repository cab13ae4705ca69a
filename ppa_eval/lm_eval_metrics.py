"""lm-eval's own numbers beside ours: each response scored as lm-eval 0.4.13's stock task scores it.

    lm_eval_scores("gsm8k", response, doc) -> {"lm_eval_strict_match": 1.0, "lm_eval_flexible_extract": 1.0}
    lm_eval_scores("math500", response, doc) -> {"lm_eval_exact_match": 0.0, "lm_eval_math_verify": 1.0}

`doc` is the task's data record as vendored in tasks/data (GSM8K: question, answer; MATH-500:
problem, solution, answer, ...). Nothing of lm-eval's scoring is re-typed here:

- GSM8K (stock tasks `gsm8k`, `gsm8k_cot`): the filter pipelines (`strict-match`,
  `flexible-extract`: a regex, then take_first) and exact_match with its ignore_case and
  regexes_to_ignore are read from lm-eval's own task YAML and run by lm-eval's filter and metric
  code, against the gold its `doc_to_target` template renders.
- MATH-500 (stock task `minerva_math500`): lm-eval's `minerva_math.utils.process_results`, which
  gives exact_match (Minerva answer extraction, normalisation, `is_equiv`) and math_verify. Its
  gold answer is not MATH-500's `answer` field but what the task's `process_docs` makes of the
  solution's last \\boxed{}; `minerva_doc` builds that with lm-eval's own functions.

`is_equiv` and math-verify time sympy with SIGALRM, which only works in the main thread: in any
other thread they fail, swallow the error and score every comparison 0. So MATH-500 scoring
refuses to run off the main thread (LmEvalMetricError) instead of returning wrong zeros, and a
comparison can take up to lm-eval's own limits (5 s for is_equiv, math-verify's for parse and
verify), as in a stock run.

lm-eval takes seconds to import: it is imported on first use.
"""

from __future__ import annotations

import threading
from functools import cache

from ppa_eval.errors import PPAEvalError

# ppa-eval task -> the names of its lm-eval metrics, in the order lm_eval_scores returns them.
# GSM8K metrics are named after lm-eval's filters (each filter's exact_match), in the YAML's order.
LM_EVAL_METRICS = {
    "gsm8k": ("lm_eval_strict_match", "lm_eval_flexible_extract"),
    "gsm8k_cot": ("lm_eval_strict_match", "lm_eval_flexible_extract"),
    "math500": ("lm_eval_exact_match", "lm_eval_math_verify"),
}

# The stock task YAMLs (tasks gsm8k, gsm8k_cot) the GSM8K filters and metric settings are read from.
_GSM8K_YAMLS = {"gsm8k": "gsm8k/gsm8k.yaml", "gsm8k_cot": "gsm8k/gsm8k-cot.yaml"}


class LmEvalMetricError(PPAEvalError):
    """A task without lm-eval metrics, a record lacking a field they read, or a call off the main thread."""


def lm_eval_scores(task: str, response: str, doc: dict) -> dict[str, float]:
    """lm-eval's metrics of one response to one document of `task` (a ppa-eval task name)."""
    if task not in LM_EVAL_METRICS:
        raise LmEvalMetricError(f"no lm-eval metrics for task {task!r}; known tasks: {', '.join(LM_EVAL_METRICS)}")
    if task == "math500":
        return _minerva_scores(response, doc)
    filters = gsm8k_filters(task, response, doc)
    return {f"lm_eval_{name.replace('-', '_')}": score for name, (_, score) in filters.items()}


def _require(doc: dict, task: str, *keys: str) -> None:
    for key in keys:
        if key not in doc:
            raise LmEvalMetricError(f"a {task} record needs the field {key!r} (the vendored data's); "
                                    f"got the fields {', '.join(doc)}")


# GSM8K


@cache
def _gsm8k_scoring(task: str):
    """(filter ensembles, exact_match function, its keyword arguments, doc_to_target) of a stock
    GSM8K task, built from its YAML as lm-eval's ConfigurableTask builds them."""
    from importlib.resources import files

    from lm_eval.api.registry import get_metric
    from lm_eval.filters import build_filter_ensemble
    from lm_eval.tasks._yaml_loader import load_yaml

    config = load_yaml(files("lm_eval.tasks") / _GSM8K_YAMLS[task], resolve_func=False)
    ensembles = [
        build_filter_ensemble(spec["name"], [[step["function"], {k: v for k, v in step.items() if k != "function"}]
                                             for step in spec["filter"]])
        for spec in config["filter_list"]
    ]
    (metric,) = config["metric_list"]  # exact_match and its options
    kwargs = {k: v for k, v in metric.items() if k not in ("metric", "aggregation", "higher_is_better", "hf_evaluate")}
    return ensembles, get_metric(metric["metric"]), kwargs, config["doc_to_target"]


def gsm8k_filters(task: str, response: str, doc: dict) -> dict[str, tuple[str, float]]:
    """Per lm-eval filter of a stock GSM8K task ("strict-match", "flexible-extract"): what it
    extracts from `response` and that answer's exact_match against the document's gold."""
    from lm_eval.api.instance import Instance
    from lm_eval.utils import apply_template

    ensembles, exact_match, kwargs, doc_to_target = _gsm8k_scoring(task)
    _require(doc, task, "answer")
    gold = apply_template(doc_to_target, doc)
    results = {}
    for ensemble in ensembles:
        instance = Instance("generate_until", doc, arguments=("", {}), idx=0, resps=[response])
        ensemble.apply([instance])
        filtered = instance.filtered_resps[ensemble.name]
        score = exact_match(references=[gold], predictions=[filtered], **kwargs)["exact_match"]
        results[ensemble.name] = (filtered, float(score))
    return results


# MATH-500


def minerva_doc(doc: dict) -> dict:
    """The record as minerva_math500's `process_docs` hands it to `process_results`: its answer is
    the normalised content of the solution's last \\boxed{}, not MATH-500's `answer` field."""
    from lm_eval.tasks.minerva_math.utils import last_boxed_only_string, normalize_final_answer, remove_boxed

    _require(doc, "math500", "problem", "solution")
    boxed = last_boxed_only_string(doc["solution"])
    if boxed is None:  # lm-eval itself fails on such a record with a TypeError
        raise LmEvalMetricError("a math500 record's solution must end its answer in \\boxed{...}; this one has none")
    return {"problem": doc["problem"], "solution": doc["solution"],
            "answer": normalize_final_answer(remove_boxed(boxed))}


def _minerva_scores(response: str, doc: dict) -> dict[str, float]:
    if threading.current_thread() is not threading.main_thread():
        raise LmEvalMetricError(
            "lm-eval's MATH scoring times sympy with SIGALRM, which fails silently (every answer "
            "scored 0) outside the main thread; call lm_eval_scores from the main thread"
        )
    from lm_eval.tasks.minerva_math.utils import process_results

    scores = process_results(minerva_doc(doc), [response])
    return {"lm_eval_exact_match": float(scores["exact_match"]), "lm_eval_math_verify": float(scores["math_verify"])}
