"""Fine-tuning under a pattern: it attends as evaluation does, it learns, it resumes after kill -9, and
what it saves is a checkpoint `evaluate` and `sweep` read without flags."""

import json
import subprocess
from fractions import Fraction

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM

from ppa_eval.checkpoints import content_sha256, discover
from ppa_eval.cli import main
from ppa_eval.engines.hf import HFEngine, load_model
from ppa_eval.engines.model_files import load_tokenizer
from ppa_eval.finetune import Recipe, collate, loss_of, target_logits, train_one
from ppa_eval.long_context import DEFAULT_CONTEXT_LENGTHS
from ppa_eval.patterns import PowerPattern, parse_spec
from ppa_eval.tasks import RETRIEVAL_TRAINING_TASKS, TASKS
from ppa_eval.training_data import DataRecipe, build_examples, plan_batches, retrieval_docs
from reference import dense_mask
from test_cli import assert_clean_error, kill_9_when, ppa_eval

TINY_DATA = DataRecipe(lengths=(512,), per_length=4, plain=8)
TINY_FLAGS = ["--train-lengths", "512", "--per-length", "4", "--plain", "8", "--batch-tokens", "2048",
              "--epochs", "2", "--save-every", "2", "--warmup", "2", "--lr", "1e-2", "--device", "cpu"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, make_tiny_checkpoint):
    return make_tiny_checkpoint(tmp_path_factory.mktemp("base") / "tiny")


@pytest.fixture(scope="module")
def tiny_examples(tiny):
    return build_examples(load_tokenizer(tiny), TINY_DATA)


@pytest.fixture(scope="module")
def stock_embedded(embedded_checkpoint):
    return AutoModelForCausalLM.from_pretrained(embedded_checkpoint, dtype=torch.float32, attn_implementation="sdpa")


@pytest.mark.slow
@pytest.mark.parametrize("spec", ["ppa:p=1/2,w=8", "ppa:p=0,w=16", "powerattention:block=16,window=1,sink=1"])
def test_training_forward_is_the_evaluation_engines(spec, embedded_checkpoint, stock_embedded, tiny_examples):
    """The training loss reads the logits that the evaluation engine computes for the same input, and
    for PPA those equal the stock model under a brute-force mask."""
    pattern = parse_spec(spec)
    model, tokenizer = load_model(embedded_checkpoint, pattern, "cpu", "float32", "sdpa")
    model.train()
    batch = collate(tiny_examples[:2], tokenizer.pad_token_id, "cpu")
    ids, attention, target = batch
    with torch.no_grad():
        ours = target_logits(model, ids, attention, target)
        engine = HFEngine(embedded_checkpoint, pattern, "cpu").model
        theirs = engine(ids, attention_mask=attention).logits[:, :-1][target[:, 1:]]
    assert ours.shape[0] == int(target[:, 1:].sum()) > 0
    assert (ours - theirs).abs().max().item() < 1e-3
    if isinstance(pattern, PowerPattern):
        with torch.no_grad():
            brute = stock_embedded(ids, attention_mask=dense_mask(Fraction(pattern.power), pattern.window, attention)).logits
        assert (ours - brute[:, :-1][target[:, 1:]]).abs().max().item() < 1e-3


@pytest.mark.slow
def test_a_few_steps_lower_the_loss(tmp_path, tiny, tiny_examples):
    pattern = PowerPattern("1/2", 8)
    recipe = Recipe(data=TINY_DATA, epochs=3, batch_tokens=2048, lr=1e-2, warmup=2)

    def mean_loss(checkpoint):
        model, tokenizer = load_model(checkpoint, pattern, "cpu", "float32", "sdpa")
        with torch.no_grad():
            return sum(loss_of(model, collate([tiny_examples[i] for i in batch], tokenizer.pad_token_id, "cpu")).item()
                       for batch in plan_batches(tiny_examples, 2048, 0))

    final = train_one(tiny, "tiny", pattern, tiny_examples, recipe, tmp_path, "cpu")
    before, after = mean_loss(tiny), mean_loss(final)
    assert after < 0.8 * before, (before, after)
    log = [json.loads(line) for line in (tmp_path / "training" / final.name / "log.jsonl").read_text().splitlines()]
    assert [s["step"] for s in log] == list(range(3 * len(plan_batches(tiny_examples, 2048, 0))))
    assert all(s["tokens"] > 0 and s["targets"] > 0 for s in log)


@pytest.mark.slow
def test_no_training_problem_shares_an_answer_with_an_evaluation_problem():
    """Not the same answer at any depth or length: checked against the evaluation sets as `evaluate`
    makes them (its default seed, the lengths 1k-8k, 40 and 16 problems per length). Gold values and
    depths are drawn before the haystack is sized, so a whitespace tokenizer stands in for speed."""

    class Words:
        def encode(self, text, add_special_tokens=False):
            return text.split()

    recipe = DataRecipe(lengths=(1024, 2048, 4096), per_length=96)
    for task in map(TASKS.get, RETRIEVAL_TRAINING_TASKS):
        train = retrieval_docs(task, Words(), recipe)
        assert len(train) > 0.9 * 3 * 96  # a few are dropped, most kept
        train_answers = {value for doc in train for value in doc["gold"]}
        for per_length in (40, 16):
            evaluation = task.generate(Words(), DEFAULT_CONTEXT_LENGTHS, per_length, seed=1234)
            assert not train_answers & {value for doc in evaluation for value in doc["gold"]}
            cells = {(tuple(d["gold"]), d["depth"], d["context_length"]) for d in evaluation}
            assert not cells & {(tuple(d["gold"]), d["depth"], d["context_length"]) for d in train}


def test_the_data_and_batches_are_the_same_for_every_pattern(tiny, tiny_examples):
    again = build_examples(load_tokenizer(tiny), TINY_DATA)
    assert again == tiny_examples
    assert plan_batches(again, 2048, 0) == plan_batches(tiny_examples, 2048, 0)
    batches = plan_batches(tiny_examples, 2048, 0)
    assert sorted(i for batch in batches for i in batch) == list(range(len(tiny_examples)))
    assert all(len(b) * max(len(tiny_examples[i].ids) for i in b) <= 2048 for b in batches if len(b) > 1)


@pytest.mark.slow
def test_finetune_resumes_after_kill_9_and_evaluate_reads_its_pattern(tmp_path, tiny):
    """Two patterns; the command is killed while the second trains, then run again: both checkpoints
    equal those of an uninterrupted run. Each is a checkpoint whose config names its pattern, which
    `evaluate` and `sweep` take without flags."""
    command = ["finetune", tiny, "--powers", "1/2,1", "--window", "8", *TINY_FLAGS]
    ppa_eval(*command, "--out", tmp_path / "clean")

    interrupted = tmp_path / "interrupted"
    kill_9_when((interrupted / "training" / "tiny__p1_w8" / "state.pt").exists, *command, "--out", interrupted)
    assert not (interrupted / "tiny__p1_w8").exists()
    ppa_eval(*command, "--out", interrupted)

    for run, spec in (("tiny__p1-2_w8", "ppa:p=1/2,w=8"), ("tiny__p1_w8", "ppa:p=1,w=8")):
        clean = AutoModelForCausalLM.from_pretrained(tmp_path / "clean" / run).state_dict()
        resumed = AutoModelForCausalLM.from_pretrained(interrupted / run).state_dict()
        assert all(torch.equal(clean[key], resumed[key]) for key in clean)
        base = AutoModelForCausalLM.from_pretrained(tiny).state_dict()
        assert not all(torch.equal(base[key], resumed[key]) for key in base)
        assert json.loads((interrupted / run / "config.json").read_text())["ppa_attention"] == spec
        summary = json.loads((interrupted / "training" / run / "summary.json").read_text())
        assert summary["last_loss"] < summary["first_loss"]

    checkpoints, skipped = discover(interrupted)
    assert [c.pattern for c in checkpoints] == [PowerPattern("1/2", 8), PowerPattern(1, 8)] and not skipped
    out = tmp_path / "runs"
    ppa_eval("evaluate", interrupted / "tiny__p1-2_w8", "--tasks", "passkey", "--context-lengths", "512",
             "--limit", "2", "--max-new-tokens", "4", "--out", out)
    manifest = json.loads((out / "tiny__p1-2_w8" / "manifest.json").read_text())
    assert manifest["attention"] == "ppa:p=1/2,w=8"
    assert manifest["checkpoint_sha256"] == content_sha256(interrupted / "tiny__p1-2_w8") != content_sha256(tiny)


def finetune_in_process(capsys, *args) -> subprocess.CompletedProcess:
    """`ppa-eval finetune ARGS` in this process (its flag checks and refusals; the kill -9 test above
    runs the command as a process of its own)."""
    status = main(["finetune", *map(str, args)])
    return subprocess.CompletedProcess(args, status, *capsys.readouterr())


@pytest.mark.slow
def test_finetune_refuses_another_recipe_in_the_same_directory(tmp_path, tiny, capsys):
    assert finetune_in_process(capsys, tiny, "--powers", "1", "--window", "8", *TINY_FLAGS, "--out", tmp_path).returncode == 0
    result = finetune_in_process(capsys, tiny, "--powers", "1", "--window", "8", *TINY_FLAGS, "--lr", "5e-4",
                                 "--out", tmp_path)
    assert_clean_error(result, "other settings (recipe)")


@pytest.mark.parametrize("flags, message", [(["--attn-kernel", "flex"], "no backward pass on the CPU"),
                                            (["--lr", "0"], "--lr must be positive"),
                                            (["--epochs", "0"], "--epochs must be at least 1"),
                                            (["--powers", "2"], "power"),
                                            pytest.param(["--device", "cuda"], "sees no CUDA GPU", marks=pytest.mark.skipif(
                                                torch.cuda.is_available(), reason="this machine has a GPU"))])
def test_finetune_mistakes_get_one_line_errors(flags, message, tmp_path, tiny, capsys):
    assert_clean_error(finetune_in_process(capsys, tiny, "--powers", "1", *TINY_FLAGS, *flags, "--out", tmp_path), message)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="flex attention has a backward pass on GPUs only")
def test_flex_training_matches_the_exact_mask_on_a_gpu(tmp_path, tiny, tiny_examples):
    """The two training paths give one loss and one gradient (float32, so only summation order differs)."""
    from transformers import LlamaForCausalLM

    pattern = PowerPattern("1/2", 8)
    config = AutoConfig.from_pretrained(tiny)
    config.head_dim = 16  # flex attention's GPU kernels take heads of 16 and more; the tiny model's are 8
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(tmp_path / "wide")
    load_tokenizer(tiny).save_pretrained(tmp_path / "wide")
    results = {}
    for kernel in ("sdpa", "flex"):
        model, tokenizer = load_model(tmp_path / "wide", pattern, "cuda", "float32", kernel)
        model.train()
        loss = loss_of(model, collate(tiny_examples[:4], tokenizer.pad_token_id, "cuda"))
        loss.backward()
        results[kernel] = (loss.item(), torch.cat([p.grad.flatten() for p in model.parameters()]))
    assert abs(results["sdpa"][0] - results["flex"][0]) < 1e-4
    assert torch.allclose(results["sdpa"][1], results["flex"][1], atol=1e-4, rtol=1e-3)
