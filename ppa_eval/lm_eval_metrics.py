"""lm-eval's own numbers beside ours: each response scored as lm-eval 0.4.13's stock task scores it.

    StockGSM8K("gsm8k/gsm8k.yaml").scores(response, doc)
        -> {"lm_eval_strict_match": 1.0, "lm_eval_flexible_extract": 1.0}
    MinervaMath().scores(response, doc) -> {"lm_eval_exact_match": 0.0, "lm_eval_math_verify": 1.0}

A task's registry entry (ppa_eval.tasks) names the scorer of its lm-eval metrics.

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
from dataclasses import dataclass
from functools import cache
from typing import ClassVar

from ppa_eval.errors import PPAEvalError

class LmEvalMetricError(PPAEvalError):
    """A record lacking a field the metrics read, or a call off the main thread."""


def _require(doc: dict, data: str, *keys: str) -> None:
    for key in keys:
        if key not in doc:
            raise LmEvalMetricError(f"a {data} record needs the field {key!r} (the vendored data's); "
                                    f"got the fields {', '.join(doc)}")


# GSM8K


@dataclass(frozen=True)
class StockGSM8K:
    """The metrics of a stock GSM8K task (`gsm8k`, `gsm8k_cot`), read from its YAML under lm_eval/tasks:
    one exact_match per filter, named after the filter, in the YAML's order."""

    stock_yaml: str  # e.g. "gsm8k/gsm8k-cot.yaml"
    names: ClassVar[tuple[str, ...]] = ("lm_eval_strict_match", "lm_eval_flexible_extract")  # what `scores` returns

    def scores(self, response: str, doc: dict) -> dict[str, float]:
        """lm-eval's metrics of one response to one GSM8K record."""
        return {f"lm_eval_{name.replace('-', '_')}": score
                for name, (_, score) in self.filters(response, doc).items()}

    def filters(self, response: str, doc: dict) -> dict[str, tuple[str, float]]:
        """Per lm-eval filter ("strict-match", "flexible-extract"): what it extracts from `response`
        and that answer's exact_match against the document's gold."""
        from lm_eval.api.instance import Instance
        from lm_eval.utils import apply_template

        ensembles, exact_match, kwargs, doc_to_target = _gsm8k_scoring(self.stock_yaml)
        _require(doc, "GSM8K", "answer")
        gold = apply_template(doc_to_target, doc)
        results = {}
        for ensemble in ensembles:
            instance = Instance("generate_until", doc, arguments=("", {}), idx=0, resps=[response])
            ensemble.apply([instance])
            filtered = instance.filtered_resps[ensemble.name]
            score = exact_match(references=[gold], predictions=[filtered], **kwargs)["exact_match"]
            results[ensemble.name] = (filtered, float(score))
        return results


@cache
def _gsm8k_scoring(stock_yaml: str):
    """(filter ensembles, exact_match function, its keyword arguments, doc_to_target) of a stock
    GSM8K task, built from its YAML as lm-eval's ConfigurableTask builds them."""
    from importlib.resources import files

    from lm_eval.api.registry import get_metric
    from lm_eval.filters import build_filter_ensemble
    from lm_eval.tasks._yaml_loader import load_yaml

    config = load_yaml(files("lm_eval.tasks") / stock_yaml, resolve_func=False)
    ensembles = [
        build_filter_ensemble(spec["name"], [[step["function"], {k: v for k, v in step.items() if k != "function"}]
                                             for step in spec["filter"]])
        for spec in config["filter_list"]
    ]
    (metric,) = config["metric_list"]  # exact_match and its options
    kwargs = {k: v for k, v in metric.items() if k not in ("metric", "aggregation", "higher_is_better", "hf_evaluate")}
    return ensembles, get_metric(metric["metric"]), kwargs, config["doc_to_target"]


# MATH-500


def minerva_doc(doc: dict) -> dict:
    """The record as minerva_math500's `process_docs` hands it to `process_results`: its answer is
    the normalised content of the solution's last \\boxed{}, not MATH-500's `answer` field."""
    from lm_eval.tasks.minerva_math.utils import last_boxed_only_string, normalize_final_answer, remove_boxed

    _require(doc, "MATH-500", "problem", "solution")
    boxed = last_boxed_only_string(doc["solution"])
    if boxed is None:  # lm-eval itself fails on such a record with a TypeError
        raise LmEvalMetricError("a MATH-500 record's solution must end its answer in \\boxed{...}; this one has none")
    return {"problem": doc["problem"], "solution": doc["solution"],
            "answer": normalize_final_answer(remove_boxed(boxed))}


@dataclass(frozen=True)
class MinervaMath:
    """The metrics of the stock task minerva_math500: lm-eval's `minerva_math.utils.process_results`."""

    names: ClassVar[tuple[str, ...]] = ("lm_eval_exact_match", "lm_eval_math_verify")  # what `scores` returns

    def scores(self, response: str, doc: dict) -> dict[str, float]:
        """lm-eval's metrics of one response to one MATH-500 record; from the main thread only."""
        if threading.current_thread() is not threading.main_thread():
            raise LmEvalMetricError(
                "lm-eval's MATH scoring times sympy with SIGALRM, which fails silently (every answer "
                "scored 0) outside the main thread; score MATH-500 from the main thread"
            )
        from lm_eval.tasks.minerva_math.utils import process_results

        scores = process_results(minerva_doc(doc), [response])
        return {"lm_eval_exact_match": float(scores["exact_match"]),
                "lm_eval_math_verify": float(scores["math_verify"])}
