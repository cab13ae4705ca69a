"""The `ppa` lm-eval model (ppa_eval/lm_eval_model.py) on the transformers engine, all three request
types, against independent references:
  - at p < 1, log-likelihoods equal a brute-force masked forward: the stock transformers model
    called with a 4-D additive mask built from the pattern's definition (tests/reference.py),
    one unpadded sequence at a time, while the model under test scores a left-padded batch;
  - rolling perplexity over a document longer than the window equals the brute-force sum over
    windows cut by hand, each its own sequence (sinks at the window's start);
  - at p = 1, log-likelihoods equal stock lm-eval's `hf` model on a multiple-choice task and a
    rolling-perplexity task (lm-eval YAMLs over local JSON files);
  - generate_until under --apply_chat_template equals ppa-eval's evaluate path (render_prompt, then
    the engine's generate_batch);
  - `ppa-eval lm-eval` runs lm-eval's command line with `ppa` registered.
The vLLM engine: tests/test_lm_eval_vllm.py.
"""

import json
import os
from pathlib import Path

import pytest
import torch
from lm_eval.api.instance import Instance
from lm_eval.tasks import TaskManager

from ppa_eval.engines.hf import HFEngine
from ppa_eval.lm_eval_model import LMEvalModelError, PPALM, rejoin_spec, resolve_attention
from ppa_eval.patterns import PatternError, PowerPattern, parse_spec
from ppa_eval.prompts import render_prompt
from reference import brute_matrix, brute_scores
from test_cli import ppa_eval

# Each with sinks or blocks, which a left-padded row must count from its first real token.
PATTERNS = ("ppa:p=1/2,w=3,sink=2", "powerattention:block=4,window=1,sink=1", "window:w=5,sink=3")
WINDOW = 32  # max_length for the tiny model: documents below run several windows

DOCUMENT = (
    "The lighthouse keeper climbed the spiral stairs every evening at dusk, carrying a lamp and a small notebook. "
    "He wrote down the colour of the sea, the direction of the wind and the names of the ships that passed. "
    "In winter the storms came from the north, and the waves broke over the rocks below the tower. "
    "In summer the fishermen waved from their boats, and children from the village brought him bread and apples. "
    "After forty years he gave the notebooks to the town library, where they fill three long shelves."
)


@pytest.fixture(scope="module")
def tiny(make_tiny_checkpoint, tmp_path_factory):
    return make_tiny_checkpoint(tmp_path_factory.mktemp("lm_eval_model") / "tiny")


@pytest.fixture(scope="module")
def stock_tiny(tiny):
    """The tiny checkpoint as plain transformers loads it: eager attention, no ppa-eval code."""
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny, attn_implementation="eager", dtype=torch.float32).eval()


@pytest.fixture(scope="module")
def tiny_models(tiny):
    models = {}

    def get(spec: str) -> PPALM:
        if spec not in models:
            models[spec] = PPALM(pretrained=str(tiny), attention=spec, dtype="float32", batch_size=8,
                                 max_length=WINDOW, device="cpu")
        return models[spec]

    return get


def test_a_spec_split_at_its_commas_by_lm_eval_is_put_back_together():
    from lm_eval._cli.utils import key_val_to_dict  # how `lm_eval --model_args` reads its argument

    args = key_val_to_dict("pretrained=/m,attention=powerattention:block=16,window=2,sink=1,engine=vllm,"
                           "tensor_parallel_size=2")
    assert set(args) == {"pretrained", "attention", "window", "sink", "engine", "tensor_parallel_size"}
    extra = {key: value for key, value in args.items() if key not in ("pretrained", "attention", "engine")}
    attention, options = rejoin_spec(args["attention"], extra)  # as PPALM(**args) binds them
    assert parse_spec(attention) == parse_spec("powerattention:block=16,window=2,sink=1")
    assert options == {"tensor_parallel_size": 2}
    attention, options = rejoin_spec("ppa:p=3/4", {"w": 16})
    assert parse_spec(attention) == PowerPattern(parse_spec("ppa:p=3/4").power, 16) and options == {}
    with pytest.raises(PatternError, match="bogus"):  # a typo is named by the spec's parser
        parse_spec(rejoin_spec("ppa:p=3/4", {"bogus": 1})[0])
    assert rejoin_spec(None, {"bogus": 1}) == (None, {"bogus": 1})  # reported as an unknown argument


@pytest.mark.parametrize("arguments, message", [
    ({"bogus": 1}, "unknown model argument"),
    ({"max_model_len": 64}, "add engine=vllm"),
    ({"engine": "sglang"}, "unknown engine"),
    ({"batch_size": "auto"}, "no 'auto'"),
])
def test_model_arguments_it_cannot_use_are_one_line_errors(tiny, arguments, message):
    with pytest.raises(LMEvalModelError, match=message):
        PPALM(pretrained=str(tiny), device="cpu", **arguments)


def test_the_pattern_defaults_to_the_checkpoints_own_and_a_contradiction_needs_force(make_tiny_checkpoint, tiny,
                                                                                     tmp_path):
    from ppa_eval.checkpoints import CheckpointError

    trained = make_tiny_checkpoint(tmp_path / "trained", ppa_attention="ppa:p=1/2,w=8")
    assert resolve_attention(trained, None, force=False) == parse_spec("ppa:p=1/2,w=8")
    assert resolve_attention(tiny, None, force=False) == parse_spec("full")  # its config names none
    assert resolve_attention(tiny, "window:w=8", force=False) == parse_spec("window:w=8")
    with pytest.raises(CheckpointError, match="force"):
        resolve_attention(trained, "full", force=False)
    assert resolve_attention(trained, "full", force=True) == parse_spec("full")


@pytest.mark.parametrize("spec", PATTERNS)
def test_loglikelihood_of_a_left_padded_batch_equals_the_brute_force_masked_forward(tiny_models, stock_tiny, spec):
    lm = tiny_models(spec)
    generator = torch.Generator().manual_seed(1)
    vocab = stock_tiny.config.vocab_size
    requests = [(torch.randint(3, vocab, (n_context,), generator=generator).tolist(),
                 torch.randint(3, vocab, (n_continuation,), generator=generator).tolist())
                for n_context, n_continuation in ((28, 3), (15, 1), (5, 6), (1, 2))]
    # and a continuation the model picks greedily, so that is_greedy is seen true as well as false
    context, continuation = requests[0][0][:20], []
    for _ in range(3):
        continuation.append(_argmax_after(stock_tiny, context + continuation, spec))
    requests.append((context, continuation))

    answers = lm._loglikelihood_tokens([(None, c, x) for c, x in requests])  # one batch: rows 3 to 31 tokens

    for (context, continuation), (logprob, greedy) in zip(requests, answers):
        logprobs, argmax = brute_scores(stock_tiny, context + continuation, spec)
        assert logprob == pytest.approx(float(logprobs[-len(continuation):].sum()), abs=1e-4)
        assert greedy == bool(argmax[-len(continuation):].all())
    assert answers[-1][1] and not answers[0][1]
    # the pattern bites at these lengths: full attention scores the longest request otherwise
    full = brute_scores(stock_tiny, requests[0][0] + requests[0][1], "full")[0][-3:].sum()
    assert abs(answers[0][0] - float(full)) > 1e-3


def _argmax_after(model, tokens: list[int], spec: str) -> int:
    """The model's greedy next token after `tokens` under the pattern (brute force)."""
    length = len(tokens)
    allowed = torch.from_numpy(brute_matrix(spec, length))
    mask = torch.zeros(length, length).masked_fill(~allowed, torch.finfo(torch.float32).min)[None, None]
    with torch.no_grad():
        return int(model(input_ids=torch.tensor([tokens]), attention_mask=mask).logits[0, -1].argmax())


@pytest.mark.parametrize("spec", PATTERNS[:2])
def test_rolling_loglikelihood_equals_brute_force_windows_each_with_its_own_sinks(tiny_models, stock_tiny, spec):
    lm = tiny_models(spec)
    tokens = lm.tokenizer.encode(DOCUMENT)
    assert len(tokens) > 3 * WINDOW and len(tokens) % WINDOW  # several windows, the last one partial
    # lm-eval's disjoint windows written out: window w predicts tokens[s:e] and reads the WINDOW
    # tokens before e (the prefix token first), so the last, partial one reads more than it predicts
    full = [lm.tokenizer.bos_token_id] + tokens
    expected = 0.0
    for start in range(0, len(tokens), WINDOW):
        end = min(start + WINDOW, len(tokens))
        row = full[max(0, end - WINDOW): end + 1]
        expected += float(brute_scores(stock_tiny, row, spec)[0][-(end - start):].sum())

    (total,) = lm.loglikelihood_rolling([Instance("loglikelihood_rolling", {}, (DOCUMENT,), 0)], disable_tqdm=True)

    assert total == pytest.approx(expected, abs=1e-3)


def test_chat_rendering_is_the_evaluate_path_and_refuses_what_it_cannot_render(tiny_models, monkeypatch):
    lm = tiny_models(PATTERNS[0])
    prompt = "Question: What is 2 + 3?\nAnswer:"
    assert lm.apply_chat_template([{"role": "user", "content": prompt}]) == render_prompt(prompt, lm.tokenizer)
    assert lm.apply_chat_template([{"role": "user", "content": prompt}]).endswith("<think></think>")
    # a task's gen_prefix arrives as an unfinished assistant turn
    assert (lm.apply_chat_template([{"role": "user", "content": prompt}, {"role": "assistant", "content": "The sum"}],
                                   add_generation_prompt=False)
            == render_prompt(prompt, lm.tokenizer, gen_prefix="The sum"))
    # few-shot turns, lm-eval's default under --apply_chat_template: no think block can be placed there
    turns = [{"role": "user", "content": "Question: 1 + 1?\nAnswer:"}, {"role": "assistant", "content": "2"},
             {"role": "user", "content": prompt}]
    with pytest.raises(LMEvalModelError, match="--fewshot_as_multiturn false"):
        lm.apply_chat_template(turns)
    monkeypatch.setattr(lm, "thinking", "none")  # then the turns are rendered as lm-eval's hf model renders them
    assert lm.apply_chat_template(turns) == lm.tokenizer.apply_chat_template(turns, tokenize=False,
                                                                             add_generation_prompt=True)
    with pytest.raises(LMEvalModelError, match="greedily"):
        lm.generate_until([Instance("generate_until", {}, (prompt, {"do_sample": True}), 0)])


# ---- lm-eval tasks over local JSON files --------------------------------------------------------

CHOICE_DOCS = [
    {"question": "The capital of France is", "choices": [" Paris", " Berlin", " a small green frog"], "label": 0},
    {"question": "Two plus two equals", "choices": [" four", " seven"], "label": 0},
    {"question": "Water freezes at zero degrees", "choices": [" Celsius", " Fahrenheit", " Kelvin", " o'clock"],
     "label": 0},
    {"question": "The opposite of hot is", "choices": [" cold", " warm"], "label": 0},
]
ROLLING_DOCS = [{"text": DOCUMENT}, {"text": "A short note: the meeting moved to Tuesday."}]
GENERATE_DOCS = [{"question": "What is 2 + 3?", "answer": "5"}, {"question": "Name a colour.", "answer": "red"}]
TASK_YAMLS = {
    "ppa_test_choice": ("choice.json", CHOICE_DOCS, """
output_type: multiple_choice
doc_to_text: "{{question}}"
doc_to_choice: "{{choices}}"
doc_to_target: "{{label}}"
metric_list:
  - metric: acc
"""),
    "ppa_test_rolling": ("rolling.json", ROLLING_DOCS, """
output_type: loglikelihood_rolling
doc_to_text: ""
doc_to_target: "{{text}}"
metric_list:
  - metric: word_perplexity
  - metric: bits_per_byte
"""),
    "ppa_test_generate": ("generate.json", GENERATE_DOCS, """
output_type: generate_until
doc_to_text: "Question: {{question}}\\nAnswer:"
doc_to_target: "{{answer}}"
generation_kwargs:
  until: ["Question:"]
  do_sample: false
  max_gen_toks: 12
metric_list:
  - metric: exact_match
"""),
}


@pytest.fixture(scope="module")
def task_dir(tmp_path_factory):
    """lm-eval task YAMLs reading local JSON files (there is no hub here)."""
    directory = tmp_path_factory.mktemp("lm_eval_tasks")
    for task, (data_file, docs, body) in TASK_YAMLS.items():
        (directory / data_file).write_text("\n".join(json.dumps(doc) for doc in docs))
        (directory / f"{task}.yaml").write_text(
            f"task: {task}\ndataset_path: json\ndataset_kwargs:\n  data_files:\n    test: {directory / data_file}\n"
            f"test_split: test\n{body}")
    return directory


def run_tasks(model, tasks: list[str], task_dir: Path, **options) -> dict:
    """{task: lm-eval's logged samples (requests and responses) of each document, in document order}."""
    import lm_eval

    results = lm_eval.simple_evaluate(model=model, tasks=tasks, task_manager=TaskManager(include_path=str(task_dir)),
                                      log_samples=True, **options)
    return {task: sorted(samples, key=lambda s: s["doc_id"]) for task, samples in results["samples"].items()}


def responses(samples: dict) -> dict:
    """{task: [[each request's response] of each document]}."""
    return {task: [sample["resps"] for sample in task_samples] for task, task_samples in samples.items()}


def assert_close(ours, theirs, rel=1e-4, abs=1e-3):
    """Nested responses equal: log-likelihoods within float tolerance, greedy flags and texts exactly."""
    if isinstance(ours, dict):
        assert ours.keys() == theirs.keys()
        for key in ours:
            assert_close(ours[key], theirs[key], rel, abs)
    elif isinstance(ours, (list, tuple)):
        assert len(ours) == len(theirs)
        for a, b in zip(ours, theirs):
            assert_close(a, b, rel, abs)
    elif isinstance(ours, float):
        assert ours == pytest.approx(float(theirs), rel=rel, abs=abs)
    else:
        assert ours == theirs


@pytest.mark.slow
def test_at_full_attention_loglikelihoods_equal_stock_lm_eval_hf(embedded_checkpoint, task_dir):
    from lm_eval.models.huggingface import HFLM

    window = 64  # the long document runs several windows, the short one fits in one
    tasks = ["ppa_test_choice", "ppa_test_rolling"]
    stock = responses(run_tasks(HFLM(pretrained=str(embedded_checkpoint), dtype="float32", max_length=window,
                                     batch_size=4, device="cpu"), tasks, task_dir))
    ours = responses(run_tasks(PPALM(pretrained=str(embedded_checkpoint), dtype="float32", max_length=window,
                                     batch_size=4, device="cpu"), tasks, task_dir))
    assert len(ours["ppa_test_choice"]) == len(CHOICE_DOCS) and len(ours["ppa_test_rolling"]) == len(ROLLING_DOCS)
    assert_close(ours, stock)


@pytest.mark.slow
def test_generate_until_under_the_chat_template_equals_the_evaluate_path(tiny, tiny_models, task_dir):
    spec = PATTERNS[0]
    (samples,) = run_tasks(tiny_models(spec), ["ppa_test_generate"], task_dir, apply_chat_template=True).values()
    engine = HFEngine(tiny, parse_spec(spec), "cpu", "float32")
    prompts = [render_prompt(f"Question: {doc['question']}\nAnswer:", engine.tokenizer) for doc in GENERATE_DOCS]
    expected = [g.text for g in engine.generate_batch(prompts, 12, ("Question:",))]
    assert [sample["arguments"][0][0] for sample in samples] == prompts
    assert [sample["resps"][0][0] for sample in samples] == expected
    assert any(expected)  # the random model writes something: an empty answer would equal anything


@pytest.mark.slow
def test_ppa_eval_lm_eval_runs_lm_eval_with_the_ppa_model(tiny, task_dir, tmp_path):
    out = tmp_path / "out"
    ppa_eval("lm-eval", "run", "--model", "ppa", "--model_args",
             f"pretrained={tiny},attention=ppa:p=1/2,w=4,sink=1,dtype=float32,max_length={WINDOW}",
             "--tasks", "ppa_test_choice", "--include_path", task_dir, "--output_path", out, "--device", "cpu",
             env={**os.environ, "HF_DATASETS_OFFLINE": "1"})
    (results_file,) = out.rglob("results_*.json")
    results = json.loads(results_file.read_text())
    assert "acc,none" in results["results"]["ppa_test_choice"]
    assert results["config"]["ppa_attention"] == "ppa:p=1/2,w=4,sink=1"


@pytest.mark.slow
def test_the_shipped_passkey_choice_task_scores_as_stock_lm_eval_hf_at_full_attention(tiny):
    # a multiple-choice task that runs offline: the generated pass-key problems, the true key against
    # three other numbers; our model at p = 1 scores every choice as stock lm-eval's hf model does
    import lm_eval
    from lm_eval.models.huggingface import HFLM

    from ppa_eval.tasks import TASKS_DIR

    def run(model) -> dict:
        manager = TaskManager(include_path=str(TASKS_DIR), include_defaults=False,
                              metadata={"pretrained": str(tiny), "context_lengths": [256], "per_length": 3})
        return lm_eval.simple_evaluate(model=model, tasks=["ppa_passkey_choice"], task_manager=manager,
                                       log_samples=True)["samples"]

    options = {"pretrained": str(tiny), "dtype": "float32", "batch_size": 4, "device": "cpu"}
    ours, stock = run(PPALM(attention="full", **options)), run(HFLM(**options))
    for sample in ours["ppa_passkey_choice"]:
        choices = [request[1].strip() for request in sample["arguments"]]
        assert choices[0] == sample["doc"]["gold"][0] and len(set(choices)) == 4
        assert all(len(choice) == 5 and choice.isdigit() for choice in choices)
    assert len(ours["ppa_passkey_choice"]) == 3
    assert_close(responses(ours), responses(stock))
