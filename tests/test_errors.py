"""Every message that tells the user which flag to use ends the command with exit status 2 and one
line `error: ...`, no traceback. The mistakes are caught before any model loads, so most cases run
the command line in this process (cli.main); two run it as users do, in a process of its own."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ppa_eval import cli


def config_only(path: Path, **config) -> Path:
    """A checkpoint as far as the flag checks read one: its config.json."""
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({"model_type": "llama", **config}))
    return path


@pytest.fixture
def checkpoints(tmp_path):
    """Placeholders in argv -> paths: a PPA checkpoint alone in its directory, one without a pattern."""
    return {"CKPT": config_only(tmp_path / "sweep" / "ckpt", ppa_power="1/2", ppa_window=8),
            "PLAIN": config_only(tmp_path / "plain")}


def assert_one_line(status: int, err: str, *fragments: str) -> None:
    lines = err.strip().splitlines()
    assert status == 2 and len(lines) == 1 and lines[0].startswith("error: "), (status, err)
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


# (argv, fragments of the one line); CKPT and PLAIN: see `checkpoints`
MISTAKES = [
    # run settings (ppa_eval.settings)
    (["evaluate", "--power", "1", "--device", "tpu"], ["--device takes cpu or cuda"]),
    (["evaluate", "--power", "1", "--limit", "0"], ["--limit must be at least 1", "leave it out"]),
    (["sweep", "--powers", "0,1", "--batch-size", "0"], ["--batch-size must be at least 1"]),
    (["evaluate", "--power", "1", "--max-new-tokens", "-1"], ["--max-new-tokens must be at least 1"]),
    (["evaluate", "--power", "1", "--context-lengths", "1k"], ["--context-lengths takes whole numbers"]),
    (["evaluate", "--power", "1", "--context-lengths", "0"], ["--context-lengths takes positive numbers"]),
    (["evaluate", "--power", "1", "--tasks", "mmlu"], ["unknown task 'mmlu'"]),
    (["evaluate", "--power", "1", "--tasks", ","], ["--tasks names no task"]),
    # engines
    (["evaluate", "--power", "1", "--engine", "vllm", "--attn-kernel", "sdpa"], ["--attn-kernel", "drop the flag"]),
    (["evaluate", "--power", "1", "--tensor-parallel-size", "2"], ["--tensor-parallel-size", "add --engine vllm"]),
    (["sweep", "--powers", "0,1", "--enforce-eager"], ["--enforce-eager", "add --engine vllm"]),
    # patterns and checkpoints
    (["evaluate"], ["pass --power P", "--attention SPEC"]),
    (["pattern", "--length", "8"], ["give --attention SPEC", "--power P"]),
    (["pattern", "--power", "1/2", "--attention", "full", "--length", "8"], ["either --attention SPEC", "not both"]),
    (["pattern", "--power", "1/2", "--length", "0"], ["--length must be between 1 and"]),
    (["pattern", "--power", "1/2", "--length", "8", "--layers", "0"], ["--layers must be at least 1"]),
    (["pattern", "--attention", "ppa:p=1/2,w=8", "--match-cost", "full", "--length", "64"],
     ["--match-cost chooses", "drop p="]),
    (["pattern", "--attention", "bogus:x=1", "--length", "8"], ["unknown attention pattern 'bogus:x=1'"]),
    (["evaluate", "--attention", "ppa:p=1/2,q=3"], ["ppa takes p, w, sink, not 'q'"]),
    (["evaluate", "PLAIN", "--window", "16"], ["--window changes the window", "--power P too"]),
    (["evaluate", "PLAIN"], ["has no PPA settings", "pass --attention SPEC"]),
    (["evaluate", "CKPT", "--power", "1/4"], ["add --force"]),
    # sweeps and fine-tuning
    (["sweep"], ["--powers P1,P2"]),
    (["sweep", "CKPT", "--powers", "0:1:0"], ["--powers range '0:1:0' has step 0"]),
    (["sweep", "CKPT/..", "--shard", "a/b"], ["--shard takes I/N"]),
    (["sweep", "CKPT/..", "--shard", "1"], ["--shard takes I/N"]),
    (["sweep", "CKPT/..", "--shard", "2/2"], ["--shard 2/2: I must be from 0 to N - 1"]),
    (["sweep", "CKPT/..", "--shard=-1/2"], ["--shard -1/2: I must be from 0 to N - 1"]),
    (["finetune"], ["--powers P1,P2", "--attention SPEC"]),
    (["finetune", "CKPT", "--powers", "1", "--lr", "0"], ["--lr must be positive"]),
    (["finetune", "CKPT", "--powers", "1", "--per-length", "0"], ["--per-length must be at least 1"]),
    (["finetune", "CKPT", "--powers", "1", "--train-lengths", "x", "--device", "cpu"],
     ["--train-lengths takes whole numbers"]),
    # results
    (["evaluate", "CKPT", "--device", "cpu", "--out", "CKPT/config.json/out"], ["choose another --out"]),
]


@pytest.mark.parametrize("argv, fragments", MISTAKES, ids=[" ".join(argv) for argv, _ in MISTAKES])
def test_each_flag_mistake_is_one_line(argv, fragments, checkpoints, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("PPA_EVAL_DEBUG", raising=False)
    monkeypatch.chdir(tmp_path)  # finetune's and evaluate's default --out
    for placeholder, path in checkpoints.items():
        argv = [arg.replace(placeholder, str(path)) for arg in argv]
    status = cli.main(argv)
    assert_one_line(status, capsys.readouterr().err, *fragments)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a torch that sees no GPU")
def test_a_gpu_this_torch_cannot_see_is_one_line(checkpoints, tmp_path, capsys):
    status = cli.main(["evaluate", str(checkpoints["CKPT"]), "--device", "cuda", "--out", str(tmp_path / "out")])
    assert_one_line(status, capsys.readouterr().err, "--device cuda", "no CUDA GPU", "--device cpu")


def test_an_attention_kernel_that_cannot_run_the_pattern_is_one_line(monkeypatch, capsys):
    """The ppa_kernel attention refuses other families from inside generate(): still the user's to fix."""
    from transformers import PretrainedConfig

    from ppa_eval.engines.hf_attention import _ppa_kernel_mask, set_pattern
    from ppa_eval.patterns import parse_spec

    config = PretrainedConfig()
    set_pattern(config, parse_spec("powerattention:block=16,window=1,sink=1"))
    _fail_inside(monkeypatch, lambda args: _ppa_kernel_mask(1, 4, 4, config=config))
    assert_one_line(cli.main(["table", "x"]), capsys.readouterr().err, "use --attn-kernel sdpa")


def test_the_vllm_backend_without_a_pattern_is_one_line(monkeypatch, capsys):
    pytest.importorskip("vllm")  # the optional engine
    from transformers import PretrainedConfig

    from ppa_eval.engines.vllm_backend import configured_pattern
    from ppa_eval.engines.vllm_plugin import ATTENTION_ENV

    monkeypatch.delenv(ATTENTION_ENV, raising=False)
    _fail_inside(monkeypatch, lambda args: configured_pattern(PretrainedConfig()))
    assert_one_line(cli.main(["table", "x"]), capsys.readouterr().err, ATTENTION_ENV)


def _fail_inside(monkeypatch, run) -> None:
    """Make `ppa-eval table` call `run`, as if the mistake surfaced while a command ran."""
    parser = cli.build_parser()
    parser._subparsers._group_actions[0].choices["table"].set_defaults(run=run)
    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    monkeypatch.delenv("PPA_EVAL_DEBUG", raising=False)


@pytest.mark.parametrize("argv, fragment", [
    (["evaluate", "--power", "1", "--device", "tpu"], "--device takes cpu or cuda"),
    (["pattern", "--attention", "ppa:p=2,w=8", "--length", "8"], "power must be in [0, 1]"),
])
def test_the_installed_command_prints_one_line(argv, fragment, tmp_path):
    # not the repository root: there `python -m` would import the source tree instead of the installed package
    result = subprocess.run([sys.executable, "-m", "ppa_eval.cli", *argv], capture_output=True, text=True,
                            cwd=Path(__file__).parent)
    assert "Traceback" not in result.stderr
    assert_one_line(result.returncode, result.stderr, fragment)
